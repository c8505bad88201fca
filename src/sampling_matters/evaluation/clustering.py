"""k-means and the paper's clustering score (NMI; AMI on request).

The paper's clustering score: cluster the test embeddings with k-means into as many
clusters as there are classes, then report the normalised mutual information (NMI)
between clusters and classes. :func:`kmeans` runs ``faiss.Kmeans`` when faiss is
installed (the fast path at Stanford Online Products scale) and a chunked torch
implementation otherwise. Both start from the same seeded centroids, so a seed gives
the same clustering whichever backend runs (up to ties and the refill of empty
clusters; ``tests/test_clustering.py`` checks that they agree).

NMI and AMI are scikit-learn's ``normalized_mutual_info_score`` and
``adjusted_mutual_info_score``: natural logarithm, the arithmetic mean of the two
entropies as normaliser (scikit-learn's default).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.distances import compute_dtype, pairwise_distances
from sampling_matters.evaluation.knn import _to_numpy, faiss_available
from sampling_matters.evaluation.metrics import ArrayLike, as_tensor

__all__ = ["BACKENDS", "INITS", "clustering_scores", "kmeans"]

Backend = Literal["auto", "faiss", "torch"]
Init = Literal["random", "k-means++"]
BACKENDS: tuple[Backend, ...] = ("auto", "faiss", "torch")
INITS: tuple[Init, ...] = ("random", "k-means++")

_CHUNK_ELEMENTS = 1 << 22
"""Largest (rows × centroids) block of distances the torch backend holds at once (16 MiB)."""


def kmeans(
    x: ArrayLike,
    k: int,
    *,
    seed: int = 0,
    iterations: int = 20,
    backend: Backend = "auto",
    init: Init = "random",
) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means, seeded and deterministic.

    Minimises ``Σ_i ‖x_i − c_{a_i}‖²``. Both backends start from the same ``init``
    centroids, drawn from ``seed``, alternate assignment and mean steps for at most
    ``iterations`` rounds, refill empty clusters (torch: with the points farthest
    from their centroids; faiss: by splitting a large cluster), then assign every
    point exactly to its nearest final centroid. For the same seed they return the
    same clusters with the same ids, unless a cluster empties on the way or a point
    lies equally close to two centroids.

    - ``"faiss"``: ``faiss.Kmeans`` on every point (no subsampling), in float32.
      At Stanford Online Products scale (60,502 × 128, k = 11,316) each round is
      one exact search, about 0.8 s on two cores; faiss runs all ``iterations``
      rounds.
    - ``"torch"``: vectorised torch on the input's device, stopping early once no
      assignment changes (a fixed point, so the result is the same); distances in
      blocks of at most 2²² entries, so memory stays O(N·D + k·D).
    - ``"auto"``: faiss when it is importable, else torch.

    ``init="random"`` starts from k distinct points drawn uniformly: the very points
    ``faiss.Kmeans(seed=seed)`` would pick by itself, so results match faiss used
    directly, and earlier runs of the faiss backend. ``"k-means++"`` (Arthur &
    Vassilvitskii 2007) draws each next centroid with probability ∝ its squared
    distance to the nearest one so far. It avoids the local optima random starts
    fall into, at the price of k sequential O(N·D) steps: cheap for tens of
    clusters, 22 s at SOP scale.

    Args:
        x: (N, D) floating-point points.
        k: number of clusters, in [1, N].
        seed: seeds the initialisation.
        iterations: maximum number of Lloyd rounds, >= 1 (faiss's ``niter``).
        backend: ``"auto"``, ``"faiss"`` or ``"torch"``.
        init: ``"random"`` or ``"k-means++"``.

    Returns:
        ``(assignments, centroids)``: (N,) int64 cluster ids in [0, k) and (k, D)
        centroids, on the input's device (faiss centroids in float32).

    Example:
        >>> x = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
        >>> assignments, centroids = kmeans(x, 2, backend="torch")
        >>> bool(assignments[0] == assignments[1] != assignments[2] == assignments[3])
        True
    """
    points = as_tensor(x)
    _check_kmeans_args(points, k, iterations, backend, init)
    points = points.detach().to(compute_dtype(points))
    if init == "k-means++":
        generator = torch.Generator(device=points.device).manual_seed(seed)
        start = _kmeans_plus_plus(points, k, generator)
    else:
        start = _random_init(points, k, seed)
    if _resolve_backend(backend) == "faiss":
        return _faiss_kmeans(points, start, seed, iterations)
    return _lloyd(points, start, iterations)


