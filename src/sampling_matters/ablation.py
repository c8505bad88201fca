"""The loss × sampling ablation: every combination, every seed, one budget, one table.

:func:`run_ablation` trains each loss × sampling strategy (the paper's Table 1 grid)
for each seed through :func:`sampling_matters.training.train`, with the same data,
model, batches, optimiser and number of steps, each in ``OUT/runs/<loss>--<sampling>
--seed<k>/``. After every run it rewrites ``OUT/ablation.csv`` (one row per run),
``OUT/ablation.md`` (mean ± std over seeds per combination, and a grid of mean
Recall@1) and ``OUT/ablation.png`` (that grid as a heat map), each atomically.

Interrupted, it resumes where it stopped: a run with ``metrics.json`` is done, a run
with ``last.pt`` continues from it, the rest start fresh. A run whose training fails
(a divergence raises, for example) is recorded and the ablation goes on.

How a run is judged (:func:`run_status`):

- ``diverged``: training raised on a non-finite value (NaN / Inf in its message), a
  training row of ``log.csv`` has a non-finite loss, or a test metric is non-finite.
- ``collapsed``: the test Recall@1 is below :data:`COLLAPSE_RECALL_FACTOR` × the
  Recall@1 of a random ranking, ``(N/C − 1)/(N − 1)`` for N test queries in C classes
  (balanced classes assumed); or the embeddings fell onto a point during training: the
  last logged mean distance to the sampled negatives is below
  :data:`COLLAPSE_DISTANCE` (on the unit sphere distances lie in [0, 2], ≈ √2 when
  spread).
- ``failed``: training raised for another reason (the message is kept).
- ``ok``: otherwise.

``with_pml=True`` adds pytorch-metric-learning's ``MarginLoss`` (β learned) with its
``DistanceWeightedMiner`` as the row ``pml-margin`` (``sampling_matters.compat.pml``'s
``margin`` recipe), trained by the same loop through ``train``'s ``loss_factory``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sampling_matters import _checks
from sampling_matters._optional import require
from sampling_matters.compat import pml
from sampling_matters.config import NEUTRAL_KEYS, TrainConfig
from sampling_matters.data.cache import write_atomic, write_text_atomic
from sampling_matters.losses import LOSSES
from sampling_matters.runs import RunInUseError, check_folder, holds_run
from sampling_matters.sampling import SAMPLINGS

__all__ = [
    "ABLATION_KEYS",
    "COLLAPSE_DISTANCE",
    "COLLAPSE_RECALL_FACTOR",
    "DEFAULT_LOSSES",
    "DEFAULT_SAMPLINGS",
    "PML_LOSS",
    "RunResult",
    "RunSpec",
    "Summary",
    "chance_recall",
    "check_names",
    "check_seeds",
    "mean_std",
    "plan_runs",
    "plot_grid",
    "recall_grid",
    "render_markdown",
    "run_ablation",
    "run_status",
    "summarise",
]

DEFAULT_LOSSES = ("contrastive", "triplet-squared", "triplet", "margin")
DEFAULT_SAMPLINGS = ("uniform", "hard", "semihard", "distance-weighted")
PML_LOSS = "pml-margin"
"""The row of ``with_pml``: PML's MarginLoss with its DistanceWeightedMiner."""
ABLATION_KEYS = ("loss", "sampling", "seed", "steps", "epochs", "out")
"""Settings the ablation sets per run; shared settings may not hold them."""
COLLAPSE_RECALL_FACTOR = 1.5
COLLAPSE_DISTANCE = 0.05
METRICS = ("recall@1", "recall@2", "recall@4", "recall@8", "map@r", "nmi")
HEADERS = ("R@1", "R@2", "R@4", "R@8", "MAP@R", "NMI")
CSV_COLUMNS = ("loss", "sampling", "seed", *METRICS, "wall_s", "status", "note")
RUN_RECORD = "ablation-run.json"
_NON_FINITE = re.compile(r"\b(nan|inf|infinite|non-finite)\b", re.IGNORECASE)
_TRAINING_ERRORS = (ValueError, RuntimeError, ArithmeticError)
MAX_SEEDS = 1000


# ------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid."""

    loss: str
    sampling: str
    seed: int

    @property
    def name(self) -> str:
        """The run's directory name, ``<loss>--<sampling>--seed<k>``."""
        return f"{self.loss}--{self.sampling}--seed{self.seed}"


@dataclass(frozen=True)
class RunResult:
    """What one run gave: its status, test metrics (empty if none) and wall time."""

    spec: RunSpec
    status: str  # "ok" | "collapsed" | "diverged" | "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    wall_s: float = math.nan
    note: str = ""


