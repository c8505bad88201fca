"""The one data set type every loader returns: images with class labels.

Images are either files (decoded with Pillow on access, for photo benchmarks) or a
uint8 array held in memory (for the small offline sets built by ``prepare``). Labels
are remapped to 0 … C−1 within the data set, in the order of ``class_names``; an item
is ``(image, label, index)`` so that per-image state (the margin loss's β⁽ⁱᵐᵍ⁾) can be
looked up by index.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["ImageDataset", "Kind", "Transform"]

Kind = Literal["photo", "glyph"]
"""What the images are: photos (crop and flip them) or glyphs (jitter, never flip)."""

Transform = Callable[[Image.Image], Tensor]
"""Turns a decoded image into a (C, H, W) float tensor."""


class ImageDataset(Dataset[tuple[Tensor, int, int]]):
    """Labelled images; ``dataset[i]`` is ``(image, label, i)``.

    Args:
        images: file paths (decoded on access), or a uint8 array (N, H, W) of grey
            images or (N, H, W, 3) of RGB images.
        labels: (N,) class ids of any values; remapped to 0 … C−1 following
            ``class_names`` order when given, else sorted order.
        kind: ``"photo"`` or ``"glyph"``; decides the augmentation.
        class_names: the name of each class id, in the order of the ids of ``labels``
            (``class_names[j]`` names the j-th smallest id). Defaults to the ids as text.
        transform: turns each decoded image into a tensor; ``None`` gives a (C, H, W)
            float tensor in [0, 1].

    Attributes:
        labels: (N,) int64 labels in [0, C).
        class_names: the C class names.
        kind: the kind of image.
    """

    def __init__(
        self,
        images: Sequence[Path] | npt.NDArray[np.uint8],
        labels: Sequence[int] | npt.NDArray[np.integer] | Tensor,
        *,
        kind: Kind,
        class_names: Sequence[str] | None = None,
        transform: Transform | None = None,
    ) -> None:
        ids = torch.as_tensor(np.asarray(labels)).long()
        if ids.dim() != 1 or len(ids) != len(images):
            raise ValueError(
                f"need one label per image: got {tuple(ids.shape)} labels for {len(images)} images"
            )
        if kind not in ("photo", "glyph"):
            raise ValueError(f"kind must be 'photo' or 'glyph', got {kind!r}")
        unique, self.labels = torch.unique(ids, return_inverse=True)
        if class_names is not None and len(class_names) != len(unique):
            raise ValueError(f"{len(class_names)} class names for {len(unique)} classes")
        self.class_names = (
            list(class_names) if class_names is not None else [str(int(u)) for u in unique]
        )
        self.images = images
        self.kind: Kind = kind
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        image = self.image(index)
        tensor = self.transform(image) if self.transform is not None else _to_tensor(image)
        return tensor, int(self.labels[index]), index

    def image(self, index: int) -> Image.Image:
        """The decoded image ``index`` (RGB for photos and colour arrays, else grey).

        Raises:
            ValueError: the file cannot be read or decoded; it names the file and why.
        """
        if isinstance(self.images, np.ndarray):
            return Image.fromarray(self.images[index])
        path = self.images[index]
        try:
            with Image.open(path) as opened:
                return opened.convert("RGB" if self.kind == "photo" else "L")
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
            raise ValueError(
                f"cannot read image {path}: {error or type(error).__name__}"
            ) from error

    def with_transform(self, transform: Transform | None) -> ImageDataset:
        """The same images and labels with another transform."""
        copy = ImageDataset.__new__(ImageDataset)
        copy.__dict__.update(self.__dict__)
        copy.transform = transform
        return copy

    def with_kind(self, kind: Kind) -> ImageDataset:
        """The same images and labels, decoded and augmented as ``kind``."""
        if kind not in ("photo", "glyph"):
            raise ValueError(f"kind must be 'photo' or 'glyph', got {kind!r}")
        copy = self.with_transform(self.transform)
        copy.kind = kind
        return copy

    def select(self, indices: Sequence[int] | Tensor) -> ImageDataset:
        """The items at ``indices``, labels remapped to the classes that remain."""
        index = torch.as_tensor(indices, dtype=torch.long)
        if isinstance(self.images, np.ndarray):
            images: Sequence[Path] | npt.NDArray[np.uint8] = self.images[index.numpy()]
        else:
            images = [self.images[i] for i in index.tolist()]
        labels = self.labels[index]
        names = [self.class_names[int(c)] for c in torch.unique(labels)]
        return ImageDataset(
            images, labels, kind=self.kind, class_names=names, transform=self.transform
        )

    @property
    def n_classes(self) -> int:
        """C, the number of classes."""
        return len(self.class_names)


def _to_tensor(image: Image.Image) -> Tensor:
    array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array)
    return tensor[None] if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()
