"""A run directory: its own files, one writer at a time, and starts that lose nothing.

A run directory holds :data:`RUN_FILES`. While a training writes them it holds the lock
file ``.lock`` (its process id); a second training into the same folder is refused
while that process lives, and a lock left by a dead process is taken over. A start
never changes an existing run unless asked: ``resume`` continues it, ``overwrite``
replaces it. A new start sets the files it replaces aside (``.replaced/``) until its
first checkpoint, and puts them back if it fails before: a start that fails leaves the
folder as it found it. Temporary files that a kill during a save left behind are
removed when the run next starts.

Example:
    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> with RunLock(run):
    ...     (run / LOCK).exists()
    True
    >>> (run / LOCK).exists()
    False
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import TracebackType

from sampling_matters.data.cache import running

__all__ = [
    "LOCK",
    "RUN_FILES",
    "RunInUseError",
    "RunLock",
    "check_folder",
    "check_output",
    "check_start",
    "discard",
    "holds_run",
    "put_back",
    "remove_orphans",
    "set_aside",
]

RUN_FILES = (
    "config.yaml",
    "best.pt",
    "last.pt",
    "log.csv",
    "metrics.json",
    "skipped_images.txt",
)
"""The files a training writes into its run directory."""

LOCK = ".lock"
"""The lock file of a run directory being trained (it holds the process id)."""


class RunInUseError(RuntimeError):
    """Another live process is training into the run directory."""


TRAINED = ("best.pt", "last.pt", "metrics.json")
"""A folder with one of these holds a run that trained (a start that failed before its
first checkpoint leaves at most ``config.yaml`` and ``log.csv``, which it removes)."""

ASIDE = ".replaced"
"""Where a start keeps the files it replaces until its first checkpoint."""


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run that trained (a checkpoint or its metrics)."""
    return any((folder / name).exists() for name in TRAINED)


def check_start(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a start that would lose or mix up a run; changes nothing.

    Raises:
        ValueError: ``resume`` and ``overwrite`` together; ``out`` a file; ``out`` holding
            a run and neither ``resume`` nor ``overwrite``.
        RunInUseError: a live process trains into ``out``.
    """
    if resume and overwrite:
        raise ValueError("resume and overwrite contradict each other: choose one")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a run directory")
    check_folder(out, "the run directory")
    holder = _lock_holder(out / LOCK)
    if holder is not None:
        raise RunInUseError(_in_use(out, holder))
    if not resume and not overwrite and holds_run(out):
        found = ", ".join(name for name in RUN_FILES if (out / name).exists())
        raise ValueError(
            f"{out} already holds a run ({found}); continue it with --resume {out}, "
            "replace it with --overwrite, or choose another --out"
        )
    if resume and not (out / "last.pt").exists() and holds_run(out):
        raise ValueError(
            f"{out} has no last.pt to resume from, and resuming would start it again and "
            "replace its best.pt and metrics.json; replace it with --overwrite instead"
        )


def check_output(path: Path, what: str) -> None:
    """Refuse to write ``path`` unless it is a new or regular file outside a run's own.

    Args:
        path: the file a command is about to write.
        what: how the message names it (``"--out"``, ``"--sheet"``).

    Raises:
        ValueError: ``path`` is empty, a folder, a link, a device or pipe, inside a
            "folder" that is a file, or one of a run's own files.
    """
    if not str(path).strip():
        raise ValueError(f"{what} is empty: give a file name")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder: give a file name")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise ValueError(f"{what} {path} is not a regular file (a link, a device or a pipe)")
    check_folder(path.parent, what)
    if path.name in (*RUN_FILES, LOCK) and (path.parent / "config.yaml").exists():
        raise ValueError(
            f"{what} {path} would overwrite the run's own {path.name}: choose another file name"
        )


def check_folder(folder: Path, what: str) -> None:
    """Refuse a folder to write into when it, or one above it, is a file."""
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{what}: {parent} is a file, not a folder")
            return


def remove_orphans(out: Path) -> list[Path]:
    """Clear what a killed process left: temporaries of its saves, and set-aside files.

    Files set aside by a start that was killed before its first checkpoint are put
    back (that start never became a run); set aside by one that checkpointed, they go.
    Call it while holding the lock. Returns the temporaries removed.
    """
    orphans = [tmp for name in RUN_FILES for tmp in out.glob(f".{name}.*") if tmp.is_file()]
    for tmp in orphans:
        tmp.unlink(missing_ok=True)
    if (out / ASIDE).is_dir() and (out / "last.pt").exists():
        discard(out)
    elif (out / ASIDE).is_dir():
        put_back(out)
    return orphans


def set_aside(out: Path) -> None:
    """Move the run files in ``out`` to ``out/.replaced/`` for a new start to replace.

    They stay there until the new run's first checkpoint (:func:`discard`), or come back
    if it fails before (:func:`put_back`).
    """
    aside = out / ASIDE
    aside.mkdir(exist_ok=True)
    for name in RUN_FILES:
        if (out / name).exists():
            os.replace(out / name, aside / name)


def put_back(out: Path) -> None:
    """Undo a failed start: remove the files it wrote, move the set-aside ones back."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    aside = out / ASIDE
    if aside.is_dir():
        for name in RUN_FILES:
            if (aside / name).exists():
                os.replace(aside / name, out / name)
        shutil.rmtree(aside, ignore_errors=True)


def discard(out: Path) -> None:
    """The new run has its first checkpoint: drop the files it replaced."""
    shutil.rmtree(out / ASIDE, ignore_errors=True)


class RunLock:
    """Hold ``RUN/.lock`` for the duration of a ``with`` block.

    Raises:
        RunInUseError: on entry, when a live process holds the lock.
    """

    def __init__(self, out: Path) -> None:
        self.path = out / LOCK

    def __enter__(self) -> RunLock:
        for _ in range(3):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _lock_holder(self.path)
                if holder is not None:
                    raise RunInUseError(_in_use(self.path.parent, holder)) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(handle, "w") as lock:
                lock.write(f"{os.getpid()}\n")
            return self
        raise RunInUseError(f"could not take the lock {self.path}: another process keeps taking it")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if _read_pid(self.path) == os.getpid():
            self.path.unlink(missing_ok=True)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _lock_holder(path: Path) -> int | None:
    """The live process that holds the lock ``path``, or None (no lock, or a stale one)."""
    pid = _read_pid(path)
    return pid if pid is not None and running(pid) else None


def _in_use(out: Path, pid: int) -> str:
    return (
        f"{out} is being trained by process {pid} (lock file {out / LOCK}); wait for it to end "
        f"or stop it — if no such training runs, delete {out / LOCK}"
    )
