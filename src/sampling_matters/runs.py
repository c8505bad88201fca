"""A run directory: its own files, one writer at a time, and starts that lose nothing.

A run directory holds :data:`RUN_FILES`. While a training writes them it holds the lock
file ``.lock`` (its process id); a second training into the same folder is refused
while that process lives, and a lock left by a dead process is taken over. A start
never changes an existing run unless asked: ``resume`` continues it, ``overwrite``
replaces it (its files are removed only once the new run has loaded its data and
model). Temporary files that a kill during a save left behind are removed when the run
next starts.

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
from pathlib import Path
from types import TracebackType

from sampling_matters.data.cache import running

__all__ = [
    "LOCK",
    "RUN_FILES",
    "RunInUseError",
    "RunLock",
    "check_output",
    "check_start",
    "holds_run",
    "remove_orphans",
    "remove_run_files",
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


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds (part of) a training run."""
    return any((folder / name).exists() for name in RUN_FILES)


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
    holder = _lock_holder(out / LOCK)
    if holder is not None:
        raise RunInUseError(_in_use(out, holder))
    if not resume and not overwrite and holds_run(out):
        found = ", ".join(name for name in RUN_FILES if (out / name).exists())
        raise ValueError(
            f"{out} already holds a run ({found}); continue it with --resume {out}, "
            "replace it with --overwrite, or choose another --out"
        )


def check_output(path: Path, what: str) -> None:
    """Refuse to write ``path`` when it is a folder or one of a run's own files.

    Args:
        path: the file a command is about to write.
        what: how the message names it (``"--out"``, ``"--sheet"``).
    """
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder: give a file name")
    if path.name in (*RUN_FILES, LOCK) and holds_run(path.resolve().parent):
        raise ValueError(
            f"{what} {path} would overwrite the run's own {path.name}: choose another file name"
        )


def remove_orphans(out: Path) -> list[Path]:
    """Remove the temporaries of run files left by a kill during a save; returns them."""
    orphans = [tmp for name in RUN_FILES for tmp in out.glob(f".{name}.*") if tmp.is_file()]
    for tmp in orphans:
        tmp.unlink(missing_ok=True)
    return orphans


def remove_run_files(out: Path) -> None:
    """Remove a run's own files from ``out`` (for ``overwrite``); other files stay."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)


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
