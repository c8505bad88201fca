"""Embedding query images with a run's best model, as the index's vectors were embedded.

A :class:`QueryEmbedder` loads ``RUN/best.pt`` once (recording its sha256, so an index
can refuse a model it was not built with) and embeds PIL images, image files or item
names with the run's evaluation transform: the same decoding (``photo``: RGB, centre
crop; ``glyph``: grey, resize), size, channels and pixel normalisation the run's test
images got. :meth:`QueryEmbedder.embed_images` is safe to call from several threads at
once: the model stays in eval mode, each call runs under ``torch.no_grad`` and changes
no state.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from torch import Tensor

from sampling_matters import data
from sampling_matters.data.datasets import Kind
from sampling_matters.data.packages import sha256
from sampling_matters.data.transforms import EvalTransform, eval_transform
from sampling_matters.search import load_item

if TYPE_CHECKING:
    from sampling_matters.index.core import Index

__all__ = ["BATCH", "QueryEmbedder", "checkpoint_sha256"]

BATCH = 256
"""Images per forward pass."""


def checkpoint_sha256(path: Path) -> str:
    """The sha256 of a file (a run's ``best.pt``), as 64 hex digits."""
    return sha256(path)


class QueryEmbedder:
    """A run's best model with its evaluation transform: images in, unit embeddings out.

    Args:
        run: a training run folder (with ``best.pt``).
        kind: how to decode images, ``"photo"`` or ``"glyph"``; None: the run's own (its
            ``augment`` setting, else its data set's kind, which loads that data set).
        device: where the model runs.

    Attributes:
        run: the run folder.
        model: the model, in eval mode.
        config: the run's :class:`~sampling_matters.config.TrainConfig`.
        dim: D, the embedding dimension.
        checkpoint_sha256: the sha256 of the ``best.pt`` the model was loaded from.

    Raises:
        FileNotFoundError: ``run`` has no ``best.pt``.
        ValueError: ``best.pt`` is unreadable or changed while it was read.
    """

    def __init__(
        self, run: Path | str, *, kind: Kind | None = None, device: str | torch.device = "cpu"
    ) -> None:
        from sampling_matters.training import load_run

        self.run = Path(run)
        best = self.run / "best.pt"
        before = checkpoint_sha256(best) if best.is_file() else ""
        self.model, self.config = load_run(self.run)
        if checkpoint_sha256(best) != before:
            raise ValueError(f"{best} changed while it was read (a run still training?): retry")
        self.model = self.model.to(device).eval()
        self.device = torch.device(device)
        self.checkpoint_sha256 = before
        self.dim: int = self.model.embedding_dim
        if kind is not None and kind not in ("photo", "glyph"):
            raise ValueError(f"kind must be 'photo' or 'glyph', got {kind!r}")
        self._kind = kind

    @classmethod
    def for_index(cls, index: Index, run: Path | str | None = None) -> QueryEmbedder:
        """The embedder of the run an index was built with, checked against it.

        Args:
            index: a loaded index.
            run: the run folder, if not the one recorded in ``index.meta["run"]`` (moved).

        Raises:
            ValueError: the index records no run and none is given, or the run's model
                is not the one the index was built with (dimension, checkpoint hash).
        """
        run = run if run is not None else index.meta.get("run")
        if run is None:
            raise ValueError(
                "the index records no run (it was built from vectors alone): give the run "
                "whose model embedded them"
            )
        embedder = cls(run, kind=index.meta.get("kind"))
        index.check_model(embedder)
        return embedder

    @functools.cached_property
    def kind(self) -> Kind:
        """How images are decoded: ``"photo"`` or ``"glyph"``."""
        if self._kind is not None:
            return self._kind
        augment = self.config.data.augment
        if augment in ("photo", "glyph"):
            return "photo" if augment == "photo" else "glyph"
        spec = self.config.data.data
        try:
            return data.load(spec, "test").kind
        except (OSError, ValueError) as error:
            raise ValueError(
                f"cannot tell whether the run {self.run} takes photos or glyphs: its data "
                f"set {spec} cannot be loaded ({error}); give kind='photo' or 'glyph'"
            ) from None

    def with_kind(self, kind: Kind) -> QueryEmbedder:
        """The same model (shared, not copied), decoding images as ``kind``."""
        if kind not in ("photo", "glyph"):
            raise ValueError(f"kind must be 'photo' or 'glyph', got {kind!r}")
        copy = QueryEmbedder.__new__(QueryEmbedder)
        copy.__dict__.update({k: v for k, v in self.__dict__.items() if k not in _CACHED})
        copy._kind = kind
        return copy

    @functools.cached_property
    def transform(self) -> EvalTransform:
        """The run's evaluation transform: a PIL image → a (C, S, S) tensor."""
        size = self.config.data.image_size or self.model.input_size
        return eval_transform(
            self.kind, size, normalization=self.model.normalization, channels=self.model.channels
        )

    def config_dict(self) -> dict[str, Any]:
        """The run's settings as a JSON-ready flat dict (``config.yaml``'s keys)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.config.flat().items()}

    def embed_images(self, images: Sequence[Image.Image]) -> Tensor:
        """The (Q, D) float32 unit embeddings of PIL images, on the CPU.

        Each image is converted as the run decodes its files (RGB for photos, grey for
        glyphs), then transformed. Safe to call from several threads at once.

        Raises:
            ValueError: an element is not a PIL image, or the model gives NaN or Inf.
        """
        for image in images:
            if not isinstance(image, Image.Image):
                raise ValueError(f"images must be PIL images, got a {type(image).__name__}")
        mode = "RGB" if self.kind == "photo" else "L"
        outputs = [torch.empty(0, self.dim)]
        for start in range(0, len(images), BATCH):
            batch = [self.transform(image.convert(mode)) for image in images[start : start + BATCH]]
            outputs.append(self.embed_tensors(torch.stack(batch)))
        return torch.cat(outputs)

    def embed_items(self, items: Sequence[str | Path]) -> Tensor:
        """The (Q, D) embeddings of image files or item names (``spec#split#index``).

        Raises:
            FileNotFoundError: an item is neither a file nor an item name.
            ValueError: an image cannot be read, or an item name is out of range.
        """
        return self.embed_images([load_item(str(item), self.kind) for item in items])

    def embed_tensors(self, images: Tensor) -> Tensor:
        """The (B, D) float32 embeddings of transformed images (B, C, S, S), on the CPU.

        Raises:
            ValueError: the model gives NaN or Inf (damaged weights).
        """
        with torch.no_grad():
            embedded: Tensor = self.model(images.to(self.device)).float().cpu()  # (B, D)
        if not bool(torch.isfinite(embedded).all()):
            raise ValueError(f"the model of {self.run} gives NaN or Inf: its weights are damaged")
        return embedded


_CACHED = ("kind", "transform")  # cached properties a copy must not inherit
