"""The pool a strategy samples from when it is given references.

With ``references`` (M, D) and ``reference_labels`` (M,), the pool is
``torch.cat([embeddings, references])``: P = N + M rows, the references at rows
N … N+M-1. Anchors are the batch's rows only. An anchor's positives are all its
in-batch positives (as without references) and up to ``max_reference_positives``
reference rows of its label, drawn uniformly without replacement when it has more
(:func:`make_pool`); its negatives are every pool row of another label. A strategy
picks one negative per (anchor, positive) slot from the (anchors × pool) distances,
computed over chunks of anchor rows (:meth:`Pool.distance_chunks`), so memory stays
O(chunk × P) beyond the inputs: no (N+M)² matrix, not even N×(N+M).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.distances import compute_dtype
from sampling_matters.sampling.groups import group, record, slot_triplets, uniform_outside
from sampling_matters.sampling.triplets import SamplingStats, Triplets

__all__ = [
    "MAX_REFERENCE_POSITIVES",
    "Pool",
    "check_references",
    "make_pool",
    "pool_embeddings",
    "row_chunks",
    "squared_distances",
]

MAX_REFERENCE_POSITIVES = 8
"""The default cap on reference positives per anchor: a large memory adds at most this
many (anchor, positive) pairs per anchor, so it does not multiply the loss's work."""


def check_references(
    embeddings: Tensor,
    references: Tensor | None,
    reference_labels: Tensor | None,
    max_reference_positives: int,
    *,
    finite: bool = True,
) -> tuple[Tensor, Tensor] | None:
    """Check the reference arguments at a strategy's door.

    Without references, or with zero reference rows, a strategy takes its in-batch
    path, whose triplets are exactly those of a call without references.

    Args:
        embeddings: (N, D) the batch, already checked.
        references: (M, D) reference embeddings, or None.
        reference_labels: (M,) their integer class ids, or None.
        max_reference_positives: the cap on reference positives per anchor (≥ 0).
        finite: also require finite references (one pass and a host-device sync).

    Returns:
        ``(references, reference_labels)`` when the call samples from a pool, else None.

    Raises:
        ValueError: one given without the other; references not (M, D) of the
            embeddings' D, dtype and device; labels not (M,) integers on that device.
    """
    _checks.integer("max_reference_positives", max_reference_positives, 0)
    if references is None and reference_labels is None:
        return None
    if references is None or reference_labels is None:
        given = "references" if references is not None else "reference_labels"
        missing = "reference_labels" if references is not None else "references"
        raise ValueError(
            f"{given} given without {missing}: pass both (one label per reference row) or neither"
        )
    _check_like(references, embeddings)
    _checks.labels_1d(reference_labels, len(references), name="reference_labels", of="references")
    _checks.same_device("reference_labels", reference_labels, embeddings)
    if finite and not bool(torch.isfinite(references).all()):
        raise ValueError("references must be finite, got NaN or Inf values")
    return (references, reference_labels) if len(references) else None


def _check_like(references: Tensor, embeddings: Tensor) -> None:
    """Raise ``ValueError`` unless ``references`` is (M, D) like ``embeddings``.

    Same D, same dtype (no silent conversion), same device.
    """
    _checks.embeddings_2d(references, "references")
    if references.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"references must have the embeddings' dimension D = {embeddings.shape[1]}, "
            f"got shape {tuple(references.shape)}"
        )
    if references.dtype != embeddings.dtype:
        raise ValueError(
            f"references must have the embeddings' dtype {embeddings.dtype}, got {references.dtype}"
        )
    _checks.same_device("references", references, embeddings)