def check_names(value: str | Sequence[str], allowed: Iterable[str], what: str) -> tuple[str, ...]:
    """Names from a comma-separated string or a sequence, each checked against ``allowed``.

    Args:
        value: e.g. ``"triplet,margin"`` or ``["triplet", "margin"]``.
        allowed: the valid names.
        what: how the error message names them (``"loss"``, ``"sampling"``).

    Returns:
        The names, in the order given.

    Raises:
        ValueError: on an empty list, an unknown name or a repeated one.
    """
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    names = [n for n in names if n]
    valid = sorted(allowed)
    if not names:
        raise ValueError(f"no {what} given; expected some of {valid}")
    for name in names:
        if name not in valid:
            raise ValueError(f"unknown {what} {name!r}; expected one of {valid}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} names repeat in {names}")
    return tuple(names)


def check_seeds(value: int | str | Sequence[int]) -> tuple[int, ...]:
    """The seeds: S (an int, or a string of one) means 0..S-1; a list names them.

    Args:
        value: ``3``, ``"3"``, ``"0,4,7"`` or ``[0, 4, 7]``.

    Returns:
        The seeds, in order.

    Raises:
        ValueError: on a count below 1, a negative, repeated or non-integer seed.
    """
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not all(re.fullmatch(r"-?\d+", p) for p in parts) or not parts:
            raise ValueError(f"seeds must be a count S or a list like 0,4,7, got {value!r}")
        value = int(parts[0]) if len(parts) == 1 and "," not in value else [int(p) for p in parts]
    if isinstance(value, bool):
        raise ValueError(f"seeds must be a count >= 1 or a list of seeds, got {value!r}")
    if isinstance(value, int):
        if not 1 <= value <= MAX_SEEDS:
            raise ValueError(
                f"seeds must be in [1, {MAX_SEEDS}] (the number of seeds), got {value}"
            )
        return tuple(range(value))
    seeds = list(value)
    if not seeds or any(not _checks.is_integer(s) or not 0 <= s < 2**63 for s in seeds):
        raise ValueError(f"seeds must be integers in [0, 2**63), got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat in {seeds}")
    return tuple(int(s) for s in seeds)


def plan_runs(
    losses: Sequence[str], samplings: Sequence[str], seeds: Sequence[int], with_pml: bool
) -> list[RunSpec]:
    """Every run, seed by seed, so that an interrupted ablation has whole grids first."""
    runs = []
    for seed in seeds:
        runs += [RunSpec(loss, sampling, seed) for loss in losses for sampling in samplings]
        if with_pml:
            runs.append(RunSpec(PML_LOSS, "distance-weighted", seed))
    return runs


def shared_config(settings: dict[str, Any], steps: int) -> TrainConfig:
    """The configuration every run shares, checked (the grid fills in loss and sampling).

    Raises:
        ValueError: on an unknown key, a key the ablation sets itself, or a bad value.
    """
    owned = sorted(set(settings) & set(ABLATION_KEYS))
    if owned:
        raise ValueError(
            f"setting(s) {owned} are set by the ablation itself (losses, samplings, seeds, "
            "steps, out); remove them from the shared settings"
        )
    return TrainConfig.from_flat({**settings, "steps": steps})


def run_config(settings: dict[str, Any], spec: RunSpec, steps: int, runs: Path) -> TrainConfig:
    """The configuration of one run (the PML row keeps the margin loss's settings)."""
    loss = "margin" if spec.loss == PML_LOSS else spec.loss
    values = {**settings, "loss": loss, "sampling": spec.sampling, "seed": spec.seed}
    return TrainConfig.from_flat({**values, "steps": steps, "out": str(runs / spec.name)})


# ------------------------------------------------------------------------- PML row


def _check_pml(settings: TrainConfig) -> None:
    """Refuse, before any run trains, settings the PML row cannot follow (or no PML)."""
    pml.check("margin", settings)
    if not settings.loss.learn_beta:
        raise ValueError("the PML row learns its β: drop learn_beta=False, or with_pml")


# ----------------------------------------------------------------------- judging


def _finite(metrics: dict[str, float]) -> bool:
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
    finite = [d for d in distances if math.isfinite(d)]
    return bad, finite[-1] if finite else math.nan