def clustering_scores(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    seed: int = 0,
    iterations: int = 20,
    backend: Backend = "auto",
    init: Init = "random",
    with_ami: bool = False,
) -> dict[str, float]:
    """The paper's clustering score: k-means with k = number of classes, then NMI.

    ``NMI = I(Y; C) / ((H(Y) + H(C)) / 2)`` between the classes Y and the clusters
    C, by scikit-learn's ``normalized_mutual_info_score``. AMI (Vinh, Epps, Bailey,
    JMLR 2010) corrects the mutual information for chance:
    ``(I − E[I]) / ((H(Y) + H(C)) / 2 − E[I])``. Nothing in the package asks for
    it; it is for comparing with papers that report it, and for sets of many small
    classes, where chance alone scores a high NMI (about 0.8 for a random clustering
    of Stanford Online Products' test split, 5.3 images per class). scikit-learn's
    ``adjusted_mutual_info_score`` computes E[I] over every (class, cluster) pair:
    milliseconds for hundreds of classes, but about 70 s on one core at SOP scale
    (11,316 × 11,316).

    Args:
        embeddings: (N, D) embeddings.
        labels: (N,) class labels, at least two distinct.
        seed: seeds k-means.
        iterations: maximum k-means rounds.
        backend: k-means backend, as in :func:`kmeans`.
        init: k-means initialisation, as in :func:`kmeans`.
        with_ami: also compute AMI.

    Returns:
        ``{"nmi": ...}`` in [0, 1], plus ``"ami"`` (at most 1, about 0 for a
        random clustering) when asked.

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [0.0, 0.1], [3.0, 3.0], [3.0, 3.1]])
        >>> clustering_scores(x, torch.tensor([7, 7, 9, 9]), backend="torch")
        {'nmi': 1.0}
    """
    classes = as_tensor(labels).detach().cpu()
    if classes.dim() != 1:
        raise ValueError(f"labels must have shape (N,), got {tuple(classes.shape)}")
    n_classes = len(torch.unique(classes))
    if n_classes < 2:
        raise ValueError(f"clustering scores need at least two classes, got {n_classes}")
    assignments, _ = kmeans(
        embeddings, n_classes, seed=seed, iterations=iterations, backend=backend, init=init
    )
    if len(assignments) != len(classes):
        raise ValueError(f"{len(assignments)} embeddings but {len(classes)} labels")
    truth, clusters = classes.numpy(), assignments.cpu().numpy()
    scores = {"nmi": float(normalized_mutual_info_score(truth, clusters))}
    if with_ami:
        scores["ami"] = float(adjusted_mutual_info_score(truth, clusters))
    return scores


def _check_kmeans_args(points: Tensor, k: int, iterations: int, backend: str, init: str) -> None:
    """Raise ``ValueError`` unless the arguments of :func:`kmeans` make sense."""
    _checks.embeddings_2d(points, "x", finite=True)
    if not _checks.is_integer(k) or not 1 <= k <= len(points):
        raise ValueError(f"k must be in [1, N] = [1, {len(points)}] (an integer), got {k!r}")
    _checks.positive_int("iterations", iterations)
    _checks.one_of("backend", backend, BACKENDS)
    _checks.one_of("init", init, INITS)


def _resolve_backend(backend: Backend) -> Literal["faiss", "torch"]:
    """The backend ``"auto"`` stands for: faiss if importable, else torch."""
    if backend != "auto":
        return backend
    return "faiss" if faiss_available() else "torch"


