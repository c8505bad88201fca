"""The loss, sampling and memory settings: their ranges, and the defaults that follow the loss.

Two settings default to "the loss's own", decided when a run starts and recorded in
its ``config.yaml`` (see :func:`sampling_matters.training.resolve`):

- ``margin`` (α) unset is the loss module's own default (0.2 for the margin and triplet
  losses, 1.0 for the contrastive loss), read from its signature.
- ``nonzero_loss_cutoff`` unset follows the margin loss: α + β⁽⁰⁾ (``margin`` +
  ``beta``, 1.4 at the defaults), the distance beyond which a negative gives that loss
  no gradient (β⁽⁰⁾'s initial value; it does not follow β as it learns). With any other
  loss it is 1.4, the paper's value. A value that is set is kept.

Semi-hard sampling's band is the margin α, except with the contrastive loss, whose α
is a distance (the reach of the negatives' push), not a gap between two distances: its
band stays at :class:`~sampling_matters.sampling.SemiHard`'s default, 0.2.

Settings that belong to a strategy or a loss the run does not use (``density`` with
``hard``, ``max_reference_positives`` without a memory) are accepted, checked and
recorded, and have no effect: an ablation shares its settings across a grid of losses
and strategies.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from sampling_matters.config.checks import MAX_STEPS, require, within
from sampling_matters.losses import LOSSES
from sampling_matters.sampling import SAMPLINGS, DistanceWeighted

if TYPE_CHECKING:
    from sampling_matters.config.sections import LossConfig, TrainConfig

__all__ = [
    "DENSITIES",
    "MAX_MEMORY_SIZE",
    "POOLS",
    "check_loss",
    "check_memory_warmup",
    "margin_of",
    "nonzero_loss_cutoff_of",
    "own_margin",
    "semihard_band",
]

DENSITIES = ("sphere", "empirical")

POOLS = ("global", "local")
"""``pool``: with several processes, an anchor's triplets come from the global batch or
from its own process's share of it (see :mod:`sampling_matters.training.parallel`)."""
"""``density``: distance weighted sampling's weights, from the sphere's q(d) or from each
anchor's own empirical distance density (see ``docs/sampling.md``)."""

MAX_MEMORY_SIZE = 10_000_000
"""The largest ``memory_size`` (embeddings kept by the cross-batch memory)."""

_PAPER_NONZERO_LOSS_CUTOFF = DistanceWeighted.nonzero_loss_cutoff  # 1.4 = 0.2 + 1.2


def own_margin(loss: str) -> float | None:
    """The default ``margin`` of the loss module ``loss`` (a name in ``LOSSES``), if any."""
    try:
        parameter = inspect.signature(LOSSES[loss]).parameters.get("margin")
    except (TypeError, ValueError):  # no signature to read
        return None
    default = None if parameter is None else parameter.default
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        return None  # no margin, or no number for a default
    return float(default)


def margin_of(loss: LossConfig) -> float | None:
    """α the run trains with: ``margin`` if set, else the loss's own (None: it has none)."""
    return loss.margin if loss.margin is not None else own_margin(loss.loss)


def nonzero_loss_cutoff_of(loss: LossConfig) -> float:
    """The cutoff distance weighted sampling uses: set, or α + β⁽⁰⁾ (margin loss), or 1.4.

    Example:
        >>> from sampling_matters.config import LossConfig
        >>> nonzero_loss_cutoff_of(LossConfig(margin=0.3, beta=1.0))
        1.3
        >>> nonzero_loss_cutoff_of(LossConfig(loss="triplet", margin=0.3, beta=1.0))
        1.4
    """
    if loss.nonzero_loss_cutoff is not None:
        return loss.nonzero_loss_cutoff
    margin = margin_of(loss)
    if loss.loss == "margin" and margin is not None:
        return round(margin + loss.beta, 12)  # 0.1 + 1.2 is 1.3, not 1.3000000000000003
    return _PAPER_NONZERO_LOSS_CUTOFF


def semihard_band(loss: LossConfig) -> float | None:
    """Semi-hard sampling's band: α, but None (the strategy's own) for the contrastive loss."""
    return None if loss.loss == "contrastive" else margin_of(loss)


def check_loss(config: TrainConfig) -> None:
    """The loss, sampling and memory settings: known names, ranges, and how they fit."""
    loss = config.loss
    if loss.loss not in LOSSES:
        raise ValueError(f"unknown loss {loss.loss!r}; expected one of {sorted(LOSSES)}")
    if loss.sampling not in SAMPLINGS:
        raise ValueError(f"unknown sampling {loss.sampling!r}; expected one of {sorted(SAMPLINGS)}")
    within("beta", loss.beta, 0, 2, open_low=True)  # a boundary between distances in [0, 2]
    within("nu", loss.nu, 0, 100)
    if (loss.beta_per_class or loss.beta_per_image) and loss.loss != "margin":
        raise ValueError("beta_per_class / beta_per_image belong to the margin loss")
    within("margin", loss.margin, 0, 2, open_low=True)
    _check_cutoffs(loss)
    require(loss.density in DENSITIES, "density", " or ".join(DENSITIES), loss.density)
    require(loss.pool in POOLS, "pool", " or ".join(POOLS), loss.pool)
    within("max_reference_positives", loss.max_reference_positives, 0, 100_000)
    within("memory_size", loss.memory_size, 0, MAX_MEMORY_SIZE)
    within("memory_warmup", loss.memory_warmup, 0, MAX_STEPS)
    if loss.memory_warmup and not loss.memory_size:
        raise ValueError(
            "setting 'memory_warmup' needs a cross-batch memory: set memory_size > 0 "
            "(or leave memory_warmup out)"
        )
    if config.optim.steps is not None:
        check_memory_warmup(loss, config.optim.steps)


def _check_cutoffs(loss: LossConfig) -> None:
    """``cutoff`` in [1e-6, 2], ``nonzero_loss_cutoff`` in (0, 4], the first below the second."""
    within("cutoff", loss.cutoff, 1e-6, 2)  # smaller: distances that are rounding noise
    within("nonzero_loss_cutoff", loss.nonzero_loss_cutoff, 0, 4, open_low=True)
    limit = nonzero_loss_cutoff_of(loss)
    if not loss.cutoff < limit:
        how = "" if loss.nonzero_loss_cutoff is not None else " (α + β⁽⁰⁾ or 1.4 when unset)"
        raise ValueError(
            f"setting 'cutoff' must be below nonzero_loss_cutoff {limit:g}{how}, "
            f"got {loss.cutoff!r}"
        )


def check_memory_warmup(loss: LossConfig, steps: int, length: str = "") -> None:
    """Refuse a warm-up as long as the run (``steps``) or longer: the memory would go unused.

    Args:
        loss: the settings (nothing to check without a memory).
        steps: the run's length in steps.
        length: how the message gives the length, e.g. ``" (2 epochs of 8 batches)"``.

    Raises:
        ValueError: ``memory_warmup`` ≥ ``steps`` with ``memory_size`` > 0.
    """
    if loss.memory_size and loss.memory_warmup >= steps:
        raise ValueError(
            f"setting 'memory_warmup' ({loss.memory_warmup}) must be below the run's "
            f"{steps} steps{length}: the cross-batch memory would never be used"
        )
