"""Benchmark runs that survive interruptions: train once, resume a cut run, read it back.

A benchmark keeps each of its runs in a folder of its own. :func:`train_once` trains the
run unless its ``metrics.json`` is there (resuming when the folder already holds the
start of it) and adds the seconds spent to ``wall_s.txt``, summed over sessions;
:func:`read_metrics` and :func:`wall_seconds` read a finished run back, and
:func:`check_settings` refuses a folder whose run was trained with other settings.

Run folders (checkpoints) are not committed, so a fresh clone would retrain every run.
Given a ``record`` folder (under ``benchmarks/results/runs/``, committed), ``train_once``
copies a finished run's small files there (:data:`KEPT`) and, on a later clone, copies
them back into an empty run folder instead of training: the long benchmarks continue
over sessions, and each table's numbers stay traceable to the run that made them.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from sampling_matters.config import NEUTRAL_KEYS, RECORD_KEYS, TrainConfig, read_yaml

WALL = "wall_s.txt"
"""In a run's folder: the seconds its training took, summed over sessions."""
KEPT = ("config.yaml", "log.csv", WALL, "metrics.json")
"""A finished run's files that its record keeps (a few kB; no checkpoints); ``metrics.json``
last, as it marks the record complete."""
RECORDS = Path(__file__).resolve().parent / "results" / "runs"
"""Where the benchmarks keep their runs' records."""


def wall_seconds(out: Path) -> float:
    """The seconds recorded in ``out/wall_s.txt`` (0 when none)."""
    path = out / WALL
    return float(path.read_text()) if path.exists() else 0.0


def train_once(out: Path, train: Callable[[bool], object], record: Path | None = None) -> None:
    """Call ``train(resume)`` unless ``out`` holds a finished run; add up the wall time.

    ``resume`` is True when ``out`` already holds the start of the run. The time is
    added on an interruption too, so a run cut and resumed counts all its sessions.
    With ``record``, a finished run recorded there is restored into a fresh ``out``
    instead of trained, and a run finished here is recorded there.
    """
    if record is not None and not (out / "config.yaml").exists():
        _copy(record, out)
    if not (out / "metrics.json").exists():
        start = time.perf_counter()
        try:
            train((out / "config.yaml").exists())
        finally:
            if out.is_dir():
                spent = wall_seconds(out) + time.perf_counter() - start
                (out / WALL).write_text(f"{spent:.1f}\n")
    if record is not None and not (record / "metrics.json").exists():
        _copy(out, record)


def _copy(source: Path, target: Path) -> None:
    """Copy the :data:`KEPT` files of a finished run from ``source`` to ``target``."""
    if not (source / "metrics.json").exists():
        return
    target.mkdir(parents=True, exist_ok=True)
    for name in KEPT:
        if (source / name).exists():
            shutil.copyfile(source / name, target / name)


def read_metrics(out: Path) -> dict[str, float]:
    """The numbers of the finished run's ``metrics.json``."""
    values = json.loads((out / "metrics.json").read_text())
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}


def check_settings(config: TrainConfig, out: Path) -> None:
    """Refuse (``SystemExit``) a finished run in ``out`` whose settings are not ``config``'s.

    Settings ``config`` leaves to be decided at training (``auto``, unset) are not
    compared, nor the neutral ones, nor ``data`` (recorded as an absolute path).
    """
    recorded = TrainConfig.from_flat(read_yaml(out / "config.yaml")).flat()
    skip = {*NEUTRAL_KEYS, *RECORD_KEYS, "data"}
    differ = [
        k
        for k, v in config.flat().items()
        if k not in skip and v not in ("auto", None) and recorded.get(k) != v
    ]
    if differ:
        raise SystemExit(f"{out} holds a run with other settings ({', '.join(differ)}); remove it")
