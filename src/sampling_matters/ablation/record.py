"""A run's record beside its files, ``RUN/ablation-run.json``, and the result it gives.

The record sums the run's wall time over the sessions that trained it and says how
the last one ended, so that an interrupted ablation knows what each run has done.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sampling_matters.ablation.plan import RunResult, RunSpec
from sampling_matters.ablation.status import error_status, run_status
from sampling_matters.data.cache import write_text_atomic

__all__ = ["RUN_RECORD", "read_json", "record_session", "recorded_result"]

RUN_RECORD = "ablation-run.json"


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path`` ({} when there is none); a damaged file is named."""
    if not path.exists():
        return {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as error:
        raise ValueError(f"{path} is not readable JSON ({error}): repair or remove it") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} holds no JSON object: repair or remove it")
    return loaded


def record_session(run: Path, elapsed: float, outcome: str, error: str = "") -> dict[str, Any]:
    """Add a session's wall time to ``RUN/ablation-run.json`` and note its outcome."""
    record = read_json(run / RUN_RECORD)
    record = {
        "wall_s": float(record.get("wall_s", 0.0)) + elapsed,
        "sessions": int(record.get("sessions", 0)) + 1,
        "outcome": outcome,
        "error": error,
    }
    run.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run / RUN_RECORD, json.dumps(record, indent=2))
    return record


def recorded_result(spec: RunSpec, run: Path) -> RunResult | None:
    """The recorded result of a run, or None when it has not finished."""
    record = read_json(run / RUN_RECORD)
    wall = float(record.get("wall_s", math.nan))
    if (run / "metrics.json").exists():
        recorded = read_json(run / "metrics.json").items()
        metrics = {k: float(v) for k, v in recorded if isinstance(v, (int, float))}
        status, note = run_status(metrics, run)
        return RunResult(spec, status, metrics, wall, note)
    if record.get("outcome") == "failed":
        error = str(record.get("error", ""))
        return RunResult(spec, error_status(error), {}, wall, error)
    return None
