"""Data sets by spec: the offline real sets, image folders and the public benchmarks.

A spec names a data set: ``emoji``, ``kanji``, ``fashion-mnist`` (built offline by
``sampling-matters prepare``), ``folder:PATH`` (one sub-folder per class), or a
benchmark in its own on-disk format: ``cub:PATH``, ``cars:PATH``, ``sop:PATH``,
``inshop:PATH`` (splits ``train``, ``query``, ``gallery``), ``lfw:PATH``. Every
loader returns an :class:`~sampling_matters.data.datasets.ImageDataset`; the
zero-shot protocol puts the first half of the classes in ``train`` and the rest in
``test``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sampling_matters.data.offline import OFFLINE_SETS, RECIPES

if TYPE_CHECKING:  # imported on first use: the loaders need Pillow, the ``data`` extra
    from sampling_matters.data.datasets import ImageDataset, Kind

__all__ = [
    "OFFLINE",
    "SPEC_KINDS",
    "ImageDataset",
    "absolute",
    "item_names",
    "kind_reason",
    "load",
]

OFFLINE = OFFLINE_SETS
"""Data sets that ``prepare`` builds from registry packages (the recipes of
:mod:`sampling_matters.data.offline`)."""

_LOADERS: dict[str, tuple[str, str]] = {
    "folder": ("folder", "load_folder"),
    "cub": ("benchmarks", "load_cub"),
    "cars": ("benchmarks", "load_cars"),
    "sop": ("benchmarks", "load_sop"),
    "inshop": ("benchmarks", "load_inshop"),
}
"""KIND -> the module of ``sampling_matters.data`` and its function that loads ``KIND:PATH``
(imported on first use)."""

SPEC_KINDS = tuple(_LOADERS)
"""Specs of the form ``KIND:PATH`` that :func:`load` takes."""

_PAIRS_KIND = "lfw"
"""The ``KIND:PATH`` spec of verification pairs (LFW), not classes to split."""

_SPLIT_NAMES = {("inshop", "test"): "query"}
"""(KIND, split) -> the split its loader calls so: In-Shop's test split is its query set."""


def __getattr__(name: str) -> Any:
    """``ImageDataset`` and ``Kind``, from :mod:`sampling_matters.data.datasets` on first use.

    So that ``sampling_matters.data.packages`` and ``.cache`` (which the command line
    imports for every command) import without Pillow.
    """
    if name in ("ImageDataset", "Kind"):
        from sampling_matters.data import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(spec: str, split: str, *, cache_dir: Path | None = None) -> ImageDataset:
    """The ``split`` of the data set ``spec``.

    Args:
        spec: ``emoji``, ``kanji``, ``fashion-mnist`` or ``KIND:PATH`` with KIND in
            :data:`SPEC_KINDS`.
        split: ``train`` or ``test`` (``all`` for offline sets and folders; In-Shop
            takes ``train``, ``query`` or ``gallery``, and ``test`` means ``query``).
        cache_dir: where offline sets are cached.

    Returns:
        The data set, without a transform.

    Raises:
        ValueError: an unknown spec, with the accepted forms.
    """
    if spec in RECIPES:
        from sampling_matters.data.offline import load_offline

        return load_offline(spec, split, cache_dir=cache_dir)
    kind, _, path = spec.partition(":")
    if kind not in SPEC_KINDS or not path:
        raise ValueError(
            f"unknown data spec {spec!r}; expected one of {list(RECIPES)} or KIND:PATH "
            f"with KIND in {list(SPEC_KINDS)} ({_PAIRS_KIND}:PATH is for verification pairs)"
        )
    return _loader(kind)(Path(path).expanduser(), _SPLIT_NAMES.get((kind, split), split))


def absolute(spec: str) -> str:
    """``spec`` with its path made absolute (``folder:glyphs`` → ``folder:/home/…/glyphs``).

    A run records it so, and an embedding file's items are absolute paths, so both work
    from any folder.

    Example:
        >>> absolute("kanji")
        'kanji'
    """
    kind, sep, path = spec.partition(":")
    if not sep or kind not in (*SPEC_KINDS, _PAIRS_KIND) or not path:
        return spec
    return f"{kind}:{Path(path).expanduser().absolute()}"


def kind_reason(spec: str, kind: Kind) -> str:
    """Why the data set ``spec`` holds images of ``kind`` (photo or glyph), in words.

    The offline sets have theirs; an image folder's is inferred from a sample of its
    files (:func:`sampling_matters.data.folder.infer_kind`); the public benchmarks hold
    photos.

    Example:
        >>> kind_reason("kanji", "glyph")
        'kanji is a set of glyphs'
    """
    if spec in RECIPES:
        return f"{spec} is a set of {kind}s"
    prefix = spec.partition(":")[0]
    if prefix == "folder":
        from sampling_matters.data.folder import KIND_REASONS

        return KIND_REASONS[kind]
    return f"{prefix} sets are photos"


def _loader(kind: str) -> Callable[[Path, str], ImageDataset]:
    module, name = _LOADERS[kind]
    loader: Callable[[Path, str], ImageDataset] = getattr(
        importlib.import_module(f"sampling_matters.data.{module}"), name
    )
    return loader


def item_names(spec: str, split: str, dataset: ImageDataset) -> list[str]:
    """A name per item that finds its image again: a file path, or ``spec#split#index``."""
    if isinstance(dataset.images, (list, tuple)):
        return [str(path) for path in dataset.images]
    return [f"{spec}#{split}#{index}" for index in range(len(dataset))]
