"""The files the project writes and reads: written whole, read without running code.

Checkpoints, cached features and embedding files are written with ``torch.save`` to a
temporary file that is renamed into place (:func:`save`), so a kill never leaves half a
file under the final name. They are read with ``torch.load(..., weights_only=True)``
(:func:`load`): tensors and plain data (dicts, lists, numbers, strings) only. A file
that holds anything else (a crafted pickle can run code when it is loaded) is refused
with a ``ValueError``; so is a truncated or corrupted one.

An embedding file (what ``sampling-matters embed`` writes) holds ``embeddings``
(N, D), ``labels`` (N,) and optionally ``items`` (N names):

    >>> import tempfile, torch
    >>> path = Path(tempfile.mkdtemp()) / "gallery.pt"
    >>> save_embeddings(path, torch.eye(3), torch.tensor([0, 1, 1]), ["a", "b", "c"])
    >>> load_embeddings(path).items
    ['a', 'b', 'c']
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.data.cache import write_atomic

__all__ = ["EmbeddingFile", "load", "load_embeddings", "load_mapping", "save", "save_embeddings"]

_LOAD_ERRORS = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    OSError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
    zipfile.BadZipFile,
)


def save(obj: Any, path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically (a temporary file renamed into place)."""
    write_atomic(path, lambda name: torch.save(obj, name))


def load(path: Path, what: str) -> Any:
    """What ``path`` holds, if it is tensors and plain data; never runs code.

    Args:
        path: a file written by ``torch.save``.
        what: how messages name the file (``"checkpoint"``, ``"gallery file"``).

    Raises:
        FileNotFoundError: ``path`` is missing or a folder.
        ValueError: the file holds other objects (refused), or is truncated or corrupted.
    """
    if not path.is_file():
        state = "a folder, not a file" if path.is_dir() else "missing"
        raise FileNotFoundError(f"{what} {path} is {state}")
    try:
        with warnings.catch_warnings():  # torch warns about pickles it will refuse anyway
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except _LOAD_ERRORS as error:
        raise ValueError(_load_failure(path, what, error)) from None


def _load_failure(path: Path, what: str, error: BaseException) -> str:
    message = str(error)
    if isinstance(error, OSError) and error.strerror:
        return f"{what} {path} cannot be read ({error.strerror.lower()})"
    if "Weights only load failed" in message and "GLOBAL" in message:
        return (
            f"refused to load {what} {path}: it holds Python objects other than tensors and "
            "plain data, which could run code when loaded; sampling-matters never writes such "
            "files (was it made by another program?)"
        )
    if "Weights only load failed" in message:
        return (
            f"refused to load {what} {path}: it is not a torch file of tensors and plain data "
            "(a damaged file, or a pickle of another kind)"
        )
    reason = " ".join(message.split()) or type(error).__name__
    reason = reason if len(reason) <= 300 else reason[:299] + "…"
    return f"{what} {path} is truncated, corrupted or not a torch file ({reason})"


def load_mapping(path: Path, what: str, keys: Sequence[str]) -> dict[str, Any]:
    """:func:`load` a file that must hold a dict with ``keys``; a ValueError names what lacks."""
    loaded = load(path, what)
    kind = f"{'an' if what[:1] in 'aeiou' else 'a'} {what}"
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} is not {kind}: it holds a {type(loaded).__name__}, not a dict")
    missing = [key for key in keys if key not in loaded]
    if missing:
        raise ValueError(f"{path} is not {kind}: it lacks {', '.join(map(repr, missing))}")
    return loaded


@dataclass(frozen=True)
class EmbeddingFile:
    """The content of an embedding file.

    Attributes:
        embeddings: (N, D) float32 embeddings.
        labels: (N,) int64 labels.
        items: N item names (file paths or ``spec#split#index``), or None.
    """

    embeddings: Tensor
    labels: Tensor
    items: list[str] | None


def _dense(x: object) -> bool:
    """A tensor with values in memory: not sparse, not a meta tensor."""
    return isinstance(x, Tensor) and x.layout == torch.strided and x.device.type != "meta"


def save_embeddings(
    path: Path, embeddings: Tensor, labels: Tensor, items: Sequence[str] | None = None
) -> None:
    """Write an embedding file atomically (``items`` optional)."""
    content: dict[str, Any] = {"embeddings": embeddings, "labels": labels}
    if items is not None:
        content["items"] = list(items)
    save(content, path)


def load_embeddings(path: Path) -> EmbeddingFile:
    """Read and check an embedding file (``embeddings``, ``labels``, optional ``items``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an embedding file; the message says what is wrong.
    """
    what = "embedding file (as `sampling-matters embed` writes)"
    saved = load_mapping(path, what, ("embeddings", "labels"))
    embeddings, labels, items = saved["embeddings"], saved["labels"], saved.get("items")
    if not _dense(embeddings) or embeddings.dim() != 2 or len(embeddings) == 0:
        raise ValueError(f"{path}: 'embeddings' must be a non-empty dense (N, D) tensor")
    if not embeddings.is_floating_point() or not bool(torch.isfinite(embeddings).all()):
        raise ValueError(f"{path}: 'embeddings' must be finite floating-point values")
    if not bool((embeddings.norm(dim=1) > 0).all()):
        raise ValueError(f"{path}: 'embeddings' holds all-zero rows, which have no direction")
    if not _dense(labels) or labels.shape != (len(embeddings),):
        raise ValueError(f"{path}: 'labels' must be an (N,) tensor, one label per embedding")
    if not _checks.is_integer_dtype(labels):
        raise ValueError(f"{path}: 'labels' must be integer class ids, got {labels.dtype}")
    if items is not None and (
        not isinstance(items, list)
        or len(items) != len(embeddings)
        or not all(isinstance(item, str) for item in items)
    ):
        raise ValueError(f"{path}: 'items' must be a list of N strings, one per embedding")
    return EmbeddingFile(embeddings.float(), labels.long(), items)
