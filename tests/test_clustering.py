import importlib.util

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

from sampling_matters.evaluation import clustering
from sampling_matters.evaluation.clustering import ami, clustering_scores, kmeans, nmi

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


def labellings(seed, n, n_true, n_pred):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_true, n) * 7 - 3  # non-contiguous, negative ids
    pred = np.where(rng.random(n) < 0.5, truth, rng.integers(0, n_pred, n))
    return truth, pred


@pytest.mark.parametrize(
    ("seed", "n", "n_true", "n_pred"),
    [(0, 50, 2, 3), (1, 200, 5, 40), (2, 300, 30, 30), (3, 500, 100, 400), (4, 3000, 600, 600)],
)
def test_nmi_ami_match_sklearn(seed, n, n_true, n_pred):
    truth, pred = labellings(seed, n, n_true, n_pred)
    assert nmi(truth, pred) == pytest.approx(normalized_mutual_info_score(truth, pred), abs=1e-9)
    assert ami(truth, pred) == pytest.approx(adjusted_mutual_info_score(truth, pred), abs=1e-9)
    assert nmi(torch.from_numpy(truth), torch.from_numpy(pred)) == nmi(truth, pred)


def test_nmi_ami_limit_cases_match_sklearn():
    truth = np.array([0, 0, 1, 1, 2, 2])
    for pred in (np.zeros(6), np.arange(6), np.array([5, 5, 9, 9, 1, 1]), truth[::-1]):
        assert nmi(truth, pred) == pytest.approx(normalized_mutual_info_score(truth, pred))
        assert ami(truth, pred) == pytest.approx(adjusted_mutual_info_score(truth, pred))
    assert nmi(truth, np.zeros(6)) == ami(truth, np.zeros(6)) == 0.0
    identical = np.arange(6)  # all singletons: E[I] = I, sklearn's guard gives 1
    assert ami(identical, identical) == adjusted_mutual_info_score(identical, identical)


@pytest.mark.parametrize("score", [nmi, ami])
def test_scores_reject_bad_labels(score):
    with pytest.raises(ValueError, match="single class"):
        score(np.zeros(5), np.arange(5))
    with pytest.raises(ValueError, match="entries"):
        score(np.arange(5), np.arange(4))
    with pytest.raises(ValueError, match="shape"):
        score(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="shape"):
        score(np.zeros((2, 2)), np.zeros((2, 2)))


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
        assert nmi(labels, assignments) == pytest.approx(1.0)
    else:  # random starts may land in a local optimum, but the blobs stay whole
        assert nmi(labels, assignments) > 0.8


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
    assert nmi(torch.arange(3).repeat(10), assignments) == pytest.approx(1.0)
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
