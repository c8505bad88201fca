"""Which faiss index to build for N vectors, and building it: the ``auto`` rule.

Every index ranks by the inner product of unit vectors (``METRIC_INNER_PRODUCT``), which
orders neighbours exactly as the Euclidean distance between them does:
‖a − b‖ = √(2 − 2·a·b) for unit a and b.

The ``auto`` rule (:func:`auto_factory`):

- up to :data:`EXACT_MAX` (100,000) vectors: ``"Flat"``, exact search (one pass over
  every vector per query);
- above: ``"IVF{nlist},Flat"``, an inverted file of nlist k-means cells, with nlist the
  power of two in [4·√N, 8·√N) (4,096 lists for a million vectors). A query scans the
  ``nprobe`` cells nearest to it, so it costs about nlist + N·nprobe/nlist instead of N
  distance computations; ``nprobe`` is measured on the gallery
  (:mod:`~sampling_matters.index.calibrate`: the fewest cells that find 95% of the true
  10 nearest). Its vectors are kept whole (no compression): distances are exact, only
  cells left unprobed can hide a neighbour.

A trained index (IVF, PQ, ...) is trained on a seeded random sample of
:func:`train_size` vectors: all of them up to 65,536, else max(65,536, 64·nlist) (64
vectors per list; faiss asks for at least 39). Any faiss factory string is accepted in
place of ``auto`` (``"HNSW32"``, ``"IVF1024,SQ8"``, ...), with search-time parameters in
faiss's ``ParameterSpace`` form (``"nprobe=32"``, ``"efSearch=128"``); an IVF or HNSW
index given none gets a calibrated ``nprobe`` or ``efSearch=64``.
"""

from __future__ import annotations

import math
import re
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from sampling_matters import _checks
from sampling_matters._optional import require

__all__ = [
    "EXACT_MAX",
    "TRAIN_MIN",
    "TRAIN_PER_LIST",
    "auto_factory",
    "build_faiss",
    "import_faiss",
    "ivf_of",
    "set_parameters",
    "train_size",
]

EXACT_MAX = 100_000
"""The most vectors ``auto`` indexes with exact search (``"Flat"``)."""

LISTS_PER_ROOT = 4
"""``auto``'s IVF lists: the power of two at or above this times √N."""

TRAIN_MIN = 65_536
"""A trained index is trained on all vectors up to this many, else on a sample."""

TRAIN_PER_LIST = 64
"""Training vectors per IVF list (faiss warns below 39)."""


def import_faiss() -> ModuleType:
    """The faiss module.

    Raises:
        MissingExtraError: faiss is not installed (``pip install 'sampling-matters[index]'``).
    """
    return require("faiss")


def auto_factory(n: int) -> str:
    """The faiss factory string ``auto`` picks for ``n`` vectors (see the module doc).

    Example:
        >>> auto_factory(100_000), auto_factory(100_001), auto_factory(1_000_000)
        ('Flat', 'IVF2048,Flat', 'IVF4096,Flat')
    """
    n = _checks.positive_int("the number of vectors", n)
    if n <= EXACT_MAX:
        return "Flat"
    return f"IVF{2 ** math.ceil(math.log2(LISTS_PER_ROOT * math.sqrt(n)))},Flat"


def train_size(n: int, nlist: int | None) -> int:
    """How many of ``n`` vectors train an index of ``nlist`` IVF lists (None: not an IVF).

    Example:
        >>> train_size(50_000, None), train_size(1_000_000, 4096), train_size(1_000_000, None)
        (50000, 262144, 65536)
    """
    return min(n, max(TRAIN_MIN, TRAIN_PER_LIST * (nlist or 0)))


