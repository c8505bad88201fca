"""``log.csv``: the step's diagnostics averaged over each logging interval, and validation."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

LOG_COLUMNS = (
    "step",
    "epoch",
    "loss",
    "active_fraction",
    "beta",
    "negative_distance",
    "negative_distance_std",
    "fallback",
    "references",
    "images_per_s",
    "val_recall@1",
    "val_map@r",
)


class _Log:
    """``log.csv``: one row per logging interval, appended and flushed as it goes.

    With ``path`` None (a process other than rank 0) nothing is written.
    """

    def __init__(self, path: Path | None, resume_at: int | None) -> None:
        self.path = path
        self.rows: list[dict[str, float]] = []
        self.images = 0
        self.start = time.perf_counter()
        if path is None:
            return
        kept: list[list[str]] = []
        if resume_at is not None and path.exists():  # drop rows of the epoch that was lost
            with path.open(newline="") as handle:  # by column name: an older log lacks some
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_at]
            kept = [[row.get(k) or "" for k in LOG_COLUMNS] for row in rows]
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows([list(LOG_COLUMNS), *kept])

    def add(self, row: dict[str, float], images: int) -> None:
        if self.path is None:
            return
        self.rows.append(row)
        self.images += images

    def flush(
        self, step: int, epoch: int, val_recall: float = math.nan, val_map: float = math.nan
    ) -> None:
        if self.path is None or (not self.rows and math.isnan(val_recall)):
            return
        means = {k: _nanmean([r[k] for r in self.rows]) for k in LOG_COLUMNS[2:-3]}
        speed = self.images / max(time.perf_counter() - self.start, 1e-9)
        row = [step, epoch, *(means[k] for k in LOG_COLUMNS[2:-3]), speed, val_recall, val_map]
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow(row)
        self.rows, self.images, self.start = [], 0, time.perf_counter()


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")
