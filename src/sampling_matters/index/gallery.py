"""Embedding a data set for an index, in chunks that survive an interruption.

:func:`embed_data` embeds a split with a run's model in chunks of :data:`CHUNK` images,
each saved atomically into a scratch folder as soon as it is done. Run again after a
kill or Ctrl-C, with the same run, data and split, it loads the chunks already done
and embeds only the rest; a scratch folder from another job (another checkpoint, data
set or split) is discarded. The caller removes the scratch folder once the index is
written.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from sampling_matters import _progress, data, files
from sampling_matters.data.cache import write_text_atomic
from sampling_matters.data.datasets import ImageDataset, Kind
from sampling_matters.index.query import BATCH, QueryEmbedder

__all__ = ["CHUNK", "Embedded", "data_digest", "embed_data", "scratch_folder"]

CHUNK = 2048
"""Images per saved chunk."""

_JOB = "job.json"


@dataclass(frozen=True)
class Embedded:
    """A split embedded.

    Attributes:
        embeddings: (N, D) float32 unit embeddings.
        labels: (N,) int64 labels.
        items: N item names (file paths or ``spec#split#index``).
        kind: how the images were decoded.
        resumed: how many images came from chunks saved by an earlier, interrupted run.
    """

    embeddings: Tensor
    labels: Tensor
    items: list[str]
    kind: Kind
    resumed: int


def scratch_folder(out: Path) -> Path:
    """Where the chunks of an index ``out`` are kept until it is written (beside it)."""
    return out.parent / f".{out.name}.partial"


def embed_data(
    embedder: QueryEmbedder,
    spec: str,
    split: str,
    *,
    scratch: Path,
    skip_bad: bool = False,
    progress: bool = True,
) -> Embedded:
    """The embeddings of a split of ``spec`` by ``embedder``'s model, resumable.

    Args:
        embedder: the run's model; images are decoded as the run decodes this data set.
        spec: a data spec (``kanji``, ``folder:PATH``).
        split: ``train``, ``test`` or ``all``.
        scratch: the folder for the chunks (created; reused when it holds this job's).
        skip_bad: leave unreadable image files out, with a warning (else an error).
        progress: show progress bars.

    Raises:
        ValueError: an empty spec, unreadable images (unless ``skip_bad``).
    """
    from sampling_matters.training import image_kind, load_checked

    if not spec.strip():
        raise ValueError("--data is empty: give a data spec such as kanji or folder:PATH")
    spec = data.absolute(spec)
    dataset = load_checked(spec, split, skip_bad=skip_bad, progress=progress)
    kind = image_kind(embedder.config, dataset)
    embedder = embedder.with_kind(kind)
    dataset = dataset.with_kind(kind).with_transform(embedder.transform)
    items = data.item_names(spec, split, dataset)
    if not items:
        raise ValueError(f"the {split} split of {spec} holds no images")
    job = {
        "spec": spec,
        "split": split,
        "size": len(dataset),
        "chunk": CHUNK,
        "kind": kind,
        "checkpoint_sha256": embedder.checkpoint_sha256,
        "items": data_digest(items),
    }
    done = _open_scratch(scratch, job)
    chunks, resumed = _embed_chunks(embedder, dataset, scratch, done, progress)
    embeddings = torch.cat([c.embeddings for c in chunks])  # (N, D)
    labels = torch.cat([c.labels for c in chunks])  # (N,)
    return Embedded(embeddings, labels, items, kind, resumed)


def data_digest(items: list[str]) -> str:
    """A short fingerprint of the item names (a changed data set starts afresh)."""
    return hashlib.sha256("\n".join(items).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _open_scratch(scratch: Path, job: dict[str, Any]) -> set[int]:
    """Make ``scratch`` hold this ``job``'s chunks; returns the chunks already done."""
    record = scratch / _JOB
    if scratch.is_dir():
        try:
            same = json.loads(record.read_text(encoding="utf-8")) == job
        except (OSError, ValueError):
            same = False
        if same:
            return {int(p.stem.split("-")[1]) for p in scratch.glob("chunk-*.pt")}
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    write_text_atomic(record, json.dumps(job))
    return set()


def _embed_chunks(
    embedder: QueryEmbedder,
    dataset: ImageDataset,
    scratch: Path,
    done: set[int],
    progress: bool,
) -> tuple[list[files.EmbeddingFile], int]:
    n = len(dataset)
    chunks: list[files.EmbeddingFile] = []
    resumed = 0
    bar: Any = _progress.tqdm(desc="embed", total=n, unit="image", disable=not progress)
    with bar:
        for c in range(math.ceil(n / CHUNK)):
            rows = range(c * CHUNK, min(n, (c + 1) * CHUNK))
            path = scratch / f"chunk-{c:06d}.pt"
            chunk = _saved_chunk(path, len(rows), embedder.dim) if c in done else None
            if chunk is None:
                chunk = _embed_rows(embedder, dataset, rows)
                files.save_embeddings(path, chunk.embeddings, chunk.labels)
            else:
                resumed += len(rows)
            chunks.append(chunk)
            bar.update(len(rows))
    return chunks, resumed


def _saved_chunk(path: Path, size: int, dim: int) -> files.EmbeddingFile | None:
    """The chunk saved at ``path`` if it is whole and of the right shape, else None."""
    try:
        chunk = files.load_embeddings(path)
    except (OSError, ValueError):
        return None
    return chunk if tuple(chunk.embeddings.shape) == (size, dim) else None


def _embed_rows(embedder: QueryEmbedder, dataset: ImageDataset, rows: range) -> files.EmbeddingFile:
    loader = DataLoader(Subset(dataset, rows), batch_size=BATCH)
    outputs, labels = [], []
    for images, batch_labels, _ in loader:
        outputs.append(embedder.embed_tensors(images))
        labels.append(batch_labels)
    return files.EmbeddingFile(torch.cat(outputs), torch.cat(labels).long(), None)
