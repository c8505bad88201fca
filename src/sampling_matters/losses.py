"""Losses on sampled index tuples: contrastive, triplet, and the paper's margin loss.

Every loss is a pure function of tensors (``contrastive_loss``, ``triplet_loss``,
``margin_loss``) taking embeddings and the :class:`~sampling_matters.sampling.Triplets`
(or :class:`~sampling_matters.sampling.Pairs`) a sampling strategy returned. Distances
are computed only at the sampled pairs (O(T·D), never the N×N matrix) with
:func:`~sampling_matters.distances.pair_distances`, whose safe square root keeps
gradients finite at zero distance; half-precision inputs are computed, and the loss
returned, in float32.

All three share one reduction: the sum of the per-term losses divided by the number
of *active* terms (those with non-zero loss), as in the authors' code. With no active
term (or no term at all) the loss is exactly 0 with an exactly zero gradient, still
attached to the graph so that ``.backward()`` works.

The modules (:class:`ContrastiveLoss`, :class:`TripletLoss`, :class:`MarginLoss`) hold
hyperparameters, a sampling strategy and, for the margin loss, the learned β; their
``forward(embeddings, labels, indices=None)`` samples on detached embeddings, then
calls the same per-term and reduction steps as the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from sampling_matters import _checks
from sampling_matters.distances import anchor_distances, pair_distances
from sampling_matters.sampling import SAMPLINGS, Pairs, SamplingStats, Triplets

__all__ = [
    "LOSSES",
    "ContrastiveLoss",
    "LossModule",
    "MarginLoss",
    "TripletLoss",
    "contrastive_loss",
    "contrastive_terms",
    "make_loss",
    "margin_loss",
    "margin_terms",
    "triplet_loss",
    "triplet_terms",
]

Sampling = Callable[..., Triplets]
"""A strategy ``fn(embeddings, labels, *, generator=None, stats=None) -> Triplets``."""


# --------------------------------------------------------------------------- validation


def _check_inputs(
    embeddings: Tensor,
    tuples: object,
    accepted: tuple[type, ...],
    beta: object = None,
) -> None:
    """Check the embeddings, the index tuples and (for the margin loss) β at the door.

    Args:
        embeddings: must be a finite floating (N, D) tensor.
        tuples: must be an instance of one of ``accepted`` whose fields are 1-d int64
            tensors on the embeddings' device with values in [0, N); the fields of a
            Triplets all have one length, a Pairs' positive and negative fields each.
        accepted: the tuple types the loss takes.
        beta: if not ``None``: a finite number, or a finite floating tensor of shape
            () or (N,) on the embeddings' device.
    """
    _checks.embeddings_2d(embeddings)
    if not isinstance(tuples, (Triplets, Pairs)) or not isinstance(tuples, accepted):
        names = " or ".join(kind.__name__ for kind in accepted)
        raise ValueError(f"expected index tuples as {names}, got {_checks.describe(tuples)}")
    kind = type(tuples).__name__
    for field, index in zip(tuples._fields, tuples, strict=True):
        _checks.index_tensor(f"{kind}.{field}", index, int64=True)
        _checks.same_device(f"{kind}.{field}", index, embeddings)
    groups = [tuples[:2], tuples[2:]] if isinstance(tuples, Pairs) else [tuples]
    for group in groups:
        if len({len(index) for index in group}) > 1:
            lengths = {f: len(i) for f, i in zip(tuples._fields, tuples, strict=True)}
            raise ValueError(
                f"index tensors that form tuples must have equal lengths, got {lengths}"
            )
    _checks.index_tensor(f"{kind} indices", torch.cat(tuples), len(embeddings))  # one sync
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError("embeddings contain NaN or Inf")
    if beta is not None:
        _check_beta(beta, embeddings)


def _check_beta(beta: object, embeddings: Tensor) -> None:
    if not isinstance(beta, Tensor):
        _checks.finite_float("beta", beta)
        return
    if not beta.is_floating_point() or beta.shape not in ((), (len(embeddings),)):
        raise ValueError(
            "beta must be a float or a floating tensor of shape () or (N,) = "
            f"({len(embeddings)},), got {_checks.describe(beta)}"
        )
    _checks.same_device("beta", beta, embeddings)
    if not bool(torch.isfinite(beta).all()):
        raise ValueError("beta contains NaN or Inf")


def _as_pairs(tuples: Triplets | Pairs) -> Pairs:
    return tuples.to_pairs() if isinstance(tuples, Triplets) else tuples


# ------------------------------------------------------------------ per-term losses


def _pair_distances(embeddings: Tensor, pairs: Pairs, squared: bool) -> tuple[Tensor, Tensor]:
    """(P,) positive and (Q,) negative pair distances; anchors gathered once when shared."""
    if pairs.positive_anchor is pairs.negative_anchor:  # pairs of Triplets
        d_pos, d_neg = anchor_distances(
            embeddings, pairs.positive_anchor, (pairs.positive, pairs.negative), squared=squared
        )
        return d_pos, d_neg
    d_pos = pair_distances(embeddings, pairs.positive_anchor, pairs.positive, squared=squared)
    d_neg = pair_distances(embeddings, pairs.negative_anchor, pairs.negative, squared=squared)
    return d_pos, d_neg


def contrastive_terms(embeddings: Tensor, pairs: Pairs, margin: float) -> Tensor:
    """Per-pair contrastive losses: D² for positive pairs, (α − D)₊² for negative pairs."""
    d_pos, d_neg = _pair_distances(embeddings, pairs, squared=False)  # (P,), (Q,)
    return torch.cat([d_pos.square(), torch.relu(margin - d_neg).square()])  # (P + Q,)


def triplet_terms(embeddings: Tensor, triplets: Triplets, margin: float, squared: bool) -> Tensor:
    """Per-triplet losses (D_ap − D_an + α)₊, on squared distances if ``squared``."""
    d_ap, d_an = _pair_distances(embeddings, triplets.to_pairs(), squared)  # (T,), (T,)
    return torch.relu(d_ap - d_an + margin)  # (T,)


def _beta_at(beta: float | Tensor, anchor: Tensor, like: Tensor) -> Tensor:
    """β of each pair, the β of its anchor, as a tensor like ``like`` (same dtype)."""
    if not isinstance(beta, Tensor):
        return torch.full_like(like, float(beta))  # (P,)
    beta = beta.to(like.dtype)
    return beta.index_select(0, anchor) if beta.dim() == 1 else beta.expand(len(anchor))  # (P,)


def margin_terms(
    embeddings: Tensor, pairs: Pairs, beta: float | Tensor, margin: float, nu: float
) -> tuple[Tensor, Tensor | None]:
    """Per-pair margin losses (α + y (D − β))₊ and the penalty ν Σ β over positive pairs."""
    d_pos, d_neg = _pair_distances(embeddings, pairs, squared=False)  # (P,), (Q,)
    beta_pos = _beta_at(beta, pairs.positive_anchor, d_pos)  # (P,)
    shared = pairs.positive_anchor is pairs.negative_anchor
    beta_neg = beta_pos if shared else _beta_at(beta, pairs.negative_anchor, d_neg)  # (Q,)
    pos = torch.relu(margin + d_pos - beta_pos)  # (P,) y = +1
    neg = torch.relu(margin - d_neg + beta_neg)  # (Q,) y = -1
    penalty = nu * beta_pos.sum() if nu != 0 else None  # () one β per positive pair
    return torch.cat([pos, neg]), penalty  # (P + Q,), ()


# ---------------------------------------------------------------------- reduction


def _reduce(terms: Tensor, penalty: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Average over active terms: (Σ terms + penalty) / #{terms > 0}, or exactly 0.

    Args:
        terms: (M,) non-negative per-term losses.
        penalty: optional () tensor added to the numerator (dropped when nothing is active).

    Returns:
        The () loss and the () int64 number of active terms. With no active term the
        loss is exactly 0 and its gradient exactly 0, yet it stays on the graph. No
        host-device synchronisation.
    """
    n_active = torch.count_nonzero(terms)  # () int64
    total = terms.sum() if penalty is None else terms.sum() + penalty  # ()
    mean = total / n_active.clamp_min(1)  # ()
    return torch.where(n_active > 0, mean, torch.zeros_like(mean)), n_active


