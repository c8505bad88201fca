"""The data of a run: the train and test splits, every image file checked, validation held out.

Validation uses the last classes of the training classes, so the test classes stay
unseen until the end; a split that the metrics cannot score is refused before training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from sampling_matters import data as datasets
from sampling_matters.config import TrainConfig
from sampling_matters.data.datasets import ImageDataset, Kind, Transform
from sampling_matters.data.image_check import BadImagesError, check_images
from sampling_matters.data.transforms import eval_transform, train_transform
from sampling_matters.models import EmbeddingModel


@dataclass
class _Splits:
    train: ImageDataset
    val: ImageDataset | None
    test: ImageDataset
    skipped: list[Path] = field(default_factory=list)  # bad image files left out


def _split_validation(
    train: ImageDataset, fraction: float
) -> tuple[ImageDataset, ImageDataset | None]:
    """Hold out the last ``fraction`` of the training classes for validation (0: none)."""
    if fraction == 0:
        return train, None
    n_val = round(train.n_classes * fraction)
    if n_val < 2 or train.n_classes - n_val < 2:
        raise ValueError(
            f"val_fraction {fraction} of the {train.n_classes} training classes holds out "
            f"{n_val}; validation and training need at least 2 classes each: use "
            "val_fraction 0 (no validation) or another fraction"
        )
    is_val = train.labels >= train.n_classes - n_val  # (N,)
    keep = torch.nonzero(~is_val).squeeze(1)
    held = torch.nonzero(is_val).squeeze(1)
    return train.select(keep), train.select(held)


def load_checked(spec: str, split: str, *, skip_bad: bool, progress: bool) -> ImageDataset:
    """The ``split`` of ``spec`` with every image file checked (see :func:`check_images`)."""
    return check_images(datasets.load(spec, split), skip=skip_bad, progress=progress)[0]


def _checked_splits(
    spec: str, skip_bad: bool, progress: bool
) -> tuple[ImageDataset, ImageDataset, list[Path]]:
    """The train and test splits, image files checked; one error lists both's bad files."""
    checked, errors = [], []
    for split in ("train", "test"):
        try:
            checked.append(
                check_images(datasets.load(spec, split), skip=skip_bad, progress=progress)
            )
        except BadImagesError as error:
            errors.append(error)
    if errors:
        raise BadImagesError([b for e in errors for b in e.bad], sum(e.total for e in errors))
    (train, bad_train), (test, bad_test) = checked
    return train, test, [image.path for image in bad_train + bad_test]


def image_kind(config: TrainConfig, dataset: ImageDataset) -> Kind:
    """How a run decodes and transforms ``dataset``: its ``augment`` kind, or the set's own."""
    augment = config.data.augment
    return augment if augment in ("photo", "glyph") else dataset.kind  # type: ignore[return-value]


def _check_scorable(dataset: ImageDataset, split: str) -> None:
    """Refuse, before training, a split that the metrics cannot score."""
    counts = torch.bincount(dataset.labels)  # (C,)
    if len(dataset) <= 8 or len(counts) < 2 or int(counts.max()) < 2:
        raise ValueError(
            f"the {split} split holds {len(dataset)} images of {len(counts)} classes; scoring "
            "it needs more than 8 images (Recall@8 searches 8 neighbours), 2 classes, and a "
            "class with 2 images"
        )


def _load_splits(
    config: TrainConfig, model: EmbeddingModel, augmentation: torch.Generator, progress: bool
) -> _Splits:
    train_set, test_set, skipped = _checked_splits(
        config.data.data, config.data.skip_bad_images, progress
    )
    kind = image_kind(config, train_set)
    train_set, test_set = train_set.with_kind(kind), test_set.with_kind(kind)
    size = config.data.image_size or model.input_size
    train_set, val_set = _split_validation(train_set, config.data.val_fraction)
    normalization, channels = model.normalization, model.channels
    evaluation = eval_transform(kind, size, normalization=normalization, channels=channels)
    augment: Transform = train_transform(
        kind, size, normalization=normalization, channels=channels, generator=augmentation
    )
    if config.data.augment == "none":
        augment = evaluation
    _check_scorable(test_set, "test")
    if val_set is not None:
        _check_scorable(val_set, "validation")
    return _Splits(
        train_set.with_transform(evaluation if config.model.cache_features else augment),
        None if val_set is None else val_set.with_transform(evaluation),
        test_set.with_transform(evaluation),
        skipped,
    )
