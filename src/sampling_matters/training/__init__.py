"""Training: P×K batches, any loss × sampling strategy, checkpoints that survive a kill.

A run directory holds ``config.yaml`` (the final configuration), ``last.pt`` and
``best.pt`` (by validation Recall@1, written atomically), ``log.csv`` and, at the end,
``metrics.json`` (the metrics contract, on the test classes). Validation uses classes
held out from the training classes, so the test classes stay unseen until the end.

``train(config, resume=True)`` continues a killed run from its ``last.pt`` (written at
the end of every epoch, and at the step where Ctrl-C stopped it): model, optimiser,
schedule, position in the epoch, random state and the cross-batch memory (with
``memory_size`` > 0). A start never changes an existing run unless asked
(:mod:`sampling_matters.runs`): a new run into a folder that holds one is refused, and
a resume that would change the run's settings, or that finds a ``last.pt`` it cannot
read, is refused before any file is written. Every image file of the data set is
checked before training (:mod:`sampling_matters.data.image_check`).

The modules, in the order a run meets them: ``splits`` (the data, checked, validation
held out), ``features`` (embedding a data set; the frozen backbone's cached features),
``build`` (the settings decided; model, loss, optimiser, schedule, device),
``criterion`` (the sampling strategy, the loss and the cross-batch memory, from the
settings), ``checkpoints`` (``config.yaml``, ``last.pt``, ``best.pt``,
:func:`load_run`), ``step`` (one step and its diagnostics), ``log`` (``log.csv``),
``stop`` (Ctrl-C) and ``loop`` (:func:`train`).
"""

from sampling_matters.config import TrainConfig  # what train() takes, at hand beside it
from sampling_matters.training.build import resolve
from sampling_matters.training.checkpoints import load_run
from sampling_matters.training.features import embed_dataset
from sampling_matters.training.log import LOG_COLUMNS
from sampling_matters.training.loop import train
from sampling_matters.training.splits import image_kind, load_checked
from sampling_matters.training.stop import TrainingInterrupted

__all__ = [
    "LOG_COLUMNS",
    "TrainConfig",
    "TrainingInterrupted",
    "embed_dataset",
    "image_kind",
    "load_checked",
    "load_run",
    "resolve",
    "train",
]
