"""The ablation's tables: ``ablation.csv`` (one row per run) and ``ablation.md``.

``ablation.md`` holds the settings and budget, each combination's mean ± std over
seeds, the grid of mean Recall@1 and the rules that judge a run.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sampling_matters.ablation.plan import METRICS, RunResult
from sampling_matters.ablation.pml_row import PML_DESCRIPTION, PML_LOSS, grid_axes
from sampling_matters.ablation.status import COLLAPSE_DISTANCE, COLLAPSE_RECALL_FACTOR, finite
from sampling_matters.tables import markdown_table, mean_std

__all__ = [
    "CSV_COLUMNS",
    "HEADERS",
    "Summary",
    "csv_text",
    "mean_std",
    "recall_grid",
    "render_markdown",
    "summarise",
]

HEADERS = ("R@1", "R@2", "R@4", "R@8", "MAP@R", "NMI")
"""How the tables head the columns of :data:`METRICS`."""
CSV_COLUMNS = ("loss", "sampling", "seed", *METRICS, "wall_s", "status", "note")


@dataclass(frozen=True)
class Summary:
    """One combination over its seeds: metric values and wall times, and the odd runs."""

    values: dict[str, list[float]]
    wall: list[float]
    runs: int
    notes: list[str]


def summarise(results: Sequence[RunResult]) -> dict[tuple[str, str], Summary]:
    """Group results by (loss, sampling): metrics of runs with finite metrics, wall times.

    Args:
        results: the finished runs.

    Returns:
        ``{(loss, sampling): Summary}`` in the order the combinations first appear.
    """
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for result in results:
        groups.setdefault((result.spec.loss, result.spec.sampling), []).append(result)
    out = {}
    for key, group in groups.items():
        scored = [r for r in group if r.metrics and finite(r.metrics)]
        values = {m: [r.metrics[m] for r in scored] for m in METRICS}
        wall = [r.wall_s for r in group if math.isfinite(r.wall_s)]
        notes = [f"seed {r.spec.seed} {r.status}" for r in group if r.status != "ok"]
        out[key] = Summary(values, wall, len(group), notes)
    return out


def _results_table(summaries: dict[tuple[str, str], Summary]) -> list[str]:
    rows = []
    for (loss, sampling), s in summaries.items():
        scored = len(s.values["recall@1"])
        metrics = [mean_std(s.values[m], 100.0) for m in METRICS]
        wall = mean_std(s.wall, digits=0)
        rows.append([loss, sampling, f"{scored}/{s.runs}", *metrics, wall, "; ".join(s.notes)])
    header = ["loss", "sampling", "seeds", *HEADERS, "wall time (s)", "notes"]
    return markdown_table(header, rows)


def recall_grid(
    summaries: dict[tuple[str, str], Summary], losses: Sequence[str], samplings: Sequence[str]
) -> list[list[float]]:
    """Mean Recall@1 per (loss, sampling), NaN where no run has finite metrics."""
    grid = []
    for loss in losses:
        row = []
        for sampling in samplings:
            summary = summaries.get((loss, sampling))
            values = summary.values["recall@1"] if summary else []
            row.append(statistics.fmean(values) if values else math.nan)
        grid.append(row)
    return grid


def _grid_table(
    grid: list[list[float]], losses: Sequence[str], samplings: Sequence[str]
) -> list[str]:
    rows = [
        [f"**{loss}**", *("—" if math.isnan(v) else f"{100 * v:.1f}" for v in row)]
        for loss, row in zip(losses, grid, strict=True)
    ]
    return markdown_table(["loss \\ sampling", *samplings], rows)


def render_markdown(
    results: Sequence[RunResult],
    *,
    settings: dict[str, Any],
    losses: Sequence[str],
    samplings: Sequence[str],
    seeds: Sequence[int],
    with_pml: bool,
    planned: int,
) -> str:
    """The ablation's report: settings and budget, the mean ± std table, the R@1 grid, rules.

    Args:
        results: the finished runs.
        settings: the flat configuration every run shares (``steps`` included).
        losses: the grid's losses, in order.
        samplings: the grid's samplings, in order.
        seeds: the seeds.
        with_pml: whether the PML row is planned.
        planned: how many runs the ablation has in all.

    Returns:
        Markdown text.
    """
    summaries = summarise(results)
    rows, columns = grid_axes(losses, samplings, with_pml)
    grid = recall_grid(summaries, rows, columns)
    shown = ("data", "model", "embedding_dim", "steps", "classes_per_batch", "samples_per_class")
    other = ", ".join(f"`{k}={v!r}`" for k, v in settings.items() if k not in shown)
    pml = f" and `{PML_LOSS}` ({PML_DESCRIPTION})" if with_pml else ""
    lines = [
        "# Loss × sampling ablation",
        "",
        f"Written by `sampling-matters ablate`: {len(results)} of {planned} runs finished.",
        "",
        f"- data: `{settings['data']}`; model: `{settings['model']}`, "
        f"embedding dimension {settings['embedding_dim']}",
        f"- budget: **{settings['steps']} steps** per run, batches of "
        f"{settings['classes_per_batch']} classes × {settings['samples_per_class']} images; "
        f"seeds {', '.join(map(str, seeds))}",
        f"- losses: {', '.join(losses)}{pml}; samplings: {', '.join(samplings)}",
        f"- every other setting, the same for every run: {other}",
        "",
        "## Test metrics, mean ± std over seeds (%)",
        "",
        "Metrics on the test classes (never seen in training), from each run's `best.pt`; "
        "`seeds` counts the runs with finite metrics out of those finished. Means include "
        "collapsed runs; diverged and failed runs without finite metrics are left out. Wall "
        "time is per run, training and evaluation, summed over resumed sessions.",
        "",
        *_results_table(summaries),
        "",
        "## Mean Recall@1 (%) by loss × sampling",
        "",
        *_grid_table(grid, rows, columns),
        "",
        "## How runs are judged",
        "",
        "- **diverged**: training raised on a non-finite value (NaN / Inf), a training row "
        "of `log.csv` has a non-finite loss, or a test metric is non-finite.",
        f"- **collapsed**: test R@1 below {COLLAPSE_RECALL_FACTOR} × the R@1 of a random "
        "ranking, (N/C − 1)/(N − 1) for N test queries in C classes (balanced classes "
        "assumed); or the embeddings fell onto a point: the last logged mean distance to the "
        f"sampled negatives is below {COLLAPSE_DISTANCE} (distances on the unit sphere lie in "
        "[0, 2], about √2 when spread).",
        "- **failed**: training raised for another reason (the message is in `ablation.csv`).",
        "",
    ]
    return "\n".join(lines)


def csv_text(results: Sequence[RunResult]) -> str:
    """``ablation.csv``: a row per run, in the order given (:data:`CSV_COLUMNS`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        values = [f"{r.metrics[m]:.6f}" if m in r.metrics else "" for m in METRICS]
        wall = f"{r.wall_s:.2f}" if math.isfinite(r.wall_s) else ""
        writer.writerow(
            [r.spec.loss, r.spec.sampling, r.spec.seed, *values, wall, r.status, r.note]
        )
    return buffer.getvalue()
