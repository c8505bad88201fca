"""In-batch example selection: which (anchor, positive, negative) triplets to train on.

Every strategy pairs each anchor with each of its positives (all ordered pairs of
distinct same-class items, in any label order) and picks one negative per pair:

- :func:`uniform`: a negative drawn uniformly from the anchor's negatives.
- :func:`hard`: the anchor's closest negative.
- :func:`semihard`: FaceNet's rule, the closest negative farther than the positive.
- :func:`distance_weighted`: the paper's Section 4, a negative drawn with
  probability ∝ q(D_an)^-1 among those that can still produce loss.

All run under ``no_grad``, are fully vectorised (no Python loop over anchors or
labels) and return index tensors on the input's device, so the loss reads the
embeddings again with gradients. Given a ``torch.Generator`` they are deterministic.
Anything a strategy cannot do as asked (an anchor without negatives, an empty
semi-hard band) is counted in an optional :class:`SamplingStats`, never hidden.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.distances import compute_dtype, pairwise_distances

__all__ = [
    "SAMPLINGS",
    "Pairs",
    "SamplingFunction",
    "SamplingStats",
    "Triplets",
    "distance_bins",
    "distance_weighted",
    "hard",
    "semihard",
    "uniform",
]


class Pairs(NamedTuple):
    """Positive and negative pairs as index tensors, each (P,) or (Q,) int64."""

    positive_anchor: Tensor
    positive: Tensor
    negative_anchor: Tensor
    negative: Tensor


class Triplets(NamedTuple):
    """Triplets (anchor, positive, negative) as three (T,) int64 index tensors."""

    anchor: Tensor
    positive: Tensor
    negative: Tensor

    def to_pairs(self) -> Pairs:
        """The T positive pairs (anchor, positive) and T negative pairs (anchor, negative)."""
        return Pairs(self.anchor, self.positive, self.anchor, self.negative)


@dataclass
class SamplingStats:
    """What one call of a sampling strategy did, for logging.

    Attributes:
        triplets: triplets returned.
        anchors_without_negative: anchors with a positive but no negative in the batch
            (for example a batch of one class); their pairs give no triplet.
        fallback: triplets whose negative came from a strategy's fall-back rule:
            distance weighted sampling for an anchor with no admissible negative
            (uniform negative instead), semi-hard for a pair with no negative
            farther than its positive (the farthest negative instead).
        band_empty: semi-hard only: triplets whose negative lies outside the band
            (D_ap, D_ap + margin), because no negative of the anchor is in it.
    """

    triplets: int = 0
    anchors_without_negative: int = 0
    fallback: int = 0
    band_empty: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class SamplingFunction(Protocol):
    """The signature every strategy shares (extra hyperparameters are keyword-only)."""

    def __call__(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        generator: torch.Generator | None = None,
        stats: SamplingStats | None = None,
    ) -> Triplets:
        """Select one negative for every (anchor, positive) pair of the batch."""
        ...


def _check_inputs(embeddings: Tensor, labels: Tensor, *, finite: bool = True) -> None:
    _checks.embeddings_2d(embeddings, finite=finite)
    _checks.labels_1d(labels, len(embeddings))
    _checks.same_device("labels", labels, embeddings)


def _check_unit_norm(embeddings: Tensor) -> None:
    """Raise ``ValueError`` unless every row has unit norm (also rejects NaN and Inf)."""
    tolerance = 1e-2 if embeddings.dtype in (torch.float16, torch.bfloat16) else 1e-3
    squared_norms = embeddings.detach().to(compute_dtype(embeddings)).pow(2).sum(1)  # (N,)
    worst = float((squared_norms - 1.0).abs().max()) if len(embeddings) else 0.0
    if not worst <= 2 * tolerance:
        raise ValueError(
            "distance weighted sampling assumes finite, L2-normalised embeddings (points on "
            f"the unit sphere), but a row's squared norm is off 1 by {worst:.3g}; "
            "normalise them first, e.g. torch.nn.functional.normalize(embeddings, dim=1)"
        )


class _Groups(NamedTuple):
    """A batch grouped by label, in *sorted positions*.

    Position s holds item ``order[s]``; items of one label occupy the contiguous
    positions ``start[s] … start[s] + size[s] - 1``. Row s of ``positive`` lists the
    positions of its k = size[s] - 1 positives in its first k columns (``valid``);
    the padding columns hold s itself, so that writing through them only touches
    the diagonal. Strategies work on the embeddings permuted into this order and map
    the triplets back through ``order`` at the end.
    """

    order: Tensor  # (N,) int64
    start: Tensor  # (N,) int64
    size: Tensor  # (N,) int64
    positive: Tensor  # (N, m) int64
    valid: Tensor  # (N, m) bool

    @property
    def width(self) -> int:
        """m, the most positives any item has (at least 1, so tables keep a column)."""
        return max(self.positive.shape[1], 1)

    @property
    def has_negative(self) -> Tensor:
        """(N,) whether each position's item has any negative in the batch."""
        return self.size < len(self.order)

    def block_(self, rows: Tensor, first_row: int, value: float) -> Tensor:
        """In place: ``value`` at each row's positives and itself.

        Args:
            rows: (B, N) the rows ``first_row … first_row + B - 1`` of an (N, N) matrix.
            first_row: the position of the first row.
            value: what to write.
        """
        block = self.positive[first_row : first_row + len(rows)]  # (B, m)
        rows.scatter_(1, block, value)
        rows.diagonal(offset=first_row).fill_(value)
        return rows

    def uniform_negatives(self, m: int, generator: torch.Generator | None) -> Tensor:
        """(N, m) positions drawn uniformly among each row's negatives, in O(N·m).

        The j-th negative of a row is position j, skipping the row's own label block.
        Rows without a negative get an arbitrary valid position.
        """
        n = len(self.order)
        u = torch.rand(n, m, generator=generator, device=self.order.device)  # (N, m)
        j = u.mul_((n - self.size)[:, None]).long()  # (N, m) in [0, n_negatives)
        j += self.size[:, None] * (j >= self.start[:, None])
        return j.clamp_(max=n - 1)

    def triplets(self, negative: Tensor, keep: Tensor | None = None) -> Triplets:
        """Triplets of original indices, one per valid (row, column) slot.

        Args:
            negative: (N, m) a negative position per slot, or (N,) one per row.
            keep: (N,) rows to keep; None keeps all.
        """
        selected = self.valid if keep is None else self.valid & keep[:, None]  # (N, m)
        flat = selected.view(-1).nonzero().squeeze(1)  # (T,)
        row = flat.div(self.width, rounding_mode="floor")  # (T,)
        positive = self.positive.view(-1)[flat]  # (T,)
        negative = negative[row] if negative.dim() == 1 else negative.reshape(-1)[flat]
        return Triplets(self.order[row], self.order[positive], self.order[negative])