def _active_fraction(terms: Tensor, n_active: Tensor) -> float:
    return float(n_active) / len(terms) if len(terms) else 0.0


# ------------------------------------------------------------------ pure functions


def contrastive_loss(
    embeddings: Tensor, triplets: Triplets | Pairs, *, margin: float = 1.0
) -> Tensor:
    """Contrastive loss (the paper's Section 3), averaged over active pairs.

    ℓ(i, j) = D_ij² for a positive pair and (α − D_ij)₊² for a negative pair, with
    D the Euclidean distance and α = ``margin``. The loss is
    Σ ℓ / #{pairs with ℓ > 0}; exactly 0 (zero gradient) when no pair is active.

    Args:
        embeddings: (N, D) floating embeddings.
        triplets: Triplets of (T,) int64 indices, read as the T positive pairs
            (anchor, positive) and T negative pairs (anchor, negative); or Pairs with
            P positive and Q negative pairs.
        margin: α ≥ 0, the distance beyond which negatives give no loss.

    Returns:
        () scalar loss (float32 for half-precision embeddings).

    Raises:
        ValueError: on a negative margin or malformed embeddings or indices.

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [0.0, 0.5], [1.0, 0.0]])
        >>> t = Triplets(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
        >>> contrastive_loss(x, t, margin=1.5)  # (0.5² + (1.5 - 1)²) / 2
        tensor(0.2500)
    """
    _checks.finite_float("margin", margin, 0)
    _check_inputs(embeddings, triplets, (Triplets, Pairs))
    return _reduce(contrastive_terms(embeddings, _as_pairs(triplets), margin))[0]


