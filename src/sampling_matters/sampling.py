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

from sampling_matters.distances import (
    check_embeddings,
    pairwise_distances,
    unit_squared_distances,
)

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
    check_embeddings(embeddings)
    if not isinstance(labels, Tensor) or labels.dim() != 1:
        raise ValueError(f"labels must be a 1-d tensor of class ids, got {_describe(labels)}")
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    if len(labels) != len(embeddings):
        raise ValueError(
            f"labels and embeddings must have the same length N, got {len(labels)} labels "
            f"for {len(embeddings)} embeddings"
        )
    if labels.device != embeddings.device:
        raise ValueError(f"labels are on {labels.device} but embeddings on {embeddings.device}")
    if finite and not bool(torch.isfinite(embeddings).all()):
        raise ValueError("embeddings contain NaN or Inf")


def _describe(x: object) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__


def _check_unit_norm(self_squared: Tensor, dtype: torch.dtype) -> None:
    """Check unit norms from the diagonal 2 - 2‖x‖² of the squared distance matrix.

    Also rejects NaN and Inf, which make the diagonal NaN.
    """
    tolerance = 2e-2 if dtype in (torch.float16, torch.bfloat16) else 2e-3
    worst = float(self_squared.abs().max()) if len(self_squared) else 0.0
    if not worst <= tolerance:
        raise ValueError(
            "distance weighted sampling assumes finite, L2-normalised embeddings (points on "
            f"the unit sphere), but a row's squared norm is off 1 by {worst / 2:.3g}; "
            "normalise them first, e.g. torch.nn.functional.normalize(embeddings, dim=1)"
        )


class _PairLayout(NamedTuple):
    """All ordered (anchor, positive) pairs, and where each sits in a padded (N, m) table.

    Row s of the table belongs to anchor ``order[s]``; its first ``k`` entries are that
    anchor's k pairs. Pairs are listed in the table's row-major order, so a per-anchor
    table ``t`` of shape (N, m), indexed by anchor, gives one value per pair through
    :meth:`per_pair`.
    """

    anchor: Tensor  # (P,)
    positive: Tensor  # (P,)
    order: Tensor  # (N,)
    valid: Tensor  # (N, m) bool

    @property
    def width(self) -> int:
        """m, the most positives any anchor has (at least 1)."""
        return max(self.valid.shape[1], 1)

    def per_pair(self, table: Tensor) -> Tensor:
        """(P,) values of an (N, ≥m) table indexed by anchor, one per pair."""
        return table[self.order, : self.valid.shape[1]][self.valid]

    def to_table(self, values: Tensor, fill: float) -> Tensor:
        """The inverse of :meth:`per_pair`: (P,) values into an (N, m) table by anchor."""
        by_row = values.new_full(self.valid.shape, fill)  # (N, m), row s = anchor order[s]
        by_row[self.valid] = values
        table = torch.empty_like(by_row)
        table[self.order] = by_row
        return table


def _positive_pairs(labels: Tensor) -> _PairLayout:
    """All ordered (anchor, positive) pairs of distinct same-label items, in O(N·m).

    Labels may come in any order: items are grouped by a stable sort, and each item
    is paired with the other members of its group.
    """
    sorted_labels, order = labels.sort(stable=True)  # (N,), (N,)
    _, group, size = torch.unique_consecutive(
        sorted_labels, return_inverse=True, return_counts=True
    )
    start = (torch.cumsum(size, 0) - size)[group]  # (N,) group start of each sorted item
    partners = size[group] - 1  # (N,)
    m = int(partners.max())
    column = torch.arange(m, device=labels.device)  # (m,)
    own = torch.arange(len(labels), device=labels.device) - start  # (N,) place in group
    partner = start[:, None] + column + (column >= own[:, None])  # (N, m) sorted positions
    valid = column < partners[:, None]  # (N, m)
    anchor = order[:, None].expand(-1, m)[valid]  # (P,)
    return _PairLayout(anchor, order[partner[valid]], order, valid)


def _no_triplets(labels: Tensor, stats: SamplingStats | None) -> Triplets:
    """The empty result, for an empty batch."""
    if stats is not None:
        stats.triplets = stats.anchors_without_negative = stats.fallback = stats.band_empty = 0
    empty = torch.zeros(0, dtype=torch.int64, device=labels.device)
    return Triplets(empty, empty, empty)


def _block_positives_(matrix: Tensor, pairs: _PairLayout, value: float) -> Tensor:
    """In place: set every (anchor, positive) entry and the diagonal to ``value``."""
    matrix[pairs.anchor, pairs.positive] = value
    matrix.diagonal().fill_(value)
    return matrix


