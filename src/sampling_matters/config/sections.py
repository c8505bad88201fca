"""The settings' dataclasses, one per concern, gathered in :class:`TrainConfig`; their types."""

from __future__ import annotations

import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from sampling_matters import _checks
from sampling_matters.config.checks import check_data, check_model, check_optim, check_run
from sampling_matters.config.loss import check_loss
from sampling_matters.sampling import MAX_REFERENCE_POSITIVES, DistanceWeighted

NEUTRAL_KEYS = ("device", "workers", "eval_batch_size", "log_every", "out")
"""Settings that change how or where a run executes, not what it trains: free to differ
on resume (a run directory may move)."""

RECORD_KEYS = ("skipped_images", "global_classes_per_batch", "global_batch_size")
"""Keys of a run's ``config.yaml`` that record what happened, not settings: read past."""


@dataclass
class DataConfig:
    """What to train on and how batches are drawn."""

    data: str = "kanji"
    image_size: int | None = None  # the model's own size when None
    augment: str = field(
        default="auto",
        metadata={
            "help": "photo (random resized crops, flips), glyph (a small affine jitter, no "
            "flip), none, or auto (default): the data set's kind; an image folder's is "
            "inferred (small single-channel images on a plain background are glyphs)"
        },
    )
    classes_per_batch: int = 20
    samples_per_class: int = 4
    val_fraction: float = field(
        default=0.0,
        metadata={"help": "training classes held out for validation (default 0: none)"},
    )
    workers: int = 0
    skip_bad_images: bool = field(
        default=False,
        metadata={"help": "leave unreadable image files out, with a warning (else: an error)"},
    )


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
    """The loss, the sampling strategy and its settings, and the cross-batch memory."""

    loss: str = "margin"
    sampling: str = "distance-weighted"
    beta: float = 1.2
    learn_beta: bool = True  # False: β⁽⁰⁾ stays at ``beta`` (margin loss only)
    beta_per_class: bool = False
    beta_per_image: bool = False
    nu: float = 0.0
    margin: float | None = field(
        default=None,
        metadata={
            "help": "the loss's margin α; default: the loss's own (0.2 for margin and triplet, "
            "1.0 for contrastive). Semi-hard sampling's band is α, but 0.2 with contrastive"
        },
    )
    cutoff: float = field(
        default=DistanceWeighted.cutoff,
        metadata={"help": "distance weighted sampling clamps distances below at this (0.5)"},
    )
    nonzero_loss_cutoff: float | None = field(
        default=None,
        metadata={
            "help": "distance weighted sampling draws only negatives closer than this; "
            "default: margin + beta (α + β⁽⁰⁾, 1.4 at the defaults) for the margin loss, "
            "1.4 for the others; config.yaml records the value used"
        },
    )
    density: str = field(
        default=DistanceWeighted.density,
        metadata={
            "help": "distance weighted sampling's weights: sphere (the paper's 1/q(d), "
            "default) or empirical (each anchor's own distance density)"
        },
    )
    max_reference_positives: int = field(
        default=MAX_REFERENCE_POSITIVES,
        metadata={"help": "with a memory, at most this many positives per anchor from it (8)"},
    )
    memory_size: int = field(
        default=0,
        metadata={
            "help": "a cross-batch memory of the last M embeddings, sampled from with each "
            "batch (default 0: none)"
        },
    )
    memory_warmup: int = field(
        default=0,
        metadata={"help": "steps that fill the memory before it is sampled from (default 0)"},
    )
    pool: str = field(
        default="global",
        metadata={
            "help": "with several processes, each anchor samples from the global batch "
            "(default) or from its own process's batch only (local)"
        },
    )


@dataclass
class OptimConfig:
    """AdamW with a step schedule; the backbone, the head and β each at their own rate."""

    steps: int | None = None
    epochs: int | None = None
    lr: float = 1e-3
    backbone_lr: float | None = field(
        default=None,
        metadata={
            "help": "the backbone's learning rate; default: lr for a backbone trained from "
            "scratch (small-cnn, --no-pretrained), lr / 10 for pretrained weights"
        },
    )
    beta_lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_decay: float = 0.1
    lr_decay_at: tuple[float, ...] = (0.6, 0.85)  # fractions of the run


