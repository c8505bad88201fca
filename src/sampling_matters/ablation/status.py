"""How a run is judged: ``ok``, ``collapsed``, ``diverged`` or ``failed``.

The rules are those of :mod:`sampling_matters.ablation`; the report repeats them.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

from sampling_matters.ablation.plan import METRICS

__all__ = [
    "COLLAPSE_DISTANCE",
    "COLLAPSE_RECALL_FACTOR",
    "chance_recall",
    "error_status",
    "finite",
    "run_status",
]

COLLAPSE_RECALL_FACTOR = 1.5
COLLAPSE_DISTANCE = 0.05
_NON_FINITE = re.compile(r"\b(nan|inf|infinite|non-finite)\b", re.IGNORECASE)


def finite(metrics: dict[str, float]) -> bool:
    """Whether every metric of :data:`METRICS` is present and finite."""
    return all(math.isfinite(float(metrics.get(k, math.nan))) for k in METRICS)


def chance_recall(metrics: dict[str, Any]) -> float:
    """Recall@1 of a random ranking, (N/C − 1)/(N − 1), for N queries in C balanced classes."""
    n, c = float(metrics.get("n_queries", 0)), float(metrics.get("n_classes", 0))
    return (n / c - 1) / (n - 1) if n > 1 and c > 0 else 0.0


def _float(text: str | None) -> float:
    try:
        return float(text or "nan")
    except ValueError:
        return math.nan


def _training_log(run: Path) -> tuple[bool, float]:
    """Whether a training row of ``log.csv`` has a non-finite loss; the last negative distance."""
    path = run / "log.csv"
    if not path.exists():
        return False, math.nan
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if _float(r.get("images_per_s")) > 0]
    bad = any(not math.isfinite(_float(r.get("loss"))) for r in rows)
    distances = [_float(r.get("negative_distance")) for r in rows]
    kept = [d for d in distances if math.isfinite(d)]
    return bad, kept[-1] if kept else math.nan


def run_status(metrics: dict[str, Any], run: Path) -> tuple[str, str]:
    """A finished run's status and the reason, by the rules of :mod:`~sampling_matters.ablation`.

    Args:
        metrics: the run's test metrics (``metrics.json``).
        run: the run directory (its ``log.csv`` is read).

    Returns:
        ``(status, note)``, status one of ``ok``, ``collapsed``, ``diverged``.
    """
    bad_loss, distance = _training_log(run)
    if bad_loss:
        return "diverged", "non-finite training loss in log.csv"
    if not finite(metrics):
        return "diverged", "non-finite test metrics"
    chance = chance_recall(metrics)
    if metrics["recall@1"] < COLLAPSE_RECALL_FACTOR * chance:
        recall = metrics["recall@1"]
        return "collapsed", f"R@1 {recall:.3f} < {COLLAPSE_RECALL_FACTOR} × chance {chance:.3f}"
    if distance < COLLAPSE_DISTANCE:
        return "collapsed", f"negative distance {distance:.3g} < {COLLAPSE_DISTANCE} at the end"
    return "ok", ""


def error_status(error: str) -> str:
    """``diverged`` for an error on a non-finite value, else ``failed``."""
    return "diverged" if _NON_FINITE.search(error) else "failed"
