"""Visual search: embed query images, find their nearest gallery items, draw a contact sheet."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from sampling_matters import data
from sampling_matters.data.datasets import Kind
from sampling_matters.data.transforms import eval_transform
from sampling_matters.evaluation.knn import knn
from sampling_matters.files import EmbeddingFile
from sampling_matters.models import EmbeddingModel

__all__ = ["contact_sheet", "load_item", "random_queries", "search"]

THUMB = 96  # pixels per thumbnail side


def search(
    model: EmbeddingModel,
    config: Any,
    gallery: EmbeddingFile,
    queries: list[str],
    k: int,
    sheet: Path | None = None,
) -> list[list[tuple[str, float]]]:
    """The ``k`` nearest gallery items of each query, nearest first.

    Args:
        model: the trained network.
        config: the run's :class:`~sampling_matters.config.TrainConfig`.
        gallery: an embedding file with items (see :func:`sampling_matters.files.load_embeddings`).
        queries: image files, or item names of the gallery (``spec#split#index`` or a
            gallery file's path); a query that is a gallery item is not its own neighbour.
        k: neighbours per query.
        sheet: where to write a contact sheet PNG (a row per query), or None.

    Returns:
        Per query, ``(item, distance)`` pairs.

    Raises:
        ValueError: a gallery without items or of another dimension, ``k`` out of range,
            a query that is neither an image file nor an item name.
    """
    items = _items(gallery)
    if len(items) < 2:
        raise ValueError(f"the gallery holds {len(items)} item; search needs at least 2")
    if not 1 <= k < len(items):
        raise ValueError(f"k must be in [1, {len(items) - 1}] (the gallery's size - 1), got {k}")
    kind = _kind(config)
    size = config.data.image_size or model.input_size
    transform = eval_transform(
        kind, size, normalization=model.normalization, channels=model.channels
    )
    images = [load_item(query, kind) for query in queries]
    with torch.no_grad():
        embedded = model.eval()(torch.stack([transform(image) for image in images]))
    if not bool(torch.isfinite(embedded).all()):
        raise ValueError("the run's model gives NaN or Inf embeddings: its weights are damaged")
    if embedded.shape[1] != gallery.embeddings.shape[1]:
        raise ValueError(
            f"the gallery holds {gallery.embeddings.shape[1]}-d embeddings but the run embeds in "
            f"{embedded.shape[1]} dimensions: embed the gallery with this run"
        )
    found = knn(embedded, k + 1, gallery=gallery.embeddings, backend="torch")
    results = [
        [
            (items[int(i)], float(d))
            for i, d in zip(row_i, row_d, strict=True)
            if items[int(i)] != query
        ][:k]
        for query, row_i, row_d in zip(queries, found.indices, found.distances, strict=True)
    ]
    if sheet is not None:
        contact_sheet(
            images, [[load_item(item, kind) for item, _ in row] for row in results], sheet
        )
    return results


def _kind(config: Any) -> Kind:
    """How the run decodes images: its ``augment`` kind, or its data set's own."""
    augment: str = config.data.augment
    if augment in ("photo", "glyph"):
        return augment  # type: ignore[return-value]
    return _dataset(config.data.data, "test").kind


def _items(gallery: EmbeddingFile) -> list[str]:
    if gallery.items is None:
        raise ValueError(
            "the gallery file has no 'items' (names of its images): write it with embed"
        )
    return gallery.items


def random_queries(gallery: EmbeddingFile, n: int, seed: int = 0) -> list[str]:
    """``n`` ≥ 1 distinct gallery items drawn at random (seeded), to use as queries."""
    items = _items(gallery)
    if not 1 <= n <= len(items):
        raise ValueError(
            f"the number of random queries must be in [1, {len(items)}] (the gallery's "
            f"size), got {n}"
        )
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed))
    return [items[int(i)] for i in order[:n]]


def _open(path: Path, kind: Kind) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                return opened.convert("RGB" if kind == "photo" else "L")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning) as error:
        raise ValueError(f"cannot read the image {path}: {error}") from None


def load_item(item: str, kind: Kind) -> Image.Image:
    """The image of a query or gallery item: a file path, else ``spec#split#index``.

    A path that exists is a file even when its name holds ``#``.
    """
    if not item.strip():
        raise ValueError("a query is empty: give an image file or an item name")
    if Path(item).is_file():
        return _open(Path(item), kind)
    if item.count("#") < 2:
        raise FileNotFoundError(f"{item} is not an image file (nor an item name spec#split#index)")
    spec, split, index = item.rsplit("#", 2)
    dataset = _dataset(spec, split)
    if not index.isdigit() or int(index) >= len(dataset):
        raise ValueError(
            f"item {item!r}: the index must be an integer in [0, {len(dataset) - 1}] "
            f"(the {split} split of {spec} has {len(dataset)} images)"
        )
    return dataset.image(int(index))


@functools.lru_cache(maxsize=4)
def _dataset(spec: str, split: str) -> data.ImageDataset:
    """A data set loaded once per process (a contact sheet reads many of its images)."""
    return data.load(spec, split)


def contact_sheet(
    queries: list[Image.Image], neighbours: list[list[Image.Image]], path: Path
) -> None:
    """A PNG with one row per query: the query, a gap, then its neighbours in order."""
    columns = 1 + max((len(row) for row in neighbours), default=0)
    sheet = Image.new("RGB", (THUMB * columns + THUMB // 4, THUMB * len(queries)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (query, row) in enumerate(zip(queries, neighbours, strict=True)):
        sheet.paste(_thumb(query), (0, r * THUMB))
        for c, image in enumerate(row):
            sheet.paste(_thumb(image), (THUMB * (c + 1) + THUMB // 4, r * THUMB))
        draw.line(
            [(THUMB + THUMB // 8, r * THUMB), (THUMB + THUMB // 8, (r + 1) * THUMB)],
            fill="red",
            width=2,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def _thumb(image: Image.Image) -> Image.Image:
    thumb = image.convert("RGB")
    thumb.thumbnail((THUMB - 4, THUMB - 4))
    framed = Image.new("RGB", (THUMB, THUMB), "white")
    framed.paste(thumb, ((THUMB - thumb.width) // 2, (THUMB - thumb.height) // 2))
    return framed
