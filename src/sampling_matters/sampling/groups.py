"""A batch grouped by label: the sorted positions every strategy works in.

A strategy checks its batch (:func:`check_batch`), groups it by label
(:func:`group`), picks a negative position per (anchor, positive) slot, then maps
the slots back to the batch's indices (:meth:`Groups.triplets`) and reports what it
did (:func:`record`). An empty batch gives :func:`empty` triplets. Two helpers serve
the pool of :mod:`~sampling_matters.sampling.pool` as well: :func:`uniform_outside`
(uniform draws outside a label block) and :func:`slot_triplets`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.sampling.triplets import SamplingStats, Triplets

__all__ = [
    "Groups",
    "check_batch",
    "empty",
    "group",
    "record",
    "slot_triplets",
    "uniform_outside",
]


def check_batch(embeddings: Tensor, labels: Tensor, *, finite: bool = True) -> None:
    """Raise ``ValueError`` unless ``embeddings`` is (N, D) and ``labels`` (N,) beside it."""
    _checks.embeddings_2d(embeddings, finite=finite)
    _checks.labels_1d(labels, len(embeddings))
    _checks.same_device("labels", labels, embeddings)


class Groups(NamedTuple):
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
        return uniform_outside(self.start, self.size, len(self.order), m, generator)

    def triplets(self, negative: Tensor, keep: Tensor | None = None) -> Triplets:
        """Triplets of original indices, one per valid (row, column) slot.

        Args:
            negative: (N, m) a negative position per slot, or (N,) one per row.
            keep: (N,) rows to keep; None keeps all.
        """
        anchor, positive, negative = slot_triplets(self.positive, self.valid, negative, keep)
        return Triplets(self.order[anchor], self.order[positive], self.order[negative])


def uniform_outside(
    start: Tensor, size: Tensor, n: int, m: int, generator: torch.Generator | None
) -> Tensor:
    """(R, m) positions drawn uniformly from [0, n) outside each row's block, in O(R·m).

    Row r's block is [start[r], start[r] + size[r]): the j-th position outside it is j,
    skipped past the block. Rows whose block covers [0, n) get an arbitrary position.
    """
    u = torch.rand(len(start), m, generator=generator, device=start.device)  # (R, m)
    j = u.mul_((n - size)[:, None]).long()  # (R, m) in [0, n - size)
    j += size[:, None] * (j >= start[:, None])
    return j.clamp_(max=n - 1)


def slot_triplets(
    positive: Tensor, valid: Tensor, negative: Tensor, keep: Tensor | None
) -> Triplets:
    """Triplets (row, positive, negative), one per valid slot of a kept row, row-major.

    Args:
        positive: (R, m) each row's positives; only the ``valid`` slots are read.
        valid: (R, m) bool, the slots that hold a positive.
        negative: (R, m) a negative per slot, or (R,) one per row.
        keep: (R,) rows to keep; None keeps all.
    """
    selected = valid if keep is None else valid & keep[:, None]  # (R, m)
    flat = selected.view(-1).nonzero().squeeze(1)  # (T,)
    row = flat.div(max(positive.shape[1], 1), rounding_mode="floor")  # (T,)
    negative = negative[row] if negative.dim() == 1 else negative.reshape(-1)[flat]
    return Triplets(row, positive.view(-1)[flat], negative)


def group(labels: Tensor) -> Groups:
    """Group a batch by label (a stable sort): see :class:`Groups`. O(N log N + N·m)."""
    sorted_labels, order = labels.sort(stable=True)  # (N,), (N,)
    _, label_group, counts = torch.unique_consecutive(
        sorted_labels, return_inverse=True, return_counts=True
    )
    start = (torch.cumsum(counts, 0) - counts)[label_group]  # (N,)
    size = counts[label_group]  # (N,)
    column = torch.arange(int(size.max()) - 1, device=labels.device)  # (m,)
    position = torch.arange(len(labels), device=labels.device)  # (N,)
    slot = start[:, None] + column + (column >= (position - start)[:, None])  # (N, m)
    valid = column < (size - 1)[:, None]  # (N, m)
    positive = torch.where(valid, slot, position[:, None])  # (N, m)
    return Groups(order, start, size, positive, valid)


def record(
    stats: SamplingStats | None,
    valid: Tensor,
    triplets: Triplets,
    keep: Tensor | None,
    fallback: Tensor | None,
) -> None:
    """Fill ``stats`` (when given) with what a strategy did.

    Args:
        stats: the object to fill, or None.
        valid: (N, m) the (anchor, positive) slots, :attr:`Groups.valid` or a pool's.
        triplets: what the strategy returns.
        keep: (N,) the rows it kept, or None for all.
        fallback: (N, m) or (N, 1) slots whose negative came from a fall-back rule.
    """
    if stats is None:
        return
    stats.triplets = len(triplets.anchor)
    dropped = valid.any(1) if keep is None else valid.any(1) & ~keep
    stats.anchors_without_negative = 0 if keep is None else int(dropped.sum())
    counted = valid if keep is None else valid & keep[:, None]
    stats.fallback = 0 if fallback is None else int((counted & fallback).sum())


def empty(labels: Tensor, stats: SamplingStats | None) -> Triplets:
    """The result for an empty batch."""
    if stats is not None:
        stats.triplets = stats.anchors_without_negative = stats.fallback = stats.band_empty = 0
    nothing = torch.zeros(0, dtype=torch.int64, device=labels.device)
    return Triplets(nothing, nothing, nothing)
