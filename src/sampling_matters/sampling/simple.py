"""The three simple strategies: uniform, hard and semi-hard negatives.

Each picks one negative for every (anchor, positive) pair of the batch: a uniform
one (O(N·m), no distance matrix), the anchor's closest (hard mining), or FaceNet's
semi-hard one, the closest negative farther than the positive. Given references,
each applies its rule to the pool of :mod:`~sampling_matters.sampling.pool`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.distances import pairwise_distances
from sampling_matters.sampling.groups import Groups, check_batch, empty, group, record
from sampling_matters.sampling.pool import (
    MAX_REFERENCE_POSITIVES,
    Pool,
    check_references,
    make_pool,
)
from sampling_matters.sampling.triplets import SamplingStats, Triplets

__all__ = ["hard", "semihard", "uniform"]


@torch.no_grad()
def uniform(
    embeddings: Tensor,
    labels: Tensor,
    *,
    references: Tensor | None = None,
    reference_labels: Tensor | None = None,
    max_reference_positives: int = MAX_REFERENCE_POSITIVES,
    generator: torch.Generator | None = None,
    stats: SamplingStats | None = None,
) -> Triplets:
    """For every (anchor, positive) pair, a negative drawn uniformly from the batch.

    Costs O(N·m) for m positives per anchor: no N×N matrix. With references, the
    negative is drawn uniformly from every pool row of another label.

    Args:
        embeddings: (N, D) embeddings (only their count and device matter here).
        labels: (N,) integer class ids, in any order.
        references: (M, D) more rows to draw positives and negatives from (see
            :mod:`~sampling_matters.sampling.pool`), or None; triplets then index
            ``torch.cat([embeddings, references])``.
        reference_labels: (M,) the references' class ids, given with them.
        max_reference_positives: the most reference positives per anchor, drawn
            uniformly without replacement when it has more.
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
    check_batch(embeddings, labels)
    pooled = check_references(embeddings, references, reference_labels, max_reference_positives)
    if not len(labels):
        return empty(labels, stats)
    if pooled is not None:
        pool = make_pool(labels, pooled[1], max_reference_positives, generator)
        return pool.triplets(pool.uniform_negatives(generator), stats)
    groups = group(labels)
    keep = groups.has_negative
    triplets = groups.triplets(groups.uniform_negatives(groups.width, generator), keep)
    record(stats, groups.valid, triplets, keep, None)
    return triplets


def _negative_distances(embeddings: Tensor, groups: Groups) -> Tensor:
    """(N, N) distances between sorted positions, +inf at each row's positives and itself."""
    dist = pairwise_distances(embeddings.detach()[groups.order])  # (N, N)
    return groups.block_(dist, 0, math.inf)


def _pool_closest(pool: Pool, embeddings: Tensor, references: Tensor) -> Tensor:
    """(N,) each anchor's closest pool row of another label, chunk by chunk."""
    closest = torch.empty(len(pool.size), dtype=torch.int64, device=embeddings.device)  # (N,)
    for rows, squared in pool.distance_chunks(embeddings, references, unit=False):
        closest[rows] = pool.block_(squared, rows).argmin(1)
    return closest


@torch.no_grad()
def hard(
    embeddings: Tensor,
    labels: Tensor,
    *,
    references: Tensor | None = None,
    reference_labels: Tensor | None = None,
    max_reference_positives: int = MAX_REFERENCE_POSITIVES,
    generator: torch.Generator | None = None,
    stats: SamplingStats | None = None,
) -> Triplets:
    """For every (anchor, positive) pair, the anchor's closest negative (hard mining).

    With references, the closest pool row of another label; the distances are
    computed in chunks of anchor rows, memory O(chunk × (N + M)).

    Args:
        embeddings: (N, D) embeddings.
        labels: (N,) integer class ids, in any order.
        references: (M, D) more rows to sample from, or None (see :func:`uniform`).
        reference_labels: (M,) the references' class ids, given with them.
        max_reference_positives: the most reference positives per anchor.
        generator: the random source of capped reference positives (the rule itself
            is deterministic).
        stats: if given, filled with what the call did.

    Returns:
        Triplets of (T,) int64 indices.
    """
    check_batch(embeddings, labels)
    pooled = check_references(embeddings, references, reference_labels, max_reference_positives)
    if not len(labels):
        return empty(labels, stats)
    if pooled is not None:
        pool = make_pool(labels, pooled[1], max_reference_positives, generator)
        return pool.triplets(_pool_closest(pool, embeddings, pooled[0]), stats)
    groups = group(labels)
    closest = _negative_distances(embeddings, groups).argmin(1)  # (N,)
    keep = groups.has_negative
    triplets = groups.triplets(closest, keep)
    record(stats, groups.valid, triplets, keep, None)
    return triplets