@dataclass
class RunConfig:
    """Where the run goes and how it is watched."""

    out: str = "runs/run"
    select: str = field(
        default="map@r",
        metadata={
            "help": "with a validation split, best.pt keeps the best model by validation "
            "map@r (default) or recall@1, or the last; without one, always the last"
        },
    )
    seed: int = 0
    device: str = "auto"
    log_every: int = 50
    eval_batch_size: int = 256
    world_size: int | None = field(
        default=None,
        metadata={
            "help": "the processes that train together; decided at the start (torchrun's "
            "world, 1 without) and recorded, so a resume needs the same number"
        },
    )


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
        """Build from flat keys, each value checked against its field's type and range.

        Raises:
            ValueError: an unknown key, a value of the wrong type or out of range; the
                message names the key.
        """
        config = cls()
        known = {f.name: section for section in config.sections() for f in fields(section)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown configuration key(s) {unknown}; known: {sorted(known)}")
        for key, value in values.items():
            setattr(known[key], key, _typed(key, value, field_types()[key]))
        config.check()
        return config

    def differences(self, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """Settings that differ from ``other``'s (neutral keys aside): key -> (self, other)."""
        mine, theirs = self.flat(), other.flat()
        return {
            k: (mine[k], theirs[k]) for k in mine if k not in NEUTRAL_KEYS and mine[k] != theirs[k]
        }

    def check(self) -> None:
        """Raise ``ValueError`` on settings that cannot train, naming the key.

        Every field is first checked against its type (and converted: an int where a
        float is expected, a path for ``out``), so fields set directly are held to the
        same rules as :meth:`from_flat`'s.
        """
        kinds = field_types()
        for name, kind in zip(_SECTIONS, _SECTION_TYPES, strict=True):
            if not isinstance(getattr(self, name), kind):
                raise ValueError(f"TrainConfig.{name} must be a {kind.__name__}")
        for section in self.sections():
            for f in fields(section):
                setattr(section, f.name, _typed(f.name, getattr(section, f.name), kinds[f.name]))
        for check in (check_data, check_model, check_loss, check_optim, check_run):
            check(self)


_SECTIONS = ("data", "model", "loss", "optim", "run")
_SECTION_TYPES = (DataConfig, ModelConfig, LossConfig, OptimConfig, RunConfig)

# ------------------------------------------------------------------------------- types


def field_types() -> dict[str, Any]:
    """The type of every flat key (resolved from the dataclasses' annotations)."""
    types_: dict[str, Any] = {}
    for section in TrainConfig().sections():
        types_.update(typing.get_type_hints(type(section)))
    return types_


def _typed(key: str, value: Any, kind: Any) -> Any:
    """``value`` as the field type ``kind``, or a ValueError naming ``key``."""
    optional = _is_optional(kind)
    if optional and value is None:
        return None
    base = next(a for a in typing.get_args(kind) if a is not type(None)) if optional else kind
    if key == "out" and isinstance(value, os.PathLike):
        value = os.fspath(value)
    converted = _convert(value, base)
    if converted is _INVALID:
        expected = _DESCRIPTIONS.get(base, str(base)) + (" or null" if optional else "")
        raise ValueError(f"setting {key!r} must be {expected}, got {value!r}{_hint(value, base)}")
    return converted


def _hint(value: Any, kind: Any) -> str:
    """A hint for a number that YAML read as text (``1e-3``: YAML wants ``1.0e-3``)."""
    if kind is float and isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return f" (text: in YAML write a number with a dot, such as {float(value)!r})"
    return ""


_INVALID = object()
_DESCRIPTIONS: dict[Any, str] = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    tuple[float, ...]: "a list of numbers",
}


def _is_optional(kind: Any) -> bool:
    return isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind)


def _convert(value: Any, kind: Any) -> Any:
    if kind is bool:
        return value if isinstance(value, (bool, np.bool_)) else _INVALID
    if kind is int:
        return int(value) if _checks.is_integer(value) else _INVALID
    if kind is float:
        return float(value) if _checks.is_number(value) else _INVALID
    if kind is str:
        return value if isinstance(value, str) else _INVALID
    if isinstance(value, (list, tuple)):  # tuple[float, ...]
        items = [_convert(v, float) for v in value]
        return _INVALID if _INVALID in items else tuple(items)
    return _INVALID
