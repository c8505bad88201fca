"""Every training default justified by a measurement: each one reverted, paired by seed.

The baseline is what a user gets from the command line with nothing but the data and
the budget: ``sampling-matters train --data kanji --steps 2500 --seed S``. Each other
arm is that command with one default changed back to what it was before (or to what
another library's plain loop does), and all arms run through the command line itself
(``sampling_matters.cli.main``), one run at a time. The table gives each arm's test
Recall@1 and MAP@R (mean ± std over the seeds) and its difference from its base,
paired by seed: the mean difference and its 95% interval (t with n − 1 degrees of
freedom). Where the interval holds 0 the verdict is "not distinguishable".

An arm's base is ``defaults``, or ``previous-defaults`` for the arms measured while the
previous defaults (:data:`PREVIOUS`) were the defaults: they carry those settings as
flags, so a run read back is checked against what its flags give today
(``finished.check_settings``), and they keep their pairing. When this table
moves a default, the arms that measured it become the reverted ones (and their runs
move folders with them: ``batch-20x4`` became ``beta-lr-1e-2``, ``beta-lr-1e-3``
became ``batch-16x5``).

Runs go to ``RUNS/<arm>/seed<S>/`` (default ``runs/defaults``); run the same command
again after an interruption: finished runs are read back, a cut one resumes. Finished
runs are also recorded under ``results/runs/defaults/`` (``--records``; their
``config.yaml``, ``metrics.json`` and log, see ``finished.py``), so a fresh clone
continues where the last one stopped. The table is rewritten after every run. The arms
run in three tiers (the defaults and the changes that matter most first), seed-major
within a tier::

    .venv/bin/python benchmarks/defaults.py                       # kanji, 2,500 steps, 3 seeds
    .venv/bin/python benchmarks/defaults.py --arms defaults,old-defaults --seeds 1
    .venv/bin/python benchmarks/defaults.py --data folder:/data/glyphs --out /tmp/d.md
    .venv/bin/python benchmarks/defaults.py --report              # the finished runs' table

Needs the prepared set (``sampling-matters prepare kanji``).
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finished import RECORDS, check_settings, read_metrics, train_once
from sampling_matters.cli import _parser
from sampling_matters.cli import main as cli
from sampling_matters.cli.train import train_config
from sampling_matters.config import TrainConfig, read_yaml
from sampling_matters.tables import markdown_table, mean_std, paired

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("recall@1", "map@r")
TARGET_MAP, TARGET_RECALL = 0.833, 0.965
"""The defaults' targets on kanji at 2,500 steps: the MAP@R the benchmark loop reached
(``results/quality.md`` before its loop was retired), within one standard deviation, and
Recall@1."""


@dataclass(frozen=True)
class Arm:
    """One row: flags added to the baseline command, and what they undo."""

    name: str
    flags: tuple[str, ...]
    text: str
    tier: int  # tiers run one after the other, each seed-major
    base: str = "defaults"  # the arm it is paired against


PREVIOUS = ("--classes-per-batch", "16", "--samples-per-class", "5", "--beta-lr", "0.01")
"""The defaults before this table moved them (the ``previous-defaults`` arm says which). The
arms measured while they were the defaults keep them as flags, and are paired against them."""

ARMS = [
    Arm("defaults", (), "the defaults (nothing but --data, --steps, --seed)", 1),
    Arm("previous-defaults", PREVIOUS, "the previous defaults (16 × 5 batches, β at 1e-2)", 1),
    Arm(
        "batch-16x5",
        ("--classes-per-batch", "16", "--samples-per-class", "5"),
        "16 classes × 5 images a batch (the previous default)",
        1,
    ),
    Arm("beta-lr-1e-2", ("--beta-lr", "0.01"), "β at 1e-2 (the previous default)", 1),
    Arm("no-lr-decay", ("--lr-decay-at",), "no learning-rate decay (a plain loop)", 2),
    Arm(
        "old-defaults",
        (
            "--backbone-lr", "0.0001", "--classes-per-batch", "20", "--samples-per-class",
            "4", "--val-fraction", "0.1", "--select", "recall@1", "--beta-lr", "0.01",
        ),
        "all of the first defaults: backbone at 1e-4, 20 × 4, 10% validation, best R@1",
        3,
        "previous-defaults",
    ),
    Arm(
        "backbone-lr-1e-4",
        (*PREVIOUS, "--backbone-lr", "0.0001"),
        "backbone at 1e-4 (fine-tuning)",
        3,
        "previous-defaults",
    ),
    Arm(
        "val-recall",
        (*PREVIOUS, "--val-fraction", "0.1", "--select", "recall@1"),
        "10% of the training classes held out, best.pt by validation Recall@1 (a first default)",
        3,
        "previous-defaults",
    ),
    Arm(
        "val-map",
        (*PREVIOUS, "--val-fraction", "0.1", "--select", "map@r"),
        "10% of the training classes held out, best.pt by validation MAP@R",
        3,
        "previous-defaults",
    ),
    Arm(
        "photo-augment",
        (*PREVIOUS, "--augment", "photo"),
        "glyphs augmented as photos (crops, flips)",
        3,
        "previous-defaults",
    ),
    Arm(
        "no-weight-decay",
        (*PREVIOUS, "--weight-decay", "0"),
        "no weight decay (a plain loop)",
        3,
        "previous-defaults",
    ),
]  # fmt: skip
BY_NAME = {arm.name: arm for arm in ARMS}


def run_dir(runs: Path, arm: Arm, seed: int) -> Path:
    return runs / arm.name / f"seed{seed}"


def record_dir(args: argparse.Namespace, arm: Arm, seed: int) -> Path | None:
    """Where the run's record is kept (``None`` with ``--records none``)."""
    if str(args.records) == "none":
        return None
    setup = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{args.data}-{args.steps}").strip("-")
    return Path(args.records) / setup / arm.name / f"seed{seed}"


