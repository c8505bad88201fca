"""The loss modules: hyperparameters, and for the margin loss the learned β, plus their terms.

Each derives from :class:`~sampling_matters.losses.base.SampledLoss`, which samples,
reduces and records; ``forward(embeddings, labels, indices=None, *, references=None,
reference_labels=None)`` is the same for all three.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from sampling_matters import _checks
from sampling_matters.losses.base import LossInputs, SampledLoss, Sampling
from sampling_matters.losses.beta import learned_beta, zeros_parameter
from sampling_matters.losses.terms import contrastive_terms, margin_terms, triplet_terms
from sampling_matters.sampling import Triplets

__all__ = ["ContrastiveLoss", "LossModule", "MarginLoss", "TripletLoss"]


class ContrastiveLoss(SampledLoss):
    """Contrastive loss (the paper's Section 3) on sampled pairs; see :func:`contrastive_loss`.

    Args:
        margin: α ≥ 0.
        sampling: a name in :data:`sampling_matters.sampling.SAMPLINGS` or a callable
            (see :class:`~sampling_matters.losses.base.SampledLoss`).
        generator: the random source handed to the sampling strategy.

    Attributes:
        last_stats, last_active_fraction, last_triplets: see :class:`SampledLoss`.
    """

    def __init__(
        self,
        *,
        margin: float = 1.0,
        sampling: str | Sampling = "distance-weighted",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(sampling=sampling, generator=generator)
        self.margin = _checks.finite_float("margin", margin, 0)

    def terms(self, inputs: LossInputs, triplets: Triplets) -> tuple[Tensor, Tensor | None]:
        """D² of the T positive pairs and (α − D)₊² of the T negative pairs."""
        x, refs = inputs.embeddings, inputs.references
        return contrastive_terms(x, triplets.to_pairs(), self.margin, references=refs), None

    def extra_repr(self) -> str:
        """Hyperparameters, for ``repr``."""
        return f"margin={self.margin}, {super().extra_repr()}"


class TripletLoss(SampledLoss):
    """Triplet loss (plain or squared distances) on sampled triplets; see :func:`triplet_loss`.

    Args:
        margin: α > 0.
        squared: use squared distances (the paper's Section 3 form).
        sampling: a name in :data:`sampling_matters.sampling.SAMPLINGS` or a callable
            (see :class:`~sampling_matters.losses.base.SampledLoss`).
        generator: the random source handed to the sampling strategy.

    Attributes:
        last_stats, last_active_fraction, last_triplets: see :class:`SampledLoss`.
    """

    def __init__(
        self,
        *,
        margin: float = 0.2,
        squared: bool = False,
        sampling: str | Sampling = "distance-weighted",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(sampling=sampling, generator=generator)
        self.margin = _checks.finite_float("margin", margin, 0, low_open=True)
        self.squared = bool(squared)

    def terms(self, inputs: LossInputs, triplets: Triplets) -> tuple[Tensor, Tensor | None]:
        """(D_ap − D_an + α)₊ of each triplet."""
        x, refs = inputs.embeddings, inputs.references
        return triplet_terms(x, triplets, self.margin, self.squared, references=refs), None

    def extra_repr(self) -> str:
        """Hyperparameters, for ``repr``."""
        return f"margin={self.margin}, squared={self.squared}, {super().extra_repr()}"


class MarginLoss(SampledLoss):
    """The paper's margin loss (Eq. 4) with learned β; see :func:`margin_loss`.

    β of an embedding i with class c(i) is β⁽⁰⁾ + β⁽ᶜˡᵃˢˢ⁾_c(i) + β⁽ⁱᵐᵍ⁾_i (Section 5):
    a shared boundary, optionally a learned offset per class (``n_classes``) and per
    training image (``n_items``, then ``forward`` needs each embedding's data-set
    index). A pair's β is its anchor's, and anchors are batch rows: references (a
    memory, other processes' batches) never read the per-image table. β is learned
    with its own learning rate: put :meth:`beta_param_group` in the optimiser.

    Args:
        margin: α > 0.
        beta: β⁽⁰⁾'s initial value (≥ 0; the paper uses 1.2).
        learn_beta: whether β⁽⁰⁾ is trained; the per-class and per-image terms, when
            asked for, are always trained.
        nu: ν ≥ 0, the weight of the penalty ν Σ β (see :func:`margin_loss`).
        n_classes: if given, learn β⁽ᶜˡᵃˢˢ⁾, one offset per class; labels must then lie
            in [0, n_classes).
        n_items: if given, learn β⁽ⁱᵐᵍ⁾, one offset per training item; ``forward`` then
            needs ``indices`` in [0, n_items).
        sampling: a name in :data:`sampling_matters.sampling.SAMPLINGS` or a callable
            (see :class:`~sampling_matters.losses.base.SampledLoss`).
        generator: the random source handed to the sampling strategy.

    Attributes:
        beta0: () Parameter β⁽⁰⁾.
        beta_class: (n_classes,) Parameter β⁽ᶜˡᵃˢˢ⁾ initialised to 0, or ``None``.
        beta_image: (n_items,) Parameter β⁽ⁱᵐᵍ⁾ initialised to 0, or ``None``.
        last_stats, last_active_fraction, last_triplets: see :class:`SampledLoss`.
    """

    beta_class: nn.Parameter | None
    beta_image: nn.Parameter | None

    def __init__(
        self,
        *,
        margin: float = 0.2,
        beta: float = 1.2,
        learn_beta: bool = True,
        nu: float = 0.0,
        n_classes: int | None = None,
        n_items: int | None = None,
        sampling: str | Sampling = "distance-weighted",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(sampling=sampling, generator=generator)
        self.margin = _checks.finite_float("margin", margin, 0, low_open=True)
        beta = _checks.finite_float("beta", beta, 0)
        self.nu = _checks.finite_float("nu", nu, 0)
        self.beta0 = nn.Parameter(torch.tensor(beta), requires_grad=bool(learn_beta))
        self.register_parameter("beta_class", zeros_parameter("n_classes", n_classes))
        self.register_parameter("beta_image", zeros_parameter("n_items", n_items))

    def beta_values(self, labels: Tensor, indices: Tensor | None = None) -> Tensor:
        """Each embedding's β = β⁽⁰⁾ + β⁽ᶜˡᵃˢˢ⁾[label] + β⁽ⁱᵐᵍ⁾[index].

        Args:
            labels: (N,) integer class ids (in [0, n_classes) if the class term is on).
            indices: (N,) integer data-set indices in [0, n_items); required if and only
                if the image term is on (ignored otherwise).

        Returns:
            (N,) β values, differentiable with respect to the β parameters.

        Raises:
            ValueError: on labels or indices out of range, or missing indices.
        """
        return learned_beta(self.beta0, self.beta_class, self.beta_image, labels, indices)

    def beta_param_group(self, lr: float) -> dict[str, Any]:
        """An optimiser parameter group holding exactly the β parameters.

        Args:
            lr: β's learning rate (> 0); the paper trains β with its own.

        Returns:
            ``{"params": [β⁽⁰⁾, β⁽ᶜˡᵃˢˢ⁾?, β⁽ⁱᵐᵍ⁾?], "lr": lr, "name": "beta"}``.
        """
        lr = _checks.finite_float("lr", lr, 0, low_open=True)
        params = [p for p in (self.beta0, self.beta_class, self.beta_image) if p is not None]
        return {"params": params, "lr": lr, "name": "beta"}

    def terms(self, inputs: LossInputs, triplets: Triplets) -> tuple[Tensor, Tensor | None]:
        """(α + y (D − β_anchor))₊ of the 2T pairs and the penalty ν Σ β_anchor."""
        x, refs = inputs.embeddings, inputs.references
        beta = self.beta_values(inputs.labels, inputs.indices)  # (N,) anchors are batch rows
        _checks.same_device("MarginLoss", beta, x)
        return margin_terms(x, triplets.to_pairs(), beta, self.margin, self.nu, references=refs)

    def extra_repr(self) -> str:
        """Hyperparameters, for ``repr``."""
        return f"margin={self.margin}, nu={self.nu}, {super().extra_repr()}"


LossModule = SampledLoss
"""Any loss module: the base every one derives from."""
