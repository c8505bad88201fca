"""Cross-batch memory (XBM): a ring buffer of past embeddings used as references.

A :class:`CrossBatchMemory` keeps detached copies of the last ``size`` embeddings and
their labels (first in, first out) on one device. A strategy or loss that takes
``references`` then samples positives and negatives from the batch *and* the memory,
so a small batch sees many more negatives (Wang et al., "Cross-Batch Memory for
Embedding Learning", CVPR 2020).

The order of one training step matters: read :meth:`~CrossBatchMemory.references`
**before** :meth:`~CrossBatchMemory.add` of the current batch, so that the memory
never holds the batch paired with itself (:meth:`~CrossBatchMemory.compute_loss`
does both in that order). Fill is tracked by a count, never by a label sentinel, so a
label 0 is a real class. Stored embeddings are stale early in training (the model
moves fast), hence the warm-up: for the first ``warmup`` steps the memory stores
batches but hands out no references.

Example:
    >>> memory = CrossBatchMemory(size=4, dim=2)
    >>> memory.references()  # empty at step 0
    (None, None)
    >>> memory.add(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))
    >>> memory.add(torch.tensor([[2.0, 0.0], [0.0, 2.0], [3.0, 0.0]]), torch.tensor([2, 3, 4]))
    >>> embeddings, labels = memory.references()  # the last 4 rows, oldest first
    >>> labels
    tensor([1, 2, 3, 4])
    >>> len(memory), memory.step
    (4, 2)

This module imports only :mod:`sampling_matters._checks` and torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from sampling_matters import _checks

__all__ = ["CrossBatchMemory"]

_UPCAST = (torch.float16, torch.bfloat16)
"""Batch dtypes that :meth:`CrossBatchMemory.add` casts up to a wider memory dtype."""

_STATE_KEYS = ("embeddings", "labels", "count", "head", "step")

LossWithReferences = Callable[..., Tensor]
"""``fn(embeddings, labels, *, references, reference_labels) -> Tensor``, e.g. a loss module."""


class CrossBatchMemory:
    """A first-in first-out memory of the last ``size`` embeddings and their labels.

    Args:
        size: M, how many embeddings the memory holds (> 0).
        dim: D, the embedding dimension (> 0).
        warmup: W ≥ 0: :meth:`references` returns ``(None, None)`` until :meth:`add`
            has been called W times (batches are stored meanwhile). With W = 0 the
            first batch sees an empty memory and the second sees the first.
        device: where the memory lives; the model's device (default CPU). Move it
            later with :meth:`to`.
        dtype: the floating dtype of the stored embeddings (default float32). Batches
            must have this dtype, except float16 and bfloat16 batches, which are cast
            up to a wider memory dtype (mixed precision); any other dtype is refused.

    Attributes:
        size: M.
        dim: D.
        warmup: W.
        step: how many times :meth:`add` has been called (restored by
            :meth:`load_state_dict`, kept by :meth:`clear`).

    Raises:
        ValueError: size or dim not a positive integer, warmup negative, dtype not a
            floating dtype.
    """

    def __init__(
        self,
        size: int,
        dim: int,
        *,
        warmup: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.size = _checks.positive_int("size", size, why="the number of stored embeddings")
        self.dim = _checks.positive_int("dim", dim, why="the embedding dimension")
        self.warmup = _checks.integer("warmup", warmup, 0, why="steps before references are used")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        device = torch.device("cpu" if device is None else device)
        self._embeddings = torch.zeros(self.size, self.dim, dtype=dtype, device=device)  # (M, D)
        self._labels = torch.zeros(self.size, dtype=torch.int64, device=device)  # (M,)
        self._count = 0  # filled slots; a count, never a label sentinel
        self._head = 0  # the slot the next row goes to
        self.step = 0

    # ------------------------------------------------------------------------ reading

    @property
    def device(self) -> torch.device:
        """The device the memory lives on."""
        return self._embeddings.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the stored embeddings."""
        return self._embeddings.dtype

    def __len__(self) -> int:
        """How many embeddings are stored (≤ ``size``)."""
        return self._count

    @property
    def is_ready(self) -> bool:
        """Whether :meth:`references` hands out references: not empty, warm-up over."""
        return self._count > 0 and self.step >= self.warmup

    def references(self) -> tuple[Tensor, Tensor] | tuple[None, None]:
        """The stored embeddings and labels, oldest first; ``(None, None)`` if not ready.

        Call it before :meth:`add` of the current batch. The tensors are new (not views
        of the memory), detached, on the memory's device and dtype, so a later
        :meth:`add` (even before ``backward()``) does not change them.

        Returns:
            ``(embeddings, labels)``: (len(self), D) and (len(self),) int64, in the
            order they were added; or ``(None, None)`` while the memory is empty or
            ``step < warmup``.
        """
        if not self.is_ready:
            return None, None
        return self._in_order(self._embeddings), self._in_order(self._labels)

    def _in_order(self, buffer: Tensor) -> Tensor:
        """A copy of the filled rows of ``buffer``, oldest first."""
        if self._count < self.size:  # not wrapped yet: slots 0..count-1
            return buffer[: self._count].clone()
        return torch.cat([buffer[self._head :], buffer[: self._head]])

    # ------------------------------------------------------------------------ writing

    def add(self, embeddings: Tensor, labels: Tensor) -> None:
        """Store detached copies of a batch, dropping the oldest rows; count one step.

        A batch larger than the memory keeps its last ``size`` rows.

        Args:
            embeddings: (N, D) floating embeddings on the memory's device, of its dtype
                (or float16/bfloat16, cast up).
            labels: (N,) integer class ids on the same device (stored as int64).

        Raises:
            ValueError: a batch of another dimension, dtype or device, or labels that
                are not an (N,) integer tensor.
        """
        self._check_batch(embeddings, labels)
        with torch.no_grad():
            rows = embeddings.detach()[-self.size :].to(self.dtype)  # (n, D), n ≤ M
            n = rows.shape[0]
            slots = (torch.arange(n, device=self.device) + self._head) % self.size  # (n,)
            self._embeddings[slots] = rows
            self._labels[slots] = labels[-self.size :].to(torch.int64)
        self._head = (self._head + n) % self.size
        self._count = min(self._count + n, self.size)
        self.step += 1

    def _check_batch(self, embeddings: Tensor, labels: Tensor) -> None:
        _checks.embeddings_2d(embeddings)
        if embeddings.shape[1] != self.dim:
            raise ValueError(
                f"embeddings must have dimension D = {self.dim} (the memory's dim), "
                f"got shape {tuple(embeddings.shape)}"
            )
        if embeddings.device != self.device:
            raise ValueError(
                f"embeddings are on {embeddings.device} but the memory is on {self.device}; "
                "build the memory with device= the model's device or move it with .to(device)"
            )
        upcast = embeddings.dtype in _UPCAST and self.dtype.itemsize > embeddings.dtype.itemsize
        if embeddings.dtype != self.dtype and not upcast:
            raise ValueError(
                f"embeddings must be {self.dtype} (the memory's dtype; float16 and bfloat16 "
                f"are cast up to a wider one), got {embeddings.dtype}"
            )
        _checks.labels_1d(labels, len(embeddings))
        _checks.same_device("labels", labels, embeddings)

    def compute_loss(
        self, embeddings: Tensor, labels: Tensor, loss_fn: LossWithReferences
    ) -> Tensor:
        """One step in the right order: the loss against the memory, then store the batch.

        Calls ``loss_fn(embeddings, labels, references=..., reference_labels=...)``
        with :meth:`references` as they were before this batch (``None`` while the
        memory is not ready), then :meth:`add` the batch. A loss module that takes
        references can be passed as it is; bind other arguments (``indices``) with
        ``functools.partial`` or a lambda.

        Returns:
            What ``loss_fn`` returned.
        """
        references, reference_labels = self.references()
        loss = loss_fn(embeddings, labels, references=references, reference_labels=reference_labels)
        self.add(embeddings, labels)
        return loss

    def clear(self) -> None:
        """Forget every stored row (zeroed); ``step``, and so the warm-up, is kept."""
        self._embeddings.zero_()
        self._labels.zero_()
        self._count = self._head = 0

    def to(self, device: torch.device | str) -> CrossBatchMemory:
        """Move the memory to ``device`` (in place, like ``nn.Module.to``); returns it."""
        self._embeddings = self._embeddings.to(device)
        self._labels = self._labels.to(device)
        return self

    # ------------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The memory's state: copies of its tensors and plain ints.

        ``torch.load(..., weights_only=True)`` reads it back. The settings (size, dim,
        warmup, dtype) are not in it: they belong to the config that builds the memory.

        Returns:
            ``{"embeddings": (M, D), "labels": (M,) int64, "count", "head", "step"}``,
            the buffers in slot order with the slot of the next row (``head``).
        """
        return {
            "embeddings": self._embeddings.clone(),
            "labels": self._labels.clone(),
            "count": self._count,
            "head": self._head,
            "step": self.step,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`, onto this memory's device.

        Raises:
            ValueError: missing or unexpected keys, tensors of another size, dimension
                or dtype than this memory's, or counters out of range.
        """
        if not isinstance(state, Mapping) or set(state) != set(_STATE_KEYS):
            got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(
                f"a CrossBatchMemory state must have the keys {sorted(_STATE_KEYS)}, got {got}"
            )
        embeddings, labels = state["embeddings"], state["labels"]
        self._check_state_tensor("embeddings", embeddings, (self.size, self.dim), self.dtype)
        self._check_state_tensor("labels", labels, (self.size,), torch.int64)
        count = _checks.integer("the state's count", state["count"], 0, self.size)
        head = _checks.integer("the state's head", state["head"], 0, self.size - 1)
        step = _checks.integer("the state's step", state["step"], 0)
        if count < self.size and head != count:
            raise ValueError(
                f"the state's head must equal its count {count} until full, got {head}"
            )
        self._embeddings = embeddings.detach().to(self.device, copy=True)
        self._labels = labels.detach().to(self.device, copy=True)
        self._count, self._head, self.step = count, head, step

    def _check_state_tensor(
        self, name: str, value: object, shape: tuple[int, ...], dtype: torch.dtype
    ) -> None:
        if not isinstance(value, Tensor) or tuple(value.shape) != shape or value.dtype != dtype:
            raise ValueError(
                f"the state's {name} must be a {dtype} tensor of shape {shape} for this "
                f"memory (size={self.size}, dim={self.dim}), got {_checks.describe(value)}"
            )

    def __repr__(self) -> str:
        return (
            f"CrossBatchMemory(size={self.size}, dim={self.dim}, warmup={self.warmup}, "
            f"filled={self._count}, step={self.step}, device={self.device}, dtype={self.dtype})"
        )
