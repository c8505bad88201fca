"""The index folder: its files, written atomically, and read back with checks.

An index folder holds::

    meta.json     what the index is (below); its presence marks the folder as an index
    index.faiss   the faiss index (faiss.write_index)
    ids.npy       (N,) int64: 0 … N−1, the ids search returns, in order of addition
    labels.npy    (N,) int64: each vector's class label
    items.json    N strings: each vector's image (a file path or ``spec#split#index``), or ""

``meta.json`` holds ``format`` (:data:`FORMAT`), ``dim`` (D), ``size`` (N), ``factory``
and ``parameters`` (how faiss built and searches it), ``metric``, ``faiss_version`` (of
the faiss that wrote it), ``run`` (the run folder whose model embedded the vectors, or
null), ``checkpoint_sha256`` (sha256 of that run's ``best.pt``, or null), ``config``
(that run's settings, or null), ``kind`` (how the run decodes images: ``photo`` or
``glyph``, or null) and ``sources`` (what was added, in order); ``calibration``, where
present, is what the build measured to choose ``parameters``
(:class:`~sampling_matters.index.calibrate.Calibration`, or null when nothing was).

A folder is written whole into a hidden temporary folder beside it, then renamed into
place (:func:`write_folder`), so a reader never sees a part-written index and a failure
leaves nothing behind. Replacing an existing index (``--append``) renames the old
folder aside first and removes it once the new one is in place. Reading
(:func:`read_folder`) checks that the files agree with each other and with
``meta.json``; the faiss index is memory-mapped where faiss can (``IO_FLAG_MMAP_IFC``
for flat codes, ``IO_FLAG_MMAP`` for inverted lists), else read into memory. No file is
unpickled: numbers are ``.npy`` read with ``allow_pickle=False``, text is JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sampling_matters.index.factory import _faiss_reason, import_faiss

__all__ = [
    "FILES",
    "FORMAT",
    "META",
    "META_KEYS",
    "Parts",
    "is_index_folder",
    "read_faiss",
    "read_folder",
    "write_folder",
]

FORMAT = "sampling-matters index 1"
"""``meta.json``'s ``format``: the layout this module writes and reads."""

META = "meta.json"
"""The file that marks a folder as an index folder."""

FILES = ("index.faiss", "ids.npy", "labels.npy", "items.json")
"""The files beside ``meta.json``."""

META_KEYS: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "dim": int,
    "size": int,
    "factory": str,
    "parameters": str,
    "metric": str,
    "faiss_version": str,
    "run": (str, type(None)),
    "checkpoint_sha256": (str, type(None)),
    "config": (dict, type(None)),
    "kind": (str, type(None)),
    "sources": list,
}
"""The keys of ``meta.json`` and their JSON types."""


@dataclass(frozen=True)
class Parts:
    """What an index folder holds, read and checked.

    Attributes:
        faiss: the faiss index.
        ids: (N,) int64, 0 … N−1.
        labels: (N,) int64.
        items: N strings.
        meta: ``meta.json``'s content.
        mapped: whether ``faiss`` reads its vectors from the file through a memory map
            (then it must not be changed: faiss aborts the process on a write to a map).
    """

    faiss: Any
    ids: npt.NDArray[np.int64]
    labels: npt.NDArray[np.int64]
    items: list[str]
    meta: dict[str, Any]
    mapped: bool


def is_index_folder(path: Path) -> bool:
    """Whether ``path`` is a folder holding ``meta.json`` (an index folder, maybe damaged)."""
    return path.is_dir() and (path / META).is_file()


def write_folder(folder: Path, parts: Parts, *, replace: bool = False) -> None:
    """Write ``parts`` to ``folder`` atomically: a temporary folder beside it, renamed.

    Args:
        folder: the index folder to write.
        parts: its content (``mapped`` is ignored).
        replace: replace ``folder`` if it is an index folder already.

    Raises:
        ValueError: ``folder`` exists (and ``replace`` is False, or it is no index
            folder), or its parent is a file.
    """
    _check_target(folder, replace)
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.writing-"))
    try:
        _write_files(scratch, parts)
        os.chmod(scratch, 0o777 & ~_umask())  # as a plain mkdir would (mkdtemp: 0o700)
        _swap_in(scratch, folder)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def _check_target(folder: Path, replace: bool) -> None:
    for parent in folder.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"cannot write the index {folder}: {parent} is a file")
            break
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise ValueError(f"{folder} exists and is not a folder: choose another path")
    if folder.exists() and not is_index_folder(folder):
        raise ValueError(f"{folder} exists and is not an index folder: choose a new path")
    if folder.exists() and not replace:
        raise ValueError(
            f"{folder} holds an index already: add to it with --append, or choose a new path"
        )


def _write_files(scratch: Path, parts: Parts) -> None:
    faiss = import_faiss()
    try:
        faiss.write_index(parts.faiss, str(scratch / "index.faiss"))
    except RuntimeError as error:
        raise ValueError(f"faiss could not write the index: {_faiss_reason(error)}") from None
    np.save(scratch / "ids.npy", np.ascontiguousarray(parts.ids, dtype=np.int64))
    np.save(scratch / "labels.npy", np.ascontiguousarray(parts.labels, dtype=np.int64))
    (scratch / "items.json").write_text(json.dumps(parts.items), encoding="utf-8")
    text = json.dumps(parts.meta, indent=2, sort_keys=False)
    (scratch / META).write_text(text + "\n", encoding="utf-8")  # last: marks it complete


