"""The loss modules: hyperparameters, a sampling strategy and, for the margin loss, β.

Each module's ``forward(embeddings, labels, indices=None)`` samples on detached
embeddings, then calls the same per-term and reduction steps as the functions, and
keeps what happened (``last_stats``, ``last_active_fraction``, ``last_triplets``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from sampling_matters import _checks
from sampling_matters.losses.beta import learned_beta, zeros_parameter
from sampling_matters.losses.terms import (
    active_fraction,
    contrastive_terms,
    margin_terms,
    reduce_terms,
    triplet_terms,
)
from sampling_matters.losses.validation import check_inputs
from sampling_matters.sampling import SAMPLINGS, SamplingStats, Triplets

__all__ = [
    "ContrastiveLoss",
    "LossModule",
    "MarginLoss",
    "Sampling",
    "TripletLoss",
    "resolve_sampling",
    "sampled_loss",
]

Sampling = Callable[..., Triplets]
"""A strategy ``fn(embeddings, labels, *, generator=None, stats=None) -> Triplets``."""


def resolve_sampling(sampling: str | Sampling) -> Sampling:
    """The strategy: a name in :data:`~sampling_matters.sampling.SAMPLINGS`, or a callable.

    Raises:
        ValueError: an unknown name (the message names the choices), or not a callable.
    """
    if isinstance(sampling, str):
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {sampling!r}; expected one of {sorted(SAMPLINGS)}")
        return SAMPLINGS[sampling]
    if not callable(sampling):
        raise ValueError(
            f"sampling must be one of {sorted(SAMPLINGS)} or a callable "
            f"fn(embeddings, labels, *, generator=None, stats=None) -> Triplets, got {sampling!r}"
        )
    return sampling


def _sampling_name(sampling: Sampling) -> str:
    names = [name for name, fn in SAMPLINGS.items() if fn is sampling]
    return repr(names[0]) if names else str(getattr(sampling, "__name__", repr(sampling)))


def _sample(
    sampling: Sampling, embeddings: Tensor, labels: Tensor, generator: torch.Generator | None
) -> tuple[Triplets, SamplingStats]:
    """Run the strategy on detached embeddings and check what it returned."""
    stats = SamplingStats()
    triplets = sampling(embeddings.detach(), labels, generator=generator, stats=stats)
    check_inputs(embeddings, triplets, (Triplets,))
    return triplets, stats


def sampled_loss(
    module: LossModule,
    embeddings: Tensor,
    labels: Tensor,
    terms_of: Callable[[Triplets], tuple[Tensor, Tensor | None]],
) -> Tensor:
    """Sample with the module's strategy, reduce the per-term losses, record the stats.

    What every loss module's ``forward`` does: ``module`` has ``sampling`` (from
    :func:`resolve_sampling`) and ``generator``; this sets its ``last_stats``,
    ``last_triplets`` and ``last_active_fraction``, which training logs. ``terms_of``
    maps the sampled triplets to the per-term losses and an optional penalty.
    """
    triplets, module.last_stats = _sample(module.sampling, embeddings, labels, module.generator)
    module.last_triplets = triplets
    terms, penalty = terms_of(triplets)
    loss, n_active = reduce_terms(terms, penalty)
    module.last_active_fraction = active_fraction(terms, n_active)
    return loss


class ContrastiveLoss(nn.Module):
    """Contrastive loss (the paper's Section 3) on sampled pairs; see :func:`contrastive_loss`.

    Args:
        margin: α ≥ 0.
        sampling: a name in :data:`sampling_matters.sampling.SAMPLINGS` or a callable
            ``fn(embeddings, labels, *, generator=None, stats=None) -> Triplets``.
        generator: the random source handed to the sampling strategy.

    Attributes:
        last_stats: the :class:`SamplingStats` of the last call.
        last_active_fraction: the fraction of the last call's pairs with non-zero loss.
        last_triplets: the triplets the last call sampled (None before the first call).
    """

    def __init__(
        self,
        *,
        margin: float = 1.0,
        sampling: str | Sampling = "distance-weighted",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.margin = _checks.finite_float("margin", margin, 0)
        self.sampling = resolve_sampling(sampling)
        self.generator = generator
        self.last_stats = SamplingStats()
        self.last_active_fraction = 0.0
        self.last_triplets: Triplets | None = None

    def forward(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None = None) -> Tensor:
        """The () loss of triplets sampled from (N, D) embeddings with (N,) labels.

        ``indices`` is unused; every loss module takes it, so all share one signature.
        """
        return sampled_loss(
            self,
            embeddings,
            labels,
            lambda t: (contrastive_terms(embeddings, t.to_pairs(), self.margin), None),
        )

    def extra_repr(self) -> str:
        """Hyperparameters, for ``repr``."""
        return f"margin={self.margin}, sampling={_sampling_name(self.sampling)}"


class TripletLoss(nn.Module):
    """Triplet loss (plain or squared distances) on sampled triplets; see :func:`triplet_loss`.

    Args:
        margin: α > 0.
        squared: use squared distances (the paper's Section 3 form).
        sampling: a name in :data:`sampling_matters.sampling.SAMPLINGS` or a callable
            ``fn(embeddings, labels, *, generator=None, stats=None) -> Triplets``.
        generator: the random source handed to the sampling strategy.

    Attributes:
        last_stats: the :class:`SamplingStats` of the last call.
        last_active_fraction: the fraction of the last call's triplets with non-zero loss.
        last_triplets: the triplets the last call sampled (None before the first call).
    """

    def __init__(
        self,
        *,
        margin: float = 0.2,
        squared: bool = False,
        sampling: str | Sampling = "distance-weighted",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.margin = _checks.finite_float("margin", margin, 0, low_open=True)
        self.squared = bool(squared)
        self.sampling = resolve_sampling(sampling)
        self.generator = generator
        self.last_stats = SamplingStats()
        self.last_active_fraction = 0.0
        self.last_triplets: Triplets | None = None

    def forward(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None = None) -> Tensor:
        """The () loss of triplets sampled from (N, D) embeddings with (N,) labels.

        ``indices`` is unused; every loss module takes it, so all share one signature.
        """
        return sampled_loss(
            self,
            embeddings,
            labels,
            lambda t: (triplet_terms(embeddings, t, self.margin, self.squared), None),
        )

    def extra_repr(self) -> str:
        """Hyperparameters, for ``repr``."""
        sampling = _sampling_name(self.sampling)
        return f"margin={self.margin}, squared={self.squared}, sampling={sampling}"


class MarginLoss(nn.Module):
    """The paper's margin loss (Eq. 4) with learned β; see :func:`margin_loss`.

    β of an embedding i with class c(i) is β⁽⁰⁾ + β⁽ᶜˡᵃˢˢ⁾_c(i) + β⁽ⁱᵐᵍ⁾_i (Section 5):
    a shared boundary, optionally a learned offset per class (``n_classes``) and per
    training image (``n_items``, then ``forward`` needs each embedding's data-set
    index). β is learned with its own learning rate: put :meth:`beta_param_group`
    in the optimiser.

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
            ``fn(embeddings, labels, *, generator=None, stats=None) -> Triplets``.
        generator: the random source handed to the sampling strategy.

    Attributes:
        beta0: () Parameter β⁽⁰⁾.
        beta_class: (n_classes,) Parameter β⁽ᶜˡᵃˢˢ⁾ initialised to 0, or ``None``.
        beta_image: (n_items,) Parameter β⁽ⁱᵐᵍ⁾ initialised to 0, or ``None``.
        last_stats: the :class:`SamplingStats` of the last call.
        last_active_fraction: the fraction of the last call's pairs with non-zero loss.
        last_triplets: the triplets the last call sampled (None before the first call).
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
        super().__init__()
        self.margin = _checks.finite_float("margin", margin, 0, low_open=True)
        beta = _checks.finite_float("beta", beta, 0)
        self.nu = _checks.finite_float("nu", nu, 0)
        self.beta0 = nn.Parameter(torch.tensor(beta), requires_grad=bool(learn_beta))
        self.register_parameter("beta_class", zeros_parameter("n_classes", n_classes))
        self.register_parameter("beta_image", zeros_parameter("n_items", n_items))
        self.sampling = resolve_sampling(sampling)
        self.generator = generator
        self.last_stats = SamplingStats()
        self.last_active_fraction = 0.0
        self.last_triplets: Triplets | None = None

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

    def forward(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None = None) -> Tensor:
        """Sample triplets from the batch and return the margin loss.

        Args:
            embeddings: (N, D) embeddings (L2-normalised for distance weighted sampling).
            labels: (N,) integer class ids.
            indices: (N,) data-set indices of the embeddings; needed with ``n_items``.

        Returns:
            () scalar loss.
        """
        beta = self.beta_values(labels, indices)  # (N,)
        _checks.same_device("MarginLoss", beta, embeddings)
        return sampled_loss(
            self,
            embeddings,
            labels,
            lambda t: margin_terms(embeddings, t.to_pairs(), beta, self.margin, self.nu),
        )

    def extra_repr(self) -> str:
        """Hyperparameters, for ``repr``."""
        sampling = _sampling_name(self.sampling)
        return f"margin={self.margin}, nu={self.nu}, sampling={sampling}"


LossModule = ContrastiveLoss | TripletLoss | MarginLoss
"""Any of the loss modules."""