def _group(labels: Tensor) -> _Groups:
    """Group a batch by label (a stable sort): see :class:`_Groups`. O(N log N + N·m)."""
    sorted_labels, order = labels.sort(stable=True)  # (N,), (N,)
    _, group, counts = torch.unique_consecutive(
        sorted_labels, return_inverse=True, return_counts=True
    )
    start = (torch.cumsum(counts, 0) - counts)[group]  # (N,)
    size = counts[group]  # (N,)
    column = torch.arange(int(size.max()) - 1, device=labels.device)  # (m,)
    position = torch.arange(len(labels), device=labels.device)  # (N,)
    slot = start[:, None] + column + (column >= (position - start)[:, None])  # (N, m)
    valid = column < (size - 1)[:, None]  # (N, m)
    positive = torch.where(valid, slot, position[:, None])  # (N, m)
    return _Groups(order, start, size, positive, valid)


def _record(
    stats: SamplingStats | None,
    groups: _Groups,
    triplets: Triplets,
    keep: Tensor | None,
    fallback: Tensor | None,
) -> None:
    """Fill ``stats`` (when given) with what a strategy did.

    Args:
        stats: the object to fill, or None.
        groups: the grouped batch.
        triplets: what the strategy returns.
        keep: (N,) the rows it kept, or None for all.
        fallback: (N, m) or (N, 1) slots whose negative came from a fall-back rule.
    """
    if stats is None:
        return
    stats.triplets = len(triplets.anchor)
    dropped = groups.valid.any(1) if keep is None else groups.valid.any(1) & ~keep
    stats.anchors_without_negative = 0 if keep is None else int(dropped.sum())
    counted = groups.valid if keep is None else groups.valid & keep[:, None]
    stats.fallback = 0 if fallback is None else int((counted & fallback).sum())


