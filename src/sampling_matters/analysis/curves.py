"""Figure 5, ``training_curves``: sampled distances, active fraction and β over training.

Read from each run's ``log.csv``, one line per run labelled by its loss and sampling.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sampling_matters.analysis._common import FigureSpec, Settings, Table, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_LOG_COLUMNS = ("step", "negative_distance", "negative_distance_std", "active_fraction", "beta")


@dataclass(frozen=True)
class TrainingCurve:
    """One run's logged diagnostics (NaN where the run logged none, e.g. β without margin loss).

    Attributes:
        label: the run's loss and sampling, e.g. ``margin + distance-weighted``.
        path: its log.csv.
        step: (R,) steps.
        negative_distance: (R,) mean sampled anchor–negative distance.
        negative_distance_std: (R,) their standard deviation.
        active_fraction: (R,) fraction of terms with non-zero loss.
        beta: (R,) mean β.
    """

    label: str
    path: Path
    step: Tensor
    negative_distance: Tensor
    negative_distance_std: Tensor
    active_fraction: Tensor
    beta: Tensor


def _run_label(run: Path) -> str:
    config = run / "config.yaml"
    if not config.is_file():
        return run.name
    import yaml

    with config.open() as handle:
        values = yaml.safe_load(handle) or {}
    if not isinstance(values, dict) or not {"loss", "sampling"} <= set(values):
        return run.name
    return f"{values['loss']} + {values['sampling']}"


def read_log(run: str | Path) -> TrainingCurve:
    """A run's ``log.csv`` (rows that logged no training step are dropped).

    Args:
        run: the run directory (or its log.csv).

    Raises:
        ValueError: if there is no log.csv or it lacks a column.
    """
    path = Path(run)
    path = path if path.name == "log.csv" else path / "log.csv"
    if not path.is_file():
        raise ValueError(f"{path.parent} has no log.csv: is it a training run directory?")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = sorted(set(_LOG_COLUMNS) - set(reader.fieldnames or ()))
            if missing:
                raise ValueError(f"{path} lacks the column(s) {missing}")
            rows = [_log_row(row, path, i) for i, row in enumerate(reader, 2)]
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path} is not a CSV log ({error})") from None
    table = torch.tensor(rows, dtype=torch.float64).reshape(-1, len(_LOG_COLUMNS))  # (R, 5)
    table = table[~table[:, 1:].isnan().all(1)]  # drop validation-only rows
    if not len(table):
        raise ValueError(f"{path} holds no logged training step")
    return TrainingCurve(_run_label(path.parent), path, *table.T)


def _log_row(row: dict[str, str], path: Path, line: int) -> list[float]:
    try:
        return [float(row[c] or "nan") for c in _LOG_COLUMNS]
    except (TypeError, ValueError):
        raise ValueError(f"{path}, line {line}: expected numbers, got {row}") from None


def training_curves(runs: Sequence[str | Path]) -> list[TrainingCurve]:
    """:func:`read_log` of each run; equal labels get the run's folder name appended."""
    if not runs:
        raise ValueError("training_curves needs at least one run")
    curves = [read_log(run) for run in runs]
    labels = [c.label for c in curves]
    return [
        c if labels.count(c.label) == 1 else replace(c, label=f"{c.label} ({c.path.parent.name})")
        for c in curves
    ]


def curves_table(curves: Sequence[TrainingCurve]) -> Table:
    """One row per run, step and logged quantity; missing values are left out."""
    quantities = ("negative_distance", "negative_distance_std", "active_fraction", "beta")
    rows: list[tuple[object, ...]] = []
    for curve in curves:
        for q in quantities:
            values = getattr(curve, q)
            rows += [
                (curve.label, str(curve.path.parent), int(s), q, float(v))
                for s, v in zip(curve.step, values, strict=True)
                if math.isfinite(float(v))
            ]
    comments = ["training diagnostics from each run's log.csv; missing values are left out"]
    return Table(comments, ("run", "path", "step", "quantity", "value"), rows)


def plot_training_curves(curves: Sequence[TrainingCurve]) -> Figure:
    """Figure 5: sampled negative distance (mean ± std), active fraction and β over steps."""
    figure, (dist, active, beta) = new_figure(1, 3, (15.0, 4.2))
    for curve in curves:
        step = curve.step.numpy()
        mean, std = curve.negative_distance.numpy(), curve.negative_distance_std.numpy()
        (line,) = dist.plot(step, mean, label=curve.label)
        dist.fill_between(step, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        colour = line.get_color()  # one colour per run in every panel
        active.plot(step, curve.active_fraction.numpy(), color=colour, label=curve.label)
        if bool(curve.beta.isfinite().any()):
            beta.plot(step, curve.beta.numpy(), color=colour, label=curve.label)
    dist.set(
        xlabel="step", ylabel="anchor–negative distance", title="sampled negatives: mean ± std"
    )
    active.set(xlabel="step", ylabel="fraction", title="active fraction (non-zero loss)")
    beta.set(xlabel="step", ylabel="β", title="β (margin loss only)")
    dist.legend(fontsize=8)
    return figure


def _compute(s: Settings) -> list[TrainingCurve]:
    return training_curves(s.logs)


def _check(s: Settings) -> None:
    for log in s.logs:
        read_log(log)


FIGURE = FigureSpec(
    name="training_curves",
    help="runs' sampled distances, active fraction and β (--logs)",
    compute=_compute,
    table=curves_table,
    plot=plot_training_curves,
    check=_check,
    needs_logs=True,
)