def train(args: argparse.Namespace, arm: Arm, seed: int) -> dict[str, float]:
    """Train (or resume, or read back) one run through the command line; its metrics."""
    data, steps = args.data, args.steps
    out = run_dir(args.runs, arm, seed)
    flags = ["--data", data, "--steps", str(steps), "--seed", str(seed), *arm.flags]

    def command(resume: bool) -> None:
        where = ["--resume", str(out)] if resume else ["--out", str(out)]
        status = cli(["train", *where, *flags, "--quiet"])
        if status != 0:
            raise SystemExit(f"{arm.name} seed {seed}: training failed (exit {status})")

    train_once(out, command, record_dir(args, arm, seed))
    check_settings(expected(out, flags), out)  # a run read back is the arm's
    return read_metrics(out)


def expected(out: Path, flags: list[str]) -> TrainConfig:
    """The settings the command line gives the arm's run today."""
    return train_config(_parser().parse_args(["train", "--out", str(out), *flags]))


def settings_of(out: Path) -> dict[str, object]:
    """The run's settings as the config reads them (a setting newer than the run: default)."""
    return TrainConfig.from_flat(read_yaml(out / "config.yaml")).flat()


def changed(runs: Path, arm: Arm, seeds: list[int]) -> str:
    """The settings of the arm's run that differ from its base's (resolved)."""
    mine, base = run_dir(runs, arm, seeds[0]), run_dir(runs, BY_NAME[arm.base], seeds[0])
    if not (mine / "config.yaml").exists() or not (base / "config.yaml").exists():
        return ""
    a, b = settings_of(base), settings_of(mine)
    known = [k for k in b if k not in ("out", "seed") and None not in (a.get(k), b[k])]
    keys = [k for k in known if a[k] != b[k]]  # unset on one side: decided at training
    return ", ".join(f"{k}: {a.get(k)} → {b[k]}" for k in keys)


def render(results: dict[str, dict[int, dict[str, float]]], seeds: list[int], args: Any) -> str:
    lines = [
        f"# Training defaults, each reverted: {args.data}, {args.steps} steps, seeds {seeds}",
        "",
        f"Generated by `benchmarks/defaults.py` on {time.strftime('%Y-%m-%d')}. Every run is "
        f"`sampling-matters train --data {args.data} --steps {args.steps} --seed S` plus the "
        "arm's flags, through the command line; test metrics on the unseen classes. "
        "Differences are paired by seed against the section's base: mean and 95% interval "
        "(t, n − 1 degrees of freedom); where the interval holds 0, the arms are not "
        "distinguishable.",
        "",
        "Identical runs are not bit-identical across processes on these CPUs (thread "
        "scheduling changes float sums), so a seed's run-to-run noise is part of the spread.",
    ]
    for base, title in SECTIONS:
        rows = section_rows(results, seeds, args, base)
        if rows:
            header = ["arm", "what", "seeds", "R@1 %", f"Δ R@1 vs {base}", "MAP@R %", "Δ MAP@R"]
            lines += ["", f"## {title}", ""]
            lines += markdown_table([*header, "settings that differ (resolved config.yaml)"], rows)
    return "\n".join([*lines, "", *target(results.get(ARMS[0].name, {}), seeds)]) + "\n"


SECTIONS = [
    ("defaults", "Against the defaults"),
    (
        "previous-defaults",
        f"Against {BY_NAME['previous-defaults'].text}, measured while they were the defaults",
    ),
]