def run_status(metrics: dict[str, Any], run: Path) -> tuple[str, str]:
    """The status of a finished run and the reason: see the module's rules.

    Args:
        metrics: the run's test metrics (``metrics.json``).
        run: the run directory (its ``log.csv`` is read).

    Returns:
        ``(status, note)``, status one of ``ok``, ``collapsed``, ``diverged``.
    """
    bad_loss, distance = _training_log(run)
    if bad_loss:
        return "diverged", "non-finite training loss in log.csv"
    if not _finite(metrics):
        return "diverged", "non-finite test metrics"
    chance = chance_recall(metrics)
    if metrics["recall@1"] < COLLAPSE_RECALL_FACTOR * chance:
        recall = metrics["recall@1"]
        return "collapsed", f"R@1 {recall:.3f} < {COLLAPSE_RECALL_FACTOR} × chance {chance:.3f}"
    if distance < COLLAPSE_DISTANCE:
        return "collapsed", f"negative distance {distance:.3g} < {COLLAPSE_DISTANCE} at the end"
    return "ok", ""


def _error_status(error: str) -> str:
    return "diverged" if _NON_FINITE.search(error) else "failed"


# ---------------------------------------------------------------------- one run


def _read_json(path: Path) -> dict[str, Any]:
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


def _record(run: Path, elapsed: float, outcome: str, error: str = "") -> dict[str, Any]:
    """Add a session's wall time to ``RUN/ablation-run.json`` and note its outcome."""
    record = _read_json(run / RUN_RECORD)
    record = {
        "wall_s": float(record.get("wall_s", 0.0)) + elapsed,
        "sessions": int(record.get("sessions", 0)) + 1,
        "outcome": outcome,
        "error": error,
    }
    run.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run / RUN_RECORD, json.dumps(record, indent=2))
    return record


def _result(spec: RunSpec, run: Path) -> RunResult | None:
    """The recorded result of a run, or None when it has not finished."""
    record = _read_json(run / RUN_RECORD)
    wall = float(record.get("wall_s", math.nan))
    if (run / "metrics.json").exists():
        recorded = _read_json(run / "metrics.json").items()
        metrics = {k: float(v) for k, v in recorded if isinstance(v, (int, float))}
        status, note = run_status(metrics, run)
        return RunResult(spec, status, metrics, wall, note)
    if record.get("outcome") == "failed":
        error = str(record.get("error", ""))
        return RunResult(spec, _error_status(error), {}, wall, error)
    return None


def _train_run(spec: RunSpec, config: TrainConfig, retry_failed: bool) -> tuple[RunResult, bool]:
    """Train (or resume, or skip) one run; returns its result and whether it trained now."""
    run = Path(config.run.out)
    done = _result(spec, run)
    if done is not None and (done.metrics or not retry_failed):
        return done, False
    factory = pml.factory("margin") if spec.loss == PML_LOSS else None
    from sampling_matters import training  # here: it imports the data sets (Pillow)

    start = time.perf_counter()
    try:
        training.train(config, resume=run.exists(), progress=False, loss_factory=factory)
    except RunInUseError:
        raise  # another process trains this run: not a result of it
    except _TRAINING_ERRORS as error:
        _record(run, time.perf_counter() - start, "failed", f"{type(error).__name__}: {error}")
    except BaseException:
        _record(run, time.perf_counter() - start, "interrupted")
        raise
    else:
        written = (run / "metrics.json").exists()
        missing = "" if written else "training returned without writing metrics.json"
        _record(run, time.perf_counter() - start, "done" if written else "failed", missing)
    return _result(spec, run) or RunResult(spec, "failed"), True


def _progress_line(i: int, n: int, result: RunResult, trained: bool) -> str:
    """``ablate [3/8] triplet--hard--seed0: R@1 41.2%, ok, 12.3 s``."""
    recall = result.metrics.get("recall@1", math.nan)
    parts = [
        "" if trained else "done before",
        f"R@1 {100 * recall:.1f}%" if math.isfinite(recall) else "no R@1",
        result.status + (f" ({result.note})" if result.note else ""),
        f"{result.wall_s:.1f} s",
    ]
    return f"ablate [{i}/{n}] {result.spec.name}: " + ", ".join(p for p in parts if p)


# ---------------------------------------------------------------------- summary


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
        scored = [r for r in group if r.metrics and _finite(r.metrics)]
        values = {m: [r.metrics[m] for r in scored] for m in METRICS}
        wall = [r.wall_s for r in group if math.isfinite(r.wall_s)]
        notes = [f"seed {r.spec.seed} {r.status}" for r in group if r.status != "ok"]
        out[key] = Summary(values, wall, len(group), notes)
    return out


def mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    """``mean ± std`` of ``scale × values`` (the mean alone for one value, — for none)."""
    if not values:
        return "—"
    mean = scale * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {scale * statistics.stdev(values):.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _results_table(summaries: dict[tuple[str, str], Summary]) -> list[str]:
    rows = []
    for (loss, sampling), s in summaries.items():
        scored = len(s.values["recall@1"])
        metrics = [mean_std(s.values[m], 100.0) for m in METRICS]
        wall = mean_std(s.wall, digits=0)
        rows.append([loss, sampling, f"{scored}/{s.runs}", *metrics, wall, "; ".join(s.notes)])
    header = ["loss", "sampling", "seeds", *HEADERS, "wall time (s)", "notes"]
    return _table(header, rows)


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
    return _table(["loss \\ sampling", *samplings], rows)


def _axes(
    losses: Sequence[str], samplings: Sequence[str], with_pml: bool
) -> tuple[list[str], list[str]]:
    """The grid's rows and columns: the PML row sits in the distance-weighted column."""
    if not with_pml:
        return list(losses), list(samplings)
    columns = list(dict.fromkeys([*samplings, "distance-weighted"]))
    return [*losses, PML_LOSS], columns


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
    rows, columns = _axes(losses, samplings, with_pml)
    grid = recall_grid(summaries, rows, columns)
    shown = ("data", "model", "embedding_dim", "steps", "classes_per_batch", "samples_per_class")
    other = ", ".join(f"`{k}={v!r}`" for k, v in settings.items() if k not in shown)
    pml = (
        f" and `{PML_LOSS}` (pytorch-metric-learning's `MarginLoss(margin=0.2, "
        "learn_beta=True)` + `DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)`)"
        if with_pml
        else ""
    )
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


def _csv_text(results: Sequence[RunResult]) -> str:
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


def plot_grid(
    grid: list[list[float]], losses: Sequence[str], samplings: Sequence[str], path: Path
) -> None:
    """Draw the mean Recall@1 grid as an annotated heat map (PNG, written atomically)."""
    matplotlib = require("matplotlib")  # missing: an ImportError naming the figures extra
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = np.ma.masked_invalid(100 * np.array(grid, dtype=float))  # (L, S)
    figure = Figure(figsize=(1.6 + 1.5 * len(samplings), 1.2 + 0.6 * len(losses)))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    colours = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")  # no run: grey
    image = axes.imshow(values, cmap=colours, aspect="auto")
    axes.set_xticks(range(len(samplings)), samplings, rotation=20, ha="right")
    axes.set_yticks(range(len(losses)), losses)
    middle = (float(values.min()) + float(values.max())) / 2 if values.count() else 0.0
    for (i, j), value in np.ndenumerate(values.filled(np.nan)):
        dark = not np.isnan(value) and value < middle  # white text on the dark half
        text = "—" if np.isnan(value) else f"{value:.1f}"
        axes.text(j, i, text, ha="center", va="center", color="white" if dark else "black")
    axes.set_title("mean Recall@1 (%) over seeds")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    write_atomic(path, lambda name: figure.savefig(name, format="png", dpi=120))


# ---------------------------------------------------------------------- the ablation


@dataclass
class _Ablation:
    """The checked plan of one ablation."""

    settings: dict[str, Any]  # the shared flat configuration, steps included
    losses: tuple[str, ...]
    samplings: tuple[str, ...]
    seeds: tuple[int, ...]
    with_pml: bool
    out: Path
    runs: list[RunSpec]

    def write(self, results: Sequence[RunResult]) -> None:
        """Rewrite ``ablation.csv``, ``ablation.md`` and ``ablation.png``."""
        write_text_atomic(self.out / "ablation.csv", _csv_text(results))
        markdown = render_markdown(
            results,
            settings=self.settings,
            losses=self.losses,
            samplings=self.samplings,
            seeds=self.seeds,
            with_pml=self.with_pml,
            planned=len(self.runs),
        )
        write_text_atomic(self.out / "ablation.md", markdown)
        rows, columns = _axes(self.losses, self.samplings, self.with_pml)
        grid = recall_grid(summarise(results), rows, columns)
        plot_grid(grid, rows, columns, self.out / "ablation.png")


def _shared_settings(config: TrainConfig) -> dict[str, Any]:
    flat = config.flat()
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in flat.items()
        if k not in ABLATION_KEYS or k == "steps"
    }


