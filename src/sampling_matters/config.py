"""Training settings: one dataclass per concern, flat keys, every value checked.

A run is described by five dataclasses (data, model, loss, optimiser, run), gathered
in :class:`TrainConfig`. Flat keys (``loss``, ``steps``, ``classes_per_batch``) name
their fields; they are the keys of a run's ``config.yaml``, of a ``--config`` file and
the names of the command line's flags. :meth:`TrainConfig.from_flat` checks every value
against its field's type and range and names the key at fault; :func:`read_yaml` reads
a file of settings (keys spelt with ``-`` or ``_``, never both).

Example:
    >>> config = TrainConfig.from_flat({"data": "kanji", "steps": 100, "lr": 3e-4})
    >>> config.optim.steps, config.optim.lr
    (100, 0.0003)
    >>> TrainConfig.from_flat({"steps": "ten"})
    Traceback (most recent call last):
    ...
    ValueError: setting 'steps' must be an integer or null, got 'ten'
"""

from __future__ import annotations

import itertools
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sampling_matters import _checks
from sampling_matters.losses import LOSSES
from sampling_matters.sampling import SAMPLINGS

__all__ = [
    "AUGMENTS",
    "NEUTRAL_KEYS",
    "RECORD_KEYS",
    "SELECTIONS",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "check_device",
    "read_yaml",
]

NEUTRAL_KEYS = ("device", "workers", "eval_batch_size", "log_every", "out")
"""Settings that change how or where a run executes, not what it trains: free to differ
on resume (a run directory may move)."""

RECORD_KEYS = ("skipped_images",)
"""Keys of a run's ``config.yaml`` that record what happened, not settings: read past."""

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
    classes_per_batch: int = 16
    samples_per_class: int = 5
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
    backbone_lr: float | None = field(
        default=None,
        metadata={
            "help": "the backbone's learning rate; default: lr for a backbone trained from "
            "scratch (small-cnn, --no-pretrained), lr / 10 for pretrained weights"
        },
    )
    beta_lr: float = 1e-2
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
        for check in (_check_data, _check_model, _check_loss, _check_optim, _check_run):
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


# ------------------------------------------------------------------------------ ranges


def _require(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"setting {key!r} must be {expected}, got {value!r}")


def _within(
    key: str, value: float | None, low: float, high: float, *, open_low: bool = False
) -> None:
    """``value`` (when not None) in [low, high], or (low, high] with ``open_low``."""
    if value is None:
        return
    above = value > low if open_low else value >= low
    bracket = "(" if open_low else "["
    _require(above and value <= high, key, f"in {bracket}{low:g}, {high:g}]", value)


def _check_data(config: TrainConfig) -> None:
    data = config.data
    _require(bool(data.data.strip()), "data", "a data spec such as kanji or folder:PATH", data.data)
    _within("image_size", data.image_size, 1, MAX_IMAGE_SIZE)
    _within("classes_per_batch", data.classes_per_batch, 2, 100_000)
    _within("samples_per_class", data.samples_per_class, 2, 100_000)
    _require(0 <= data.val_fraction < 1, "val_fraction", "in [0, 1)", data.val_fraction)
    _within("workers", data.workers, 0, 64)
    _require(data.augment in AUGMENTS, "augment", " or ".join(AUGMENTS), data.augment)


def _check_model(config: TrainConfig) -> None:
    model = config.model
    _within("embedding_dim", model.embedding_dim, 2, 65_536)  # a sphere needs D >= 2
    _within("frozen_stages", model.frozen_stages, 0, 1_000)
    frozen = model.freeze_backbone or model.frozen_stages > 0
    if model.cache_features and not frozen:
        raise ValueError(
            "cache_features needs freeze_backbone or frozen_stages >= 1"
            " (only a frozen part's output stays the same)"
        )
    if model.freeze_backbone and model.frozen_stages:
        raise ValueError("set freeze_backbone or frozen_stages, not both")


def _check_loss(config: TrainConfig) -> None:
    loss = config.loss
    if loss.loss not in LOSSES:
        raise ValueError(f"unknown loss {loss.loss!r}; expected one of {sorted(LOSSES)}")
    if loss.sampling not in SAMPLINGS:
        raise ValueError(f"unknown sampling {loss.sampling!r}; expected one of {sorted(SAMPLINGS)}")
    _within("beta", loss.beta, 0, 2, open_low=True)  # a boundary between distances in [0, 2]
    _within("nu", loss.nu, 0, 100)
    if (loss.beta_per_class or loss.beta_per_image) and loss.loss != "margin":
        raise ValueError("beta_per_class / beta_per_image belong to the margin loss")


def _check_optim(config: TrainConfig) -> None:
    optim = config.optim
    if (optim.steps is None) == (optim.epochs is None):
        raise ValueError("give exactly one of steps and epochs")
    _within("steps", optim.steps, 1, MAX_STEPS)
    _within("epochs", optim.epochs, 1, MAX_STEPS)
    for key in ("lr", "backbone_lr", "beta_lr"):
        _within(key, getattr(optim, key), 0, 10, open_low=True)
    _within("weight_decay", optim.weight_decay, 0, 1)
    _within("lr_decay", optim.lr_decay, 0, 1, open_low=True)
    at = optim.lr_decay_at
    fractions = all(0 < f < 1 for f in at) and all(a < b for a, b in itertools.pairwise(at))
    _require(fractions, "lr_decay_at", "increasing fractions of the run, each in (0, 1)", list(at))


def _check_run(config: TrainConfig) -> None:
    run = config.run
    _require(bool(run.out.strip()), "out", "a folder for the run, such as runs/my-run", run.out)
    _require(0 <= run.seed < 2**63, "seed", "an integer in [0, 2**63)", run.seed)
    _within("log_every", run.log_every, 1, MAX_STEPS)
    _require(run.select in SELECTIONS, "select", " or ".join(SELECTIONS), run.select)
    _within("eval_batch_size", run.eval_batch_size, 1, 1_000_000)
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


# -------------------------------------------------------------------------------- YAML


def read_yaml(path: Path) -> dict[str, Any]:
    """The settings in a YAML file, keys with ``-`` turned into ``_``.

    The record keys of a run's ``config.yaml`` (:data:`RECORD_KEYS`) are left out.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a regular file, not YAML, not a mapping, or one setting given
            twice (the same key, or with ``-`` and with ``_``).
    """
    import yaml

    if not str(path).strip():
        raise ValueError("the settings file's path is empty")
    if not path.exists():
        raise FileNotFoundError(f"settings file {path} is missing")
    if not path.is_file():
        raise ValueError(f"settings file {path} is not a regular file")
    try:
        with path.open(encoding="utf-8") as handle:
            loaded = yaml.load(handle, Loader=_StrictLoader)  # a SafeLoader: plain data only
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is not a valid YAML file: {' '.join(str(error).split())}"
        ) from None
    loaded = {} if loaded is None else loaded
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} must hold a mapping of setting names to values")
    settings: dict[str, Any] = {}
    for key, value in loaded.items():
        name = str(key).replace("-", "_")
        if name in settings:
            raise ValueError(f"{path}: setting {name!r} is given twice (with '-' and with '_')")
        settings[name] = value
    return {k: v for k, v in settings.items() if k not in RECORD_KEYS}


def _strict_loader() -> Any:
    """``yaml.SafeLoader`` that refuses a mapping holding one key twice."""
    import yaml

    class Strict(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} is given twice", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return Strict


_StrictLoader = _strict_loader()
