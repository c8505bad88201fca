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
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from sampling_matters.losses import LOSSES
from sampling_matters.sampling import SAMPLINGS

__all__ = [
    "NEUTRAL_KEYS",
    "RECORD_KEYS",
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


@dataclass
class DataConfig:
    """What to train on and how batches are drawn."""

    data: str = "kanji"
    image_size: int | None = None  # the model's own size when None
    classes_per_batch: int = 20
    samples_per_class: int = 4
    val_fraction: float = 0.1  # training classes held out for validation
    workers: int = 0
    skip_bad_images: bool = False  # leave unreadable image files out (else: an error)


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
        """Raise ``ValueError`` on settings that cannot train, naming the key."""
        for check in (_check_data, _check_model, _check_loss, _check_optim, _check_run):
            check(self)


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
    converted = _convert(value, base)
    if converted is _INVALID:
        expected = _DESCRIPTIONS.get(base, str(base)) + (" or null" if optional else "")
        raise ValueError(f"setting {key!r} must be {expected}, got {value!r}")
    return converted


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
        return value if isinstance(value, bool) else _INVALID
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _INVALID
    if kind is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if number else _INVALID
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


def _positive_finite(key: str, value: float) -> None:
    _require(math.isfinite(value) and value > 0, key, "a finite number > 0", value)


def _check_data(config: TrainConfig) -> None:
    data = config.data
    _require(bool(data.data.strip()), "data", "a data spec such as kanji or folder:PATH", data.data)
    size = data.image_size
    _require(size is None or size >= 1, "image_size", "an integer >= 1 or null", size)
    _require(
        data.classes_per_batch >= 2, "classes_per_batch", "an integer >= 2", data.classes_per_batch
    )
    _require(
        data.samples_per_class >= 2, "samples_per_class", "an integer >= 2", data.samples_per_class
    )
    _require(0 <= data.val_fraction < 1, "val_fraction", "in [0, 1)", data.val_fraction)
    _require(data.workers >= 0, "workers", "an integer >= 0", data.workers)


def _check_model(config: TrainConfig) -> None:
    model = config.model
    _require(model.embedding_dim >= 1, "embedding_dim", "an integer >= 1", model.embedding_dim)
    _require(model.frozen_stages >= 0, "frozen_stages", "an integer >= 0", model.frozen_stages)
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
    _positive_finite("beta", loss.beta)
    _require(math.isfinite(loss.nu) and loss.nu >= 0, "nu", "a finite number >= 0", loss.nu)
    if (loss.beta_per_class or loss.beta_per_image) and loss.loss != "margin":
        raise ValueError("beta_per_class / beta_per_image belong to the margin loss")


def _check_optim(config: TrainConfig) -> None:
    optim = config.optim
    if (optim.steps is None) == (optim.epochs is None):
        raise ValueError("give exactly one of steps and epochs")
    budget = "steps" if optim.steps is not None else "epochs"
    _require(
        (optim.steps or optim.epochs or 0) >= 1, budget, "an integer >= 1", getattr(optim, budget)
    )
    for key in ("lr", "backbone_lr", "beta_lr"):
        _positive_finite(key, getattr(optim, key))
    decay = optim.weight_decay
    _require(math.isfinite(decay) and decay >= 0, "weight_decay", "a finite number >= 0", decay)
    _require(0 < optim.lr_decay <= 1, "lr_decay", "in (0, 1]", optim.lr_decay)
    at = optim.lr_decay_at
    fractions = all(0 < f < 1 for f in at) and all(a < b for a, b in itertools.pairwise(at))
    _require(fractions, "lr_decay_at", "increasing fractions of the run, each in (0, 1)", list(at))


def _check_run(config: TrainConfig) -> None:
    run = config.run
    _require(bool(run.out.strip()), "out", "a folder for the run, such as runs/my-run", run.out)
    _require(0 <= run.seed < 2**63, "seed", "an integer in [0, 2**63)", run.seed)
    _require(run.log_every >= 1, "log_every", "an integer >= 1", run.log_every)
    _require(run.eval_batch_size >= 1, "eval_batch_size", "an integer >= 1", run.eval_batch_size)
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
        ValueError: not YAML, not a mapping, or one setting given in two spellings.
    """
    import yaml

    if not path.is_file():
        what = "a folder, not a YAML file" if path.is_dir() else "missing"
        raise FileNotFoundError(f"settings file {path} is {what}")
    try:
        with path.open(encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle)
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a valid YAML file: {error}") from None
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
