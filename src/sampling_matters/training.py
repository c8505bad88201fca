"""Training: P×K batches, any loss × sampling strategy, checkpoints that survive a kill.

A run directory holds ``config.yaml`` (the final configuration), ``last.pt`` and
``best.pt`` (by validation Recall@1, written atomically), ``log.csv`` and, at the end,
``metrics.json`` (the metrics contract, on the test classes). Validation uses classes
held out from the training classes, so the test classes stay unseen until the end.
``train(config, resume=True)`` continues a killed run from its last completed epoch:
model, optimiser, schedule, sampler epoch and random state.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from sampling_matters import data as datasets
from sampling_matters.batching import PKSampler
from sampling_matters.data.cache import cache_root, write_atomic
from sampling_matters.data.datasets import ImageDataset
from sampling_matters.data.transforms import eval_transform, train_transform
from sampling_matters.evaluation import evaluate
from sampling_matters.losses import LOSSES, LossModule, MarginLoss, make_loss
from sampling_matters.models import EmbeddingModel, build_model
from sampling_matters.sampling import SAMPLINGS

__all__ = [
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "embed_dataset",
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
)


@dataclass
class DataConfig:
    """What to train on and how batches are drawn."""

    data: str = "kanji"
    image_size: int | None = None  # the model's own size when None
    classes_per_batch: int = 20
    samples_per_class: int = 4
    val_fraction: float = 0.1  # training classes held out for validation
    workers: int = 0


@dataclass
class ModelConfig:
    """The network."""

    model: str = "small-cnn"
    embedding_dim: int = 128
    pretrained: bool = True
    freeze_backbone: bool = False
    frozen_stages: int = 0  # freeze only the backbone's first stages (0: none)
    frozen_batchnorm: bool = False  # BatchNorm statistics fixed in the stages that train
    cache_features: bool = False  # compute the frozen part's output once (kept on disk)


@dataclass
class LossConfig:
    """The loss and the sampling strategy."""

    loss: str = "margin"
    sampling: str = "distance-weighted"
    beta: float = 1.2
    learn_beta: bool = True  # False: β⁽⁰⁾ stays at ``beta`` (margin loss only)
    beta_per_class: bool = False
    beta_per_image: bool = False
    nu: float = 0.0


@dataclass
class OptimConfig:
    """AdamW with a step schedule; the backbone, the head and β each at their own rate."""

    steps: int | None = None
    epochs: int | None = None
    lr: float = 1e-3
    backbone_lr: float = 1e-4
    beta_lr: float = 1e-2
    weight_decay: float = 1e-4
    lr_decay: float = 0.1
    lr_decay_at: tuple[float, ...] = (0.6, 0.85)  # fractions of the run


@dataclass
class RunConfig:
    """Where the run goes and how it is watched."""

    out: str = "runs/run"
    seed: int = 0
    device: str = "auto"
    log_every: int = 50
    eval_batch_size: int = 256


@dataclass
class TrainConfig:
    """Everything a run needs; flat keys (``loss``, ``steps``, …) name the fields."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def sections(self) -> list[Any]:
        """The per-concern dataclasses, in order."""
        return [self.data, self.model, self.loss, self.optim, self.run]

    def flat(self) -> dict[str, Any]:
        """The configuration as one flat dict (the keys of ``config.yaml`` and the CLI)."""
        return {k: v for section in self.sections() for k, v in asdict(section).items()}

    @classmethod
    def from_flat(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from flat keys; an unknown key is a ``ValueError`` naming it."""
        config = cls()
        known = {f.name: section for section in config.sections() for f in fields(section)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown configuration key(s) {unknown}; known: {sorted(known)}")
        for key, value in values.items():
            setattr(known[key], key, tuple(value) if key == "lr_decay_at" else value)
        config.check()
        return config

    def check(self) -> None:
        """Raise ``ValueError`` on settings that cannot train."""
        if self.loss.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss.loss!r}; expected one of {sorted(LOSSES)}")
        if self.loss.sampling not in SAMPLINGS:
            raise ValueError(
                f"unknown sampling {self.loss.sampling!r}; expected one of {sorted(SAMPLINGS)}"
            )
        if (self.optim.steps is None) == (self.optim.epochs is None):
            raise ValueError("give exactly one of steps and epochs")
        if (self.optim.steps or self.optim.epochs or 0) < 1:
            raise ValueError("steps / epochs must be >= 1")
        frozen = self.model.freeze_backbone or self.model.frozen_stages > 0
        if self.model.cache_features and not frozen:
            raise ValueError(
                "cache_features needs freeze_backbone or frozen_stages >= 1"
                " (only a frozen part's output stays the same)"
            )
        if self.model.freeze_backbone and self.model.frozen_stages:
            raise ValueError("set freeze_backbone or frozen_stages, not both")
        if (self.loss.beta_per_class or self.loss.beta_per_image) and self.loss.loss != "margin":
            raise ValueError("beta_per_class / beta_per_image belong to the margin loss")
        if not 0 <= self.data.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.data.val_fraction}")


# ------------------------------------------------------------------------------ data


@dataclass
class _Splits:
    train: ImageDataset
    val: ImageDataset | None
    test: ImageDataset


def _split_validation(
    train: ImageDataset, fraction: float
) -> tuple[ImageDataset, ImageDataset | None]:
    """Hold out the last ``fraction`` of the training classes for validation."""
    n_val = round(train.n_classes * fraction)
    if n_val < 2 or train.n_classes - n_val < 2:
        return train, None
    is_val = train.labels >= train.n_classes - n_val  # (N,)
    keep = torch.nonzero(~is_val).squeeze(1)
    held = torch.nonzero(is_val).squeeze(1)
    return train.select(keep), train.select(held)


def _load_splits(
    config: TrainConfig, model: EmbeddingModel, augmentation: torch.Generator
) -> _Splits:
    train_set = datasets.load(config.data.data, "train")
    test_set = datasets.load(config.data.data, "test")
    size = config.data.image_size or model.input_size
    train_set, val_set = _split_validation(train_set, config.data.val_fraction)
    normalization, channels = model.normalization, model.channels
    evaluation = eval_transform(
        train_set.kind, size, normalization=normalization, channels=channels
    )
    augment = train_transform(
        train_set.kind, size, normalization=normalization, channels=channels, generator=augmentation
    )
    return _Splits(
        train_set.with_transform(evaluation if config.model.cache_features else augment),
        None if val_set is None else val_set.with_transform(evaluation),
        test_set.with_transform(evaluation),
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
        if path.exists():
            features, labels = torch.load(path, map_location="cpu", weights_only=True)
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
            _save_atomic((features, labels), path)
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


def _save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    write_atomic(path, lambda name: torch.save(obj, name))


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
    }


def _restore(
    path: Path, run: _Run, optimiser: torch.optim.Optimizer, schedule: Any
) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    run.model.load_state_dict(state["model"])
    run.loss.load_state_dict(state["loss"])
    optimiser.load_state_dict(state["optimiser"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["rng"]["torch"])
    run.sampling.set_state(state["rng"]["loss"])
    run.augmentation.set_state(state["rng"]["augmentation"])
    return dict(state["progress"])


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


def _build(config: TrainConfig) -> _Run:
    torch.manual_seed(config.run.seed)
    device = _device(config.run.device)
    model = build_model(
        config.model.model,
        embedding_dim=config.model.embedding_dim,
        pretrained=config.model.pretrained,
        freeze_backbone=config.model.freeze_backbone,
        frozen_stages=config.model.frozen_stages,
        frozen_batchnorm=config.model.frozen_batchnorm,
        input_size=config.data.image_size,
    ).to(device)
    augmentation = torch.Generator().manual_seed(config.run.seed + 2)
    splits = _load_splits(config, model, augmentation)
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
    )


def _batches(run: _Run, epoch: int) -> Iterator[list[Tensor]]:
    run.sampler.set_epoch(epoch)
    loader = DataLoader(
        run.train_set, batch_sampler=run.sampler, num_workers=run.config.data.workers
    )
    yield from loader


def _step(run: _Run, batch: list[Tensor], optimiser: torch.optim.Optimizer) -> dict[str, float]:
    inputs, labels, indices = (t.to(run.device) for t in batch)
    cached = isinstance(run.train_set, TensorDataset)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=run.device.type == "cuda")
    with autocast:
        embeddings = run.model.embed_frozen(inputs) if cached else run.model(inputs)
    loss = run.loss(embeddings.float(), labels, indices)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return _diagnostics(run, embeddings.detach().float(), labels, indices, float(loss.detach()))


def _diagnostics(
    run: _Run, embeddings: Tensor, labels: Tensor, indices: Tensor, loss: float
) -> dict[str, float]:
    triplets = run.loss.last_triplets
    distances = torch.zeros(0)
    if triplets is not None and len(triplets.anchor):
        distances = (embeddings[triplets.anchor] - embeddings[triplets.negative]).norm(dim=1)
    beta = float("nan")
    if isinstance(run.loss, MarginLoss):
        image_indices = indices if run.loss.beta_image is not None else None
        beta = float(run.loss.beta_values(labels, image_indices).detach().mean())
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

    def flush(self, step: int, epoch: int, val_recall: float = float("nan")) -> None:
        if not self.rows and math.isnan(val_recall):
            return
        means = {k: _nanmean([r[k] for r in self.rows]) for k in LOG_COLUMNS[2:-2]}
        speed = self.images / max(time.perf_counter() - self.start, 1e-9)
        row = [step, epoch, *(means[k] for k in LOG_COLUMNS[2:-2]), speed, val_recall]
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


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    loss_factory: Callable[[TrainConfig], nn.Module] | None = None,
) -> dict[str, Any]:
    """Train, validate each epoch, keep the best model, and score it on the test classes.

    Args:
        config: the run's configuration; ``config.run.out`` is the run directory.
        resume: continue the run in ``config.run.out`` from its ``last.pt``.
        progress: show a progress bar.
        loss_factory: builds the loss in place of ``config``'s loss and sampling (an
            external loss, e.g. another library's): a module called as
            ``loss(embeddings, labels, indices)`` with the attributes ``last_triplets``,
            ``last_stats`` and ``last_active_fraction``; its ``beta_param_group(lr)``, if
            it has one, is trained at ``beta_lr``.

    Returns:
        The test metrics (also written to ``metrics.json``).
    """
    config.check()
    run = _build(config)
    if loss_factory is not None:
        run.loss = loss_factory(config).to(run.device)  # type: ignore[assignment]
    run.out.mkdir(parents=True, exist_ok=True)
    _write_config(config, run.out)
    total = _total_steps(run)
    optimiser = _optimiser(run.model, run.loss, config)
    schedule = _schedule(optimiser, total, config)
    state: dict[str, Any] = {"step": 0, "epoch": 0, "best": -1.0}
    if resume and (run.out / "last.pt").exists():
        state = _restore(run.out / "last.pt", run, optimiser, schedule)
    log = _Log(run.out / "log.csv", state["step"] if resume else None)
    bar = _progress_bar(total, state["step"], progress)
    while state["step"] < total:
        for batch in _batches(run, state["epoch"]):
            log.add(_step(run, batch, optimiser), len(batch[1]))
            schedule.step()
            state["step"] += 1
            bar.update(1)
            if state["step"] % config.run.log_every == 0:
                log.flush(state["step"], state["epoch"])
            if state["step"] >= total:
                break
        state["epoch"] += 1
        _end_epoch(run, log, state, optimiser, schedule)
    bar.close()
    return _finish(run)


def _end_epoch(
    run: _Run, log: _Log, state: dict[str, Any], optimiser: torch.optim.Optimizer, schedule: Any
) -> None:
    """Validate, log, and write ``last.pt`` (and ``best.pt`` when validation improves)."""
    recall = float("nan")
    if run.val_set is not None:
        recall = float(
            _evaluate_model(run.model, run.val_set, run.config, run.device, False)["recall@1"]
        )
    log.flush(state["step"], state["epoch"], recall)
    improved = run.val_set is None or recall > state["best"]
    if improved:
        state["best"] = recall if run.val_set is not None else state["best"]
        _save_atomic(
            {"model": run.model.state_dict(), "config": run.config.flat()}, run.out / "best.pt"
        )
    _save_atomic(_state(run, optimiser, schedule, state), run.out / "last.pt")


def _finish(run: _Run) -> dict[str, Any]:
    best = torch.load(run.out / "best.pt", map_location="cpu", weights_only=False)
    run.model.load_state_dict(best["model"])
    metrics = _evaluate_model(run.model, run.test_set, run.config, run.device, True)
    with (run.out / "metrics.json").open("w") as handle:
        json.dump(metrics, handle, indent=2)
    return metrics


def _write_config(config: TrainConfig, out: Path) -> None:
    import yaml

    values = {k: list(v) if isinstance(v, tuple) else v for k, v in config.flat().items()}
    with (out / "config.yaml").open("w") as handle:
        yaml.safe_dump(values, handle, sort_keys=False)


def _progress_bar(total: int, done: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, disable=not enabled, desc="train", unit="step")
