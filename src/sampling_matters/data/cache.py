"""The cache of offline data sets: where it lives, and how files enter it whole.

Every file that enters the cache is made in a scratch folder inside it, named
``.build-…`` or ``.download-…`` with the process id, then moved to its final name with
one ``os.replace``. A build or download that is interrupted never leaves a file under a
final name, so a file found there is always whole; the scratch folders that a killed
process left behind are removed by the next run.

A built set is one ``.npz`` file holding ``images`` (uint8, (N, H, W) or (N, H, W, 3)),
``labels`` (int64, (N,), classes 0 … C−1 in the order of the zero-shot split),
``class_names`` (C strings) and ``metadata`` (a JSON string: sources, versions,
licences, counts).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "ENV_VAR",
    "BuiltSet",
    "build_once",
    "cache_root",
    "fetch_once",
    "load_metadata",
    "load_set",
    "running",
    "save_set",
    "write_atomic",
    "write_text_atomic",
]

ENV_VAR = "SAMPLING_MATTERS_CACHE"
"""The environment variable that moves the cache."""

_BUILD = ".build"
_DOWNLOAD = ".download"


@dataclass(frozen=True)
class BuiltSet:
    """One built data set, as stored in the cache.

    Attributes:
        images: (N, H, W) grey or (N, H, W, 3) RGB uint8 images.
        labels: (N,) int64 class ids in [0, C), numbered in split order (the first
            classes are the training classes).
        class_names: the C class names, ``class_names[c]`` naming class c.
        metadata: sources, versions, licences and counts, JSON-serialisable.
    """

    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int64]
    class_names: list[str]
    metadata: dict[str, Any]


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder (absolute): ``cache_dir``, else ``$SAMPLING_MATTERS_CACHE``, else default.

    The default is ``$XDG_CACHE_HOME/sampling-matters``, that is
    ``~/.cache/sampling-matters`` where ``XDG_CACHE_HOME`` is unset. The folder is not
    created here.

    Example:
        >>> cache_root("/data/cache").as_posix()
        '/data/cache'
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser().absolute()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser().absolute()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().absolute() / "sampling-matters"


def write_atomic(path: Path, write: Callable[[str], object]) -> None:
    """Call ``write(temporary)`` on a file beside ``path``, then rename it over ``path``.

    A reader never sees a half-written ``path``, and a failed write leaves no temporary.
    """
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~_UMASK)  # as a plain open() would (mkstemp: 0o600)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _read_umask() -> int:
    """The process's umask, read once at import (setting it is process-wide)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`write_atomic`)."""
    write_atomic(path, lambda name: Path(name).write_text(text, encoding="utf-8"))


def build_once(final: Path, build: Callable[[Path], Path]) -> bool:
    """Make ``final`` with ``build`` unless it exists; never leave a part-made file.

    Args:
        final: the file to make.
        build: given an empty scratch folder beside ``final``, writes the file there and
            returns its path; the scratch folder is removed afterwards, whatever happens.

    Returns:
        True if ``final`` was built now, False if it was already there.
    """
    if final.exists():
        return False
    _in_scratch(final.parent, f"{_BUILD}-{final.name}", build, final)
    return True


def fetch_once(folder: Path, pattern: str, download: Callable[[Path], Path]) -> Path:
    """A downloaded file in ``folder`` matching ``pattern``, downloading it if none is.

    Args:
        folder: the downloads folder.
        pattern: a glob for the file's name, e.g. ``"fonts-klee_*.deb"``; the first match
            in name order is reused.
        download: given an empty scratch folder in ``folder``, downloads the file there
            and returns its path; it then moves to ``folder`` under the same name.

    Returns:
        The path of the file in ``folder``.
    """
    found = sorted(folder.glob(pattern))
    if found:
        return found[0]
    return _in_scratch(folder, _DOWNLOAD, download, None)


def _in_scratch(
    parent: Path, prefix: str, make: Callable[[Path], Path], final: Path | None
) -> Path:
    """Run ``make`` in a new scratch folder; move what it returns to ``final``.

    With ``final`` None, the file keeps its name and moves to ``parent``. Returns where
    the file now is.
    """
    parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(parent, prefix)
    scratch = Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=parent))
    try:
        made = make(scratch)
        target = final if final is not None else parent / made.name
        os.replace(made, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _remove_abandoned(parent: Path, prefix: str) -> None:
    """Remove scratch folders ``prefix-PID-…`` whose process no longer runs."""
    for entry in parent.glob(f"{prefix}-*"):
        pid = entry.name[len(prefix) + 1 :].split("-", 1)[0]
        if entry.is_dir() and pid.isdigit() and not running(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def running(pid: int) -> bool:
    """Whether a process with this id runs (on this machine)."""
    if not 0 < pid < 2**31:  # 0 and negatives name process groups
        return False
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by someone else
        pass
    return True


def save_set(path: Path, built: BuiltSet) -> Path:
    """Write ``built`` to ``path`` as a compressed ``.npz`` and return ``path``."""
    np.savez_compressed(
        path,
        images=built.images,
        labels=built.labels,
        class_names=np.asarray(built.class_names, dtype=str),
        metadata=np.asarray(json.dumps(built.metadata, ensure_ascii=False)),
    )
    return path


def load_set(path: Path) -> BuiltSet:
    """Read a set that :func:`save_set` wrote."""
    with np.load(path, allow_pickle=False) as stored:
        return BuiltSet(
            images=stored["images"],
            labels=stored["labels"].astype(np.int64),
            class_names=[str(name) for name in stored["class_names"]],
            metadata=json.loads(str(stored["metadata"])),
        )


def load_metadata(path: Path) -> dict[str, Any]:
    """Read only the metadata of a set that :func:`save_set` wrote."""
    with np.load(path, allow_pickle=False) as stored:
        metadata: dict[str, Any] = json.loads(str(stored["metadata"]))
    return metadata
