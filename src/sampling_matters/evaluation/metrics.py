"""Retrieval metrics read off a neighbour table: Recall@K, precision@1, R-precision, MAP@R.

Every function takes the table of neighbour labels (Q, k), each query's neighbours
sorted nearest first with the query itself already removed, and the (Q,) query
labels; R-precision and MAP@R also need ``relevant`` (Q,), the number of gallery
items sharing each query's class (:func:`relevant_counts` computes it; for the
self-retrieval protocol of the paper it is the class size − 1). Inputs may be torch
tensors or numpy arrays; the work is a few vectorised passes over the table, on the
table's device.

Queries without a relevant item (in self-retrieval: an image alone in its class)
can never succeed. As in pytorch-metric-learning's ``AccuracyCalculator`` and
Musgrave et al. (2020) they are excluded from every metric: a query is *scored*
iff ``relevant > 0``. When ``relevant`` is not given to :func:`recall_at_k` or
:func:`precision_at_1`, every query is scored. :func:`retrieval_scores` computes all
metrics in one pass and reports how many queries were scored and excluded. A table
in which no query is scored raises ``ValueError``.

:func:`~sampling_matters.evaluation.evaluate` calls :func:`retrieval_scores` only; the
single-metric functions are for users scoring a neighbour table of their own (from an
approximate index, say), and :func:`precision_at_1` is Recall@1 under the name
pytorch-metric-learning reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from sampling_matters import _checks

__all__ = [
    "ArrayLike",
    "as_tensor",
    "map_at_r",
    "precision_at_1",
    "r_precision",
    "recall_at_k",
    "relevant_counts",
    "retrieval_scores",
]

ArrayLike = Tensor | npt.NDArray[Any]
"""A torch tensor or a numpy array."""


def as_tensor(x: ArrayLike) -> Tensor:
    """``x`` as a tensor, sharing memory where it can; numpy views of any stride work.

    Args:
        x: a tensor (returned as is) or a numpy array.

    Returns:
        The tensor.
    """
    if isinstance(x, Tensor):
        return x
    return torch.as_tensor(np.ascontiguousarray(x))


def relevant_counts(query_labels: ArrayLike, gallery_labels: ArrayLike | None = None) -> Tensor:
    """Number of gallery items sharing each query's class.

    Args:
        query_labels: (Q,) integer labels.
        gallery_labels: (G,) integer labels of a separate gallery; ``None`` for
            self-retrieval (the queries are the gallery, each query excluded from its
            own neighbours), where the count is the class size − 1.

    Returns:
        (Q,) int64 counts R_q, on the device of ``query_labels``.

    Example:
        >>> relevant_counts(torch.tensor([0, 0, 0, 1, 2, 2]))
        tensor([2, 2, 2, 0, 1, 1])
        >>> relevant_counts(torch.tensor([0, 1]), torch.tensor([1, 1, 2]))
        tensor([0, 2])
    """
    queries = _labels(query_labels, "query_labels")
    if len(queries) == 0:
        raise ValueError("query_labels is empty")
    self_retrieval = gallery_labels is None
    gallery = queries if gallery_labels is None else _labels(gallery_labels, "gallery_labels")
    _, inverse = torch.unique(torch.cat([gallery.to(queries.device), queries]), return_inverse=True)
    counts: Tensor = torch.bincount(inverse[: len(gallery)], minlength=int(inverse.max()) + 1)
    matches = counts[inverse[len(gallery) :]]  # (Q,)
    return matches - 1 if self_retrieval else matches


def recall_at_k(
    neighbour_labels: ArrayLike,
    query_labels: ArrayLike,
    ks: Sequence[int],
    *,
    relevant: ArrayLike | None = None,
) -> dict[int, float]:
    """Recall@K as the paper reports it: the share of queries with a match in their top K.

    ``Recall@K = (1/|S|) Σ_{q∈S} 1[∃ i ≤ K : y_{q,i} = y_q]`` over the scored queries
    S, where y_{q,i} is the label of query q's i-th nearest neighbour.

    Args:
        neighbour_labels: (Q, k) labels of each query's neighbours, nearest first.
        query_labels: (Q,) labels.
        ks: the K to report, each in [1, k].
        relevant: optional (Q,) counts R_q; queries with R_q = 0 are excluded.
            ``None`` scores every query.

    Returns:
        ``{K: Recall@K}`` for each K in ``ks``.

    Example:
        >>> table = torch.tensor([[1, 0], [0, 0], [2, 2]])
        >>> recall_at_k(table, torch.tensor([0, 0, 1]), [1, 2])
        {1: 0.3333333333333333, 2: 0.6666666666666666}
    """
    hits = _match_table(neighbour_labels, query_labels)
    if relevant is not None:
        hits, _ = _scored(hits, relevant)
    return _recall_from_hits(hits, ks)


def precision_at_1(
    neighbour_labels: ArrayLike, query_labels: ArrayLike, *, relevant: ArrayLike | None = None
) -> float:
    """Precision@1 = Recall@1: the share of scored queries whose nearest neighbour matches.

    ``P@1 = (1/|S|) Σ_{q∈S} 1[y_{q,1} = y_q]``.

    Args:
        neighbour_labels: (Q, k) labels of each query's neighbours, nearest first.
        query_labels: (Q,) labels.
        relevant: optional (Q,) counts R_q; queries with R_q = 0 are excluded.

    Returns:
        Precision@1 in [0, 1].

    Example:
        >>> precision_at_1(torch.tensor([[1, 0], [0, 0]]), torch.tensor([0, 0]))
        0.5
    """
    return recall_at_k(neighbour_labels, query_labels, [1], relevant=relevant)[1]


def r_precision(neighbour_labels: ArrayLike, query_labels: ArrayLike, relevant: ArrayLike) -> float:
    """R-precision: precision within each query's first R_q neighbours.

    ``R-Precision = (1/|S|) Σ_{q∈S} (1/R_q) Σ_{i=1..R_q} rel_q(i)``, with
    ``rel_q(i) = 1[y_{q,i} = y_q]`` and S the queries with R_q > 0.

    Args:
        neighbour_labels: (Q, k) labels of each query's neighbours, nearest first;
            k must be at least the largest R_q of a scored query.
        query_labels: (Q,) labels.
        relevant: (Q,) number R_q of gallery items sharing each query's class.

    Returns:
        R-precision in [0, 1].

    Example:
        >>> table = torch.tensor([[0, 1, 0], [1, 0, 0], [2, 2, 2]])
        >>> r_precision(table, torch.tensor([0, 0, 1]), torch.tensor([2, 2, 0]))
        0.5
    """
    return _r_metrics(*_scored(_match_table(neighbour_labels, query_labels), relevant))[0]


def map_at_r(neighbour_labels: ArrayLike, query_labels: ArrayLike, relevant: ArrayLike) -> float:
    """MAP@R (Musgrave, Belongie, Lim, "A Metric Learning Reality Check", ECCV 2020).

    ``MAP@R = (1/|S|) Σ_{q∈S} (1/R_q) Σ_{i=1..R_q} P_q(i)·rel_q(i)``, with
    ``P_q(i) = (1/i) Σ_{j≤i} rel_q(j)`` the precision at rank i and S the queries
    with R_q > 0. It is 1 only if all R_q relevant items come first.

    Args:
        neighbour_labels: (Q, k) labels of each query's neighbours, nearest first;
            k must be at least the largest R_q of a scored query.
        query_labels: (Q,) labels.
        relevant: (Q,) number R_q of gallery items sharing each query's class.

    Returns:
        MAP@R in [0, 1].

    Example:
        >>> table = torch.tensor([[1, 0, 0], [0, 0, 1]])
        >>> map_at_r(table, torch.tensor([0, 0]), torch.tensor([2, 2]))  # (1/4 + 1) / 2
        0.625
    """
    return _r_metrics(*_scored(_match_table(neighbour_labels, query_labels), relevant))[1]


def retrieval_scores(
    neighbour_labels: ArrayLike,
    query_labels: ArrayLike,
    relevant: ArrayLike,
    *,
    ks: Sequence[int] = (1, 2, 4, 8),
) -> dict[str, float | int]:
    """Every retrieval metric from one comparison of the table with the labels.

    Args:
        neighbour_labels: (Q, k) labels of each query's neighbours, nearest first;
            k must be at least max(ks) and the largest R_q of a scored query.
        query_labels: (Q,) labels.
        relevant: (Q,) number R_q of gallery items sharing each query's class.
        ks: the K of Recall@K.

    Returns:
        ``recall@K`` for each K, ``map@r`` and ``r_precision`` (floats in [0, 1]),
        ``n_queries`` (queries scored) and ``n_excluded`` (queries with R_q = 0).

    Example:
        >>> labels = torch.tensor([0, 0, 1, 1, 2])
        >>> table = torch.tensor([[0, 1], [0, 1], [1, 2], [1, 0], [0, 1]])
        >>> scores = retrieval_scores(table, labels, relevant_counts(labels), ks=[1])
        >>> scores["recall@1"], scores["map@r"], scores["n_queries"], scores["n_excluded"]
        (1.0, 1.0, 4, 1)
    """
    table = _match_table(neighbour_labels, query_labels)
    hits, counts = _scored(table, relevant)
    scores: dict[str, float | int] = {
        f"recall@{k}": value for k, value in _recall_from_hits(hits, ks).items()
    }
    scores["r_precision"], scores["map@r"] = _r_metrics(hits, counts)
    scores["n_queries"] = len(hits)
    scores["n_excluded"] = len(table) - len(hits)
    return scores


def _labels(labels: ArrayLike, name: str) -> Tensor:
    """``labels`` as a 1-d tensor, or ``ValueError``."""
    tensor = as_tensor(labels)
    if tensor.dim() != 1:
        raise ValueError(f"{name} must have shape (Q,), got {tuple(tensor.shape)}")
    return tensor


def _match_table(neighbour_labels: ArrayLike, query_labels: ArrayLike) -> Tensor:
    """(Q, k) bool: ``hits[q, i]`` iff query q's i-th neighbour shares its label."""
    table = as_tensor(neighbour_labels)
    if table.dim() != 2 or table.shape[0] == 0 or table.shape[1] == 0:
        raise ValueError(
            f"neighbour_labels must have shape (Q, k) with Q, k >= 1, got {tuple(table.shape)}"
        )
    queries = _labels(query_labels, "query_labels").to(table.device)
    if len(queries) != len(table):
        raise ValueError(
            f"query_labels has {len(queries)} entries but neighbour_labels has {len(table)} rows"
        )
    return table == queries[:, None]  # (Q, k)