@torch.no_grad()
def semihard(
    embeddings: Tensor,
    labels: Tensor,
    *,
    margin: float = 0.2,
    references: Tensor | None = None,
    reference_labels: Tensor | None = None,
    max_reference_positives: int = MAX_REFERENCE_POSITIVES,
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

    With references, the same rule over every pool row of another label, in chunks
    of anchor rows (memory O(chunk × (N + M))).

    Args:
        embeddings: (N, D) embeddings.
        labels: (N,) integer class ids, in any order.
        margin: width of the band, the triplet loss's margin α (> 0).
        references: (M, D) more rows to sample from, or None (see :func:`uniform`).
        reference_labels: (M,) the references' class ids, given with them.
        max_reference_positives: the most reference positives per anchor.
        generator: the random source of capped reference positives.
        stats: if given, filled with what the call did.

    Returns:
        Triplets of (T,) int64 indices.
    """
    _checks.finite_float("margin", margin, 0, low_open=True)
    check_batch(embeddings, labels)
    pooled = check_references(embeddings, references, reference_labels, max_reference_positives)
    if not len(labels):
        return empty(labels, stats)
    if pooled is not None:
        pool = make_pool(labels, pooled[1], max_reference_positives, generator)
        negative, fallback, outside = _pool_semihard(pool, embeddings, pooled[0], margin)
        triplets = pool.triplets(negative, stats, fallback)
        _record_band(stats, outside, pool.valid, pool.keep)
        return triplets
    groups = group(labels)
    dist = pairwise_distances(embeddings.detach()[groups.order])  # (N, N)
    d_ap = dist.gather(1, groups.positive)  # (N, m)
    last = (len(dist) - groups.size - 1).clamp_(min=0)[:, None]  # (N, 1) farthest negative
    negative, fallback, outside = _semihard_rows(
        groups.block_(dist, 0, math.inf), d_ap, last, margin
    )
    keep = groups.has_negative
    triplets = groups.triplets(negative, keep)
    record(stats, groups.valid, triplets, keep, fallback)
    _record_band(stats, outside, groups.valid, keep)
    return triplets


def _semihard_rows(
    dist: Tensor, d_ap: Tensor, last: Tensor, margin: float
) -> tuple[Tensor, Tensor, Tensor]:
    """The semi-hard rule on a block of rows.

    Args:
        dist: (B, C) distances, +inf where a column is not the row's negative.
        d_ap: (B, m) the distance of each slot's positive.
        last: (B, 1) the sorted column of each row's farthest negative.
        margin: the band's width.

    Returns:
        (B, m) each slot's negative column, (B, m) whether it is the fall-back (no
        negative beyond the positive), (B, m) whether it lies outside the band.
    """
    sorted_dist, by_distance = dist.sort(1)  # (B, C)
    beyond = torch.searchsorted(sorted_dist, d_ap, right=True)  # (B, m)
    fallback = beyond > last  # (B, m)
    column = torch.where(fallback, last, beyond)  # (B, m)
    d_an = sorted_dist.gather(1, column)  # (B, m)
    outside = (d_an <= d_ap) | (d_an >= d_ap + margin)  # (B, m)
    return by_distance.gather(1, column), fallback, outside


def _pool_semihard(
    pool: Pool, embeddings: Tensor, references: Tensor, margin: float
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`_semihard_rows` over the pool, chunk by chunk: (N, w) tensors."""
    negative = torch.empty_like(pool.positive)  # (N, w)
    fallback = torch.empty_like(pool.valid)  # (N, w)
    outside = torch.empty_like(pool.valid)  # (N, w)
    last = (len(pool.labels) - pool.size - 1).clamp_(min=0)[:, None]  # (N, 1)
    for rows, squared in pool.distance_chunks(embeddings, references, unit=False):
        dist = squared.clamp_min_(0.0).sqrt_()  # (B, P)
        d_ap = dist.gather(1, pool.positive[rows])  # (B, w)
        negative[rows], fallback[rows], outside[rows] = _semihard_rows(
            pool.block_(dist, rows), d_ap, last[rows], margin
        )
    return negative, fallback, outside


def _record_band(stats: SamplingStats | None, outside: Tensor, valid: Tensor, keep: Tensor) -> None:
    """Count in ``stats.band_empty`` the triplets whose negative is outside the band."""
    if stats is not None:
        stats.band_empty = int((outside & valid & keep[:, None]).sum())