def _empty(labels: Tensor, stats: SamplingStats | None) -> Triplets:
    """The result for an empty batch."""
    if stats is not None:
        stats.triplets = stats.anchors_without_negative = stats.fallback = stats.band_empty = 0
    empty = torch.zeros(0, dtype=torch.int64, device=labels.device)
    return Triplets(empty, empty, empty)


def _draw_(weights: Tensor, m: int, generator: torch.Generator | None, out: Tensor) -> Tensor:
    """Draw ``m`` column indices per row with probability ∝ ``weights`` (inverse CDF).

    Args:
        weights: (R, N) non-negative weights.
        m: draws per row, with replacement.
        generator: the random source.
        out: (R, N) buffer that receives the cumulative sums; its last column is then
            each row's total weight.

    Returns:
        (R, m) int64 column indices, never of a zero-weight entry of a row whose
        weights are not all zero.
    """
    cdf = torch.cumsum(weights, 1, out=out)  # (R, N)
    u = torch.rand(len(cdf), m, generator=generator, device=cdf.device, dtype=cdf.dtype)
    # (1 - u)·total ∈ (0, total]: the first index with cdf ≥ it has positive weight.
    return torch.searchsorted(cdf, (1.0 - u).mul_(cdf[:, -1:]))  # (R, m)


@torch.no_grad()
def uniform(
    embeddings: Tensor,
    labels: Tensor,
    *,
    generator: torch.Generator | None = None,
    stats: SamplingStats | None = None,
) -> Triplets:
    """For every (anchor, positive) pair, a negative drawn uniformly from the batch.

    Costs O(N·m) for m positives per anchor: no N×N matrix.

    Args:
        embeddings: (N, D) embeddings (only their count and device matter here).
        labels: (N,) integer class ids, in any order.
        generator: the random source.
        stats: if given, filled with what the call did.

    Returns:
        Triplets of (T,) int64 indices, T = the number of ordered positive pairs whose
        anchor has at least one negative.

    Example:
        >>> labels = torch.tensor([0, 0, 1, 1])
        >>> t = uniform(torch.randn(4, 8), labels, generator=torch.Generator().manual_seed(0))
        >>> bool((labels[t.negative] != labels[t.anchor]).all()), len(t.anchor)
        (True, 4)
    """
    _check_inputs(embeddings, labels)
    if not len(labels):
        return _empty(labels, stats)
    groups = _group(labels)
    keep = groups.has_negative
    triplets = groups.triplets(groups.uniform_negatives(groups.width, generator), keep)
    _record(stats, groups, triplets, keep, None)
    return triplets


def _negative_distances(embeddings: Tensor, groups: _Groups) -> Tensor:
    """(N, N) distances between sorted positions, +inf at each row's positives and itself."""
    dist = pairwise_distances(embeddings.detach()[groups.order])  # (N, N)
    return groups.block_(dist, 0, math.inf)


@torch.no_grad()
def hard(
    embeddings: Tensor,
    labels: Tensor,
    *,
    generator: torch.Generator | None = None,
    stats: SamplingStats | None = None,
) -> Triplets:
    """For every (anchor, positive) pair, the anchor's closest negative (hard mining).

    Args:
        embeddings: (N, D) embeddings.
        labels: (N,) integer class ids, in any order.
        generator: unused (the rule is deterministic); accepted so that all
            strategies share one signature.
        stats: if given, filled with what the call did.

    Returns:
        Triplets of (T,) int64 indices.
    """
    _check_inputs(embeddings, labels)
    if not len(labels):
        return _empty(labels, stats)
    groups = _group(labels)
    closest = _negative_distances(embeddings, groups).argmin(1)  # (N,)
    keep = groups.has_negative
    triplets = groups.triplets(closest, keep)
    _record(stats, groups, triplets, keep, None)
    return triplets