def triplet_loss(
    embeddings: Tensor, triplets: Triplets, *, margin: float = 0.2, squared: bool = False
) -> Tensor:
    """Triplet loss, averaged over active triplets.

    ℓ(a, p, n) = (D_ap − D_an + α)₊ with plain distances, or, with ``squared=True``,
    (D_ap² − D_an² + α)₊, the form of the paper's Section 3 (FaceNet's). The loss is
    Σ ℓ / #{triplets with ℓ > 0}; exactly 0 (zero gradient) when none is active.

    Args:
        embeddings: (N, D) floating embeddings.
        triplets: Triplets of (T,) int64 indices.
        margin: α > 0 (with α = 0 a collapsed embedding would give zero loss).
        squared: use squared distances.

    Returns:
        () scalar loss (float32 for half-precision embeddings).

    Raises:
        ValueError: on a margin ≤ 0 or malformed embeddings or indices.

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [0.0, 0.5], [1.0, 0.0]])
        >>> t = Triplets(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
        >>> triplet_loss(x, t, margin=0.75)  # 0.5 - 1 + 0.75
        tensor(0.2500)
    """
    _checks.finite_float("margin", margin, 0, low_open=True)
    _check_inputs(embeddings, triplets, (Triplets,))
    return _reduce(triplet_terms(embeddings, triplets, margin, squared))[0]


def margin_loss(
    embeddings: Tensor,
    triplets: Triplets | Pairs,
    beta: float | Tensor,
    *,
    margin: float = 0.2,
    nu: float = 0.0,
) -> Tensor:
    """The paper's margin loss (Eq. 4) with its ν·β penalty, averaged over active pairs.

    ℓ(i, j) = (α + y_ij (D_ij − β_i))₊ with y = +1 for a positive pair (anchor,
    positive) and y = −1 for a negative pair (anchor, negative), α = ``margin`` and
    β_i the β of the pair's anchor. The loss is

        (Σ_pairs ℓ(i, j) + ν Σ_triplets β_anchor) / #{pairs with ℓ > 0},

    the penalty counting one β per triplet (for Pairs: per positive pair), as the
    authors' code does. With no active pair the loss is exactly 0, penalty included,
    with a zero gradient (for β too).

    Args:
        embeddings: (N, D) floating embeddings.
        triplets: Triplets of (T,) int64 indices, giving the T positive pairs
            (anchor, positive) and T negative pairs (anchor, negative); or Pairs.
        beta: β, the boundary between positive and negative distances: a float, a ()
            tensor, or an (N,) tensor giving each embedding's β as an anchor. Tensors
            may require grad (β is learned).
        margin: α > 0, the half-width of the band around β.
        nu: ν ≥ 0, weight of the penalty on β.

    Returns:
        () scalar loss (float32 for half-precision embeddings).

    Raises:
        ValueError: on a margin ≤ 0, a negative ν, a malformed β, embeddings or indices.

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [0.0, 0.5], [1.0, 0.0]])
        >>> t = Triplets(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
        >>> margin_loss(x, t, 1.0, margin=0.25)  # positive: (0.25 + 0.5 - 1)₊ = 0 inactive
        tensor(0.2500)
        >>> margin_loss(x, t, 1.0, margin=0.25, nu=0.5)  # (0.25 + 0.5 · 1.0) / 1
        tensor(0.7500)
    """
    _checks.finite_float("margin", margin, 0, low_open=True)
    _checks.finite_float("nu", nu, 0)
    _check_inputs(embeddings, triplets, (Triplets, Pairs), beta)
    terms, penalty = margin_terms(embeddings, _as_pairs(triplets), beta, margin, nu)
    return _reduce(terms, penalty)[0]


# ------------------------------------------------------------------------- modules


def _resolve_sampling(sampling: str | Sampling) -> Sampling:
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
    _check_inputs(embeddings, triplets, (Triplets,))
    return triplets, stats


