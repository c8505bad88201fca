"""The loss modules by their command-line names, and :func:`make_loss`."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from sampling_matters.losses.base import Sampling
from sampling_matters.losses.modules import ContrastiveLoss, LossModule, MarginLoss, TripletLoss

__all__ = ["LOSSES", "make_loss"]

LOSSES: dict[str, Callable[..., LossModule]] = {
    "contrastive": ContrastiveLoss,
    "triplet": TripletLoss,
    "triplet-squared": partial(TripletLoss, squared=True),
    "margin": MarginLoss,
}
"""The loss modules by their command-line names; each takes ``sampling`` and ``generator``."""


def make_loss(
    name: str,
    *,
    sampling: str | Sampling = "distance-weighted",
    generator: torch.Generator | None = None,
) -> LossModule:
    """Build the loss module ``name`` with its default hyperparameters.

    Args:
        name: a key of :data:`LOSSES`.
        sampling: a name in :data:`sampling_matters.sampling.SAMPLINGS` or a callable.
        generator: the random source handed to the sampling strategy.

    Returns:
        The loss module.

    Raises:
        ValueError: on an unknown loss or sampling name.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}")
    return LOSSES[name](sampling=sampling, generator=generator)
