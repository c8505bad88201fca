"""Training: P×K batches, any loss × sampling strategy, checkpoints that survive a kill.

A run directory holds ``config.yaml`` (the final configuration), ``last.pt`` and
``best.pt`` (by validation Recall@1, written atomically), ``log.csv`` and, at the end,
``metrics.json`` (the metrics contract, on the test classes). Validation uses classes
held out from the training classes, so the test classes stay unseen until the end.

``train(config, resume=True)`` continues a killed run from its ``last.pt`` (written at
the end of every epoch, and at the step where Ctrl-C stopped it): model, optimiser,
schedule, position in the epoch and random state. A start never changes an existing
run unless asked (:mod:`sampling_matters.runs`): a new run into a folder that holds one
is refused, and a resume that would change the run's settings, or that finds a
``last.pt`` it cannot read, is refused before any file is written. Every image file of
the data set is checked before training (:mod:`sampling_matters.data.image_check`).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from sampling_matters import data as datasets
from sampling_matters import files
from sampling_matters.batching import PKSampler
from sampling_matters.config import (
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    read_yaml,
)
from sampling_matters.data.cache import cache_root, write_text_atomic
from sampling_matters.data.datasets import ImageDataset, Kind, Transform
from sampling_matters.data.image_check import BadImagesError, check_images
from sampling_matters.data.transforms import eval_transform, train_transform
from sampling_matters.evaluation import evaluate
from sampling_matters.losses import LossModule, MarginLoss, make_loss
from sampling_matters.models import EmbeddingModel, build_model, from_scratch
from sampling_matters.runs import (
    RunLock,
    check_start,
    discard,
    put_back,
    remove_orphans,
    set_aside,
)

__all__ = [
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "TrainingInterrupted",
    "embed_dataset",
    "load_run",
    "train",
]

LOG_COLUMNS = (
    "step",
    "epoch",
    "loss",
    "active_fraction",
    "beta",
    "negative_distance",
    "negative_distance_std",
    "fallback",
    "images_per_s",
    "val_recall@1",
    "val_map@r",
)


# ------------------------------------------------------------------------------ data


@dataclass
class _Splits:
    train: ImageDataset
    val: ImageDataset | None
    test: ImageDataset
    skipped: list[Path] = field(default_factory=list)  # bad image files left out


def _split_validation(
    train: ImageDataset, fraction: float
) -> tuple[ImageDataset, ImageDataset | None]:
    """Hold out the last ``fraction`` of the training classes for validation (0: none)."""
    if fraction == 0:
        return train, None
    n_val = round(train.n_classes * fraction)
    if n_val < 2 or train.n_classes - n_val < 2:
        raise ValueError(
            f"val_fraction {fraction} of the {train.n_classes} training classes holds out "
            f"{n_val}; validation and training need at least 2 classes each: use "
            "val_fraction 0 (no validation) or another fraction"
        )
    is_val = train.labels >= train.n_classes - n_val  # (N,)
    keep = torch.nonzero(~is_val).squeeze(1)
    held = torch.nonzero(is_val).squeeze(1)
    return train.select(keep), train.select(held)


def load_checked(spec: str, split: str, *, skip_bad: bool, progress: bool) -> ImageDataset:
    """The ``split`` of ``spec`` with every image file checked (see :func:`check_images`)."""
    return check_images(datasets.load(spec, split), skip=skip_bad, progress=progress)[0]


def _checked_splits(
    spec: str, skip_bad: bool, progress: bool
) -> tuple[ImageDataset, ImageDataset, list[Path]]:
    """The train and test splits, image files checked; one error lists both's bad files."""
    checked, errors = [], []
    for split in ("train", "test"):
        try:
            checked.append(
                check_images(datasets.load(spec, split), skip=skip_bad, progress=progress)
            )
        except BadImagesError as error:
            errors.append(error)
    if errors:
        raise BadImagesError([b for e in errors for b in e.bad], sum(e.total for e in errors))
    (train, bad_train), (test, bad_test) = checked
    return train, test, [image.path for image in bad_train + bad_test]