def build_faiss(
    vectors: npt.NDArray[np.float32], factory: str, parameters: str, *, seed: int = 0
) -> Any:
    """A faiss index of ``vectors``: made by ``factory``, trained if it must be, filled.

    Its search-time parameters are faiss's defaults unless ``parameters`` sets them
    (:func:`~sampling_matters.index.calibrate.calibrate` measures an IVF's ``nprobe``).

    Args:
        vectors: (N, D) float32 unit rows, C-contiguous; they get ids 0 … N−1 in order.
        factory: a faiss factory string (``"Flat"``, ``"IVF4096,Flat"``, ``"HNSW32"``).
        parameters: search-time parameters (``"nprobe=64"``), ``""`` for none set here.
        seed: seeds the choice of the training sample.

    Returns:
        The faiss index (inner-product metric), searchable as it is.

    Raises:
        ValueError: faiss does not know ``factory`` or ``parameters``, cannot train it on
            N vectors (an IVF needs at least nlist), or the index needs ids of its own.
    """
    faiss = import_faiss()
    dim = vectors.shape[1]
    index = _make(faiss, dim, factory)
    if not index.is_trained:
        sample = _training_sample(faiss, index, vectors, seed)
        _call(f"train the factory {factory!r} on {len(sample)} vectors", index.train, sample)
    ivf = ivf_of(index)
    if ivf is not None:
        ivf.make_direct_map()  # an id → its list entry, so vectors can be given back by id
    _call(f"add vectors to the factory {factory!r}", index.add, vectors)
    set_parameters(index, parameters)
    return index


def set_parameters(index: Any, parameters: str) -> None:
    """Set search-time ``parameters`` (faiss's ``"nprobe=64,efSearch=32"`` form) on ``index``.

    Raises:
        ValueError: a parameter the index does not have, or a bad value.
    """
    if parameters.strip():
        faiss = import_faiss()
        _call(
            f"set the search parameters {parameters!r}",
            faiss.ParameterSpace().set_index_parameters,
            index,
            parameters,
        )


def _make(faiss: ModuleType, dim: int, factory: str) -> Any:
    if not factory.strip():
        raise ValueError("the factory string is empty: give 'auto' or a faiss factory string")
    if "IDMap" in factory:
        raise ValueError(
            f"factory {factory!r}: the index numbers its vectors 0 … N−1 itself; leave IDMap out"
        )
    return _call(
        f"make an index from the factory {factory!r}",
        faiss.index_factory,
        dim,
        factory,
        faiss.METRIC_INNER_PRODUCT,
    )


def _training_sample(
    faiss: ModuleType, index: Any, vectors: npt.NDArray[np.float32], seed: int
) -> npt.NDArray[np.float32]:
    ivf = ivf_of(index)
    size = train_size(len(vectors), None if ivf is None else int(ivf.nlist))
    if size == len(vectors):
        return vectors
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), size, replace=False))
    return np.ascontiguousarray(vectors[rows])


def ivf_of(index: Any) -> Any:
    """The IVF index inside ``index`` (``IVF…`` factories), or None."""
    faiss = import_faiss()
    try:
        return faiss.extract_index_ivf(index)
    except (RuntimeError, AttributeError):
        return None  # not an IVF index


def _call(what: str, function: Any, *args: Any) -> Any:
    """``function(*args)``, faiss's RuntimeError turned into a ValueError saying ``what``."""
    try:
        return function(*args)
    except RuntimeError as error:
        raise ValueError(f"faiss could not {what}: {_faiss_reason(error)}") from None


def _faiss_reason(error: BaseException) -> str:
    """The useful part of a faiss error, without the C++ function and source line.

    Example:
        >>> _faiss_reason(RuntimeError("Error in f() at /faiss/a.cpp:66: Error: 'n >= k' "
        ...                            "failed: Number of training points (100) should be ..."))
        'Number of training points (100) should be ...'
    """
    text = " ".join(str(error).split())
    text = re.sub(r"^Error in .* at \S+:\d+: ", "", text)
    text = re.sub(r"^Error: '.*?' failed: ", "", text)
    return text[:300]