def _scored(hits: Tensor, relevant: ArrayLike) -> tuple[Tensor, Tensor]:
    """The rows (S, k) of ``hits`` and counts (S,) of the scored queries (R_q > 0)."""
    counts = _labels(relevant, "relevant").to(hits.device)
    integer = _checks.is_integer_dtype(counts)
    if len(counts) != len(hits) or not integer or bool((counts < 0).any()):
        raise ValueError(
            f"relevant must be {len(hits)} non-negative integer counts, got "
            f"{tuple(counts.shape)} of {counts.dtype}"
        )
    scored = counts > 0  # (Q,)
    if not bool(scored.any()):
        raise ValueError("no query has a relevant gallery item (every class has one image)")
    return hits[scored], counts[scored]


def _recall_from_hits(hits: Tensor, ks: Sequence[int]) -> dict[int, float]:
    """Recall@K for each K from the (S, k) match table, via each row's first match."""
    width = hits.shape[1]
    if len(ks) == 0:
        raise ValueError("ks is empty: give at least one K")
    for k in ks:
        if not 1 <= k <= width:
            raise ValueError(f"K = {k} needs a neighbour table of at least {k} columns")
    first = torch.where(hits.any(1), hits.byte().argmax(1), width)  # (S,) first match or k
    return {int(k): float((first < k).double().mean()) for k in ks}


def _r_metrics(hits: Tensor, relevant: Tensor) -> tuple[float, float]:
    """(R-precision, MAP@R) from the (S, k) match table and the (S,) counts R_q ≥ 1."""
    needed = int(relevant.max())
    if needed > hits.shape[1]:
        raise ValueError(
            f"R-precision and MAP@R need a neighbour table of at least {needed} columns "
            f"(the largest number of relevant gallery items), got {hits.shape[1]}"
        )
    ranks = torch.arange(1, needed + 1, device=hits.device, dtype=torch.float64)  # (R,)
    rel = (hits[:, :needed] & (ranks[None, :] <= relevant[:, None])).double()  # (S, R)
    total = relevant.double()  # (S,)
    precision = rel.sum(1) / total
    average_precision = (rel.cumsum(1) / ranks * rel).sum(1) / total
    return float(precision.mean()), float(average_precision.mean())