def _draw(weights: Tensor, m: int, generator: torch.Generator | None) -> Tensor:
    """Draw ``m`` column indices per row with probability ∝ ``weights`` (inverse CDF).

    Args:
        weights: (R, N) non-negative weights, overwritten by their cumulative sums.
        m: draws per row, with replacement.
        generator: the random source.

    Returns:
        (R, m) int64 column indices, never of a zero-weight entry of a row whose
        weights are not all zero.
    """
    cdf = torch.cumsum(weights, 1, out=weights)  # (R, N)
    u = torch.rand(len(cdf), m, generator=generator, device=cdf.device, dtype=cdf.dtype)
    # (1 - u) ∈ (0, 1]: the first index with cdf ≥ (1 - u)·total has positive weight.
    targets = (1.0 - u).mul_(cdf[:, -1:])  # (R, m)
    return torch.searchsorted(cdf, targets).clamp_(max=cdf.shape[1] - 1)


def _uniform_rows(labels: Tensor, rows: Tensor) -> Tensor:
    """(R, N) weights 1 on the negatives of each given row, 0 elsewhere."""
    return (labels[rows, None] != labels[None, :]).float()


def _triplets_by_weight(
    weights: Tensor,
    labels: Tensor,
    pairs: _PairLayout,
    generator: torch.Generator | None,
    stats: SamplingStats | None,
) -> Triplets:
    """One negative per (anchor, positive) pair drawn ∝ the anchor's row of ``weights``.

    ``weights`` (N, N) is zero on each anchor's positives and itself. Rows that are all
    zero fall back to a uniform negative; anchors without any negative are dropped.
    """
    drawn = _draw(weights, pairs.width, generator)  # (N, m); weights now hold the cdf
    empty = weights[:, -1] <= 0  # (N,) rows whose total weight is 0
    fallback = torch.zeros_like(empty)
    if bool(empty.any()):
        rows = empty.nonzero(as_tuple=True)[0]
        uniform_cdf = _uniform_rows(labels, rows)  # (R, N), a cdf after the draw
        drawn[rows] = _draw(uniform_cdf, pairs.width, generator)
        fallback[rows] = uniform_cdf[:, -1] > 0
    has_negative = ~empty | fallback  # (N,)
    triplets = Triplets(pairs.anchor, pairs.positive, pairs.per_pair(drawn))
    return _assemble(triplets, has_negative, fallback, stats)


def _assemble(
    triplets: Triplets, has_negative: Tensor, fallback: Tensor | None, stats: SamplingStats | None
) -> Triplets:
    """Drop the triplets whose anchor has no negative and record the counts.

    Args:
        triplets: one triplet per positive pair.
        has_negative: (N,) whether each item has a negative in the batch.
        fallback: (N,) whether each anchor's negatives came from a fall-back rule, or
            (T,) per triplet, or None.
        stats: filled when given.
    """
    keep = has_negative[triplets.anchor]  # (P,)
    kept = Triplets(*(index[keep] for index in triplets))
    if stats is not None:
        stats.triplets = len(kept.anchor)
        has_positive = torch.zeros_like(has_negative)
        has_positive[triplets.anchor] = True
        stats.anchors_without_negative = int((has_positive & ~has_negative).sum())
        if fallback is not None:
            per_triplet = fallback if len(fallback) == len(keep) else fallback[triplets.anchor]
            stats.fallback = int(per_triplet[keep].sum())
    return kept


@torch.no_grad()
def uniform(
    embeddings: Tensor,
    labels: Tensor,
    *,
    generator: torch.Generator | None = None,
    stats: SamplingStats | None = None,
) -> Triplets:
    """For every (anchor, positive) pair, a negative drawn uniformly from the batch.

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
        return _no_triplets(labels, stats)
    pairs = _positive_pairs(labels)
    weights = torch.ones(len(labels), len(labels), device=labels.device)  # (N, N)
    _block_positives_(weights, pairs, 0.0)
    return _triplets_by_weight(weights, labels, pairs, generator, stats)


def _negative_distances(embeddings: Tensor, pairs: _PairLayout) -> Tensor:
    """(N, N) distances with +inf on each anchor's positives and itself."""
    dist = pairwise_distances(embeddings.detach())  # (N, N)
    return _block_positives_(dist, pairs, math.inf)


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
        return _no_triplets(labels, stats)
    pairs = _positive_pairs(labels)
    closest_dist, closest = _negative_distances(embeddings, pairs).min(1)  # (N,), (N,)
    triplets = Triplets(pairs.anchor, pairs.positive, closest[pairs.anchor])
    return _assemble(triplets, closest_dist < math.inf, None, stats)


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
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    _check_inputs(embeddings, labels)
    if not len(labels):
        return _no_triplets(labels, stats)
    pairs = _positive_pairs(labels)
    anchor, positive = pairs.anchor, pairs.positive
    dist = pairwise_distances(embeddings.detach())  # (N, N)
    d_ap = dist[anchor, positive]  # (P,)
    sorted_dist, order = _block_positives_(dist, pairs, math.inf).sort(1)  # (N, N)
    n_negatives = (sorted_dist < math.inf).sum(1)  # (N,)
    by_anchor = pairs.to_table(d_ap, math.inf)  # (N, m) each anchor's positive distances
    beyond = pairs.per_pair(torch.searchsorted(sorted_dist, by_anchor, right=True))  # (P,)
    last = (n_negatives[anchor] - 1).clamp_(min=0)  # (P,) the farthest negative
    fallback = beyond > last  # (P,)
    column = torch.where(fallback, last, beyond)  # (P,)
    triplets = Triplets(anchor, positive, order[anchor, column])
    kept = _assemble(triplets, n_negatives > 0, fallback, stats)
    if stats is not None:
        d_an = sorted_dist[anchor, column]
        outside = (d_an <= d_ap) | (d_an >= d_ap + margin)  # (P,)
        stats.band_empty = int(outside[n_negatives[anchor] > 0].sum())
    return kept


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


