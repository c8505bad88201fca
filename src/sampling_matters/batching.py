"""P classes × K images batch samplers.

Every in-batch sampling strategy (the paper's Section 4) needs positives *and*
negatives in each batch: a batch of P distinct classes with K images each gives every
anchor K−1 positives and (P−1)·K negatives.

:class:`PKSampler` is a ``batch_sampler`` for :class:`torch.utils.data.DataLoader`.
Each epoch covers the data set: every image of every usable class is in at least
one batch of the epoch. It is deterministic given ``(seed, epoch)`` so that a
resumed run sees the same batches (call :meth:`PKSampler.set_epoch` like
``DistributedSampler``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor
from torch.utils.data import Sampler

from sampling_matters import _checks

__all__ = ["SMALL_CLASSES", "PKSampler"]

SMALL_CLASSES = ("repeat", "drop")
"""The accepted values of ``PKSampler(small_classes=...)``."""

SmallClasses: TypeAlias = Literal["repeat", "drop"]
LabelsLike: TypeAlias = "Tensor | npt.NDArray[np.integer[Any]] | Sequence[int]"


def _as_labels(labels: object) -> Tensor:
    """Labels as a 1-d int64 CPU tensor, or a ValueError saying what was wrong."""
    if isinstance(labels, Tensor):
        tensor = labels.detach().cpu()
    else:
        try:
            tensor = torch.as_tensor(np.asarray(labels))
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(
                f"labels must be a 1-d sequence of integer class ids, got {type(labels).__name__} "
                f"that does not convert to a tensor ({error})"
            ) from error
    if tensor.dim() != 1:
        raise ValueError(
            f"labels must be 1-d (one integer class id per image), got shape {tuple(tensor.shape)}"
        )
    if len(tensor) == 0:
        raise ValueError("labels is empty: a batch sampler needs at least one image per class")
    if not _checks.is_integer_dtype(tensor):
        raise ValueError(f"labels must be integer class ids, got dtype {tensor.dtype}")
    return tensor.to(torch.int64)


def _epoch_seed(seed: int, epoch: int) -> int:
    """A 64-bit seed mixing ``seed`` and ``epoch`` (stable across runs and platforms)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class PKSampler(Sampler[list[int]]):
    """Batches of P distinct classes × K images each, covering the data set every epoch.

    Each batch is a list of P·K data set indices made of P runs of K images, one
    class per run (classes in random order): every anchor has K−1 positives and
    (P−1)·K negatives. An epoch is planned as follows.

    1. The images of each usable class (c images) are shuffled and cut into
       ⌈c/K⌉ chunks of K, read cyclically: the last chunk is completed with other
       images of the class, so the K images of a chunk are distinct whenever c ≥ K.
    2. The chunks of all classes are put on one time line, chunk j of a class of m
       chunks at a random time in [j/m, (j+1)/m): big classes are spread evenly over
       the epoch instead of being left for its end, and chunks of different classes
       are mixed at random.
    3. Batches are filled in that order with one chunk per class; a chunk whose class
       is already in the current batch waits for the next batch. When fewer than P
       classes have chunks left, the batch is completed with extra chunks (chosen at
       random) of other classes drawn uniformly at random.

    So every image of a usable class is in at least one batch of the epoch, and the
    number of batches is ⌈chunks / P⌉ unless one class holds a large share of the
    chunks (a class of m chunks needs at least m batches).

    Small classes: a class with 2 ≤ c < K images has one chunk. With
    ``small_classes="repeat"`` its images are repeated to fill it, as evenly as
    possible (each image ⌊K/c⌋ or ⌈K/c⌉ times, the extra copies going to images
    chosen at random); its anchors then also meet copies of themselves as
    "positives" (pairs at distance 0, which give no margin or contrastive loss once
    trained, and little signal). With ``"drop"`` such classes are excluded. A class of
    a single image gives no positive pair but with itself, so it is always dropped.
    What was done is counted in the attributes below and summarised by
    :meth:`describe`.

    Randomness comes only from a ``torch.Generator`` seeded from ``(seed, epoch)``:
    iterating twice gives the same batches, :meth:`set_epoch` selects another epoch
    (as with ``DistributedSampler``), and a resumed run that sets the same epoch gets
    the same batches. Planning an epoch costs O(number of images) Python steps over
    the chunks plus a few sorts (well under a second for 120,000 images).

    Args:
        labels: (N,) integer class id of every image of the data set, in data set
            order; any order and any values (not necessarily 0..C−1).
        classes_per_batch: P ≥ 2, the distinct classes in a batch (negatives).
        samples_per_class: K ≥ 2, the images of each class in a batch (positives).
        seed: the base seed of the random plan.
        small_classes: ``"repeat"`` (default) or ``"drop"`` classes with fewer than K
            (but at least 2) images.

    Attributes:
        classes_per_batch: P.
        samples_per_class: K.
        batch_size: P·K.
        n_images: N, the length of ``labels``.
        n_classes: distinct class ids in ``labels``.
        n_classes_used: classes that appear in the batches.
        n_small_classes: classes with 2 ≤ c < K images (repeated or dropped).
        n_single_image_classes: classes of one image (always dropped).
        n_dropped_classes: classes not used (single-image ones, plus the small ones
            with ``small_classes="drop"``).
        n_images_used: images of the used classes; each appears in every epoch.
        n_chunks: chunks of K images per epoch (before extra chunks).
        classes: (n_classes_used,) int64, the used class ids, sorted.
        epoch: the epoch whose batches iteration gives.

    Raises:
        ValueError: labels not 1-d integers or empty, P or K not integers, K < 2,
            P < 2, an unknown ``small_classes`` or P larger than the number of usable
            classes.

    Example:
        >>> labels = [7, 7, 7, 3, 3, 3, 3, 9, 9, 9, 5]  # class 5 has a single image
        >>> sampler = PKSampler(labels, classes_per_batch=2, samples_per_class=2, seed=0)
        >>> sampler.n_classes_used, sampler.n_single_image_classes
        (3, 1)
        >>> batches = list(sampler)
        >>> len(batches) == len(sampler)
        True
        >>> all(len(batch) == 4 for batch in batches)
        True
        >>> sorted({i for batch in batches for i in batch})  # every image but the 11th
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """

    def __init__(
        self,
        labels: LabelsLike,
        classes_per_batch: int,
        samples_per_class: int,
        *,
        seed: int = 0,
        small_classes: SmallClasses = "repeat",
    ) -> None:
        self.classes_per_batch = _checks.integer(
            "classes_per_batch", classes_per_batch, 2, why="a batch needs 2 classes for negatives"
        )
        self.samples_per_class = _checks.integer(
            "samples_per_class",
            samples_per_class,
            2,
            why="a class needs 2 images for a positive pair",
        )
        self.seed = _checks.integer("seed", seed)
        _checks.one_of("small_classes", small_classes, SMALL_CLASSES)
        self.small_classes: SmallClasses = small_classes
        self.batch_size = self.classes_per_batch * self.samples_per_class
        self.epoch = 0

        label_tensor = _as_labels(labels)  # (N,) int64
        P, K = self.classes_per_batch, self.samples_per_class
        class_ids, class_of, counts = torch.unique(
            label_tensor, return_inverse=True, return_counts=True
        )  # (C0,), (N,), (C0,)
        small = (counts >= 2) & (counts < K)  # (C0,)
        single = counts == 1  # (C0,)
        used = counts >= (K if small_classes == "drop" else 2)  # (C0,)

        self.n_images = len(label_tensor)
        self.n_classes = len(class_ids)
        self.n_small_classes = int(small.sum())
        self.n_single_image_classes = int(single.sum())
        self.n_classes_used = int(used.sum())
        self.n_dropped_classes = self.n_classes - self.n_classes_used
        self.classes = class_ids[used]  # (C,)
        if self.n_classes_used < P:
            raise ValueError(
                f"classes_per_batch={P} but only {self.n_classes_used} of the "
                f"{self.n_classes} classes are usable ({self.n_single_image_classes} have a "
                f"single image, {self.n_small_classes} fewer than samples_per_class={K} images"
                f"{', dropped' if small_classes == 'drop' else ', repeated'}); expected "
                f"classes_per_batch <= {self.n_classes_used}"
            )

        # Used classes re-ranked 0..C-1 (in the order of their ids); images grouped by class.
        rank = torch.cumsum(used.long(), 0) - 1  # (C0,) rank of each used class
        image_used = used[class_of]  # (N,)
        self._images = torch.nonzero(image_used).flatten()  # (M,) data set indices
        self._class_of = rank[class_of[self._images]]  # (M,) class rank of each used image
        self._counts = counts[used]  # (C,) images per class
        self._starts = torch.cumsum(self._counts, 0) - self._counts  # (C,) first of each class
        self._chunks = (self._counts + K - 1) // K  # (C,) chunks per class
        self._chunk_starts = torch.cumsum(self._chunks, 0) - self._chunks  # (C,)
        self.n_images_used = len(self._images)
        self.n_chunks = int(self._chunks.sum())
        self._plan: tuple[int, Tensor] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches iteration gives (call it before each epoch).

        Args:
            epoch: any integer; the same ``(seed, epoch)`` always gives the same batches.
        """
        self.epoch = _checks.integer("epoch", epoch)

    def epoch_batches(self) -> Tensor:
        """The batches of the current epoch as a (B, P·K) int64 tensor of data set indices.

        Row b is batch b: P runs of K images, one class per run.
        """
        return self._epoch_plan().clone()

    def __len__(self) -> int:
        """The exact number of batches of the current epoch."""
        return len(self._epoch_plan())

    def __iter__(self) -> Iterator[list[int]]:
        """Yield the current epoch's batches, each a list of P·K data set indices."""
        yield from self._epoch_plan().tolist()

    def describe(self) -> str:
        """A one-line summary of the classes used and the current epoch's batches."""
        P, K = self.classes_per_batch, self.samples_per_class
        n_batches = len(self)
        extra = n_batches * P - self.n_chunks
        small = (
            f"{self.n_small_classes} small classes (< {K} images) "
            f"{'repeated' if self.small_classes == 'repeat' else 'dropped'}"
        )
        return (
            f"PKSampler: {P} classes x {K} images = {self.batch_size} per batch; "
            f"{self.n_classes_used} of {self.n_classes} classes used ({small}, "
            f"{self.n_single_image_classes} single-image classes dropped), "
            f"{self.n_images_used} of {self.n_images} images; epoch {self.epoch}: "
            f"{n_batches} batches of {self.n_chunks} chunks + {extra} extra chunks"
        )

    def __repr__(self) -> str:
        return (
            f"PKSampler(classes_per_batch={self.classes_per_batch}, "
            f"samples_per_class={self.samples_per_class}, seed={self.seed}, "
            f"small_classes={self.small_classes!r}, n_classes_used={self.n_classes_used}, "
            f"epoch={self.epoch})"
        )

    def _epoch_plan(self) -> Tensor:
        """The current epoch's (B, P·K) batches, built once per epoch and cached."""
        if self._plan is None or self._plan[0] != self.epoch:
            self._plan = (self.epoch, self._build_plan(self.epoch))
        return self._plan[1]

    def _build_plan(self, epoch: int) -> Tensor:
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        P, K = self.classes_per_batch, self.samples_per_class

        # 1. Images shuffled within their class: a random permutation, then a stable sort
        # by class keeps the random order inside each class.
        perm = torch.randperm(self.n_images_used, generator=generator)  # (M,)
        order = torch.sort(self._class_of[perm], stable=True).indices  # (M,)
        grouped = self._images[perm[order]]  # (M,) images, class by class, shuffled

        # 2. Chunk j of a class of m chunks at a random time in [j/m, (j+1)/m).
        chunk_class = torch.repeat_interleave(torch.arange(len(self._chunks)), self._chunks)  # (T,)
        j = torch.arange(self.n_chunks) - self._chunk_starts[chunk_class]  # (T,)
        jitter = torch.rand(self.n_chunks, generator=generator, dtype=torch.float64)  # (T,)
        time = (j + jitter) / self._chunks[chunk_class]  # (T,)
        stream = chunk_class[torch.argsort(time)].tolist()  # T class ranks, in time order

        # 3. Batches of P distinct classes, in time order.
        batch_classes, batch_chunks = self._pack(stream, generator)  # (B·P,), (B·P,)
        classes = torch.tensor(batch_classes, dtype=torch.int64).view(-1, P)  # (B, P)
        chunks = torch.tensor(batch_chunks, dtype=torch.int64).view(-1, P)  # (B, P)
        extra = chunks < 0  # (B, P) extra chunks: a random chunk of their class
        n_chunks = self._chunks[classes[extra]]  # (E,)
        u = torch.rand(len(n_chunks), generator=generator, dtype=torch.float64)  # (E,)
        chunks[extra] = (u * n_chunks).long().clamp_(max=n_chunks - 1)

        # Image i of chunk j of a class of c images: its (j·K + i) mod c-th shuffled image.
        slot = chunks[:, :, None] * K + torch.arange(K)  # (B, P, K)
        counts = self._counts[classes][:, :, None]  # (B, P, 1)
        position = self._starts[classes][:, :, None] + slot % counts  # (B, P, K)
        return grouped[position].view(len(classes), P * K)  # (B, P·K)

    def _pack(self, stream: list[int], generator: torch.Generator) -> tuple[list[int], list[int]]:
        """Pack a time-ordered stream of class ranks into batches of P distinct classes.

        Returns:
            The class rank and chunk number of every chunk of every batch, batch after
            batch (B·P each); chunk number -1 marks an extra chunk.
        """
        P = self.classes_per_batch
        n_classes = len(self._chunks)
        next_chunk = [0] * n_classes
        out_classes: list[int] = []
        out_chunks: list[int] = []
        current: list[int] = []
        in_batch: set[int] = set()
        waiting: dict[int, int] = {}  # class rank -> chunks deferred, oldest first

        def add(c: int) -> None:
            current.append(c)
            in_batch.add(c)
            out_classes.append(c)
            out_chunks.append(next_chunk[c])
            next_chunk[c] += 1

        def close() -> None:
            current.clear()
            in_batch.clear()

        def add_waiting() -> None:
            # At most P - 1 waiting classes are in the batch, so 2P keys are enough.
            for c in list(islice(waiting, 2 * P)):
                if len(current) == P:
                    return
                if c not in in_batch:
                    add(c)
                    waiting[c] -= 1
                    if waiting[c] == 0:
                        del waiting[c]

        def add_extra() -> None:
            while len(current) < P:
                draws = torch.randint(n_classes, (2 * (P - len(current)) + 8,), generator=generator)
                for c in draws.tolist():
                    if len(current) == P:
                        break
                    if c not in in_batch:
                        current.append(c)
                        in_batch.add(c)
                        out_classes.append(c)
                        out_chunks.append(-1)

        for c in stream:
            if c in in_batch:
                waiting[c] = waiting.get(c, 0) + 1
                continue
            add(c)
            while len(current) == P:
                close()
                add_waiting()
        while waiting or current:
            add_waiting()
            add_extra()
            close()
        return out_classes, out_chunks