@torch.no_grad()
def semihard(
    embeddings: Tensor,
    labels: Tensor,
    *,
    margin: float = 0.2,
    generator: torch.Generator | None = None,
    stats: SamplingStats | None = None,
) -> Triplets:
    """FaceNet's semi-hard negatives: the closest negative farther than the positive.

    For a pair (a, p) the band is D_ap < D_an < D_ap + ``margin`` (Euclidean
    distances). The negative is the closest one with D_an > D_ap, which lies in the
    band whenever the band holds any negative. Two fall-backs, both counted:

    - no negative in the band (``stats.band_empty``): that closest negative beyond
      the band is still returned; it gives zero triplet loss, which is how semi-hard
      mining stalls once a model separates the classes;
    - no negative farther than the positive at all (``stats.fallback``): the
      farthest negative instead, as FaceNet's reference implementation does.

    Args:
        embeddings: (N, D) embeddings.
        labels: (N,) integer class ids, in any order.
        margin: width of the band, the triplet loss's margin α (> 0).
        generator: unused (the rule is deterministic).
        stats: if given, filled with what the call did.

    Returns:
        Triplets of (T,) int64 indices.
    """
    _checks.finite_float("margin", margin, 0, low_open=True)
    _check_inputs(embeddings, labels)
    if not len(labels):
        return _empty(labels, stats)
    groups = _group(labels)
    dist = pairwise_distances(embeddings.detach()[groups.order])  # (N, N)
    d_ap = dist.gather(1, groups.positive)  # (N, m)
    sorted_dist, by_distance = groups.block_(dist, 0, math.inf).sort(1)  # (N, N)
    beyond = torch.searchsorted(sorted_dist, d_ap, right=True)  # (N, m)
    last = (len(dist) - groups.size - 1).clamp_(min=0)[:, None]  # (N, 1) farthest negative
    fallback = beyond > last  # (N, m)
    column = torch.where(fallback, last, beyond)  # (N, m)
    keep = groups.has_negative
    triplets = groups.triplets(by_distance.gather(1, column), keep)
    _record(stats, groups, triplets, keep, fallback)
    if stats is not None:
        d_an = sorted_dist.gather(1, column)  # (N, m)
        outside = (d_an <= d_ap) | (d_an >= d_ap + margin)  # (N, m)
        stats.band_empty = int((outside & groups.valid & keep[:, None]).sum())
    return triplets


def distance_bins(
    distances: Tensor, cutoff: float, nonzero_loss_cutoff: float, bins: int
) -> Tensor:
    """The histogram bin of each distance for ``density="empirical"``.

    ``bins`` equal bins cover [cutoff, nonzero_loss_cutoff); distances below the cutoff
    share the first bin (the cutoff's clamp), those above share the last.

    Args:
        distances: distances, any shape.
        cutoff: lower end of the binned range.
        nonzero_loss_cutoff: upper end of the binned range.
        bins: number of bins.

    Returns:
        int64 bin indices in [0, bins), same shape.

    Example:
        >>> distance_bins(torch.tensor([0.1, 0.5, 0.96, 1.39, 1.9]), 0.5, 1.4, 10)
        tensor([0, 0, 5, 9, 9])
    """
    scale = bins / (nonzero_loss_cutoff - cutoff)
    position = (distances - cutoff).mul_(scale).clamp_(0, bins - 1)
    return position.long()


class _Weighting(NamedTuple):
    """The settings of one distance weighted sampling call."""

    dim: int
    cutoff: float
    upper: float  # admissible: squared distance < upper
    density: str
    bins: int

    @property
    def monotone(self) -> bool:
        """Whether q(d)^-1 decreases over [cutoff, sqrt(upper)]: q's mode lies beyond it."""
        mode_squared = 4.0 if self.dim <= 3 else 4.0 * (self.dim - 2) / (2 * self.dim - 5)
        return self.upper <= mode_squared


