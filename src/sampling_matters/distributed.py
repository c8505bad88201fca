"""torch.distributed glue: the global batch with gradients, and batches sharded by rank.

With several processes (``torchrun``), each process embeds its own share of a step's
global batch. :func:`gather` returns the global embeddings and labels, rows ordered by
rank (the same on every rank), and this rank's offset in them; the gradient that flows
back to a rank's own rows is the **sum**, over all ranks, of the gradients those rows
received in each rank's loss: exactly what one process would compute on the
concatenated batch. :func:`others` gives the rows of the other ranks, the references
that a rank's anchors sample from beside their own batch. :func:`shard_batches` cuts
each row of a global P×K plan into the ranks' shares: whole classes, none on two ranks.

Without an initialised process group every function is the single-process identity: a
world of 1.

Example:
    >>> import torch
    >>> x, labels = torch.randn(4, 3), torch.tensor([0, 0, 1, 1])
    >>> everything, all_labels, offset = gather(x, labels)  # one process
    >>> everything is x, offset
    (True, 0)
"""

from __future__ import annotations

import gc
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from sampling_matters import _checks

__all__ = [
    "backend_for",
    "gather",
    "is_distributed",
    "leave",
    "others",
    "rank",
    "shard_batches",
    "total",
    "world_size",
]


def is_distributed() -> bool:
    """Whether a process group is initialised (``torchrun``, or ``init_process_group``)."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def leave() -> None:
    """Leave the process group, if one is initialised, freeing first what still holds it.

    A DDP model lives in reference cycles, so it outlives its last use and keeps gloo's
    process group alive past ``destroy_process_group``; freed later, at interpreter
    exit, the group's threads abort the process (SIGABRT) after a run that succeeded.
    Collecting the cycles first frees the group here, while Python still runs.
    """
    if not is_distributed():
        return
    gc.collect()
    dist.destroy_process_group()


def backend_for(device: torch.device) -> str:
    """The backend for a device: NCCL for CUDA, gloo otherwise.

    Example:
        >>> backend_for(torch.device("cpu"))
        'gloo'
    """
    return "nccl" if device.type == "cuda" else "gloo"


class _AllGather(torch.autograd.Function):
    """All ranks' rows, concatenated by rank; backward: the summed gradient of own rows."""

    @staticmethod
    def forward(ctx: Any, local: Tensor, sizes: list[int], offset: int) -> Tensor:
        ctx.rows = (offset, offset + len(local))
        return torch.cat(_gather_padded(local, sizes))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        total = grad.contiguous().clone()  # (N_total, D)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)  # every rank's loss, summed
        start, end = ctx.rows
        return total[start:end], None, None


def _gather_padded(local: Tensor, sizes: list[int]) -> list[Tensor]:
    """Every rank's ``local`` (rows padded to the largest for the collective), unpadded."""
    longest = max(sizes)
    padded = local.new_zeros((longest, *local.shape[1:]))  # (longest, ...)
    padded[: len(local)] = local
    chunks = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(chunks, padded)
    return [chunk[:size] for chunk, size in zip(chunks, sizes, strict=True)]


def _shapes(embeddings: Tensor) -> list[int]:
    """Every rank's row count; a ``ValueError`` on every rank if a dimension differs."""
    mine = torch.tensor(
        [len(embeddings), embeddings.shape[1]], dtype=torch.int64, device=embeddings.device
    )
    shapes = [torch.empty_like(mine) for _ in range(world_size())]
    dist.all_gather(shapes, mine)
    dims = sorted({int(s[1]) for s in shapes})
    if len(dims) > 1:
        raise ValueError(f"every rank must embed in the same dimension, got dimensions {dims}")
    return [int(s[0]) for s in shapes]


def gather(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, int]:
    """The global batch: every rank's embeddings and labels, ordered by rank.

    Differentiable in ``embeddings``: the gradient reaching this rank's rows is the sum
    of the gradients they received in every rank's loss. Ranks may hold different
    numbers of rows. Every rank must call it (a collective), and every rank that calls
    it must later run backward through the result if any does.

    Args:
        embeddings: (N, D) this rank's embeddings.
        labels: (N,) their class ids.

    Returns:
        ``(all_embeddings, all_labels, offset)``: (N_total, D) and (N_total,), and the
        index of this rank's first row in them. Without a process group: the inputs
        themselves and 0.

    Raises:
        ValueError: bad inputs, or ranks that embed in different dimensions (raised on
            every rank, so none waits for the others).
    """
    _checks.embeddings_2d(embeddings, finite=False)
    _checks.labels_1d(labels, len(embeddings))
    if not is_distributed():
        return embeddings, labels, 0
    sizes = _shapes(embeddings)
    offset = sum(sizes[: rank()])
    everything: Tensor = _AllGather.apply(embeddings, sizes, offset)  # type: ignore[no-untyped-call]
    all_labels = torch.cat(_gather_padded(labels.to(torch.int64), sizes))
    return everything, all_labels, offset


def total(count: Tensor) -> Tensor:
    """``count`` summed over every rank (a collective; no gradient). One process: itself.

    Example:
        >>> total(torch.tensor(3))
        tensor(3)
    """
    if not is_distributed():
        return count
    summed = count.detach().clone()
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    return summed


def others(
    all_embeddings: Tensor, all_labels: Tensor, offset: int, n: int
) -> tuple[Tensor | None, Tensor | None]:
    """The rows of the other ranks (the references of this rank's anchors), or Nones.

    Args:
        all_embeddings: (N_total, D) from :func:`gather`.
        all_labels: (N_total,) from :func:`gather`.
        offset: this rank's first row.
        n: this rank's row count.
    """
    if len(all_embeddings) == n:
        return None, None
    keep = torch.ones(len(all_embeddings), dtype=torch.bool, device=all_embeddings.device)
    keep[offset : offset + n] = False
    return all_embeddings[keep], all_labels[keep]


def shard_batches(batches: Tensor, rank: int, world_size: int, samples_per_class: int) -> Tensor:
    """This rank's share of every global batch: whole classes, none on two ranks.

    Args:
        batches: (B, P·K) a P×K plan (P runs of K images, one class per run), as
            :meth:`~sampling_matters.batching.PKSampler.epoch_batches` gives for the
            global batch of ``world_size × P_local`` classes.
        rank: this process's rank, in [0, world_size).
        world_size: the number of processes; it must divide P.
        samples_per_class: K.

    Returns:
        (B, P·K / world_size): rank r takes runs r·P/W … (r+1)·P/W − 1 of each batch.

    Example:
        >>> plan = torch.arange(12).view(1, 12)  # one batch: 6 classes × 2 images
        >>> shard_batches(plan, 1, 3, 2)
        tensor([[4, 5, 6, 7]])
    """
    world_size = _checks.positive_int("world_size", world_size)
    rank = _checks.integer("rank", rank, 0, world_size - 1)
    k = _checks.positive_int("samples_per_class", samples_per_class)
    runs = batches.shape[1] // k
    if batches.dim() != 2 or runs * k != batches.shape[1] or runs % world_size:
        raise ValueError(
            f"a plan of shape {tuple(batches.shape)} with K = {k} cannot be split into "
            f"{world_size} equal shares of whole classes: P must be a multiple of the world"
        )
    width = batches.shape[1] // world_size
    return batches[:, rank * width : (rank + 1) * width]
