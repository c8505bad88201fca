"""A persistent faiss index of a gallery's embeddings: build, append, load, search.

A trained run's model embeds a gallery once; the index keeps those vectors in a faiss
index on disk with each one's id (0 … N−1, in order of addition), label and image, and
answers nearest-neighbour queries in milliseconds, exactly (``Flat``) or approximately
(IVF, HNSW) as the gallery's size asks (the ``auto`` rule of
:mod:`~sampling_matters.index.factory`). ``docs/search.md`` describes the folder and
the rule.

- :func:`build` makes an :class:`Index` from (N, D) embeddings, :meth:`Index.save`
  writes its folder atomically, :func:`load` reads it back with checks (the faiss
  index memory-mapped where faiss can), :meth:`Index.add` appends.
- :meth:`Index.search` takes (Q, D) query embeddings and returns ``(distances, ids)``,
  both (Q, k), nearest first; distances are Euclidean between unit vectors.
- :class:`QueryEmbedder` embeds query images with the run's model, as the gallery was
  embedded; :meth:`Index.check_model` refuses a model the index was not built with.

faiss is optional: ``pip install 'sampling-matters[index]'``.

The package: :mod:`~sampling_matters.index.factory` (the ``auto`` rule, building a faiss
index), :mod:`~sampling_matters.index.calibrate` (an IVF index's ``nprobe``,
measured on the gallery), :mod:`~sampling_matters.index.store` (the folder),
:mod:`~sampling_matters.index.core` (:class:`Index`, :func:`build`, :func:`load`),
:mod:`~sampling_matters.index.query` (:class:`QueryEmbedder`) and
:mod:`~sampling_matters.index.gallery` (embedding a data set in resumable chunks).

Example:
    >>> import torch
    >>> from sampling_matters import index
    >>> gallery = torch.nn.functional.normalize(torch.randn(100, 8), dim=1)  # (100, 8)
    >>> built = index.build(gallery, torch.arange(100) % 10)  # doctest: +SKIP
    >>> distances, ids = built.search(gallery[:2], k=3)  # doctest: +SKIP
    >>> ids[:, 0].tolist()  # doctest: +SKIP
    [0, 1]
"""

from typing import TYPE_CHECKING, Any

from sampling_matters.index.calibrate import Calibration
from sampling_matters.index.core import Index, build, load
from sampling_matters.index.factory import auto_factory
from sampling_matters.index.store import is_index_folder

if TYPE_CHECKING:
    from sampling_matters.index.query import QueryEmbedder

__all__ = [
    "Calibration",
    "Index",
    "QueryEmbedder",
    "auto_factory",
    "build",
    "is_index_folder",
    "load",
]


def __getattr__(name: str) -> Any:
    """``QueryEmbedder`` on first use: it needs Pillow, which building from vectors does not."""
    if name == "QueryEmbedder":
        from sampling_matters.index.query import QueryEmbedder

        return QueryEmbedder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
