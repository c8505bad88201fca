"""The ranges of the data, model, optimiser and run settings, and :func:`check_device`.

Each check takes the whole :class:`~sampling_matters.config.TrainConfig` (its fields
already of their types) and raises ``ValueError`` naming the key at fault.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from sampling_matters.config.sections import TrainConfig

__all__ = [
    "AUGMENTS",
    "MAX_IMAGE_SIZE",
    "MAX_STEPS",
    "SELECTIONS",
    "check_data",
    "check_device",
    "check_model",
    "check_optim",
    "check_run",
    "require",
    "within",
]

MAX_STEPS = 10**9
"""The most steps (or epochs) a run may ask for."""

MAX_IMAGE_SIZE = 4096
"""The largest ``image_size`` (pixels on a side)."""

AUGMENTS = ("auto", "photo", "glyph", "none")
"""``augment``: photos get random resized crops and flips, glyphs a small affine jitter
(never a flip), ``none`` no augmentation; ``auto`` takes the data set's kind of image."""

SELECTIONS = ("map@r", "recall@1", "last")
"""``select``: which model ``best.pt`` keeps: the best by a validation metric (the later
on a tie), or the last; without a validation split, always the last."""


def require(ok: bool, key: str, expected: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``ok``: setting ``key`` must be ``expected``."""
    if not ok:
        raise ValueError(f"setting {key!r} must be {expected}, got {value!r}")


def within(
    key: str, value: float | None, low: float, high: float, *, open_low: bool = False
) -> None:
    """``value`` (when not None) in [low, high], or (low, high] with ``open_low``."""
    if value is None:
        return
    above = value > low if open_low else value >= low
    bracket = "(" if open_low else "["
    require(above and value <= high, key, f"in {bracket}{low:g}, {high:g}]", value)


def check_data(config: TrainConfig) -> None:
    """The data settings: a data spec, image size, batch shape, validation split, augment."""
    data = config.data
    require(bool(data.data.strip()), "data", "a data spec such as kanji or folder:PATH", data.data)
    within("image_size", data.image_size, 1, MAX_IMAGE_SIZE)
    within("classes_per_batch", data.classes_per_batch, 2, 100_000)
    within("samples_per_class", data.samples_per_class, 2, 100_000)
    require(0 <= data.val_fraction < 1, "val_fraction", "in [0, 1)", data.val_fraction)
    within("workers", data.workers, 0, 64)
    require(data.augment in AUGMENTS, "augment", " or ".join(AUGMENTS), data.augment)


def check_model(config: TrainConfig) -> None:
    """The model settings: embedding dimension, frozen stages, cached features."""
    model = config.model
    within("embedding_dim", model.embedding_dim, 2, 65_536)  # a sphere needs D >= 2
    within("frozen_stages", model.frozen_stages, 0, 1_000)
    frozen = model.freeze_backbone or model.frozen_stages > 0
    if model.cache_features and not frozen:
        raise ValueError(
            "cache_features needs freeze_backbone or frozen_stages >= 1"
            " (only a frozen part's output stays the same)"
        )
    if model.freeze_backbone and model.frozen_stages:
        raise ValueError("set freeze_backbone or frozen_stages, not both")


def check_optim(config: TrainConfig) -> None:
    """The optimiser settings: one budget, the rates, the decay schedule."""
    optim = config.optim
    if (optim.steps is None) == (optim.epochs is None):
        raise ValueError("give exactly one of steps and epochs")
    within("steps", optim.steps, 1, MAX_STEPS)
    within("epochs", optim.epochs, 1, MAX_STEPS)
    for key in ("lr", "backbone_lr", "beta_lr"):
        within(key, getattr(optim, key), 0, 10, open_low=True)
    within("weight_decay", optim.weight_decay, 0, 1)
    within("lr_decay", optim.lr_decay, 0, 1, open_low=True)
    at = optim.lr_decay_at
    fractions = all(0 < f < 1 for f in at) and all(a < b for a, b in itertools.pairwise(at))
    require(fractions, "lr_decay_at", "increasing fractions of the run, each in (0, 1)", list(at))


def check_run(config: TrainConfig) -> None:
    """The run settings: out, seed, logging, model selection, device."""
    run = config.run
    require(bool(run.out.strip()), "out", "a folder for the run, such as runs/my-run", run.out)
    require(0 <= run.seed < 2**63, "seed", "an integer in [0, 2**63)", run.seed)
    within("log_every", run.log_every, 1, MAX_STEPS)
    require(run.select in SELECTIONS, "select", " or ".join(SELECTIONS), run.select)
    within("eval_batch_size", run.eval_batch_size, 1, 1_000_000)
    within("world_size", run.world_size, 1, 1_000_000)
    check_device(run.device)


def check_device(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is ``auto`` or a device this machine has."""
    if name == "auto":
        return
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"setting 'device' must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"device {name!r}: this machine has no CUDA GPU that torch can use; "
                "use --device cpu (or auto)"
            )
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"device {name!r}: this machine has {count} CUDA GPU(s), 0 to {count - 1}"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r}: Apple's MPS is not available here; use --device cpu")