def image_kind(config: TrainConfig, dataset: ImageDataset) -> Kind:
    """How a run decodes and transforms ``dataset``: its ``augment`` kind, or the set's own."""
    augment = config.data.augment
    return augment if augment in ("photo", "glyph") else dataset.kind  # type: ignore[return-value]


def _check_scorable(dataset: ImageDataset, split: str) -> None:
    """Refuse, before training, a split that the metrics cannot score."""
    counts = torch.bincount(dataset.labels)  # (C,)
    if len(dataset) <= 8 or len(counts) < 2 or int(counts.max()) < 2:
        raise ValueError(
            f"the {split} split holds {len(dataset)} images of {len(counts)} classes; scoring "
            "it needs more than 8 images (Recall@8 searches 8 neighbours), 2 classes, and a "
            "class with 2 images"
        )


def _load_splits(
    config: TrainConfig, model: EmbeddingModel, augmentation: torch.Generator, progress: bool
) -> _Splits:
    train_set, test_set, skipped = _checked_splits(
        config.data.data, config.data.skip_bad_images, progress
    )
    kind = image_kind(config, train_set)
    train_set, test_set = train_set.with_kind(kind), test_set.with_kind(kind)
    size = config.data.image_size or model.input_size
    train_set, val_set = _split_validation(train_set, config.data.val_fraction)
    normalization, channels = model.normalization, model.channels
    evaluation = eval_transform(kind, size, normalization=normalization, channels=channels)
    augment: Transform = train_transform(
        kind, size, normalization=normalization, channels=channels, generator=augmentation
    )
    if config.data.augment == "none":
        augment = evaluation
    _check_scorable(test_set, "test")
    if val_set is not None:
        _check_scorable(val_set, "validation")
    return _Splits(
        train_set.with_transform(evaluation if config.model.cache_features else augment),
        None if val_set is None else val_set.with_transform(evaluation),
        test_set.with_transform(evaluation),
        skipped,
    )


# ------------------------------------------------------------------------- inference


_OUTPUTS: dict[str, Callable[[EmbeddingModel, Tensor], Tensor]] = {
    "embeddings": EmbeddingModel.forward,
    "features": EmbeddingModel.features,
    "frozen": EmbeddingModel.frozen_features,
}


@torch.no_grad()
def embed_dataset(
    model: EmbeddingModel,
    dataset: Dataset[Any],
    *,
    device: torch.device,
    batch_size: int = 256,
    workers: int = 0,
    output: Literal["embeddings", "features", "frozen"] = "embeddings",
) -> tuple[Tensor, Tensor]:
    """Embeddings (or backbone features) of every item, in order, and their labels.

    Args:
        model: the network.
        dataset: items ``(image, label, index)``.
        device: where to run the model.
        batch_size: images per forward pass.
        workers: DataLoader worker processes.
        output: ``"embeddings"``, the backbone's pooled ``"features"``, or the output of
            its ``"frozen"`` part (:meth:`EmbeddingModel.frozen_features`, to be cached).

    Returns:
        (N, E) float32 embeddings (or (N, F) features, or (N, …) frozen outputs) on the
        CPU and (N,) labels.
    """
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    outputs, labels = [], []
    for images, batch_labels, _ in loader:
        images = images.to(device)
        out = _OUTPUTS[output](model, images)
        outputs.append(out.float().cpu())
        labels.append(batch_labels)
    model.train(was_training)
    return torch.cat(outputs), torch.cat(labels)


def _evaluate_model(
    model: EmbeddingModel,
    dataset: Dataset[Any],
    config: TrainConfig,
    device: torch.device,
    with_nmi: bool,
) -> dict[str, float | int]:
    embeddings, labels = _embed_or_head(model, dataset, config, device)
    return evaluate(embeddings, labels, with_nmi=with_nmi, progress=False)


