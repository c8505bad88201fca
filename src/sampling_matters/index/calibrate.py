"""Search-time parameters chosen by measurement: the fewest IVF lists that reach a recall.

An IVF index trades recall for speed through ``nprobe``, how many of its lists a query
scans. How much recall a value buys depends on the data: a gallery of tight,
well-separated classes finds its neighbours in one or two lists, a diffuse one needs
many. So ``nprobe`` is not set by a formula but measured on the gallery itself:

- :data:`QUERIES` (1,000) gallery vectors, a seeded sample, are searched as queries,
  leave-one-out (each one's own id is dropped from its results);
- their exact :data:`K` (10) nearest come from a brute-force pass (``faiss.knn``);
- ``nprobe`` 1, 2, 4, … up to nlist is tried from the cheapest up, and the first whose
  recall@10 (the share of the exact 10 found, averaged over the queries; a neighbour
  found counts when it is as near as the exact 10th, so that ties between equally near
  vectors are no misses) reaches the
  target (:data:`RECALL` = 0.95 unless asked otherwise) with 95% confidence is kept: the
  mean less 1.96 standard errors must reach it, so that the sampling of the 1,000
  queries does not pick a setting whose true recall falls short. Where none does, the
  most thorough value is kept and :attr:`Calibration.reached` is False.

Leaving a gallery vector out of its own results is a fair test of an IVF index: which
lists a query scans depends only on its distances to the lists' centres, not on whether
it is stored in one. It is not a fair test of an HNSW graph, whose search from a
vector that is one of its nodes runs along that node's own links and finds more than a
new query would; HNSW gets ``efSearch`` = :data:`HNSW_EF_SEARCH` instead (faiss's own
is 16), or what the caller sets.

The recall is the one a query like the gallery's own vectors gets; a query far from every
class (another kind of image) may see less. The measured recall is recorded with the
index (``meta.json``, ``"calibration"``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sampling_matters.index.factory import import_faiss, ivf_of, set_parameters

__all__ = ["HNSW_EF_SEARCH", "QUERIES", "RECALL", "Calibration", "K", "calibrate", "fixed"]

RECALL = 0.95
"""The recall@10 the calibrated ``nprobe`` reaches on the gallery's own vectors, by default."""

QUERIES = 1000
"""Gallery vectors searched, leave-one-out, to measure recall."""

K = 10
"""Neighbours per query whose recall is measured."""

HNSW_EF_SEARCH = 64
"""An HNSW index's ``efSearch`` unless the caller sets one (not calibrated: see above)."""


@dataclass(frozen=True)
class Calibration:
    """The ``nprobe`` chosen and what it was measured to give.

    Attributes:
        parameters: faiss's form of the chosen value, e.g. ``"nprobe=8"``.
        recall: recall@``k`` measured at it, leave-one-out on ``queries`` gallery vectors.
        low: its 95% lower confidence bound (mean − 1.96 standard errors over queries).
        target: the recall asked for.
        reached: whether ``low`` ≥ ``target`` (else the most thorough value was kept).
        queries: gallery vectors searched.
        k: neighbours per query.
        size: the vectors the index held when it was measured.
        tried: each value tried, ascending, with its recall and lower bound:
            ``{"nprobe=1": [0.71, 0.70], …}``.
    """

    parameters: str
    recall: float
    low: float
    target: float
    reached: bool
    queries: int
    k: int
    size: int
    tried: dict[str, list[float]]

    def as_dict(self) -> dict[str, Any]:
        """The calibration as ``meta.json`` records it."""
        return asdict(self)


def fixed(index: Any) -> str:
    """The search parameters of an index that is not calibrated: HNSW's ``efSearch``, else none.

    Example:
        >>> import faiss
        >>> fixed(faiss.index_factory(8, "HNSW32")), fixed(faiss.index_factory(8, "Flat"))
        ('efSearch=64', '')
    """
    faiss = import_faiss()
    while isinstance(index, faiss.IndexPreTransform):  # "PCA64,HNSW32": the index inside
        index = faiss.downcast_index(index.index)
    return f"efSearch={HNSW_EF_SEARCH}" if isinstance(index, faiss.IndexHNSW) else ""


