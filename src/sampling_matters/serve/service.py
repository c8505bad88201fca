"""The search behind the HTTP API: an index and its model, loaded once, shared by threads.

:class:`SearchService` knows nothing of HTTP: it answers "the k nearest items of this
image" and "of this indexed item" (never the item itself), an item's label and image
(a PNG of what the model sees, at most :data:`THUMB_SIDE` pixels a side), and the facts
``/healthz`` reports. Its errors say what was wrong: :class:`UnknownItemError` for an id
the index does not hold or holds without an image, :class:`BadQueryError` for a ``k``
out of range. A search by id reads the item's vector back from the index
(:meth:`Index.search_ids`): it needs neither the item's image nor the model.
"""

from __future__ import annotations

import functools
import io
import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from sampling_matters.search import load_item

if TYPE_CHECKING:
    from sampling_matters.index import Index, QueryEmbedder

__all__ = [
    "THUMB_SIDE",
    "BadQueryError",
    "Neighbour",
    "SearchService",
    "UnknownItemError",
]

THUMB_SIDE = 512
"""The longest side, in pixels, of an item's image as the API serves it."""

_CACHED_IMAGES = 2048  # PNGs of items kept in memory (a grid shows the same ones often)


class UnknownItemError(LookupError):
    """An id the index does not hold, or an item whose image is gone or unreadable (HTTP 404)."""


class BadQueryError(ValueError):
    """A query the service cannot answer as asked, such as ``k`` out of range (HTTP 422)."""


@dataclass(frozen=True)
class Neighbour:
    """One search result: the item's id and label, and its distance to the query."""

    id: int
    label: int
    distance: float


class SearchService:
    """Nearest indexed items of an image or of an item, safe to call from many threads.

    Args:
        index: the loaded index (:func:`sampling_matters.index.load`).
        embedder: the model that embeds queries, decoding images as the run does; it
            must be the one the index was built with (checked here).
        max_k: the most neighbours a query may ask for (capped at the index's size - 1).

    Raises:
        ValueError: the model does not match the index, the index holds fewer than 2
            items, or ``max_k`` < 1.
    """

    def __init__(self, index: Index, embedder: QueryEmbedder, *, max_k: int) -> None:
        if max_k < 1:
            raise ValueError(f"max_k must be >= 1, got {max_k}")
        if len(index) < 2:
            raise ValueError(f"the index holds {len(index)} item; a search needs at least 2")
        index.check_model(embedder)
        self.index, self.embedder, self.kind = index, embedder, embedder.kind
        self.max_k = min(max_k, len(index) - 1)
        self._ids, self._labels = index.ids, index.labels  # (N,) int64 each
        self._items = index.items  # a copy: the service never adds to its index
        n = len(self._ids)
        self._contiguous = bool(torch.equal(self._ids, torch.arange(n)))  # ids 0 … N-1
        self._position = (
            {} if self._contiguous else {int(i): p for p, i in enumerate(self._ids.tolist())}
        )
        self._id_range = f"{int(self._ids.min())} to {int(self._ids.max())}"
        self._load_lock = threading.Lock()  # item images: one data set load, one reader
        self._png = functools.lru_cache(maxsize=_CACHED_IMAGES)(self._encode)

    def check_k(self, k: int) -> None:
        """Raise :class:`BadQueryError` unless ``1 <= k <= max_k``."""
        if not 1 <= k <= self.max_k:
            raise BadQueryError(
                f"k must be an integer in [1, {self.max_k}] (the server's limit, or the "
                f"index's size - 1), got {k}"
            )

    def label(self, item_id: int) -> int:
        """The class label of an indexed item."""
        return int(self._labels[self._at(item_id)])

    def item(self, item_id: int) -> dict[str, Any]:
        """An item's metadata: ``id``, ``label`` and ``item`` (its file or item name)."""
        position = self._at(item_id)
        return {"id": item_id, "label": self.label(item_id), "item": self._items[position]}

    def random_id(self) -> int:
        """An indexed item's id, drawn uniformly (not seeded: the page's "random item")."""
        return int(self._ids[secrets.randbelow(len(self._ids))])

    def search_image(self, image: Image.Image, k: int) -> list[Neighbour]:
        """The ``k`` items nearest to ``image``, best first."""
        self.check_k(k)
        return self._nearest(image, k)

    def search_item(self, item_id: int, k: int) -> list[Neighbour]:
        """The ``k`` items nearest to an indexed item, best first, the item left out."""
        self.check_k(k)
        self._at(item_id)
        try:
            distances, ids = self.index.search_ids([item_id], k)  # (1, k) each
        except ValueError as error:  # an index type that cannot give its vectors back
            raise BadQueryError(str(error)) from None
        return self._neighbours(distances, ids)

    def item_image(self, item_id: int) -> Image.Image:
        """An indexed item's image, decoded as the model reads it."""
        name = self._items[self._at(item_id)]
        if not name:
            raise UnknownItemError(f"item {item_id} has no image: its index holds only its vector")
        try:
            with self._load_lock:
                return load_item(name, self.kind)
        except (OSError, ValueError) as error:  # moved, deleted or damaged since indexed
            raise UnknownItemError(f"the image of item {item_id} cannot be read: {error}") from None

    def item_png(self, item_id: int) -> bytes:
        """An indexed item's image as PNG bytes, at most :data:`THUMB_SIDE` pixels a side."""
        return self._png(self._at(item_id))

    def _encode(self, position: int) -> bytes:
        image = self.item_image(int(self._ids[position]))
        image.thumbnail((THUMB_SIDE, THUMB_SIDE))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    def _nearest(self, image: Image.Image, k: int) -> list[Neighbour]:
        queries = self.embedder.embed_images([image])  # (1, D)
        return self._neighbours(*self.index.search(queries, k))

    def _neighbours(self, distances: torch.Tensor, ids: torch.Tensor) -> list[Neighbour]:
        """The first row of a search's (Q, k) answer as neighbours."""
        return [
            Neighbour(int(i), self.label(int(i)), float(d))
            for d, i in zip(distances[0].tolist(), ids[0].tolist(), strict=True)
            if int(i) >= 0  # faiss pads a short answer with -1
        ]

    def _at(self, item_id: int) -> int:
        """The position of an id in the index's arrays."""
        if self._contiguous and 0 <= item_id < len(self._ids):
            return item_id
        if item_id in self._position:
            return self._position[item_id]
        raise UnknownItemError(
            f"no item has id {item_id}: the index holds {len(self._ids)} items "
            f"(ids {self._id_range})"
        )

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` reports: the index's size and dimension, the model and run."""
        meta = self.index.meta
        config = meta.get("config", {})
        return {
            "status": "ok",
            "size": len(self.index),
            "dim": self.index.dim,
            "max_k": self.max_k,
            "model": {
                "name": config.get("model"),
                "embedding_dim": config.get("embedding_dim"),
                "data": config.get("data"),
                "run": str(meta.get("run")),
                "checkpoint_sha256": meta.get("checkpoint_sha256"),
            },
            "index": {"factory": meta.get("factory"), "faiss_version": meta.get("faiss_version")},
            "threads": torch.get_num_threads(),
        }