def _embed_or_head(
    model: EmbeddingModel, dataset: Dataset[Any], config: TrainConfig, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Embeddings of a data set, or of its cached features (a TensorDataset)."""
    if isinstance(dataset, TensorDataset):
        features, labels, _ = dataset.tensors
        with torch.no_grad():
            return model.embed_frozen(features.to(device)).float().cpu(), labels
    return embed_dataset(
        model,
        dataset,
        device=device,
        batch_size=config.run.eval_batch_size,
        workers=config.data.workers,
    )


def _fingerprint(dataset: ImageDataset, config: TrainConfig) -> str:
    """A key for the frozen part's output on ``dataset``: model, input, images, labels.

    File-backed images enter by path, size and modification time; in-memory ones by
    their bytes, so editing a data set gives new features.
    """
    model = config.model
    frozen = "all" if model.freeze_backbone else model.frozen_stages
    key = (model.model, model.pretrained, frozen, config.data.image_size)
    digest = hashlib.sha256(repr(key).encode())
    digest.update(dataset.labels.numpy().tobytes())
    if isinstance(dataset.images, np.ndarray):
        digest.update(np.ascontiguousarray(dataset.images).tobytes())
    else:
        for path in dataset.images:
            stat = Path(path).stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def _read_cached(path: Path) -> tuple[Tensor, Tensor] | None:
    """Cached features and labels, or None when absent or unreadable (then recomputed)."""
    if not path.exists():
        return None
    try:
        features, labels = files.load(path, "cached features")
    except (ValueError, TypeError):
        return None
    return features, labels


def _cache_features(
    model: EmbeddingModel, splits: _Splits, config: TrainConfig, device: torch.device
) -> tuple[Dataset[Any], Dataset[Any] | None, Dataset[Any]]:
    """The frozen backbone's features of each split, computed once and kept on disk.

    They are stored under ``<cache>/features/`` (see
    :func:`sampling_matters.data.cache.cache_root`), keyed by :func:`_fingerprint`, so
    runs that share a backbone and a data set (an ablation, a re-run) compute them once.
    """
    folder = cache_root() / "features"

    def cached(dataset: ImageDataset) -> TensorDataset:
        path = folder / f"{_fingerprint(dataset, config)}.pt"
        stored = _read_cached(path)
        if stored is not None:
            features, labels = stored
        else:
            features, labels = embed_dataset(
                model,
                dataset,
                device=device,
                batch_size=config.run.eval_batch_size,
                workers=config.data.workers,
                output="frozen",
            )
            folder.mkdir(parents=True, exist_ok=True)
            files.save((features, labels), path)
        return TensorDataset(features, labels, torch.arange(len(labels)))

    val = None if splits.val is None else cached(splits.val)
    return cached(splits.train), val, cached(splits.test)


# -------------------------------------------------------------------------- optimise


def _build_loss(
    config: TrainConfig, train_set: Dataset[Any], n_classes: int, generator: torch.Generator
) -> LossModule:
    if config.loss.loss != "margin":
        return make_loss(config.loss.loss, sampling=config.loss.sampling, generator=generator)
    return MarginLoss(
        beta=config.loss.beta,
        learn_beta=config.loss.learn_beta,
        nu=config.loss.nu,
        n_classes=n_classes if config.loss.beta_per_class else None,
        n_items=len(train_set) if config.loss.beta_per_image else None,  # type: ignore[arg-type]
        sampling=config.loss.sampling,
        generator=generator,
    )


def _optimiser(
    model: EmbeddingModel, loss: nn.Module, config: TrainConfig
) -> torch.optim.Optimizer:
    groups: list[dict[str, Any]] = [
        {"params": list(model.head.parameters()), "lr": config.optim.lr}
    ]
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    if backbone:
        groups.append({"params": backbone, "lr": config.optim.backbone_lr})
    beta_group = getattr(loss, "beta_param_group", None)  # MarginLoss, or a loss_factory's
    if beta_group is not None:
        group = beta_group(config.optim.beta_lr)
        group["params"] = [p for p in group["params"] if p.requires_grad]
        if group["params"]:  # a fixed global β alone has nothing to train
            groups.append(group)
    return torch.optim.AdamW(groups, weight_decay=config.optim.weight_decay)


def _schedule(
    optimiser: torch.optim.Optimizer, total_steps: int, config: TrainConfig
) -> torch.optim.lr_scheduler.MultiStepLR:
    milestones = sorted({max(1, int(total_steps * f)) for f in config.optim.lr_decay_at})
    return torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones, gamma=config.optim.lr_decay)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ------------------------------------------------------------------------ checkpoints

_LAST_KEYS = ("model", "loss", "optimiser", "schedule", "progress", "rng")
_BEST_KEYS = ("model", "config")


def _state(
    run: _Run, optimiser: torch.optim.Optimizer, schedule: Any, progress: dict[str, Any]
) -> dict[str, Any]:
    return {
        "model": run.model.state_dict(),
        "loss": run.loss.state_dict(),
        "optimiser": optimiser.state_dict(),
        "schedule": schedule.state_dict(),
        "progress": dict(progress),
        "rng": {
            "torch": torch.get_rng_state(),
            "loss": run.sampling.get_state(),
            "augmentation": run.augmentation.get_state(),
        },
        "config": run.config.flat(),
    }


def _read_last(out: Path, config: TrainConfig) -> dict[str, Any] | None:
    """The run's ``last.pt`` for a resume, after checking the run's settings; reads only.

    Raises:
        ValueError: ``config`` would change the settings of the run (``config.yaml`` or
            ``last.pt``), or ``last.pt`` is unreadable.
    """
    if (out / "config.yaml").exists():
        _refuse_changes(out, _settings_of(out / "config.yaml", read_yaml), config)
    if not (out / "last.pt").exists():
        return None
    state = files.load_mapping(out / "last.pt", "checkpoint", _LAST_KEYS)
    if isinstance(state.get("config"), dict):
        _refuse_changes(out, _settings_of(state["config"], dict), config)
    return state


def _settings_of(source: Any, read: Callable[[Any], dict[str, Any]]) -> TrainConfig:
    try:
        return TrainConfig.from_flat(read(source))
    except ValueError as error:
        raise ValueError(f"the run's recorded settings are invalid: {error}") from None


def _refuse_changes(out: Path, before: TrainConfig, now: TrainConfig) -> None:
    changes = before.differences(now)
    if changes:
        listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changes.items()))
        raise ValueError(
            f"{out} was trained with other settings; resuming would change {listed}. "
            f"Resume with the run's own settings (sampling-matters train --resume {out}), "
            "or start a new run with another --out"
        )


def _restore(
    state: dict[str, Any], path: Path, run: _Run, optimiser: torch.optim.Optimizer, schedule: Any
) -> dict[str, Any]:
    """Load a ``last.pt`` into the run's objects; its progress (step, epoch, batch, best)."""
    try:
        run.model.load_state_dict(state["model"])
        run.loss.load_state_dict(state["loss"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"]["torch"])
        run.sampling.set_state(state["rng"]["loss"])
        run.augmentation.set_state(state["rng"]["augmentation"])
        saved = state["progress"]
        return {
            "step": int(saved["step"]),
            "epoch": int(saved["epoch"]),
            "batch": int(saved.get("batch", 0)),  # older checkpoints: at an epoch's end
            "best": float(saved["best"]),
            "best_step": int(saved.get("best_step", saved["step"])),
        }
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
        raise ValueError(
            f"{path} does not fit this run ({_reason(error)}); start over with --overwrite"
        ) from None


def _reason(error: BaseException, limit: int = 300) -> str:
    """An error's message on one line, cut at ``limit`` characters."""
    text = " ".join(str(error).split()) or repr(error)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------- loop


@dataclass
class _Run:
    """The objects of one run, built once."""

    config: TrainConfig
    out: Path
    device: torch.device
    model: EmbeddingModel
    loss: LossModule
    train_set: Dataset[Any]
    val_set: Dataset[Any] | None
    test_set: Dataset[Any]
    sampler: PKSampler
    augmentation: torch.Generator
    sampling: torch.Generator
    skipped: list[Path]
    aside: bool = False  # the files this start replaces are set aside until a checkpoint


def _model(config: TrainConfig, *, pretrained: bool) -> EmbeddingModel:
    """The network that ``config`` describes (``pretrained`` weights or not)."""
    return build_model(
        config.model.model,
        embedding_dim=config.model.embedding_dim,
        pretrained=pretrained,
        freeze_backbone=config.model.freeze_backbone,
        frozen_stages=config.model.frozen_stages,
        frozen_batchnorm=config.model.frozen_batchnorm,
        input_size=config.data.image_size,
    )


def resolve(config: TrainConfig, kind: Kind) -> TrainConfig:
    """``config`` with its automatic settings decided (what ``config.yaml`` records).

    ``augment: auto`` becomes the data set's kind of image ``kind``; ``backbone_lr``
    unset becomes ``lr`` for a backbone trained from scratch and ``lr / 10`` for one
    that starts from pretrained weights; a data path becomes absolute.
    """
    values = {**config.flat(), "data": datasets.absolute(config.data.data)}
    if values["augment"] == "auto":
        values["augment"] = kind
    if values["backbone_lr"] is None:
        scratch = from_scratch(config.model.model, config.model.pretrained)
        values["backbone_lr"] = config.optim.lr if scratch else config.optim.lr / 10
    return TrainConfig.from_flat(values)


def _build(config: TrainConfig, progress: bool) -> _Run:
    torch.manual_seed(config.run.seed)
    device = _device(config.run.device)
    model = _model(config, pretrained=config.model.pretrained).to(device)
    augmentation = torch.Generator().manual_seed(config.run.seed + 2)
    splits = _load_splits(config, model, augmentation, progress)
    if config.data.augment == "auto" and progress:
        kind = splits.train.kind
        print(
            f"augment: {kind} ({datasets.kind_reason(config.data.data, kind)}); "
            "--augment photo|glyph|none chooses",
            file=sys.stderr,
        )
    config = resolve(config, splits.train.kind)
    train_set: Dataset[Any] = splits.train
    val_set: Dataset[Any] | None = splits.val
    test_set: Dataset[Any] = splits.test
    if config.model.cache_features:
        train_set, val_set, test_set = _cache_features(model, splits, config, device)
    sampler = PKSampler(
        splits.train.labels,
        config.data.classes_per_batch,
        config.data.samples_per_class,
        seed=config.run.seed,
    )
    sampling_generator = torch.Generator().manual_seed(config.run.seed + 1)
    loss = _build_loss(config, splits.train, splits.train.n_classes, sampling_generator).to(device)
    return _Run(
        config,
        Path(config.run.out),
        device,
        model,
        loss,
        train_set,
        val_set,
        test_set,
        sampler,
        augmentation,
        sampling_generator,
        splits.skipped,
    )


def load_run(run: Path) -> tuple[EmbeddingModel, TrainConfig]:
    """A run's best model (in eval mode) and its configuration, from ``RUN/best.pt``.

    Raises:
        FileNotFoundError: ``run`` has no ``best.pt``.
        ValueError: ``best.pt`` is unreadable, holds code, or does not fit its model.
    """
    if not (run / "best.pt").is_file():
        raise FileNotFoundError(f"{run} has no best.pt: is it a training run directory?")
    state = files.load_mapping(run / "best.pt", "checkpoint", _BEST_KEYS)
    if not isinstance(state["config"], dict):
        raise ValueError(f"{run / 'best.pt'} is not a checkpoint: its 'config' is not a mapping")
    config = _settings_of(state["config"], dict)
    model = _model(config, pretrained=False)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as error:
        raise ValueError(f"{run / 'best.pt'} does not fit its model ({_reason(error)})") from None
    return model.eval(), config


def _batches(run: _Run, epoch: int, start: int) -> Iterator[list[Tensor]]:
    """The batches of ``epoch`` from its ``start``-th on (a resume inside an epoch)."""
    run.sampler.set_epoch(epoch)
    plan = run.sampler.epoch_batches()[start:].tolist()
    loader = DataLoader(run.train_set, batch_sampler=plan, num_workers=run.config.data.workers)
    rng = torch.get_rng_state()
    batches = iter(loader)  # draws a seed from torch's generator, as at the epoch's start
    if start:  # that draw happened before the interruption: do not draw it twice
        torch.set_rng_state(rng)
    yield from batches


def _step(run: _Run, batch: list[Tensor], optimiser: torch.optim.Optimizer) -> dict[str, float]:
    inputs, labels, indices = (t.to(run.device) for t in batch)
    cached = isinstance(run.train_set, TensorDataset)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=run.device.type == "cuda")
    with autocast:
        embeddings = run.model.embed_frozen(inputs) if cached else run.model(inputs)
    _check_finite(embeddings, "the embeddings")
    loss = run.loss(embeddings.float(), labels, indices)
    value = float(loss.detach())
    _check_finite(torch.tensor(value), "the loss")
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return _diagnostics(run, embeddings.detach().float(), labels, indices, value)


def _check_finite(values: Tensor, what: str) -> None:
    if not bool(torch.isfinite(values).all()):
        raise ValueError(
            f"training diverged: {what} became NaN or Inf; lower the learning rates "
            "(lr, backbone_lr, beta_lr) or beta / nu"
        )


def _diagnostics(
    run: _Run, embeddings: Tensor, labels: Tensor, indices: Tensor, loss: float
) -> dict[str, float]:
    triplets = run.loss.last_triplets
    distances = torch.zeros(0)
    if triplets is not None and len(triplets.anchor):
        distances = (embeddings[triplets.anchor] - embeddings[triplets.negative]).norm(dim=1)
    beta = float("nan")
    beta_values = getattr(run.loss, "beta_values", None)  # MarginLoss, or a loss_factory's
    if beta_values is not None:
        beta = float(beta_values(labels, indices).detach().mean())
    stats = run.loss.last_stats
    return {
        "loss": loss,
        "active_fraction": float(run.loss.last_active_fraction),
        "beta": beta,
        "negative_distance": float(distances.mean()) if len(distances) else float("nan"),
        "negative_distance_std": float(distances.std()) if len(distances) > 1 else float("nan"),
        "fallback": float(stats.fallback),
    }


class _Log:
    """``log.csv``: one row per logging interval, appended and flushed as it goes."""

    def __init__(self, path: Path, resume_at: int | None) -> None:
        self.path = path
        kept: list[list[str]] = []
        if resume_at is not None and path.exists():  # drop rows of the epoch that was lost
            with path.open(newline="") as handle:
                kept = [row for row in list(csv.reader(handle))[1:] if int(row[0]) <= resume_at]
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows([list(LOG_COLUMNS), *kept])
        self.rows: list[dict[str, float]] = []
        self.images = 0
        self.start = time.perf_counter()

    def add(self, row: dict[str, float], images: int) -> None:
        self.rows.append(row)
        self.images += images

    def flush(
        self, step: int, epoch: int, val_recall: float = math.nan, val_map: float = math.nan
    ) -> None:
        if not self.rows and math.isnan(val_recall):
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


def _total_steps(run: _Run) -> int:
    """The run's length in steps (``steps``, or ``epochs`` × batches per epoch)."""
    if run.config.optim.steps is not None:
        return run.config.optim.steps
    return int(run.config.optim.epochs or 1) * len(run.sampler)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training at a step boundary; ``last.pt`` holds that step.

    Attributes:
        out: the run directory.
        step: the steps done.
        total: the run's length in steps.
    """

    def __init__(self, out: Path, step: int, total: int) -> None:
        super().__init__(f"training stopped at step {step} of {total}")
        self.out, self.step, self.total = out, step, total


class _StopRequest:
    """While active, a first Ctrl-C (SIGINT) asks the loop to stop at the next step.

    A second Ctrl-C stops at once. Outside the main thread (where signals cannot be
    caught) it does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    loss_factory: Callable[[TrainConfig], nn.Module] | None = None,
) -> dict[str, Any]:
    """Train, validate each epoch, keep the best model, and score it on the test classes.

    Nothing is written before the data (every image file checked), the model and, for
    a resume, the run's ``last.pt`` have loaded, so a refused or failed start leaves an
    existing run as it was. Ctrl-C stops at the next step boundary, writes ``last.pt``
    and raises :class:`TrainingInterrupted`.

    Args:
        config: the run's configuration; ``config.run.out`` is the run directory.
        resume: continue the run in ``config.run.out`` from its ``last.pt`` (from the
            start when it has none); refused when ``config`` would change its settings.
        overwrite: replace the run in ``config.run.out``. Without ``resume`` or
            ``overwrite``, a folder that holds a run is refused.
        progress: show progress bars.
        loss_factory: builds the loss in place of ``config``'s loss and sampling (an
            external loss, e.g. another library's): a module called as
            ``loss(embeddings, labels, indices)`` with the attributes ``last_triplets``,
            ``last_stats`` and ``last_active_fraction``; its ``beta_param_group(lr)``, if
            it has one, is trained at ``beta_lr``, and its ``beta_values(labels,
            indices)``, if it has one, is logged (e.g. :mod:`sampling_matters.compat.pml`).

    Returns:
        The test metrics (also written to ``metrics.json``).

    Raises:
        ValueError: bad settings, a refused start, bad image files, an unreadable
            ``last.pt``.
        RunInUseError: another process trains into the same folder.
        TrainingInterrupted: Ctrl-C.
    """
    config.check()
    out = Path(config.run.out)
    check_start(out, resume=resume, overwrite=overwrite)
    run = _build(config, progress)
    config = run.config  # automatic settings decided
    last = _read_last(out, config) if resume else None
    if loss_factory is not None:
        run.loss = loss_factory(config).to(run.device)  # type: ignore[assignment]
    total = _total_steps(run)
    optimiser = _optimiser(run.model, run.loss, config)
    schedule = _schedule(optimiser, total, config)
    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "best": -1.0, "best_step": 0}
    if last is not None:
        state = _restore(last, out / "last.pt", run, optimiser, schedule)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with RunLock(out), _flushed_denormals():
            remove_orphans(out)
            with _start(run, resume):
                if not resume or not (out / "config.yaml").exists():
                    _write_config(config, out, run.skipped)
                _loop(run, state, total, optimiser, schedule, resume, progress)
                return _finish(run, state)
    finally:
        if created and not any(out.iterdir()):  # a new folder that a failed start left empty
            out.rmdir()


