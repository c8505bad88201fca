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
from sampling_matters import distributed
from sampling_matters.batching import PKSampler
from sampling_matters.config import TrainConfig
from sampling_matters.data.datasets import Kind
from sampling_matters.losses import LossModule
from sampling_matters.memory import CrossBatchMemory
from sampling_matters.models import EmbeddingModel, build_model_from_config, from_scratch
from sampling_matters.training import parallel
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
    forward: nn.Module | None = None  # the training forward (under DDP in several processes)
    aside: bool = False  # the files this start replaces are set aside until a checkpoint


def resolve(config: TrainConfig, kind: Kind) -> TrainConfig:
    """``config`` with its automatic settings decided (what ``config.yaml`` records).

    ``augment: auto`` becomes the data set's kind of image ``kind``; ``backbone_lr``
    unset becomes ``lr`` for a backbone trained from scratch and ``lr / 10`` for one
    that starts from pretrained weights; a data path becomes absolute; ``margin`` and
    ``nonzero_loss_cutoff`` unset become the loss's own (see
    :mod:`sampling_matters.config.loss`); ``world_size`` unset becomes the number of
    processes that train (a set one must be that number: a run resumes only in the
    world it started in).
    """
    values = {**config.flat(), "data": datasets.absolute(config.data.data)}
    values["world_size"] = _world(config.run.world_size)
    values.update(decided_loss_settings(config.loss))
    if values["augment"] == "auto":
        values["augment"] = kind
    if values["backbone_lr"] is None:
        scratch = from_scratch(config.model.model, config.model.pretrained)
        values["backbone_lr"] = config.optim.lr if scratch else config.optim.lr / 10
    return TrainConfig.from_flat(values)


def _world(recorded: int | None) -> int:
    """The processes that train now; a ValueError when the run was made by another number."""
    world = distributed.world_size()
    if recorded not in (None, world):
        raise ValueError(
            f"the run trains in {recorded} processes (world_size {recorded}) but {world} "
            f"started: launch it as it began, with sampling-matters train --nproc {recorded} "
            f"(or torchrun --nproc-per-node {recorded} -m sampling_matters train)"
        )
    return world


def _rank_seed(seed: int) -> int:
    """``seed`` for this process: itself on rank 0, another stream on each other rank."""
    return (seed + 1_000_003 * distributed.rank()) % 2**63


def _build(config: TrainConfig, progress: bool) -> _Run:
    torch.manual_seed(config.run.seed)  # the same initial weights in every process
    device = parallel.device_for(config.run.device)
    model = build_model_from_config(config).to(device)
    augmentation = torch.Generator().manual_seed(_rank_seed(config.run.seed + 2))
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
    sampler = _sampler(splits.train.labels, config)
    sampling_generator = torch.Generator().manual_seed(_rank_seed(config.run.seed + 1))
    n_items = len(splits.train)
    loss = build_loss(config, n_items, splits.train.n_classes, sampling_generator).to(device)
    loss.across_processes = distributed.world_size() > 1 and config.loss.pool == "global"
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


def _sampler(labels: torch.Tensor, config: TrainConfig) -> PKSampler:
    """The P×K sampler of the global batch: ``world_size × classes_per_batch`` classes."""
    world, data = distributed.world_size(), config.data
    try:
        return PKSampler(
            labels, data.classes_per_batch * world, data.samples_per_class, seed=config.run.seed
        )
    except ValueError as error:
        if world == 1:
            raise
        raise ValueError(
            f"{world} processes × classes_per_batch {data.classes_per_batch} make a global "
            f"batch of {world * data.classes_per_batch} classes: {error}"
        ) from None


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
