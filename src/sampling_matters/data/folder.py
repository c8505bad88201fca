"""The ``folder:PATH`` data spec: one sub-folder of images per class.

Classes are the sub-folders of ``PATH``, sorted by name; the zero-shot protocol trains
on the first ⌈C · train_fraction⌉ classes (the first half by default) and tests on the
rest, which the model never sees. Unless told, the kind of image is inferred from a
sample of the files (:func:`infer_kind`): small single-channel images on a plain
background are glyphs, anything else photos. Images are the files directly inside a class folder
with an image extension (jpg, jpeg, png, bmp, gif, webp, tif, tiff; any case), sorted
by name. Hidden entries (names starting with ``.``) are ignored; a class folder with
no image is skipped with a warning that names it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from sampling_matters.data.datasets import ImageDataset, Kind, Transform

__all__ = [
    "GLYPH_MAX_SIZE",
    "IMAGE_EXTENSIONS",
    "KIND_REASONS",
    "SPLITS",
    "check_split",
    "infer_kind",
    "list_images",
    "load_folder",
    "split_classes",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
"""File extensions counted as images (compared in lower case)."""

GLYPH_MAX_SIZE = 128
"""Glyphs are at most this many pixels on their longer side."""

SPLITS = ("train", "test", "all")
"""The class splits: the first part of the classes (train), the rest (test), or all."""

T = TypeVar("T")


def split_classes(classes: Sequence[T], split: str, train_fraction: float = 0.5) -> list[T]:
    """The classes of ``split``: the first ⌈C · train_fraction⌉ train, the rest test.

    With the default fraction of one half this is the paper's protocol (CUB-200-2011
    100 / 100 classes, CARS196 98 / 98); an odd class count gives training the extra one.

    Args:
        classes: all C classes, in order.
        split: ``"train"``, ``"test"`` or ``"all"``.
        train_fraction: the fraction of classes to train on, in (0, 1).

    Returns:
        The classes of the split, in order.

    Example:
        >>> split_classes(["a", "b", "c", "d", "e"], "train"), split_classes("abcde", "test")
        (['a', 'b', 'c'], ['d', 'e'])
    """
    check_split(split, SPLITS)
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    n_train = math.ceil(round(len(classes) * train_fraction, 9))
    chosen = {"train": classes[:n_train], "test": classes[n_train:], "all": classes}[split]
    return list(chosen)


def check_split(split: str, accepted: Sequence[str]) -> None:
    """Raise ``ValueError`` unless ``split`` is one of ``accepted``."""
    if split not in accepted:
        raise ValueError(f"split must be one of {', '.join(map(repr, accepted))}; got {split!r}")


def list_images(folder: Path) -> list[Path]:
    """The image files directly inside ``folder`` (by extension, any case), sorted by name."""
    return sorted(
        entry
        for entry in folder.iterdir()
        if entry.is_file()
        and not entry.name.startswith(".")
        and entry.suffix.lower() in IMAGE_EXTENSIONS
    )


def load_folder(
    path: str | Path,
    split: str,
    *,
    train_fraction: float = 0.5,
    kind: Kind | None = None,
    transform: Transform | None = None,
) -> ImageDataset:
    """Load the classes of ``split`` from a folder with one sub-folder of images per class.

    Args:
        path: the folder whose sub-folders are the classes.
        split: ``"train"`` (the first ⌈C · train_fraction⌉ classes by name), ``"test"``
            (the others) or ``"all"``.
        train_fraction: the fraction of classes used for training, in (0, 1).
        kind: ``"photo"`` or ``"glyph"``, which decides the augmentation; None infers
            it from the images of all classes (:func:`infer_kind`), the same for every
            split.
        transform: the dataset's transform (``None``: a [0, 1] tensor).

    Returns:
        The images of the split's classes; ``class_names`` are the folder names.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        NotADirectoryError: ``path`` is not a folder.
        ValueError: no class sub-folder, or fewer than two classes with images in the
            split.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> folder = tempfile.TemporaryDirectory()
        >>> root = Path(folder.name)
        >>> for name in ["cat", "dog", "eel", "fox"]:
        ...     (root / name).mkdir()
        ...     for i in range(3):
        ...         Image.new("RGB", (8, 8)).save(root / name / f"{i}.png")
        >>> train = load_folder(root, "train")
        >>> train.class_names, len(train)
        (['cat', 'dog'], 6)
        >>> folder.cleanup()
    """
    classes = _scan(Path(path))
    chosen = split_classes(classes, split, train_fraction)
    if len(chosen) < 2:
        raise ValueError(
            f"the {split!r} split of {path} has {len(chosen)} class(es) of the {len(classes)} "
            f"with images (train_fraction={train_fraction}); metric learning needs at least 2: "
            "add class folders or change train_fraction"
        )
    if kind is None:
        kind = infer_kind([files[0] for _, files in classes])
    images = [image for _, files in chosen for image in files]
    labels = [label for label, (_, files) in enumerate(chosen) for _ in files]
    names = [name for name, _ in chosen]
    return ImageDataset(images, labels, kind=kind, class_names=names, transform=transform)


def _scan(root: Path) -> list[tuple[str, list[Path]]]:
    """Every class folder of ``root`` that holds images, with its images, sorted by name."""
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder: expected one sub-folder per class")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(
            f"{root} has no class sub-folder: expected {root}/<class name>/<image files>"
        )
    classes = [(folder.name, list_images(folder)) for folder in folders]
    empty = [name for name, files in classes if not files]
    if empty:
        warnings.warn(
            f"{root}: skipped {len(empty)} of {len(classes)} class folders with no image "
            f"(extensions {', '.join(sorted(IMAGE_EXTENSIONS))}): {', '.join(empty[:5])}"
            + (", …" if len(empty) > 5 else ""),
            stacklevel=3,
        )
    return [(name, files) for name, files in classes if files]


def infer_kind(paths: Sequence[Path], sample: int = 32) -> Kind:
    """Glyph or photo, from up to ``sample`` of ``paths`` (spread evenly).

    The images are glyphs when every readable one of the sample is small (at most
    :data:`GLYPH_MAX_SIZE` pixels on its longer side), single-channel (grey, or colour
    with equal channels) and on a plain background (nine tenths of its border within 16
    grey levels of the border's median); otherwise they are photos
    (:data:`KIND_REASONS` says so in words).

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> folder = Path(tempfile.mkdtemp())
        >>> Image.new("L", (32, 32), 255).save(folder / "a.png")
        >>> Image.new("RGB", (300, 200), "teal").save(folder / "b.png")
        >>> infer_kind([folder / "a.png"]), infer_kind([folder / "a.png", folder / "b.png"])
        ('glyph', 'photo')
    """
    step = max(1, len(paths) // sample)
    looks = [_looks_like_glyph(path) for path in list(paths)[::step][:sample]]
    readable = [look for look in looks if look is not None]
    return "glyph" if readable and all(readable) else "photo"


KIND_REASONS: dict[str, str] = {
    "glyph": f"its images are small (<= {GLYPH_MAX_SIZE} px), single-channel and on a plain "
    "background",
    "photo": f"its images are not all small (<= {GLYPH_MAX_SIZE} px), single-channel and on a "
    "plain background",
}
"""Why :func:`infer_kind` chose a kind, in words."""


def _looks_like_glyph(path: Path) -> bool | None:
    """Whether one image looks like a glyph; None when it cannot be read."""
    try:
        with Image.open(path) as opened:
            if max(opened.size) > GLYPH_MAX_SIZE:
                return False
            pixels = np.asarray(opened.convert("RGB"), dtype=np.int16)  # (H, W, 3)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    if not (pixels == pixels[..., :1]).all():
        return False  # colour
    grey = pixels[..., 0]
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return bool(np.mean(np.abs(border - np.median(border)) <= 16) >= 0.9)