class Pool(NamedTuple):
    """The batch and its references, grouped by label, seen from the batch's anchors.

    Pool rows are indexed 0 … P-1, the batch first. ``order`` sorts them by label
    (stably); the rows of anchor a's label then occupy the sorted positions
    ``start[a] … start[a] + size[a] - 1`` (the anchor among them). Row a of
    ``positive`` lists the pool rows of a's positives in its ``valid`` columns (in-batch
    ones first, then reference ones); the padding columns hold a itself.
    """

    labels: Tensor  # (P,) int64
    order: Tensor  # (P,) int64
    start: Tensor  # (N,) int64
    size: Tensor  # (N,) int64
    positive: Tensor  # (N, w) int64
    valid: Tensor  # (N, w) bool
    widest: int  # max(size): the most pool rows of one anchor's label

    @property
    def keep(self) -> Tensor:
        """(N,) whether each anchor has a negative in the pool."""
        return self.size < len(self.labels)

    def uniform_negatives(self, generator: torch.Generator | None) -> Tensor:
        """(N, w) pool rows drawn uniformly among each anchor's negatives, in O(N·w)."""
        n, width = len(self.labels), self.positive.shape[1]
        return self.order[uniform_outside(self.start, self.size, n, width, generator)]

    def block_(self, squared: Tensor, rows: slice) -> Tensor:
        """In place: +inf in the anchors ``rows``' (B, P) block at their label's rows.

        Writes through an index of those rows, O(B · widest), when the labels are small
        next to the pool; compares labels, O(B · P), otherwise.
        """
        if 8 * self.widest > len(self.labels):
            same = torch.eq(self.labels[rows, None], self.labels)  # (B, P)
            return squared.masked_fill_(same, math.inf)
        column = torch.arange(self.widest, device=squared.device)  # (s,)
        offset = torch.minimum(column, self.size[rows, None] - 1)  # (B, s) repeats the last
        return squared.scatter_(1, self.order[self.start[rows, None] + offset], math.inf)

    def distance_chunks(
        self, embeddings: Tensor, references: Tensor, *, unit: bool
    ) -> Iterator[tuple[slice, Tensor]]:
        """The anchors × pool squared distances, chunk by chunk: (rows, (B, P) block).

        Every block is written into one buffer, which the next chunk overwrites, so
        memory stays O(chunk × P); the caller may change a block in place. Values are
        not clamped: rounding can leave them slightly below 0.

        Args:
            embeddings: (N, D) the batch.
            references: (M, D) the references.
            unit: whether the rows have unit norm (then d² = 2 - 2 cos, one product).
        """
        x = pool_embeddings(embeddings, references)  # (P, D)
        norms = None if unit else x.pow(2).sum(1)  # (P,)
        chunks = row_chunks(len(self.size), len(x))
        buffer = torch.empty(chunks[0].stop, len(x), dtype=x.dtype, device=x.device)
        for rows in chunks:
            yield rows, squared_distances(x, rows, norms, buffer[: rows.stop - rows.start])

    def triplets(
        self, negative: Tensor, stats: SamplingStats | None, fallback: Tensor | None = None
    ) -> Triplets:
        """Triplets of pool rows, one per valid slot of an anchor with a negative.

        Args:
            negative: (N, w) a negative pool row per slot, or (N,) one per anchor.
            stats: if given, filled with what the strategy did (see :func:`record`).
            fallback: (N, w) or (N, 1) slots whose negative came from a fall-back rule.
        """
        triplets = slot_triplets(self.positive, self.valid, negative, self.keep)
        record(stats, self.valid, triplets, self.keep, fallback)
        return triplets


def make_pool(
    labels: Tensor,
    reference_labels: Tensor,
    max_reference_positives: int,
    generator: torch.Generator | None,
) -> Pool:
    """Group the pool by label and choose each anchor's positives.

    Costs O(P log P + N·w) plus O(N·k²) for k = ``max_reference_positives`` when capped.

    Args:
        labels: (N,) the batch's class ids (N ≥ 1).
        reference_labels: (M,) the references' class ids.
        max_reference_positives: the most reference positives an anchor gets.
        generator: the random source of the capped draws.
    """
    anchor_labels = labels.long()  # (N,)
    pool_labels = torch.cat([anchor_labels, reference_labels.long()])  # (P,)
    sorted_labels, order = pool_labels.sort(stable=True)  # (P,), (P,)
    start = torch.searchsorted(sorted_labels, anchor_labels)  # (N,)
    size = torch.searchsorted(sorted_labels, anchor_labels, right=True) - start  # (N,)
    batch_positive, batch_valid = _batch_positives(labels)  # (N, m) each
    reference_positive, reference_valid = _reference_positives(
        anchor_labels, reference_labels.long(), max_reference_positives, generator
    )  # (N, k) each
    positive = torch.cat([batch_positive, reference_positive + len(labels)], 1)  # (N, w)
    valid = torch.cat([batch_valid, reference_valid], 1)  # (N, w)
    anchor = torch.arange(len(labels), device=labels.device)[:, None]  # (N, 1)
    positive = torch.where(valid, positive, anchor)  # (N, w)
    return Pool(pool_labels, order, start, size, positive, valid, int(size.max()))