def calibrate(
    index: Any,
    vectors: npt.NDArray[np.float32],
    *,
    target: float = RECALL,
    queries: int = QUERIES,
    k: int = K,
    seed: int = 0,
) -> Calibration | None:
    """Set the fewest IVF lists to scan (``nprobe``) that reach ``target`` recall@``k``.

    Args:
        index: a filled faiss index of ``vectors`` (ids 0 … N−1), inner-product metric.
        vectors: (N, D) float32 unit rows, the index's contents.
        target: the recall to reach, in (0, 1].
        queries: gallery vectors to search (all of them if fewer).
        k: neighbours per query (N − 1 if fewer).
        seed: seeds the choice of query vectors.

    Returns:
        What was chosen and measured, with ``nprobe`` set on ``index``; None when the
        index is no IVF index or the gallery is too small to measure (one vector).

    Raises:
        ValueError: ``target`` is not in (0, 1].
    """
    if not 0 < target <= 1:
        raise ValueError(f"the recall target must be in (0, 1], got {target}")
    ivf = ivf_of(index)
    k = min(k, len(vectors) - 1)
    if ivf is None or k < 1:
        return None
    rows = _sample(len(vectors), queries, seed)
    asked = np.ascontiguousarray(vectors[rows])  # (Q, D)
    kth = _kth_exact(vectors, asked, k)
    tried: dict[str, list[float]] = {}
    for value in _powers_of_two(int(ivf.nlist)):
        parameters = f"nprobe={value}"
        set_parameters(index, parameters)
        _, ids = index.search(asked, k + 1)
        per_query = _recalls(vectors, asked, _without_self(ids, rows, k), kth)
        mean, low = _mean_and_low(per_query)
        tried[parameters] = [round(mean, 6), round(low, 6)]
        if low >= target:
            break
    return Calibration(
        parameters, mean, low, target, low >= target, len(rows), k, len(vectors), tried
    )


def _powers_of_two(high: int) -> list[int]:
    """1, 2, 4, … below high, then high."""
    values = [1]
    while values[-1] * 2 < high:
        values.append(values[-1] * 2)
    return values if values[-1] == high else [*values, high]


def _sample(n: int, queries: int, seed: int) -> npt.NDArray[np.int64]:
    """``queries`` distinct row numbers of ``n`` (all of them if fewer), ascending."""
    if queries >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, queries, replace=False)).astype(np.int64)


def _kth_exact(
    vectors: npt.NDArray[np.float32], asked: npt.NDArray[np.float32], k: int
) -> npt.NDArray[np.float32]:
    """(Q,) the inner product of each query with its exact k-th nearest other vector.

    The query is among ``vectors``, so its (k + 1)-th nearest is its k-th other one (a
    duplicate of it, as near as itself, is one of the others either way).
    """
    faiss = import_faiss()
    scores, _ = faiss.knn(asked, vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    kth: npt.NDArray[np.float32] = scores[:, k]
    return kth


def _without_self(
    ids: npt.NDArray[np.int64], rows: npt.NDArray[np.int64], k: int
) -> npt.NDArray[np.int64]:
    """(Q, k): each row of ``ids`` (Q, k + 1) without the query's own id (else its last)."""
    own = ids == rows[:, None]  # (Q, k + 1)
    own[~own.any(axis=1), -1] = True  # not found: drop the farthest instead
    kept: npt.NDArray[np.int64] = ids[~own].reshape(len(ids), k)
    return kept


def _recalls(
    vectors: npt.NDArray[np.float32],
    asked: npt.NDArray[np.float32],
    found: npt.NDArray[np.int64],
    kth: npt.NDArray[np.float32],
) -> npt.NDArray[np.float64]:
    """(Q,) the share of each query's ``found`` (Q, k) ids as near as its exact k-th.

    Ids −1 (nothing found) are misses; 1e-5 absorbs float rounding between faiss's
    exact and approximate inner products.
    """
    scores = np.einsum("qkd,qd->qk", vectors[np.maximum(found, 0)], asked)  # (Q, k)
    hits = (found >= 0) & (scores >= kth[:, None] - 1e-5)
    recalls: npt.NDArray[np.float64] = hits.mean(axis=1, dtype=np.float64)
    return recalls


def _mean_and_low(values: npt.NDArray[np.float64]) -> tuple[float, float]:
    """The mean of ``values`` and its 95% lower bound, mean − 1.96 standard errors."""
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean
    return mean, mean - 1.96 * float(values.std(ddof=1)) / math.sqrt(len(values))