def _sphere_weights_(squared: Tensor, setting: _Weighting, buffer: Tensor) -> Tensor:
    """In place: w(d) = q(max(d, cutoff))^-1, normalised by each row's largest.

    ``squared`` (B, N) holds squared distances, +inf where never admissible. With
    x = clamp(d², cutoff², upper), -log q = -(n-2)/2 · log x - (n-3)/2 · log(4 - x)
    + const (the paper's Eq. 1). The second log is taken as
    y = log(1 + (upper - x) / (4 - upper)), equal to log(4 - x) up to a constant, which
    is exactly 0 where x = upper (inadmissible) and positive elsewhere: its sign is the
    admissibility mask, with no boolean tensor. Log weights are clamped to [-80, 0]
    relative to the row's largest admissible one: -80 keeps ``exp`` out of float32's
    slow subnormal range (such weights lie below the cdf's resolution anyway), and 0
    caps the inadmissible entries, which the mask then zeroes.

    Returns:
        ``squared``, now (B, N) weights in [0, 1], exactly 0 where inadmissible.
    """
    a, b = (setting.dim - 2) / 2, (setting.dim - 3) / 2
    x = squared.clamp_(setting.cutoff**2, setting.upper)
    y = torch.sub(setting.upper, x, out=buffer).mul_(1.0 / (4.0 - setting.upper))
    y = y.add_(1.0).log_()  # log(1 + z) is exactly 0 at z = 0, and faster than log1p
    log_w = x.log_().mul_(-a).add_(y, alpha=-b)  # (B, N)
    if setting.monotone:  # the largest weight is admissible whenever any entry is
        row_max = log_w.amax(1, keepdim=True)  # (B, 1)
    else:
        row_max = log_w.masked_fill(y == 0, -math.inf).amax(1, keepdim=True).clamp_(min=-1e30)
    return log_w.sub_(row_max).clamp_(-80.0, 0.0).exp_().mul_(y.sign_())


def _empirical_weights_(squared: Tensor, setting: _Weighting, buffer: Tensor) -> Tensor:
    """Weights 1 / (the row's admissible entries in the same distance bin).

    ``squared`` (B, N) holds squared distances, +inf where never admissible; it is
    overwritten. ``buffer`` is not used (the sphere's weighting needs one).
    """
    weights = torch.lt(squared, setting.upper).to(squared.dtype)  # (B, N) admissible
    distances = squared.clamp_(0.0, setting.upper).sqrt_()  # (B, N)
    bin_index = distance_bins(distances, setting.cutoff, math.sqrt(setting.upper), setting.bins)
    counts = torch.zeros(len(squared), setting.bins, dtype=weights.dtype, device=weights.device)
    counts.scatter_add_(1, bin_index, weights)  # (B, bins)
    return weights.div_(counts.gather(1, bin_index).clamp_min_(1.0))


