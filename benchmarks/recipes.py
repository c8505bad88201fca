"""Our best recipes against the quality targets: emoji Recall@1 and kanji MAP@R on unseen classes.

Each recipe is a config file that ``sampling-matters train --config`` takes as it is:

- ``configs/demo.yaml`` (the recipe of ``make demo``): margin loss + distance weighted
  sampling, EfficientNet-Lite0 at 128 px with its stem and first MBConv blocks frozen
  (their output computed once), the rest fine-tuned. Target: emoji Recall@1 ≥ 0.50 with
  ``make demo`` inside 15 minutes on 2 CPU cores.
- ``configs/kanji.yaml``: the training defaults (margin loss + distance weighted
  sampling, ``small-cnn`` from scratch on 32×32 glyphs) at 2,500 steps, which is
  ``sampling-matters train --data kanji --steps 2500``. Target: kanji MAP@R ≥ 0.85 in
  at most 5 minutes of training on 2 CPU cores (set before the defaults were measured).

Every run goes through :func:`sampling_matters.training.train`, the loop behind the
command line, with each recipe's own settings (the defaults: no validation split, the
last model scored on the test classes). The wall time is the whole call: loading,
computing the cached features (for emoji: once per machine, then read from the feature
cache), training and the final evaluation; the training time alone is the sum of the
steps' time, from ``log.csv``.

Runs go to ``RUNS/<recipe>/seed<S>/`` (default ``runs/recipes``): run the same command
again after an interruption and finished runs are read back, a cut one resumes; a
folder holding a run with other settings is an error. Finished runs are also recorded
under ``results/runs/recipes/`` (``--records``; see ``finished.py``), so a fresh clone
reads them back instead of training them again. About 15 minutes for the demo's
three seeds and 20 minutes a kanji seed on two cores::

    .venv/bin/python benchmarks/recipes.py
    .venv/bin/python benchmarks/recipes.py --configs configs/kanji.yaml --seeds 0
    .venv/bin/python benchmarks/recipes.py --set-seeds 'kanji=0'    # three emoji seeds, one kanji
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from finished import RECORDS, check_settings, read_metrics, train_once, wall_seconds
from report import busy_cpu_seconds, cpu_model, others_share, others_text, own_cpu_seconds
from sampling_matters.tables import markdown_table, mean_std
from sampling_matters.training import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "recipes.md"
DEFAULT_CONFIGS = (ROOT / "configs" / "demo.yaml", ROOT / "configs" / "kanji.yaml")
TARGETS = {"emoji": ("recall@1", 0.50), "kanji": ("map@r", 0.85)}
"""The metric each data set's recipe must reach, and the value."""
BUDGETS = {"emoji": "`make demo` ≤ 15 min in all", "kanji": "training ≤ 5 min"}


@dataclass
class Result:
    """One recipe trained with one seed."""

    config: str
    data: str
    seed: int
    metrics: dict[str, float]
    wall_s: float
    train_s: float


def training_seconds(log: Path, batch: int) -> float:
    """Time in training (steps, validation, checkpoints) from ``log.csv``.

    Each row covers the steps since the one before at its ``images_per_s``:
    Σ (steps × batch) / (images per second).
    """
    total, last_step = 0.0, 0
    with log.open() as handle:
        for row in csv.DictReader(handle):
            step, rate = int(row["step"]), float(row["images_per_s"])
            if rate > 0 and step > last_step:
                total += (step - last_step) * batch / rate
                last_step = step
    return total


def run(path: Path, seed: int, runs: Path, records: Path | None = None) -> Result:
    """Train the recipe in ``path`` with ``seed`` into ``runs/<stem>/seed<S>``.

    A folder that already holds the finished run is read back, and a cut one resumes;
    one whose settings differ from the recipe's is an error (remove it to re-measure).
    """
    values = yaml.safe_load(path.read_text())
    out = runs / path.stem / f"seed{seed}"
    values.update(seed=seed, out=str(out))
    config = TrainConfig.from_flat(values)
    batch = config.data.classes_per_batch * config.data.samples_per_class
    record = records and records / path.stem / f"seed{seed}"
    train_once(out, lambda resume: train(config, resume=resume, progress=False), record)
    check_settings(config, out)
    train_s = training_seconds(out / "log.csv", batch)
    return Result(path.name, config.data.data, seed, read_metrics(out), wall_seconds(out), train_s)


