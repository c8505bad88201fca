"""Distance weighted sampling (the paper's Section 4), drawn chunk by chunk.

For each (anchor, positive) pair one negative is drawn with probability ∝ the
anchor's weights (:mod:`sampling_matters.sampling.density`), by inverse CDF, over
blocks of rows sized to stay in cache; an anchor with no admissible negative falls
back to a uniform one. Given references, the same over the anchors × pool distances
(:mod:`sampling_matters.sampling.pool`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.distances import compute_dtype
from sampling_matters.sampling.density import Weighting, empirical_weights_, sphere_weights_
from sampling_matters.sampling.groups import Groups, check_batch, empty, group, record
from sampling_matters.sampling.pool import (
    MAX_REFERENCE_POSITIVES,
    Pool,
    check_references,
    make_pool,
)
from sampling_matters.sampling.triplets import SamplingStats, Triplets

__all__ = ["check_distance_weighted_args", "distance_weighted"]


def _check_unit_norm(embeddings: Tensor, name: str = "embeddings") -> None:
    """Raise ``ValueError`` unless every row has unit norm (also rejects NaN and Inf)."""
    tolerance = 1e-2 if embeddings.dtype in (torch.float16, torch.bfloat16) else 1e-3
    squared_norms = embeddings.detach().to(compute_dtype(embeddings)).pow(2).sum(1)  # (N,)
    worst = float((squared_norms - 1.0).abs().max()) if len(embeddings) else 0.0
    if not worst <= 2 * tolerance:
        raise ValueError(
            f"distance weighted sampling assumes finite, L2-normalised {name} (points on "
            f"the unit sphere), but a row's squared norm is off 1 by {worst:.3g}; "
            f"normalise them first, e.g. torch.nn.functional.normalize({name}, dim=1)"
        )


def check_distance_weighted_args(
    cutoff: float, nonzero_loss_cutoff: float, density: str, bins: int, dtype: torch.dtype
) -> None:
    """Raise ``ValueError`` unless the settings suit distances computed in ``dtype``."""
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
    return _invert(cdf, u)


def _invert(cdf: Tensor, u: Tensor) -> Tensor:
    """(R, m) the columns where (R, N) cumulative weights reach (R, m) uniforms in [0, 1)."""
    # (1 - u)·total ∈ (0, total]: the first index with cdf ≥ it has positive weight.
    return torch.searchsorted(cdf, (1.0 - u).mul_(cdf[:, -1:]))  # (R, m)


def _chunk_rows(n: int) -> int:
    """Rows per chunk: about 2^19 entries, so each elementwise pass stays in cache."""
    return max(1, min(n, (1 << 19) // max(n, 1)))


def _draw_weighted(
    x: Tensor, groups: Groups, setting: Weighting, generator: torch.Generator | None
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
    no_admissible = torch.empty(n, dtype=torch.bool, device=x.device)
    chunk = _chunk_rows(n)
    buffer = torch.empty(chunk, n, dtype=x.dtype, device=x.device)
    weigh = sphere_weights_ if setting.density == "sphere" else empirical_weights_
    for first in range(0, n, chunk):
        rows = slice(first, first + chunk)
        squared = torch.mm(x[rows], x.T).mul_(-2.0).add_(2.0)  # (B, N) = 2 - 2 cos
        groups.block_(squared, first, math.inf)
        weights = weigh(squared, setting, buffer[: len(squared)])
        drawn[rows] = _draw_(weights, m, generator, out=buffer[: len(squared)])
        no_admissible[rows] = buffer[: len(squared), -1] <= 0
    return drawn, no_admissible


def _pool_draw_weighted(
    pool: Pool, embeddings: Tensor, references: Tensor, setting: Weighting, u: Tensor
) -> tuple[Tensor, Tensor]:
    """Draw a negative per slot of the pool ∝ the anchor's weights, chunk by chunk.

    Args:
        pool: the grouped pool.
        embeddings: (N, D) the batch, unit norm.
        references: (M, D) the references, unit norm.
        setting: what to weight by.
        u: (N, w) uniforms in [0, 1), one per slot, drawn up front so that the result
            does not depend on the chunking.

    Returns:
        (N, w) drawn pool rows and (N,) whether each anchor had no admissible negative.
    """
    drawn = torch.empty_like(pool.positive)  # (N, w)
    no_admissible = torch.empty(len(u), dtype=torch.bool, device=u.device)  # (N,)
    weigh = sphere_weights_ if setting.density == "sphere" else empirical_weights_
    scratch = None
    for rows, squared in pool.distance_chunks(embeddings, references, unit=True):
        scratch = torch.empty_like(squared) if scratch is None else scratch  # the largest
        buffer = scratch[: len(squared)]  # (B, P)
        cdf = torch.cumsum(weigh(pool.block_(squared, rows), setting, buffer), 1, out=buffer)
        drawn[rows] = _invert(cdf, u[rows])
        no_admissible[rows] = cdf[:, -1] <= 0
    return drawn, no_admissible


@torch.no_grad()
def distance_weighted(
    embeddings: Tensor,
    labels: Tensor,
    *,
    cutoff: float = 0.5,
    nonzero_loss_cutoff: float = 1.4,
    density: str = "sphere",
    bins: int = 8,
    references: Tensor | None = None,
    reference_labels: Tensor | None = None,
    max_reference_positives: int = MAX_REFERENCE_POSITIVES,
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
      negatives in the same distance bin, see
      :func:`~sampling_matters.sampling.distance_bins`): each occupied bin is drawn
      equally often, whatever the dimension or the embeddings' shape.

    An anchor with no admissible negative draws a uniform negative instead (never
    itself, never a positive), counted in ``stats.fallback``; an anchor without any
    negative gives no triplet (``stats.anchors_without_negative``). Rows are
    processed in chunks, so memory stays O(N · 2^19 / N) beyond the inputs: no N×N
    matrix is ever held.

    With references (M rows), the negatives are drawn by the same weights among all
    pool rows of another label, and the positives include up to
    ``max_reference_positives`` reference rows per anchor; the anchors × pool
    distances are processed in chunks of about 2^21 entries, never an (N+M)² matrix.

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
        references: (M, D) more L2-normalised rows to sample from, or None (see
            :func:`~sampling_matters.sampling.uniform`); triplets then index
            ``torch.cat([embeddings, references])``.
        reference_labels: (M,) the references' class ids, given with them.
        max_reference_positives: the most reference positives per anchor.
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
    check_batch(embeddings, labels, finite=False)
    check_distance_weighted_args(
        cutoff, nonzero_loss_cutoff, density, bins, compute_dtype(embeddings)
    )
    if embeddings.shape[1] < 2:
        raise ValueError(
            f"embeddings need dimension D >= 2 to lie on a sphere, got {embeddings.shape[1]}"
        )
    _check_unit_norm(embeddings)
    pooled = check_references(
        embeddings, references, reference_labels, max_reference_positives, finite=False
    )
    if pooled is not None:
        _check_unit_norm(pooled[0], "references")
    if not len(labels):
        return empty(labels, stats)
    upper = min(nonzero_loss_cutoff**2, 4.0 * (1.0 - 1e-6))
    setting = Weighting(embeddings.shape[1], cutoff, upper, density, bins)
    if pooled is not None:
        pool = make_pool(labels, pooled[1], max_reference_positives, generator)
        shape, dtype = pool.positive.shape, compute_dtype(embeddings)
        u = torch.rand(shape, generator=generator, device=embeddings.device, dtype=dtype)
        drawn, no_admissible = _pool_draw_weighted(pool, embeddings, pooled[0], setting, u)
        fallback = (no_admissible & pool.keep)[:, None]  # (N, 1)
        if bool(fallback.any()):
            drawn = torch.where(fallback, pool.uniform_negatives(generator), drawn)
        return pool.triplets(drawn, stats, fallback)
    groups = group(labels)
    x = embeddings.detach()[groups.order].to(compute_dtype(embeddings))  # (N, D) sorted
    drawn, no_admissible = _draw_weighted(x, groups, setting, generator)
    keep = groups.has_negative
    fallback = (no_admissible & keep)[:, None]  # (N, 1)
    if bool(fallback.any()):
        drawn = torch.where(fallback, groups.uniform_negatives(groups.width, generator), drawn)
    triplets = groups.triplets(drawn, keep)
    record(stats, groups.valid, triplets, keep, fallback)
    return triplets
