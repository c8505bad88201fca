r"""Does learning β help? The margin loss with β fixed, learned, per class and per image.

The paper's margin loss ℓ = (α + y (D − β))₊ learns its boundary β: one global β⁽⁰⁾,
optionally plus an offset per class (β⁽ᶜˡᵃˢˢ⁾) or per training image (β⁽ⁱᵐᵍ⁾). This
study trains the margin loss with distance weighted sampling in four arms that differ
in nothing else (same settings, budget and seeds):

- ``fixed``: β = ``beta`` (1.2) throughout (``learn_beta=False``);
- ``global``: β⁽⁰⁾ learned (the library's default);
- ``per-class``: β⁽⁰⁾ + β⁽ᶜˡᵃˢˢ⁾ learned (``beta_per_class=True``);
- ``per-image``: β⁽⁰⁾ + β⁽ⁱᵐᵍ⁾ learned (``beta_per_image=True``).

Each arm is a one-cell ablation (:func:`sampling_matters.ablation.run_ablation`, margin ×
distance-weighted) in ``OUT/<arm>/``, so an interrupted study resumes where it stopped.
``--like DIR`` takes the shared settings (and the budget) of the ablation in ``DIR``; its
margin × distance-weighted runs are the ``global`` arm and are copied, not retrained.

Run it (with ``--like``, nine runs: the global arm is the ablation's)::

    cd benchmarks
    ../.venv/bin/python beta_study.py --like ../runs/ablation-kanji --out ../runs/beta-kanji \
        --results results/beta-kanji
    ../.venv/bin/python beta_study.py --config ../configs/kanji.yaml --steps 500 --seeds 2 \
        --out ../runs/beta --results ../runs/beta
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shutil
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from sampling_matters import files
from sampling_matters.ablation import (
    ABLATION_KEYS,
    HEADERS,
    METRICS,
    RunResult,
    RunSpec,
    check_names,
    check_seeds,
    run_ablation,
    summarise,
)
from sampling_matters.data.cache import write_text_atomic
from sampling_matters.tables import markdown_table, mean_std

ARMS: dict[str, dict[str, Any]] = {
    "fixed": {"learn_beta": False, "beta_per_class": False, "beta_per_image": False},
    "global": {"learn_beta": True, "beta_per_class": False, "beta_per_image": False},
    "per-class": {"learn_beta": True, "beta_per_class": True, "beta_per_image": False},
    "per-image": {"learn_beta": True, "beta_per_class": False, "beta_per_image": True},
}
"""Each arm's β settings; every other setting is shared."""
CELL = ("margin", "distance-weighted")


def like_settings(ablation: Path) -> dict[str, Any]:
    """The shared settings (``steps`` included) of the ablation in ``ablation``."""
    path = ablation / "ablation.json"
    if not path.exists():
        raise ValueError(f"{ablation} holds no ablation (no ablation.json)")
    return dict(json.loads(path.read_text())["settings"])


def reuse_global(ablation: Path, arm_dir: Path, seeds: Sequence[int]) -> None:
    """Copy the ablation's finished margin × distance-weighted runs into the global arm.

    Runs already in the arm, or unfinished in the ablation, are left (the latter train).
    """
    for seed in seeds:
        name = RunSpec(*CELL, seed).name
        source, target = ablation / "runs" / name, arm_dir / "runs" / name
        if (source / "metrics.json").exists() and not target.exists():
            shutil.copytree(source, target)


def final_beta(run: Path) -> dict[str, float]:
    """β⁽⁰⁾ at the end of training and the spread (std) of the learned offsets (NaN if none)."""
    path = run / "last.pt"
    if not path.exists():
        return {}
    loss = files.load_mapping(path, "checkpoint", ("loss",))["loss"]
    offsets = [loss[k] for k in ("beta_class", "beta_image") if loss.get(k) is not None]
    spread = float(offsets[0].float().std()) if offsets else math.nan
    return {"beta0": float(loss["beta0"]), "offset_std": spread}


def _mean(values: Sequence[float], digits: int = 2) -> str:
    finite = [v for v in values if math.isfinite(v)]
    return mean_std(finite, digits=digits)


def arm_rows(
    arms: dict[str, list[RunResult]], betas: dict[str, list[dict[str, float]]]
) -> list[list[str]]:
    """One row per arm: metrics (mean ± std, %), β at the end, ΔR@1 against ``fixed``."""
    base = summarise(arms["fixed"]).get(CELL) if "fixed" in arms else None
    rows = []
    for arm, results in arms.items():
        summary = summarise(results).get(CELL)
        if summary is None:
            continue
        recall = summary.values["recall@1"]
        delta = (
            f"{100 * (statistics.fmean(recall) - statistics.fmean(base.values['recall@1'])):+.1f}"
            if base and recall and base.values["recall@1"] and arm != "fixed"
            else "—"
        )
        beta = betas.get(arm, [])
        spread = [b.get("offset_std", math.nan) for b in beta]
        rows.append(
            [
                arm,
                f"{len(recall)}/{summary.runs}",
                *(mean_std(summary.values[m], 100.0) for m in METRICS),
                delta,
                _mean([b.get("beta0", math.nan) for b in beta]),
                _mean(spread),
            ]
        )
    return rows


