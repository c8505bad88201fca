"""Evaluation: exact and faiss kNN, retrieval and clustering metrics, verification.

The zero-shot protocol: embed the test classes (never seen in training), use every
image as a query against the rest, and score its neighbours; cluster the embeddings
into as many clusters as there are classes and compare with the labels. One call,
:func:`evaluate`, returns the metrics contract of DESIGN.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from sampling_matters.evaluation import clustering, knn, metrics, verification
from sampling_matters.evaluation.clustering import clustering_scores, kmeans
from sampling_matters.evaluation.knn import Backend, Neighbours
from sampling_matters.evaluation.metrics import (
    map_at_r,
    precision_at_1,
    r_precision,
    recall_at_k,
    relevant_counts,
    retrieval_scores,
)
from sampling_matters.evaluation.verification import roc_auc, tar_at_far, verification_accuracy

__all__ = [
    "Neighbours",
    "clustering",
    "clustering_scores",
    "evaluate",
    "kmeans",
    "knn",
    "map_at_r",
    "metrics",
    "precision_at_1",
    "r_precision",
    "recall_at_k",
    "relevant_counts",
    "retrieval_scores",
    "roc_auc",
    "tar_at_far",
    "verification",
    "verification_accuracy",
]

PROGRESS_FROM = 20_000
"""Sets of at least this many queries show a progress bar by default."""


def evaluate(
    embeddings: Tensor,
    labels: Tensor,
    *,
    gallery: Tensor | None = None,
    gallery_labels: Tensor | None = None,
    ks: Sequence[int] = (1, 2, 4, 8),
    with_nmi: bool = True,
    backend: Backend = "auto",
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, float | int]:
    """Zero-shot retrieval and clustering metrics of an embedding.

    Every embedding is a query against all the others (or against ``gallery``, as
    In-Shop's query/gallery protocol asks). Queries whose class has no other item in
    the gallery can never succeed; as in the literature they are left out of the
    retrieval metrics, and ``n_queries`` counts the queries that were scored. NMI
    clusters ``embeddings`` by k-means with k = the number of classes (random
    starting points drawn from ``seed``, at most 20 Lloyd rounds): ``faiss.Kmeans``
    when faiss is installed (``backend="auto"``, as in the benchmarks' tables), else
    the torch implementation, which starts from the same points and returns the same
    clusters (see :func:`~sampling_matters.evaluation.clustering.kmeans`); then
    scikit-learn's ``normalized_mutual_info_score`` (arithmetic normalisation).

    Args:
        embeddings: (N, D) query embeddings.
        labels: (N,) integer class ids.
        gallery: (M, D) gallery embeddings, or ``None`` for self-retrieval.
        gallery_labels: (M,) class ids of ``gallery``.
        ks: the K of Recall@K.
        with_nmi: compute NMI (k-means costs about as much as the search).
        backend: kNN and k-means backend, ``"auto"`` (faiss when installed),
            ``"faiss"`` or ``"torch"``.
        seed: k-means seed.
        progress: show a progress bar; ``None`` shows one from 20,000 queries on.

    Returns:
        ``recall@K`` for each K, ``map@r``, ``r_precision`` and ``nmi`` (NaN when
        ``with_nmi`` is false), floats in [0, 1]; ``n_queries`` (queries scored) and
        ``n_classes`` (classes among the queries).

    Raises:
        ValueError: on mismatched lengths, fewer than two classes, no scorable
            query, or a K larger than the gallery.

    Example:
        >>> x = torch.eye(4).repeat_interleave(3, dim=0)  # 4 classes, 3 identical images each
        >>> scores = evaluate(x, torch.arange(4).repeat_interleave(3), backend="torch")
        >>> scores["recall@1"], scores["map@r"], scores["nmi"], scores["n_queries"]
        (1.0, 1.0, 1.0, 12)
    """
    labels, reference_labels = _check_labels(embeddings, labels, gallery, gallery_labels)
    relevant = relevant_counts(labels, gallery_labels)  # (N,)
    k = _neighbours_needed(ks, relevant, len(reference_labels) - (gallery is None))
    show = len(embeddings) >= PROGRESS_FROM if progress is None else progress
    found = knn.knn(embeddings, k, gallery=gallery, backend=backend, progress=show)
    neighbour_labels = reference_labels.to(found.indices.device)[found.indices]  # (N, k)
    scores = retrieval_scores(neighbour_labels, labels, relevant, ks=ks)
    del scores["n_excluded"]
    scores["nmi"] = float("nan")
    if with_nmi:
        scores["nmi"] = clustering_scores(embeddings, labels, seed=seed, backend=backend)["nmi"]
    scores["n_classes"] = int(torch.unique(labels).numel())
    return scores


def _check_labels(
    embeddings: Tensor, labels: Tensor, gallery: Tensor | None, gallery_labels: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The query and gallery labels as int64 tensors, or a ValueError saying what is wrong."""
    labels = metrics.as_tensor(labels)
    if labels.dim() != 1 or len(labels) != len(embeddings):
        raise ValueError(
            f"labels must be 1-d with one class id per embedding: got {tuple(labels.shape)} "
            f"labels for {len(embeddings)} embeddings"
        )
    if (gallery is None) != (gallery_labels is None):
        raise ValueError("give both gallery and gallery_labels, or neither (self-retrieval)")
    if gallery is None or gallery_labels is None:
        reference = labels
    else:
        reference = metrics.as_tensor(gallery_labels)
        if reference.dim() != 1 or len(reference) != len(gallery):
            raise ValueError(
                f"gallery_labels must be 1-d with one class id per gallery embedding: got "
                f"{tuple(reference.shape)} labels for {len(gallery)} gallery embeddings"
            )
    if torch.unique(labels).numel() < 2:
        raise ValueError("evaluation needs at least two classes among the queries")
    return labels, reference


def _neighbours_needed(ks: Sequence[int], relevant: Tensor, gallery_size: int) -> int:
    """The k to search: the largest K and the largest R of a scored query."""
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {list(ks)}")
    if max(ks) > gallery_size:
        raise ValueError(
            f"Recall@{max(ks)} needs {max(ks)} neighbours but the gallery offers {gallery_size}"
        )
    return min(max(max(ks), int(relevant.max())), gallery_size)
