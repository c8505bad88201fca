"""The three simple strategies: uniform, hard and semi-hard negatives.

Each picks one negative for every (anchor, positive) pair of the batch: a uniform
one (O(N·m), no distance matrix), the anchor's closest (hard mining), or FaceNet's
semi-hard one, the closest negative farther than the positive.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.distances import pairwise_distances
from sampling_matters.sampling.groups import Groups, check_batch, empty, group, record
from sampling_matters.sampling.triplets import SamplingStats, Triplets

__all__ = ["hard", "semihard", "uniform"]


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
    check_batch(embeddings, labels)
    if not len(labels):
        return empty(labels, stats)
    groups = group(labels)
    keep = groups.has_negative
    triplets = groups.triplets(groups.uniform_negatives(groups.width, generator), keep)
    record(stats, groups, triplets, keep, None)
    return triplets


def _negative_distances(embeddings: Tensor, groups: Groups) -> Tensor:
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
    check_batch(embeddings, labels)
    if not len(labels):
        return empty(labels, stats)
    groups = group(labels)
    closest = _negative_distances(embeddings, groups).argmin(1)  # (N,)
    keep = groups.has_negative
    triplets = groups.triplets(closest, keep)
    record(stats, groups, triplets, keep, None)
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
    check_batch(embeddings, labels)
    if not len(labels):
        return empty(labels, stats)
    groups = group(labels)
    dist = pairwise_distances(embeddings.detach()[groups.order])  # (N, N)
    d_ap = dist.gather(1, groups.positive)  # (N, m)
    sorted_dist, by_distance = groups.block_(dist, 0, math.inf).sort(1)  # (N, N)
    beyond = torch.searchsorted(sorted_dist, d_ap, right=True)  # (N, m)
    last = (len(dist) - groups.size - 1).clamp_(min=0)[:, None]  # (N, 1) farthest negative
    fallback = beyond > last  # (N, m)
    column = torch.where(fallback, last, beyond)  # (N, m)
    keep = groups.has_negative
    triplets = groups.triplets(by_distance.gather(1, column), keep)
    record(stats, groups, triplets, keep, fallback)
    if stats is not None:
        d_an = sorted_dist.gather(1, column)  # (N, m)
        outside = (d_an <= d_ap) | (d_an >= d_ap + margin)  # (N, m)
        stats.band_empty = int((outside & groups.valid & keep[:, None]).sum())
    return triplets