def _swap_in(scratch: Path, folder: Path) -> None:
    """Rename ``scratch`` to ``folder``; an old ``folder`` is renamed aside, then removed."""
    if not folder.exists():
        os.rename(scratch, folder)  # fails if another writer got there first
        return
    old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old-"))
    os.rename(folder, old / "index")
    try:
        os.rename(scratch, folder)
    except OSError:
        os.rename(old / "index", folder)  # put the old one back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_folder(folder: Path, *, mmap: bool = True) -> Parts:
    """The checked content of an index folder.

    Args:
        folder: an index folder (written by :func:`write_folder`).
        mmap: memory-map the faiss index where faiss can (else read it into memory).

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: it is no index folder, or a file is missing, unreadable, or
            disagrees with ``meta.json`` (the message names the file and what is wrong).
    """
    if not folder.exists():
        raise FileNotFoundError(f"index {folder} does not exist")
    if not is_index_folder(folder):
        raise ValueError(
            f"{folder} is not an index folder (it has no {META}): build one with "
            "sampling-matters index"
        )
    meta = _read_meta(folder)
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"index {folder} is incomplete: it lacks {', '.join(missing)}")
    index, mapped = read_faiss(folder / "index.faiss", mmap=mmap)
    ids, labels = _read_ints(folder, "ids.npy"), _read_ints(folder, "labels.npy")
    items = _read_items(folder)
    parts = Parts(index, ids, labels, items, meta, mapped)
    _check_agreement(folder, parts)
    return parts


def read_faiss(path: Path, *, mmap: bool) -> tuple[Any, bool]:
    """A faiss index file, memory-mapped if ``mmap`` and faiss can; and whether it is.

    Raises:
        ValueError: faiss cannot read the file.
    """
    faiss = import_faiss()
    flags = [getattr(faiss, "IO_FLAG_MMAP_IFC", None), faiss.IO_FLAG_MMAP] if mmap else []
    for flag in [f for f in flags if f is not None]:
        try:
            index = faiss.read_index(str(path), flag)
        except RuntimeError:
            continue  # this index type cannot be mapped that way: try the next
        return index, _is_mapped(path)
    try:
        return faiss.read_index(str(path)), False
    except RuntimeError as error:
        raise ValueError(f"faiss cannot read {path}: {_faiss_reason(error)}") from None


def _is_mapped(path: Path) -> bool:
    """Whether this process maps ``path`` (a read with the mmap flags may still copy it)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return True  # cannot tell: treat the index as mapped, hence read-only
    return str(path.resolve()) in maps


def _read_meta(folder: Path) -> dict[str, Any]:
    path = folder / META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} cannot be read as JSON ({error})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{path}: format {meta.get('format')!r} is not {FORMAT!r}: "
            "rebuild the index with this version of sampling-matters"
        )
    for key, kind in META_KEYS.items():
        if key not in meta:
            raise ValueError(f"{path} lacks {key!r}")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise ValueError(f"{path}: {key!r} has the wrong type ({type(meta[key]).__name__})")
    return meta


def _read_ints(folder: Path, name: str) -> npt.NDArray[np.int64]:
    path = folder / name
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"{path} cannot be read as a .npy array ({error})") from None
    if array.ndim != 1 or array.dtype != np.int64:
        raise ValueError(f"{path} must hold a 1-d int64 array, got {array.dtype} {array.shape}")
    return np.asarray(array)


def _read_items(folder: Path) -> list[str]:
    path = folder / "items.json"
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} cannot be read as JSON ({error})") from None
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError(f"{path} must hold a JSON list of strings")
    return items


def _check_agreement(folder: Path, parts: Parts) -> None:
    """Raise a ValueError naming the first file that disagrees with ``meta.json``."""
    meta, n = parts.meta, parts.meta["size"]
    if int(parts.faiss.d) != meta["dim"]:
        raise ValueError(
            f"index {folder}: index.faiss holds vectors of dimension {parts.faiss.d} but "
            f"meta.json says {meta['dim']}"
        )
    counts = {
        "index.faiss": int(parts.faiss.ntotal),
        "ids.npy": len(parts.ids),
        "labels.npy": len(parts.labels),
        "items.json": len(parts.items),
    }
    for name, count in counts.items():
        if count != n:
            raise ValueError(f"index {folder}: {name} holds {count} entries but meta.json says {n}")
    if not np.array_equal(parts.ids, np.arange(n, dtype=np.int64)):
        raise ValueError(f"index {folder}: ids.npy must hold 0 … N−1 in order")
    version = str(import_faiss().__version__)
    if meta["faiss_version"] != version:
        warnings.warn(
            f"index {folder} was written by faiss {meta['faiss_version']}; this is faiss "
            f"{version} (it reads older files; rebuild the index if searches fail)",
            stacklevel=3,
        )