def _sphere_weights_(squared: Tensor, dim: int, cutoff: float, upper: float) -> Tensor:
    """In place: w(d) = q(max(d, cutoff))^-1 / max over the row's admissible entries.

    ``squared`` holds squared distances, +inf on entries that are never admissible.
    Admissible means d² < ``upper``. With x = clamp(d², cutoff², upper),

        log w = -(n-2)/2 · log x - (n-3)/2 · log(4 - x) + const   (the paper's Eq. 1)

    Every step is one in-place pass over the (N, N) buffer plus one second buffer:
    ``log((4 - x) / (4 - upper))`` is exactly 0 at the inadmissible entries (x = upper
    after clamping) and positive elsewhere, so its sign is the admissibility mask.
    Log weights below -80 (relative to the row's largest) are raised to -80, which
    keeps ``exp`` out of float32's slow subnormal range; such weights are below the
    cdf's resolution anyway.

    Returns:
        (N, N) weights in [0, 1], zero exactly where inadmissible.
    """
    a, b = (dim - 2) / 2, (dim - 3) / 2
    row_min = squared.amin(1, keepdim=True).clamp_(cutoff**2, upper)  # (N, 1)
    x = squared.clamp_(cutoff**2, upper)  # (N, N)
    denominator = 4.0 - torch.tensor(upper, dtype=x.dtype)  # rounded as the buffer is
    log_4_minus = torch.sub(4.0, x).div_(denominator).log_()  # (N, N) ≥ 0, 0 = blocked
    row_max = -a * row_min.log() - b * (4.0 - row_min).div_(denominator).log_()  # (N, 1)
    log_w = x.log_().mul_(-a).add_(log_4_minus, alpha=-b).sub_(row_max)  # (N, N) ≤ 0
    weights = log_w.clamp_(min=-80.0).exp_()
    return weights.mul_(log_4_minus.sign_())


def _empirical_weights_(squared: Tensor, cutoff: float, upper: float, bins: int) -> Tensor:
    """In place: weights 1 / (the anchor's admissible negatives in the same distance bin).

    ``squared`` holds squared distances, +inf on entries that are never admissible.
    """
    admissible = (squared < upper).float()  # (N, N)
    distances = squared.clamp_(0.0, upper).sqrt_()  # (N, N)
    bin_index = distance_bins(distances, cutoff, math.sqrt(upper), bins)  # (N, N)
    counts = torch.zeros(len(squared), bins, dtype=squared.dtype, device=squared.device)
    counts.scatter_add_(1, bin_index, admissible)  # (N, bins)
    return admissible.div_(counts.gather(1, bin_index).clamp_min_(1.0))  # (N, N)


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
    negative gives no triplet (``stats.anchors_without_negative``).

    Args:
        embeddings: (N, D) L2-normalised embeddings, D ≥ 2.
        labels: (N,) integer class ids, in any order.
        cutoff: distances are clamped below at this value (> 0).
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
    _check_distance_weighted_args(cutoff, nonzero_loss_cutoff, density, bins)
    _check_inputs(embeddings, labels, finite=False)
    if embeddings.shape[1] < 2:
        raise ValueError(
            f"embeddings need dimension D >= 2 to lie on a sphere, got {embeddings.shape[1]}"
        )
    if not len(labels):
        return _no_triplets(labels, stats)
    squared = unit_squared_distances(embeddings)  # (N, N)
    _check_unit_norm(squared.diagonal(), embeddings.dtype)
    pairs = _positive_pairs(labels)
    _block_positives_(squared, pairs, math.inf)
    upper = min(nonzero_loss_cutoff**2, 4.0 * (1.0 - 1e-6))
    if density == "sphere":
        weights = _sphere_weights_(squared, embeddings.shape[1], cutoff, upper)
    else:
        weights = _empirical_weights_(squared, cutoff, upper, bins)
    return _triplets_by_weight(weights, labels, pairs, generator, stats)


def _check_distance_weighted_args(
    cutoff: float, nonzero_loss_cutoff: float, density: str, bins: int
) -> None:
    if not 0 < cutoff < nonzero_loss_cutoff:
        raise ValueError(
            "expected 0 < cutoff < nonzero_loss_cutoff, got "
            f"cutoff={cutoff}, nonzero_loss_cutoff={nonzero_loss_cutoff}"
        )
    if density not in ("sphere", "empirical"):
        raise ValueError(f"density must be 'sphere' or 'empirical', got {density!r}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")


SAMPLINGS: dict[str, Callable[..., Triplets]] = {
    "uniform": uniform,
    "hard": hard,
    "semihard": semihard,
    "distance-weighted": distance_weighted,
}
"""The strategies by their command-line names."""