@contextlib.contextmanager
def _start(run: _Run, resume: bool) -> Iterator[None]:
    """A new start sets aside the run files it finds until its first checkpoint.

    If it fails before that, what it wrote goes and the set-aside files come back.
    """
    if not resume:
        set_aside(run.out)
        run.aside = True
    try:
        yield
    except BaseException:
        if run.aside:
            put_back(run.out)
        raise


@contextlib.contextmanager
def _flushed_denormals() -> Iterator[None]:
    """Flush denormal floats to zero on the CPU while training, then stop again.

    Weights and gradients that decay towards zero pass through denormal numbers, which
    a CPU handles many times slower than normal ones: steps of the small CNN trained
    from scratch at lr 1e-3 were several times slower without this.
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _loop(
    run: _Run,
    state: dict[str, Any],
    total: int,
    optimiser: torch.optim.Optimizer,
    schedule: Any,
    resume: bool,
    progress: bool,
) -> None:
    """Train from ``state`` to ``total`` steps; Ctrl-C saves ``last.pt`` and stops."""
    log = _Log(run.out / "log.csv", state["step"] if resume else None)
    bar = _progress_bar(total, state["step"], progress)
    with _StopRequest() as stop:
        while state["step"] < total:
            for batch in _batches(run, state["epoch"], state["batch"]):
                log.add(_step(run, batch, optimiser), len(batch[1]))
                schedule.step()
                state["step"] += 1
                state["batch"] += 1
                bar.update(1)
                if state["step"] % run.config.run.log_every == 0:
                    log.flush(state["step"], state["epoch"])
                if state["step"] >= total:
                    break
                if stop.requested:
                    _save_last(run, optimiser, schedule, state)
                    bar.close()
                    raise TrainingInterrupted(run.out, state["step"], total)
            state["epoch"] += 1
            state["batch"] = 0
            _end_epoch(run, log, state, optimiser, schedule)
            if stop.requested and state["step"] < total:
                bar.close()
                raise TrainingInterrupted(run.out, state["step"], total)
    bar.close()


def _end_epoch(
    run: _Run, log: _Log, state: dict[str, Any], optimiser: torch.optim.Optimizer, schedule: Any
) -> None:
    """Validate, log, write ``last.pt``, and ``best.pt`` when it is the one to keep.

    ``best.pt`` follows the model unless a validation split and ``select`` (a metric)
    pick an earlier epoch: it is rewritten when the validation score is at least the best
    so far, so a tie keeps the later model.
    """
    scores: dict[str, float] = {}
    if run.val_set is not None:
        found = _evaluate_model(run.model, run.val_set, run.config, run.device, False)
        scores = {k: float(v) for k, v in found.items()}
    nan = float("nan")
    log.flush(state["step"], state["epoch"], scores.get("recall@1", nan), scores.get("map@r", nan))
    select = run.config.run.select
    score = scores.get(select) if select != "last" else None
    if score is None or score >= state["best"]:
        state["best"] = state["best"] if score is None else score
        state["best_step"] = state["step"]
        best = {"model": run.model.state_dict(), "config": run.config.flat()}
        files.save(best, run.out / "best.pt")
    _save_last(run, optimiser, schedule, state)


def _save_last(
    run: _Run, optimiser: torch.optim.Optimizer, schedule: Any, state: dict[str, Any]
) -> None:
    """Write ``last.pt``; the first one makes the run: the files it replaced go."""
    files.save(_state(run, optimiser, schedule, state), run.out / "last.pt")
    if run.aside:
        discard(run.out)
        run.aside = False


def _finish(run: _Run, state: dict[str, Any]) -> dict[str, Any]:
    """Score ``best.pt`` on the test classes; ``metrics.json`` also says which step it is."""
    best = files.load_mapping(run.out / "best.pt", "checkpoint", _BEST_KEYS)
    run.model.load_state_dict(best["model"])
    metrics: dict[str, Any] = {
        **_evaluate_model(run.model, run.test_set, run.config, run.device, True)
    }
    metrics["checkpoint_step"] = state["best_step"]
    metrics["checkpoint"] = _kept(run, state)
    write_text_atomic(run.out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def _kept(run: _Run, state: dict[str, Any]) -> str:
    """Why ``best.pt`` holds the model of its step, in words."""
    select = run.config.run.select
    if run.val_set is None:
        return "the last model (no validation split)"
    if select == "last":
        return "the last model (select: last)"
    return f"the best validation {select} ({state['best']:.4f}), the later on a tie"


def _write_config(config: TrainConfig, out: Path, skipped: list[Path]) -> None:
    """``config.yaml``: the settings, then the record of left-out image files, if any."""
    import yaml

    values: dict[str, Any] = {
        k: list(v) if isinstance(v, tuple) else v for k, v in config.flat().items()
    }
    if skipped:
        values["skipped_images"] = len(skipped)
        write_text_atomic(out / "skipped_images.txt", "".join(f"{path}\n" for path in skipped))
    write_text_atomic(out / "config.yaml", yaml.safe_dump(values, sort_keys=False))


def _progress_bar(total: int, done: int, enabled: bool) -> Any:
    from sampling_matters._progress import tqdm

    return tqdm(total=total, initial=done, disable=not enabled, desc="train", unit="step")