def _faiss_kmeans(
    points: Tensor, start: Tensor, seed: int, iterations: int
) -> tuple[Tensor, Tensor]:
    """Lloyd by ``faiss.Kmeans`` on all points from ``start`` (k, D), then one exact search.

    ``seed`` seeds faiss's own random choices (the split of a large cluster into an
    empty one).
    """
    import faiss

    data = _to_numpy(points)  # (N, D) float32
    k = len(start)
    model: Any = faiss.Kmeans(
        data.shape[1],
        k,
        niter=iterations,
        seed=seed,
        min_points_per_centroid=1,  # no warning for few points per cluster (SOP: 5.3)
        max_points_per_centroid=math.ceil(len(data) / k),  # train on every point
        verbose=False,
    )
    model.train(data, init_centroids=_to_numpy(start))
    _, nearest = model.index.search(data, 1)  # (N, 1)
    assignments = torch.from_numpy(nearest[:, 0].astype("int64")).to(points.device)
    return assignments, torch.from_numpy(model.centroids).to(points.device)


def _random_init(points: Tensor, k: int, seed: int) -> Tensor:
    """Initial centroids (k, D): k distinct points, the ones ``faiss.Kmeans(seed=seed)`` draws.

    faiss takes the first k of a Fisher–Yates shuffle driven by an mt19937 seeded with
    ``seed + 1``; torch's CPU ``randperm`` runs the same shuffle on the same generator
    (``tests/test_clustering.py`` checks it, and it holds at SOP scale).
    """
    generator = torch.Generator().manual_seed(seed + 1)
    chosen = torch.randperm(len(points), generator=generator)[:k]  # (k,) on the CPU
    return points[chosen.to(points.device)].clone()


def _kmeans_plus_plus(points: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """Initial centroids (k, D) by k-means++: each next one drawn ∝ D(x)²."""
    norms = points.pow(2).sum(1)  # (N,)
    drawn = torch.randint(len(points), (1,), generator=generator, device=points.device)
    centroids = points[drawn].repeat(k, 1)  # (k, D)
    closest = torch.full_like(norms, math.inf)  # (N,) squared distance to the nearest so far
    for index in range(k):
        if index > 0:
            weights = closest + (closest.sum() == 0)  # all points covered: draw uniformly
            drawn = torch.multinomial(weights, 1, generator=generator)
            centroids[index] = points[drawn[0]]
        fresh = norms - 2.0 * (points @ centroids[index]) + norms[drawn]  # (N,)
        closest = torch.minimum(closest, fresh.clamp_min(0.0))
    return centroids


def _nearest_centroid(points: Tensor, centroids: Tensor) -> tuple[Tensor, Tensor]:
    """Each point's nearest centroid (N,) int64 and squared distance to it (N,), in blocks."""
    rows = max(1, _CHUNK_ELEMENTS // len(centroids))
    nearest, squared = [], []
    for block in torch.split(points, rows):
        distances = pairwise_distances(block, centroids, squared=True)  # (B, k)
        best, index = distances.min(1)
        nearest.append(index)
        squared.append(best)
    return torch.cat(nearest), torch.cat(squared)


def _lloyd(points: Tensor, centroids: Tensor, iterations: int) -> tuple[Tensor, Tensor]:
    """Lloyd rounds from ``centroids`` (k, D); returns final assignments and centroids."""
    k = len(centroids)
    assignments, squared = _nearest_centroid(points, centroids)
    for _ in range(iterations):
        counts = torch.bincount(assignments, minlength=k)  # (k,)
        sums = torch.zeros_like(centroids).index_add_(0, assignments, points)  # (k, D)
        centroids = sums / counts.clamp_min(1)[:, None].to(sums.dtype)
        empty = (counts == 0).nonzero()[:, 0]
        if len(empty) > 0:  # re-seed on the points farthest from their centroids
            centroids[empty] = points[squared.topk(len(empty)).indices]
        previous = assignments
        assignments, squared = _nearest_centroid(points, centroids)
        if torch.equal(assignments, previous) and len(empty) == 0:
            break
    return assignments, centroids
