"""The runner: every run of the plan through ``training.train``, the reports after each.

A run with ``metrics.json`` is done, a run with ``last.pt`` continues from it, the rest
start fresh; a run whose training fails is recorded and the ablation goes on.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sampling_matters import _checks
from sampling_matters.ablation.folder import check_out, check_same_settings
from sampling_matters.ablation.plan import (
    DEFAULT_LOSSES,
    DEFAULT_SAMPLINGS,
    RunResult,
    RunSpec,
    check_names,
    check_seeds,
    plan_runs,
    run_config,
    shared_config,
    shared_settings,
)
from sampling_matters.ablation.plot import plot_grid
from sampling_matters.ablation.pml_row import check_pml, grid_axes, loss_factory
from sampling_matters.ablation.record import record_session, recorded_result
from sampling_matters.ablation.report import csv_text, recall_grid, render_markdown, summarise
from sampling_matters.config import TrainConfig
from sampling_matters.data.cache import write_text_atomic
from sampling_matters.losses import LOSSES
from sampling_matters.runs import RunInUseError
from sampling_matters.sampling import SAMPLINGS

__all__ = ["run_ablation"]

_TRAINING_ERRORS = (ValueError, RuntimeError, ArithmeticError)


def _train_run(spec: RunSpec, config: TrainConfig, retry_failed: bool) -> tuple[RunResult, bool]:
    """Train (or resume, or skip) one run; returns its result and whether it trained now."""
    run = Path(config.run.out)
    done = recorded_result(spec, run)
    if done is not None and (done.metrics or not retry_failed):
        return done, False
    factory = loss_factory(spec.loss)
    from sampling_matters import training  # here: it imports the data sets (Pillow)

    start = time.perf_counter()
    try:
        training.train(config, resume=run.exists(), progress=False, loss_factory=factory)
    except RunInUseError:
        raise  # another process trains this run: not a result of it
    except _TRAINING_ERRORS as error:
        record_session(
            run, time.perf_counter() - start, "failed", f"{type(error).__name__}: {error}"
        )
    except BaseException:
        record_session(run, time.perf_counter() - start, "interrupted")
        raise
    else:
        written = (run / "metrics.json").exists()
        missing = "" if written else "training returned without writing metrics.json"
        record_session(run, time.perf_counter() - start, "done" if written else "failed", missing)
    return recorded_result(spec, run) or RunResult(spec, "failed"), True


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
        write_text_atomic(self.out / "ablation.csv", csv_text(results))
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
        rows, columns = grid_axes(self.losses, self.samplings, self.with_pml)
        grid = recall_grid(summarise(results), rows, columns)
        plot_grid(grid, rows, columns, self.out / "ablation.png")


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
        check_pml(shared)
    runs = plan_runs(loss_names, sampling_names, seed_list, with_pml)
    for spec in runs:  # every run's configuration is checked before any trains
        run_config(settings, spec, steps, out / "runs")
    flat = shared_settings(shared)
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
    check_out(plan.out)
    plan.out.mkdir(parents=True, exist_ok=True)
    check_same_settings(plan.out, plan.settings)
    results: list[RunResult] = []
    for i, spec in enumerate(plan.runs, 1):
        config = run_config(settings, spec, steps, plan.out / "runs")
        result, trained = _train_run(spec, config, retry_failed)
        results.append(result)
        plan.write(results)
        if progress:
            print(_progress_line(i, len(plan.runs), result, trained), file=sys.stderr, flush=True)
    return results