def _sampled_loss(
    module: ContrastiveLoss | TripletLoss | MarginLoss,
    embeddings: Tensor,
    labels: Tensor,
    terms_of: Callable[[Triplets], tuple[Tensor, Tensor | None]],
) -> Tensor:
    """Sample with the module's strategy, reduce the per-term losses, record the stats."""
    triplets, module.last_stats = _sample(module.sampling, embeddings, labels, module.generator)
    module.last_triplets = triplets
    terms, penalty = terms_of(triplets)
    loss, n_active = _reduce(terms, penalty)
    module.last_active_fraction = _active_fraction(terms, n_active)
    return loss


def _zeros_parameter(name: str, size: int | None) -> nn.Parameter | None:
    size = _checks.positive_int_or_none(name, size)
    return None if size is None else nn.Parameter(torch.zeros(size))


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
        self.sampling = _resolve_sampling(sampling)
        self.generator = generator
        self.last_stats = SamplingStats()
        self.last_active_fraction = 0.0
        self.last_triplets: Triplets | None = None

    def forward(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None = None) -> Tensor:
        """Sample triplets from the batch and return the loss.

        Args:
            embeddings: (N, D) embeddings (L2-normalised for distance weighted sampling).
            labels: (N,) integer class ids.
            indices: unused; accepted so that every loss module shares one signature.

        Returns:
            () scalar loss.
        """
        return _sampled_loss(
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
        self.sampling = _resolve_sampling(sampling)
        self.generator = generator
        self.last_stats = SamplingStats()
        self.last_active_fraction = 0.0
        self.last_triplets: Triplets | None = None

    def forward(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None = None) -> Tensor:
        """Sample triplets from the batch and return the loss.

        Args:
            embeddings: (N, D) embeddings (L2-normalised for distance weighted sampling).
            labels: (N,) integer class ids.
            indices: unused; accepted so that every loss module shares one signature.

        Returns:
            () scalar loss.
        """
        return _sampled_loss(
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
        self.register_parameter("beta_class", _zeros_parameter("n_classes", n_classes))
        self.register_parameter("beta_image", _zeros_parameter("n_items", n_items))
        self.sampling = _resolve_sampling(sampling)
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
        n_classes = None if self.beta_class is None else len(self.beta_class)
        _checks.index_tensor("labels", labels, n_classes, bound="n_classes")
        beta = self.beta0.expand(len(labels))  # (N,)
        if self.beta_class is not None:
            beta = beta + self.beta_class[labels.long()]  # (N,) any integer dtype indexes
        if self.beta_image is not None:
            if indices is None:
                raise ValueError(
                    "MarginLoss(n_items=...) learns a β per image, so it needs indices: the "
                    "(N,) data-set index of each embedding, forward(embeddings, labels, indices)"
                )
            _checks.index_tensor("indices", indices, len(self.beta_image), bound="n_items")
            if len(indices) != len(labels):
                raise ValueError(f"got {len(indices)} indices for {len(labels)} labels")
            beta = beta + self.beta_image[indices.long()]  # (N,)
        return beta

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
        return _sampled_loss(
            self,
            embeddings,
            labels,
            lambda t: margin_terms(embeddings, t.to_pairs(), beta, self.margin, self.nu),
        )

    def extra_repr(self) -> str:
        """Hyperparameters, for ``repr``."""
        sampling = _sampling_name(self.sampling)
        return f"margin={self.margin}, nu={self.nu}, sampling={sampling}"


# ------------------------------------------------------------------------ registry

LossModule = ContrastiveLoss | TripletLoss | MarginLoss
"""Any of the loss modules."""

LOSSES: dict[str, Callable[..., LossModule]] = {
    "contrastive": ContrastiveLoss,
    "triplet": TripletLoss,
    "triplet-squared": partial(TripletLoss, squared=True),
    "margin": MarginLoss,
}
"""The loss modules by their command-line names; each takes ``sampling`` and ``generator``."""


def make_loss(
    name: str,
    *,
    sampling: str | Sampling = "distance-weighted",
    generator: torch.Generator | None = None,
) -> LossModule:
    """Build the loss module ``name`` with its default hyperparameters.

    Args:
        name: a key of :data:`LOSSES`.
        sampling: a name in :data:`sampling_matters.sampling.SAMPLINGS` or a callable.
        generator: the random source handed to the sampling strategy.

    Returns:
        The loss module.

    Raises:
        ValueError: on an unknown loss or sampling name.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}")
    return LOSSES[name](sampling=sampling, generator=generator)