def _chunk_rows(n: int) -> int:
    """Rows per chunk: about 2^19 entries, so each elementwise pass stays in cache."""
    return max(1, min(n, (1 << 19) // max(n, 1)))


def _draw_weighted(
    x: Tensor, groups: _Groups, setting: _Weighting, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Draw ``groups.width`` negatives per row ∝ the row's weights, chunk by chunk.

    Args:
        x: (N, D) unit-norm embeddings in sorted positions.
        groups: the grouped batch.
        setting: what to weight by.
        generator: the random source.

    Returns:
        (N, m) drawn positions and (N,) whether each row had no admissible negative.
    """
    n, m = len(x), groups.width
    drawn = torch.empty(n, m, dtype=torch.int64, device=x.device)
    empty = torch.empty(n, dtype=torch.bool, device=x.device)
    chunk = _chunk_rows(n)
    buffer = torch.empty(chunk, n, dtype=x.dtype, device=x.device)
    weigh = _sphere_weights_ if setting.density == "sphere" else _empirical_weights_
    for first in range(0, n, chunk):
        rows = slice(first, first + chunk)
        squared = torch.mm(x[rows], x.T).mul_(-2.0).add_(2.0)  # (B, N) = 2 - 2 cos
        groups.block_(squared, first, math.inf)
        weights = weigh(squared, setting, buffer[: len(squared)])
        drawn[rows] = _draw_(weights, m, generator, out=buffer[: len(squared)])
        empty[rows] = buffer[: len(squared), -1] <= 0
    return drawn, empty


@torch.no_grad()
def distance_weighted(
    embeddings: Tensor,
    labels: Tensor,
    *,
    cutoff: float = 0.5,
    nonzero_loss_cutoff: float = 1.4,
    density: str = "sphere",
    bins: int = 8,
    generator: torch.Generator | None = None,
    stats: SamplingStats | None = None,
) -> Triplets:
    """Distance weighted sampling (the paper's Section 4).

    For each (anchor, positive) pair one negative n is drawn with probability
    ∝ w(D_an) among the anchor's admissible negatives, those with
    D_an < ``nonzero_loss_cutoff`` (others cannot produce loss). Weights are
    normalised per anchor in log space, so nothing underflows in any dimension.

    - ``density="sphere"``: w(d) = q(max(d, cutoff))^-1 with q the density of
      distances between uniform points on the sphere (:mod:`sampling_matters.sphere`):
      on uniform embeddings the drawn distances are spread evenly over
      [cutoff, nonzero_loss_cutoff). On clustered embeddings in high dimension it puts
      nearly all the weight on the closest negative.
    - ``density="empirical"``: w = 1 / (the number of the anchor's admissible
      negatives in the same distance bin, see :func:`distance_bins`): each occupied
      bin is drawn equally often, whatever the dimension or the embeddings' shape.

    An anchor with no admissible negative draws a uniform negative instead (never
    itself, never a positive), counted in ``stats.fallback``; an anchor without any
    negative gives no triplet (``stats.anchors_without_negative``). Rows are
    processed in chunks, so memory stays O(N · 2^19 / N) beyond the inputs: no N×N
    matrix is ever held.

    Args:
        embeddings: (N, D) L2-normalised embeddings, D ≥ 2.
        labels: (N,) integer class ids, in any order.
        cutoff: distances are clamped below at this value (> 0; at least 1.1e-19, the
            square root of float32's smallest normal number, or 1.5e-154 for float64).
        nonzero_loss_cutoff: only negatives closer than this are admissible
            (> cutoff; the margin loss's α + β). Values ≥ 2 admit every negative
            (up to antipodal points).
        density: ``"sphere"`` or ``"empirical"``.
        bins: histogram bins for ``density="empirical"``.
        generator: the random source.
        stats: if given, filled with what the call did.

    Returns:
        Triplets of (T,) int64 indices.

    Example:
        >>> from sampling_matters.sphere import uniform_on_sphere
        >>> g = torch.Generator().manual_seed(0)
        >>> x, labels = uniform_on_sphere(64, 8, g), torch.arange(64) // 4
        >>> t = distance_weighted(x, labels, generator=g)
        >>> len(t.anchor), bool((labels[t.negative] != labels[t.anchor]).all())
        (192, True)
    """
    _check_inputs(embeddings, labels, finite=False)
    _check_distance_weighted_args(
        cutoff, nonzero_loss_cutoff, density, bins, compute_dtype(embeddings)
    )
    if embeddings.shape[1] < 2:
        raise ValueError(
            f"embeddings need dimension D >= 2 to lie on a sphere, got {embeddings.shape[1]}"
        )
    _check_unit_norm(embeddings)
    if not len(labels):
        return _empty(labels, stats)
    groups = _group(labels)
    x = embeddings.detach()[groups.order].to(compute_dtype(embeddings))  # (N, D) sorted
    upper = min(nonzero_loss_cutoff**2, 4.0 * (1.0 - 1e-6))
    setting = _Weighting(embeddings.shape[1], cutoff, upper, density, bins)
    drawn, empty = _draw_weighted(x, groups, setting, generator)
    keep = groups.has_negative
    fallback = (empty & keep)[:, None]  # (N, 1)
    if bool(fallback.any()):
        drawn = torch.where(fallback, groups.uniform_negatives(groups.width, generator), drawn)
    triplets = groups.triplets(drawn, keep)
    _record(stats, groups, triplets, keep, fallback)
    return triplets


def _check_distance_weighted_args(
    cutoff: float, nonzero_loss_cutoff: float, density: str, bins: int, dtype: torch.dtype
) -> None:
    if not 0 < cutoff < nonzero_loss_cutoff:
        raise ValueError(
            "expected 0 < cutoff < nonzero_loss_cutoff, got "
            f"cutoff={cutoff}, nonzero_loss_cutoff={nonzero_loss_cutoff}"
        )
    smallest = math.sqrt(torch.finfo(dtype).tiny)  # cutoff² must not underflow to 0
    if cutoff < smallest:
        raise ValueError(
            f"cutoff must be >= {smallest:.3g} for {dtype} distances (its square must be a "
            f"normal number, or log q(d) is infinite), got cutoff={cutoff}"
        )
    if density not in ("sphere", "empirical"):
        raise ValueError(f"density must be 'sphere' or 'empirical', got {density!r}")
    _checks.positive_int("bins", bins)


SAMPLINGS: dict[str, Callable[..., Triplets]] = {
    "uniform": uniform,
    "hard": hard,
    "semihard": semihard,
    "distance-weighted": distance_weighted,
}
"""The strategies by their command-line names."""