def summary(results: Sequence[Result]) -> list[str]:
    """One row per recipe: the target, the means over seeds, pass or fail."""
    rows = []
    for name in dict.fromkeys(r.config for r in results):
        group = [r for r in results if r.config == name]
        metric, goal = TARGETS[group[0].data]
        values = [r.metrics[metric] for r in group]
        passed = statistics.mean(values) >= goal
        rows.append(
            [
                f"`{name}`",
                group[0].data,
                f"{metric} ≥ {goal:.2f}",
                BUDGETS[group[0].data],
                ", ".join(str(r.seed) for r in group),
                mean_std(values, digits=3),
                mean_std([r.train_s for r in group], digits=0),
                mean_std([r.wall_s for r in group], digits=0),
                "pass" if passed else "**FAIL**",
            ]
        )
    header = ["recipe", "set", "target", "time budget (not judged)", "seeds", "value"]
    header += ["train s", "wall s", "target met"]
    return markdown_table(header, rows)


def every_run(results: Sequence[Result]) -> list[str]:
    header = ["recipe", "seed", "R@1", "R@8", "MAP@R", "NMI", "train s", "wall s"]
    rows = [
        [
            f"`{r.config}`",
            str(r.seed),
            *(f"{r.metrics[k]:.4f}" for k in ("recall@1", "recall@8", "map@r", "nmi")),
            f"{r.train_s:.0f}",
            f"{r.wall_s:.0f}",
        ]
        for r in results
    ]
    return markdown_table(header, rows)


def render(results: Sequence[Result], facts: dict[str, str], configs: Sequence[Path]) -> str:
    lines = [
        "# Our best recipes against the quality targets",
        "",
        "Written by `benchmarks/recipes.py`. Each recipe is a config file run through",
        "`sampling_matters.training.train` (what `sampling-matters train --config` runs)",
        "and scored on the test classes, never seen in training. `train s` sums the",
        "training steps' time from `log.csv`; `wall s` is the whole call (data, cached",
        "features, training, evaluation).",
        "",
        *(f"- {k}: {v}" for k, v in facts.items()),
        "",
        "## Targets",
        "",
        *summary(results),
        "",
        "## Every run",
        "",
        *every_run(results),
        "",
        "## The recipes",
        "",
    ]
    for path in configs:
        name = path.resolve().relative_to(ROOT)
        lines += [f"`{name}`:", "", "```yaml", path.read_text().strip(), "```", ""]
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--configs", type=Path, nargs="+", default=list(DEFAULT_CONFIGS))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated (0,1,2)")
    parser.add_argument("--set-seeds", default="", help="per data set, e.g. 'kanji=0;emoji=0,1'")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"({DEFAULT_OUT})")
    parser.add_argument(
        "--runs", type=Path, default=ROOT / "runs" / "recipes", help="(runs/recipes)"
    )
    parser.add_argument(
        "--records",
        default=str(RECORDS / "recipes"),
        help="where finished runs are recorded and restored from ('none': nowhere)",
    )
    args = parser.parse_args(argv)
    records = None if args.records == "none" else Path(args.records)
    seeds = _ints(args.seeds)
    per_set = {k: _ints(v) for k, v in (p.split("=", 1) for p in args.set_seeds.split(";") if p)}
    for path in args.configs:
        data = yaml.safe_load(path.read_text()).get("data")
        if data not in TARGETS:
            parser.error(f"{path}: data {data!r} has no target; expected one of {list(TARGETS)}")
    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    busy, own, start = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
    results: list[Result] = []
    for path in args.configs:
        data = yaml.safe_load(path.read_text())["data"]
        for seed in per_set.get(data, seeds):
            results.append(run(path, seed, args.runs, records))
            r = results[-1]
            print(
                f"{path.name} seed {seed}: R@1 {r.metrics['recall@1']:.4f} "
                f"MAP@R {r.metrics['map@r']:.4f} train {r.train_s:.0f} s wall {r.wall_s:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    elapsed = time.perf_counter() - start
    facts = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads",
        "load": others_text(others_share(busy, own, elapsed)),
        "software": f"torch {torch.__version__}, Python {sys.version.split()[0]}",
        "run time": f"{elapsed / 60:.1f} min",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results, facts, args.configs))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
