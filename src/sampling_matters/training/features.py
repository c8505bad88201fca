"""Inference during a run: embedding a data set, and the frozen backbone's cached features.

With ``cache_features``, the frozen part of the backbone runs once per data set: its
outputs are kept on disk and the trained part of the network reads them instead of the
images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from sampling_matters import files
from sampling_matters.config import TrainConfig
from sampling_matters.data.cache import cache_root
from sampling_matters.data.datasets import ImageDataset
from sampling_matters.evaluation import evaluate
from sampling_matters.models import EmbeddingModel
from sampling_matters.training import parallel
from sampling_matters.training.splits import _Splits

_OUTPUTS: dict[str, Callable[[EmbeddingModel, Tensor], Tensor]] = {
    "embeddings": EmbeddingModel.forward,
    "features": EmbeddingModel.features,
    "frozen": EmbeddingModel.frozen_features,
}


@torch.no_grad()
def embed_dataset(
    model: EmbeddingModel,
    dataset: Dataset[Any],
    *,
    device: torch.device,
    batch_size: int = 256,
    workers: int = 0,
    output: Literal["embeddings", "features", "frozen"] = "embeddings",
) -> tuple[Tensor, Tensor]:
    """Embeddings (or backbone features) of every item, in order, and their labels.

    Args:
        model: the network.
        dataset: items ``(image, label, index)``.
        device: where to run the model.
        batch_size: images per forward pass.
        workers: DataLoader worker processes.
        output: ``"embeddings"``, the backbone's pooled ``"features"``, or the output of
            its ``"frozen"`` part (:meth:`EmbeddingModel.frozen_features`, to be cached).

    Returns:
        (N, E) float32 embeddings (or (N, F) features, or (N, …) frozen outputs) on the
        CPU and (N,) labels.
    """
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    outputs, labels = [], []
    for images, batch_labels, _ in loader:
        images = images.to(device)
        out = _OUTPUTS[output](model, images)
        outputs.append(out.float().cpu())
        labels.append(batch_labels)
    model.train(was_training)
    return torch.cat(outputs), torch.cat(labels)


def _evaluate_model(
    model: EmbeddingModel,
    dataset: Dataset[Any],
    config: TrainConfig,
    device: torch.device,
    with_nmi: bool,
) -> dict[str, float | int]:
    """The metrics of ``model`` on ``dataset``, on every process.

    Every process embeds its share; rank 0 scores the whole.
    """

    def embed(part: Dataset[Any]) -> tuple[Tensor, Tensor]:
        return _embed_or_head(model, part, config, device)

    embeddings, labels = parallel.embed_in_shards(dataset, embed, device)
    return parallel.from_main(
        lambda: evaluate(embeddings, labels, with_nmi=with_nmi, progress=False)
    )


def _embed_or_head(
    model: EmbeddingModel, dataset: Dataset[Any], config: TrainConfig, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Embeddings of a data set, or of its cached features (a TensorDataset)."""
    if isinstance(dataset, TensorDataset):
        features, labels, _ = dataset.tensors
        with torch.no_grad():
            return model.embed_frozen(features.to(device)).float().cpu(), labels
    return embed_dataset(
        model,
        dataset,
        device=device,
        batch_size=config.run.eval_batch_size,
        workers=config.data.workers,
    )


def _fingerprint(dataset: ImageDataset, config: TrainConfig) -> str:
    """A key for the frozen part's output on ``dataset``: model, input, images, labels.

    File-backed images enter by path, size and modification time; in-memory ones by
    their bytes, so editing a data set gives new features.
    """
    model = config.model
    frozen = "all" if model.freeze_backbone else model.frozen_stages
    key = (model.model, model.pretrained, frozen, config.data.image_size)
    digest = hashlib.sha256(repr(key).encode())
    digest.update(dataset.labels.numpy().tobytes())
    if isinstance(dataset.images, np.ndarray):
        digest.update(np.ascontiguousarray(dataset.images).tobytes())
    else:
        for path in dataset.images:
            stat = Path(path).stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def _read_cached(path: Path) -> tuple[Tensor, Tensor] | None:
    """Cached features and labels, or None when absent or unreadable (then recomputed)."""
    if not path.exists():
        return None
    try:
        features, labels = files.load(path, "cached features")
    except (ValueError, TypeError):
        return None
    return features, labels


def _cache_features(
    model: EmbeddingModel, splits: _Splits, config: TrainConfig, device: torch.device
) -> tuple[Dataset[Any], Dataset[Any] | None, Dataset[Any]]:
    """The frozen backbone's features of each split, computed once and kept on disk.

    They are stored under ``<cache>/features/`` (see
    :func:`sampling_matters.data.cache.cache_root`), keyed by :func:`_fingerprint`, so
    runs that share a backbone and a data set (an ablation, a re-run) compute them once.
    """
    folder = cache_root() / "features"

    def cached(dataset: ImageDataset) -> TensorDataset:
        path = folder / f"{_fingerprint(dataset, config)}.pt"
        stored = _read_cached(path)
        if stored is not None:
            features, labels = stored
        else:
            features, labels = embed_dataset(
                model,
                dataset,
                device=device,
                batch_size=config.run.eval_batch_size,
                workers=config.data.workers,
                output="frozen",
            )
            folder.mkdir(parents=True, exist_ok=True)
            files.save((features, labels), path)
        return TensorDataset(features, labels, torch.arange(len(labels)))

    val = None if splits.val is None else cached(splits.val)
    return cached(splits.train), val, cached(splits.test)