def render(
    arms: dict[str, list[RunResult]],
    betas: dict[str, list[dict[str, float]]],
    settings: dict[str, Any],
    seeds: Sequence[int],
    reused: str,
) -> str:
    """The study's report: settings, the table, how to read it."""
    header = ["β", "seeds", *HEADERS, "ΔR@1 vs fixed", "β⁽⁰⁾ at the end", "std of offsets"]
    shared = ", ".join(f"`{k}={v!r}`" for k, v in settings.items())
    lines = [
        "# Learned β against a fixed β",
        "",
        "Written by `benchmarks/beta_study.py`: margin loss + distance weighted sampling, "
        "four arms that differ only in how β is learned.",
        "",
        f"- seeds {', '.join(map(str, seeds))}; every arm: {shared}",
        f"- {reused}",
        "- `fixed`: β = `beta` throughout; `global`: β⁽⁰⁾ learned at `beta_lr`; "
        "`per-class` / `per-image`: β⁽⁰⁾ plus one learned offset per training class / "
        "image (initialised at 0).",
        "",
        "## Test metrics, mean ± std over seeds (%)",
        "",
        "Test classes never seen in training, from each run's `best.pt`. β⁽⁰⁾ and the std "
        "of the per-class or per-image offsets are read from the end of training "
        "(`last.pt`).",
        "",
        *markdown_table(header, arm_rows(arms, betas)),
        "",
    ]
    return "\n".join(lines)


def csv_text(arms: dict[str, list[RunResult]], betas: dict[str, list[dict[str, float]]]) -> str:
    """One line per run: arm, seed, metrics, β at the end, wall time, status."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["arm", "seed", *METRICS, "beta0", "offset_std", "wall_s", "status"])
    for arm, results in arms.items():
        for result, beta in zip(results, betas[arm], strict=True):
            writer.writerow(
                [
                    arm,
                    result.spec.seed,
                    *(f"{result.metrics.get(m, math.nan):.6f}" for m in METRICS),
                    f"{beta.get('beta0', math.nan):.4f}",
                    f"{beta.get('offset_std', math.nan):.4f}",
                    f"{result.wall_s:.1f}",
                    result.status,
                ]
            )
    return buffer.getvalue()


def _settings(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    settings: dict[str, Any] = {}
    if args.like:
        settings.update(like_settings(args.like))
    if args.config:
        loaded = yaml.safe_load(args.config.read_text()) or {}
        settings.update(loaded)
    steps = args.steps or settings.get("steps")
    if not steps:
        raise SystemExit("give --steps (or --like an ablation, whose budget is taken)")
    dropped = {*ABLATION_KEYS, *ARMS["fixed"]}  # set by the study itself
    return {k: v for k, v in settings.items() if k not in dropped}, int(steps)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--like", type=Path, help="an ablation directory: its settings and runs")
    parser.add_argument("--config", type=Path, help="YAML of shared settings (after --like)")
    parser.add_argument("--steps", type=int, help="steps per run (default: the ablation's)")
    parser.add_argument("--seeds", default="3", help="S (seeds 0..S-1) or a list like 0,4,7")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated")
    parser.add_argument("--out", type=Path, required=True, help="the study's run directory")
    parser.add_argument("--results", type=Path, required=True, help="where beta.md/csv go")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings, steps = _settings(args)
    seeds = check_seeds(args.seeds)
    names = check_names(args.arms, ARMS, "arm")
    reused = "every arm trained by this study"
    arms: dict[str, list[RunResult]] = {}
    betas: dict[str, list[dict[str, float]]] = {}
    args.results.mkdir(parents=True, exist_ok=True)
    for arm in names:
        if arm == "global" and args.like:
            reuse_global(args.like, args.out / arm, seeds)
            reused = (
                f"the `global` arm is the margin × distance-weighted cell of the ablation in "
                f"`{args.like.name}` (same settings and seeds; its runs are copied, not retrained)"
            )
        arms[arm] = run_ablation(
            {**settings, **ARMS[arm]},
            steps=steps,
            out=args.out / arm,
            losses=CELL[0],
            samplings=CELL[1],
            seeds=seeds,
        )
        betas[arm] = [final_beta(args.out / arm / "runs" / r.spec.name) for r in arms[arm]]
        shown = {**settings, "steps": steps}
        text = render(arms, betas, shown, seeds, reused)
        write_text_atomic(args.results / "beta.md", text)
        rows = csv_text(arms, betas)
        write_text_atomic(args.results / "beta.csv", rows)
    print(f"wrote {args.results / 'beta.md'}")


if __name__ == "__main__":
    main()