def section_rows(
    results: dict[str, dict[int, dict[str, float]]], seeds: list[int], args: Any, base: str
) -> list[list[str]]:
    """The rows of the base's arm and of the arms paired against it."""
    against = results.get(base, {})
    rows = []
    for arm in ARMS:
        done = results.get(arm.name, {})
        if not done or (arm.base != base and arm.name != base):
            continue
        cells = [f"`{arm.name}`", arm.text, str(len(done))]
        for metric in METRICS:
            values = [done[s][metric] for s in seeds if s in done]
            cells.append(mean_std(values, scale=100))
            pairs = [
                (done[s][metric], against[s][metric]) for s in seeds if s in done and s in against
            ]
            cells.append("—" if arm.name == base else paired(pairs, scale=100))
        cells.append("" if arm.name == base else changed(args.runs, arm, seeds))
        rows.append(cells)
    return rows


def target(base: dict[int, dict[str, float]], seeds: list[int]) -> list[str]:
    """Whether the defaults reach the targets (mean MAP@R + std ≥ 0.833, mean R@1 ≥ 0.965)."""
    done = [base[s] for s in seeds if s in base]
    if len(done) < 2:
        return ["Target: needs at least two seeds of `defaults`."]
    maps, recalls = [r["map@r"] for r in done], [r["recall@1"] for r in done]
    map_mean, map_std, recall = (
        statistics.fmean(maps),
        statistics.stdev(maps),
        statistics.fmean(recalls),
    )
    met = map_mean + map_std >= TARGET_MAP and recall >= TARGET_RECALL
    verdict = "met" if met else "not met"
    if len(done) < len(seeds):  # the verdict waits for every seed asked for
        verdict = f"{verdict} so far, provisional until all {len(seeds)} seeds have run"
    return [
        f"Target: the defaults' MAP@R within one standard deviation of {TARGET_MAP} "
        f"(mean + std = {map_mean + map_std:.4f}) and mean R@1 ≥ {TARGET_RECALL} "
        f"({recall:.4f}), over {len(done)} seeds: **{verdict}**."
    ]


def csv_text(results: dict[str, dict[int, dict[str, float]]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["arm", "seed", *METRICS])
    for arm, by_seed in results.items():
        for seed, metrics in sorted(by_seed.items()):
            writer.writerow([arm, seed, *(f"{metrics[m]:.6f}" for m in METRICS)])
    return out.getvalue()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="kanji")
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--arms", default=",".join(a.name for a in ARMS))
    parser.add_argument("--runs", type=Path, default=Path("runs/defaults"))
    parser.add_argument("--out", type=Path, default=RESULTS / "defaults.md")
    parser.add_argument(
        "--report", action="store_true", help="write the table of the finished runs; train none"
    )
    parser.add_argument(
        "--records",
        default=str(RECORDS / "defaults"),
        help="where finished runs are recorded and restored from ('none': nowhere)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse()
    chosen = args.arms.split(",")
    unknown = set(chosen) - {a.name for a in ARMS}
    if unknown:
        raise SystemExit(f"unknown arms {sorted(unknown)}; known: {[a.name for a in ARMS]}")
    seeds = list(range(args.seeds))
    results: dict[str, dict[int, dict[str, float]]] = {}
    order = [
        (seed, arm)
        for tier in sorted({a.tier for a in ARMS})
        for seed in seeds
        for arm in ARMS
        if arm.tier == tier and arm.name in chosen
    ]
    done = [(seed, arm) for seed, arm in order if finished(args, arm, seed)]
    for seed, arm in done:  # every finished run is in every table written below
        results.setdefault(arm.name, {})[seed] = train(args, arm, seed)
    for seed, arm in [] if args.report else order:
        metrics = train(args, arm, seed)
        results.setdefault(arm.name, {})[seed] = metrics
        write(args, results, seeds)
        print(
            f"{arm.name} seed {seed}: R@1 {metrics['recall@1']:.4f} MAP@R {metrics['map@r']:.4f}",
            file=sys.stderr,
            flush=True,
        )
    write(args, results, seeds)
    print(f"wrote {args.out}")


def finished(args: argparse.Namespace, arm: Arm, seed: int) -> bool:
    """Whether the run has ended, here or in its record (then it is read back, not trained)."""
    record = record_dir(args, arm, seed)
    ends = [run_dir(args.runs, arm, seed), *([record] if record is not None else [])]
    return any((folder / "metrics.json").exists() for folder in ends)


def write(
    args: argparse.Namespace, results: dict[str, dict[int, dict[str, float]]], seeds: list[int]
) -> None:
    """The table and its csv, from the runs finished so far."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results, seeds, args))
    args.out.with_suffix(".csv").write_text(csv_text(results))


if __name__ == "__main__":
    main()
