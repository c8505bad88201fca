"""Building a run: its settings decided, then the device, model, data, loss and optimiser."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from sampling_matters import data as datasets
from sampling_matters.batching import PKSampler
from sampling_matters.config import TrainConfig
from sampling_matters.data.datasets import Kind
from sampling_matters.losses import LossModule
from sampling_matters.memory import CrossBatchMemory
from sampling_matters.models import EmbeddingModel, build_model_from_config, from_scratch
from sampling_matters.training.criterion import build_loss, build_memory, decided_loss_settings
from sampling_matters.training.features import _cache_features
from sampling_matters.training.splits import _load_splits


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
    memory: CrossBatchMemory | None = None  # the cross-batch memory (memory_size > 0)
    aside: bool = False  # the files this start replaces are set aside until a checkpoint


def resolve(config: TrainConfig, kind: Kind) -> TrainConfig:
    """``config`` with its automatic settings decided (what ``config.yaml`` records).

    ``augment: auto`` becomes the data set's kind of image ``kind``; ``backbone_lr``
    unset becomes ``lr`` for a backbone trained from scratch and ``lr / 10`` for one
    that starts from pretrained weights; a data path becomes absolute; ``margin`` and
    ``nonzero_loss_cutoff`` unset become the loss's own (see
    :mod:`sampling_matters.config.loss`).
    """
    values = {**config.flat(), "data": datasets.absolute(config.data.data)}
    values.update(decided_loss_settings(config.loss))
    if values["augment"] == "auto":
        values["augment"] = kind
    if values["backbone_lr"] is None:
        scratch = from_scratch(config.model.model, config.model.pretrained)
        values["backbone_lr"] = config.optim.lr if scratch else config.optim.lr / 10
    return TrainConfig.from_flat(values)


def _build(config: TrainConfig, progress: bool) -> _Run:
    torch.manual_seed(config.run.seed)
    device = _device(config.run.device)
    model = build_model_from_config(config).to(device)
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
    n_items = len(splits.train)
    loss = build_loss(config, n_items, splits.train.n_classes, sampling_generator).to(device)
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
        build_memory(config, device),
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
