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

The package: :mod:`~.sections` (the dataclasses, their types, :class:`TrainConfig`),
:mod:`~.checks` (the ranges of the data, model, optimiser and run settings),
:mod:`~.loss` (the loss, sampling and memory settings: their ranges and the defaults
that follow the loss, such as ``margin`` and ``nonzero_loss_cutoff``) and
:mod:`~.yaml_file` (:func:`read_yaml`).
"""

from sampling_matters.config.checks import (
    AUGMENTS,
    MAX_IMAGE_SIZE,
    MAX_STEPS,
    SELECTIONS,
    check_device,
)
from sampling_matters.config.loss import (
    DENSITIES,
    check_memory_warmup,
    margin_of,
    nonzero_loss_cutoff_of,
    own_margin,
    semihard_band,
)
from sampling_matters.config.sections import (
    NEUTRAL_KEYS,
    RECORD_KEYS,
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    field_types,
)
from sampling_matters.config.yaml_file import read_yaml

__all__ = [
    "AUGMENTS",
    "DENSITIES",
    "MAX_IMAGE_SIZE",
    "MAX_STEPS",
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
    "check_memory_warmup",
    "field_types",
    "margin_of",
    "nonzero_loss_cutoff_of",
    "own_margin",
    "read_yaml",
    "semihard_band",
]