def _batch_positives(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(N, m) each item's in-batch positives (batch indices) and (N, m) which are valid."""
    groups = group(labels)
    inverse = torch.empty_like(groups.order)
    inverse[groups.order] = torch.arange(len(labels), device=labels.device)  # item -> position
    return groups.order[groups.positive[inverse]], groups.valid[inverse]


def _reference_positives(
    labels: Tensor, reference_labels: Tensor, cap: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """(N, k) up to ``cap`` reference rows of each anchor's label, and (N, k) which are valid.

    An anchor with at most ``cap`` such rows gets all of them; one with more gets ``cap``
    of them, every subset equally likely. Indices are reference rows (0 … M-1).
    """
    sorted_labels, order = reference_labels.sort(stable=True)  # (M,), (M,)
    first = torch.searchsorted(sorted_labels, labels)  # (N,)
    count = torch.searchsorted(sorted_labels, labels, right=True) - first  # (N,)
    k = min(cap, int(count.max())) if len(count) else 0
    column = torch.arange(k, device=labels.device)  # (k,)
    capped = (count > k)[:, None]  # (N, 1)
    offset = torch.where(capped, _distinct_offsets(count, k, generator), column)  # (N, k)
    valid = column < count[:, None]  # (N, k)
    return order[(first[:, None] + offset).clamp_(max=max(len(order) - 1, 0))], valid


def _distinct_offsets(count: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """(N, k) distinct offsets in [0, count) per row, each k-subset equally likely.

    Robert Floyd's algorithm, vectorised over rows: for j = count-k … count-1, draw t
    uniformly from [0, j] and take t, or j if t is taken already. O(N·k²). Rows with
    count < k get meaningless offsets (the caller replaces them).
    """
    bits = torch.randint(1 << 62, (len(count), k), generator=generator, device=count.device)
    chosen = torch.empty_like(bits)  # (N, k)
    for i in range(k):
        top = (count - (k - i)).clamp_(min=0)  # (N,) j: draw from [0, j]
        drawn = bits[:, i] % (top + 1)  # (N,)
        taken = (chosen[:, :i] == drawn[:, None]).any(1)  # (N,)
        chosen[:, i] = torch.where(taken, top, drawn)
    return chosen


def pool_embeddings(embeddings: Tensor, references: Tensor) -> Tensor:
    """(P, D) the pool's rows, detached, in the dtype distances are computed in."""
    dtype = compute_dtype(embeddings)
    return torch.cat([embeddings.detach().to(dtype), references.detach().to(dtype)])


def chunk_rows(rows: int, columns: int) -> int:
    """Anchor rows per chunk: about 2^21 entries (8 MiB in float32).

    Smaller chunks keep each elementwise pass in a smaller cache but make the matrix
    product run on too few rows (30 of them against 17,408 columns at 2^19 entries),
    which costs more than it saves: measured on one CPU thread, batch 1,024 against
    16,384 references, 2^21 entries took 2.1× ``torch.cdist``, 2^19 took 2.8×.
    """
    return max(1, min(rows, (1 << 21) // max(columns, 1)))


def row_chunks(rows: int, columns: int) -> list[slice]:
    """The chunks of anchor rows 0 … rows-1 for a (rows × columns) matrix."""
    step = chunk_rows(rows, columns)
    return [slice(first, min(first + step, rows)) for first in range(0, rows, step)]


def squared_distances(
    x: Tensor, rows: slice, norms: Tensor | None, out: Tensor | None = None
) -> Tensor:
    """(B, P) squared distances from the pool rows ``rows`` (anchors) to every pool row.

    Args:
        x: (P, D) the pool (:func:`pool_embeddings`).
        rows: the chunk's anchor rows.
        norms: (P,) squared norms of the rows, or None for unit-norm rows (2 - 2 cos).
        out: a (B, P) buffer to write into, or None for a new tensor.

    Returns:
        Unclamped: rounding can leave values slightly below 0.
    """
    if norms is None:
        two = torch.full((1, 1), 2.0, dtype=x.dtype, device=x.device)
        return torch.addmm(two, x[rows], x.T, alpha=-2.0, out=out)  # (B, P)
    squared = torch.addmm(norms, x[rows], x.T, alpha=-2.0, out=out)  # (B, P)
    return squared.add_(norms[rows, None])