def _check_same_settings(out: Path, settings: dict[str, Any]) -> None:
    """Refuse to mix budgets: ``OUT/ablation.json`` must match the settings, if it exists."""
    path = out / "ablation.json"
    before = _read_json(path).get("settings")
    if before is not None:
        # a key written by an older version is absent: it had the default value
        before = {**_shared_settings(TrainConfig.from_flat({"steps": 1})), **before}
        differ = sorted(
            k
            for k in set(before) | set(settings)
            if k not in NEUTRAL_KEYS and before.get(k) != settings.get(k)
        )
        if differ and _started(out):
            changes = {k: (before.get(k), settings.get(k)) for k in differ}
            raise ValueError(
                f"{out} holds an ablation with other settings {changes} (before, now); "
                "use another output directory"
            )
    write_text_atomic(path, json.dumps({"settings": settings}, indent=2))


def _started(out: Path) -> bool:
    """Whether a run of the ablation in ``out`` has written anything (a failed start has not)."""
    runs = out / "runs"
    return runs.is_dir() and any(p.is_file() for p in runs.rglob("*"))


def _check_out(out: Path) -> None:
    """Refuse an ablation folder that is a training run's, or holds reports of no ablation."""
    check_folder(out, "--out")
    if (out / "config.yaml").exists() or holds_run(out):
        raise ValueError(f"{out} is a training run's folder; an ablation needs a folder of its own")
    reports = [n for n in ("ablation.md", "ablation.csv", "ablation.png") if (out / n).exists()]
    if reports and not (out / "ablation.json").exists():
        raise ValueError(
            f"{out} holds {', '.join(reports)} but no ablation.json (the record of an ablation's "
            "settings): they were not written here by ablate; choose another --out"
        )


def _plan(
    settings: dict[str, Any],
    losses: str | Sequence[str],
    samplings: str | Sequence[str],
    seeds: int | str | Sequence[int],
    steps: int,
    out: Path,
    with_pml: bool,
) -> _Ablation:
    loss_names = check_names(losses, LOSSES, "loss")
    sampling_names = check_names(samplings, SAMPLINGS, "sampling")
    seed_list = check_seeds(seeds)
    steps = _checks.positive_int("steps", steps, why="the budget of every run")
    shared = shared_config(settings, steps)
    if with_pml:
        _check_pml(shared)
    runs = plan_runs(loss_names, sampling_names, seed_list, with_pml)
    for spec in runs:  # every run's configuration is checked before any trains
        run_config(settings, spec, steps, out / "runs")
    flat = _shared_settings(shared)
    return _Ablation(flat, loss_names, sampling_names, seed_list, with_pml, out, runs)


def run_ablation(
    settings: dict[str, Any],
    *,
    steps: int,
    out: str | Path,
    losses: str | Sequence[str] = DEFAULT_LOSSES,
    samplings: str | Sequence[str] = DEFAULT_SAMPLINGS,
    seeds: int | str | Sequence[int] = 3,
    with_pml: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
) -> list[RunResult]:
    """Train every loss × sampling for every seed with one budget; write the reports.

    Args:
        settings: flat training settings shared by every run (``data``, ``model``,
            ``classes_per_batch``, …: the keys of ``TrainConfig.flat()``), without
            those the ablation sets (:data:`ABLATION_KEYS`).
        steps: training steps of every run (≥ 1).
        out: the ablation directory: ``runs/``, ``ablation.csv``, ``ablation.md``,
            ``ablation.png``, ``ablation.json`` (the shared settings).
        losses: names in ``LOSSES``, a list or a comma-separated string.
        samplings: names in ``SAMPLINGS``, a list or a comma-separated string.
        seeds: a count S (seeds 0..S-1) or a list of seeds.
        with_pml: add the ``pml-margin`` row (needs the ``bench`` extra).
        retry_failed: train again the runs recorded as failed (else they are reported).
        progress: a line per run on stderr.

    Returns:
        The results of the finished runs, in plan order.

    Raises:
        ValueError: on an unknown loss or sampling, seeds < 1, steps < 1, bad shared
            settings, or an ``out`` that holds an ablation with other settings.
        ImportError: ``with_pml`` without pytorch-metric-learning.
    """
    plan = _plan(settings, losses, samplings, seeds, steps, Path(out), with_pml)
    _check_out(plan.out)
    plan.out.mkdir(parents=True, exist_ok=True)
    _check_same_settings(plan.out, plan.settings)
    results: list[RunResult] = []
    for i, spec in enumerate(plan.runs, 1):
        config = run_config(settings, spec, steps, plan.out / "runs")
        result, trained = _train_run(spec, config, retry_failed)
        results.append(result)
        plan.write(results)
        if progress:
            print(_progress_line(i, len(plan.runs), result, trained), file=sys.stderr, flush=True)
    return results
