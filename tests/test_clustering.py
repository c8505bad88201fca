import importlib.util

import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from sampling_matters.evaluation import clustering
from sampling_matters.evaluation.clustering import clustering_scores, kmeans

HAS_FAISS = importlib.util.find_spec("faiss") is not None
BACKENDS = [
    "torch",
    pytest.param("faiss", marks=pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")),
]


def blobs(n_blobs=6, per_blob=30, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 10.0 * torch.randn(n_blobs, dim, generator=g)
    labels = torch.arange(n_blobs).repeat_interleave(per_blob)
    return centres[labels] + 0.1 * torch.randn(len(labels), dim, generator=g), labels


def clustered(n_classes, per_class, dim, noise, seed=0):
    """Unit embeddings of ``n_classes`` noisy classes, shaped like a trained model's."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(n_classes, dim, generator=g), dim=1)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    noisy = centres[labels] + noise * torch.randn(len(labels), dim, generator=g)
    return torch.nn.functional.normalize(noisy, dim=1), labels


# clustering_scores(..., with_ami=True) of clustered(30, 10, 32, 0.25), seed 0, before NMI
# and AMI moved to scikit-learn (hand-written contingency-table code then): "random" by the
# faiss backend (faiss drew its own start), "k-means++" by either backend
BEFORE_SKLEARN = {
    "random": {"nmi": 0.6459064562593048, "ami": 0.4397760011649565},
    "k-means++": {"nmi": 0.6438167739508048, "ami": 0.4337606793445396},
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("init", ["random", "k-means++"])
def test_scores_unchanged_by_sklearn(backend, init):
    x, labels = clustered(30, 10, 32, 0.25)
    scores = clustering_scores(x, labels, backend=backend, init=init, with_ami=True)
    assert scores == pytest.approx(BEFORE_SKLEARN[init], abs=1e-6)


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_random_init_is_the_one_faiss_draws(seed):
    import faiss

    x, _ = clustered(50, 20, 16, 0.2)
    data = x.numpy()
    own = faiss.Kmeans(16, 50, niter=1, seed=seed, max_points_per_centroid=20, verbose=False)
    own.train(data)
    given = faiss.Kmeans(16, 50, niter=1, seed=seed, max_points_per_centroid=20, verbose=False)
    given.train(data, init_centroids=clustering._random_init(x, 50, seed).numpy())
    assert np.array_equal(own.centroids, given.centroids)


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
@pytest.mark.parametrize("init", ["random", "k-means++"])
@pytest.mark.parametrize(("noise", "seed"), [(0.1, 0), (0.2, 1), (0.3, 2)])
def test_faiss_and_torch_kmeans_agree(init, noise, seed):
    """Same seed, same starting points: the same partition, whichever backend runs."""
    x, labels = clustered(100, 20, 128, noise)
    by_faiss, _ = kmeans(x, 100, seed=seed, backend="faiss", init=init)
    by_torch, _ = kmeans(x, 100, seed=seed, backend="torch", init=init)
    assert normalized_mutual_info_score(by_faiss, by_torch) == pytest.approx(1.0, abs=1e-9)
    assert normalized_mutual_info_score(labels, by_faiss) == pytest.approx(
        normalized_mutual_info_score(labels, by_torch), abs=1e-9
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("init", ["random", "k-means++"])
def test_kmeans_valid_and_deterministic(backend, init):
    x, labels = blobs()
    assignments, centroids = kmeans(x, 6, seed=3, backend=backend, init=init)
    assert assignments.dtype == torch.int64 and assignments.shape == (len(x),)
    assert centroids.shape == (6, x.shape[1])
    assert int(assignments.min()) >= 0 and int(assignments.max()) < 6
    nearest = torch.cdist(x, centroids.to(x.dtype)).argmin(1)
    assert torch.equal(assignments, nearest)  # final assignment is exact
    again, _ = kmeans(x, 6, seed=3, backend=backend, init=init)
    assert torch.equal(assignments, again)
    if init == "k-means++":  # one seed per blob, so the global optimum
        assert normalized_mutual_info_score(labels, assignments) == pytest.approx(1.0)
    else:  # random starts may land in a local optimum, but the blobs stay whole
        assert normalized_mutual_info_score(labels, assignments) > 0.8


def test_torch_kmeans_centroids_are_means():
    x, _ = blobs(seed=1)
    assignments, centroids = kmeans(x, 6, backend="torch", init="k-means++")
    for cluster in range(6):
        assert torch.allclose(centroids[cluster], x[assignments == cluster].mean(0), atol=1e-5)


def test_torch_kmeans_blocks_do_not_change_result(monkeypatch):
    x, _ = blobs(seed=2)
    whole = kmeans(x, 6, backend="torch")
    monkeypatch.setattr(clustering, "_CHUNK_ELEMENTS", 13)  # blocks of 2 rows
    blocked = kmeans(x, 6, backend="torch")
    assert torch.equal(whole[0], blocked[0]) and torch.allclose(whole[1], blocked[1])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("init", ["random", "k-means++"])
def test_kmeans_duplicate_points(backend, init):
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]).repeat(10, 1)  # 3 distinct points
    assignments, _ = kmeans(x, 5, backend=backend, init=init)
    assert assignments.shape == (30,) and int(assignments.max()) < 5
    assert normalized_mutual_info_score(torch.arange(3).repeat(10), assignments) == pytest.approx(
        1.0
    )
    assignments, _ = kmeans(x[:1].repeat(4, 1), 4, backend=backend, init=init)
    assert assignments.shape == (4,)


def test_kmeans_torch_empty_clusters_reseeded():
    x, _ = blobs(n_blobs=3, per_blob=10, seed=4)
    centroids = torch.cat([x[:1], x[:1] + 1000.0])  # the second centroid catches nothing
    assignments, final = clustering._lloyd(x.double(), centroids.double(), 10)
    assert len(torch.unique(assignments)) == 2
    assert torch.isfinite(final).all()


@pytest.mark.parametrize(
    ("x", "k", "kwargs", "match"),
    [
        (torch.randn(5, 2), 6, {}, r"k must be in \[1, N\]"),
        (torch.randn(5, 2), 0, {}, r"k must be in \[1, N\]"),
        (torch.randn(5, 2), 2, {"iterations": 0}, "iterations"),
        (torch.randn(5, 2), 2, {"backend": "sklearn"}, "backend"),
        (torch.randn(5, 2), 2, {"init": "greedy"}, "init"),
        (torch.tensor([[0.0], [float("nan")]]), 1, {}, "NaN"),
        (torch.randn(5), 1, {}, "shape"),
        (torch.ones(5, 2, dtype=torch.long), 1, {}, "floating"),
    ],
)
def test_kmeans_bad_arguments(x, k, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kmeans(x, k, **kwargs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_clustering_scores(backend):
    x, labels = blobs(n_blobs=4, seed=5)
    scores = clustering_scores(
        x.numpy(), labels.numpy() + 10, backend=backend, init="k-means++", with_ami=True
    )
    assert set(scores) == {"nmi", "ami"}
    assert scores["nmi"] == pytest.approx(1.0) and scores["ami"] == pytest.approx(1.0)
    assert set(clustering_scores(x, labels, backend=backend)) == {"nmi"}


def test_clustering_scores_rejects_bad_labels():
    x, _ = blobs(n_blobs=2, per_blob=5)
    with pytest.raises(ValueError, match="at least two classes"):
        clustering_scores(x, torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="9 labels"):
        clustering_scores(x, torch.arange(9) % 2)
    with pytest.raises(ValueError, match="shape"):
        clustering_scores(x, torch.zeros(10, 1, dtype=torch.long))
