"""What a step trains on: the sampling strategy, the loss and the cross-batch memory.

Each is built from the run's settings once :func:`~sampling_matters.training.resolve`
has decided them (``margin`` and ``nonzero_loss_cutoff`` follow the loss, see
:mod:`sampling_matters.config.loss`). A strategy receives the settings among
``margin`` (semi-hard sampling's band), ``cutoff``, ``nonzero_loss_cutoff``,
``density`` and ``max_reference_positives`` that are fields of its class, so a
strategy added to ``SAMPLINGS`` gets those it declares; a loss gets ``margin`` if its
constructor takes one.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch

from sampling_matters.config import (
    LossConfig,
    TrainConfig,
    margin_of,
    nonzero_loss_cutoff_of,
    own_margin,
    semihard_band,
)
from sampling_matters.losses import LOSSES, LossModule, MarginLoss
from sampling_matters.memory import CrossBatchMemory
from sampling_matters.sampling import SAMPLINGS, Strategy, make_sampling

__all__ = ["build_loss", "build_memory", "build_strategy", "decided_loss_settings"]


def decided_loss_settings(loss: LossConfig) -> dict[str, Any]:
    """The loss settings that default to the loss's own, decided (what config.yaml records)."""
    return {"margin": margin_of(loss), "nonzero_loss_cutoff": nonzero_loss_cutoff_of(loss)}


def build_strategy(loss: LossConfig) -> Strategy:
    """The sampling strategy ``loss.sampling`` with the settings its class has."""
    offered: dict[str, Any] = {
        "cutoff": loss.cutoff,
        "nonzero_loss_cutoff": nonzero_loss_cutoff_of(loss),
        "density": loss.density,
        "max_reference_positives": loss.max_reference_positives,
    }
    band = semihard_band(loss)
    if band is not None:
        offered["margin"] = band
    declared = {f.name for f in fields(SAMPLINGS[loss.sampling])}
    settings = {k: v for k, v in offered.items() if k in declared}
    return make_sampling(loss.sampling, **settings)


def build_loss(
    config: TrainConfig, n_items: int, n_classes: int, generator: torch.Generator
) -> LossModule:
    """The loss module of ``config`` on its strategy; the margin loss with its β settings.

    Args:
        config: the run's settings, decided.
        n_items: training images (the size of a per-image β table).
        n_classes: training classes (the size of a per-class β table).
        generator: the strategy's random source.
    """
    loss = config.loss
    strategy = build_strategy(loss)
    margin = margin_of(loss)
    if loss.loss == "margin" and margin is not None:
        return MarginLoss(
            margin=margin,
            beta=loss.beta,
            learn_beta=loss.learn_beta,
            nu=loss.nu,
            n_classes=n_classes if loss.beta_per_class else None,
            n_items=n_items if loss.beta_per_image else None,
            sampling=strategy,
            generator=generator,
        )
    build = LOSSES[loss.loss]
    if margin is not None and own_margin(loss.loss) is not None:  # it takes a margin
        return build(margin=margin, sampling=strategy, generator=generator)
    return build(sampling=strategy, generator=generator)


def build_memory(config: TrainConfig, device: torch.device) -> CrossBatchMemory | None:
    """The run's cross-batch memory on ``device``, or None (``memory_size`` 0)."""
    loss = config.loss
    if not loss.memory_size:
        return None
    return CrossBatchMemory(
        loss.memory_size, config.model.embedding_dim, warmup=loss.memory_warmup, device=device
    )
