import pytest
import torch

from sampling_matters.evaluation import knn as knn_module
from sampling_matters.evaluation.knn import Neighbours, faiss_available, knn

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")
BACKENDS = ["torch", pytest.param("faiss", marks=needs_faiss)]


def brute_force(queries, gallery, k, *, exclude_self, metric="euclidean"):
    """Full float64 distance matrix, full sort: (values, indices), each (Q, k)."""
    q, g = queries.double(), gallery.double()
    if metric == "cosine":
        q, g = torch.nn.functional.normalize(q, dim=1), torch.nn.functional.normalize(g, dim=1)
        keys = -(q @ g.T)
    else:
        keys = torch.tensor([[float((a - b).norm()) for b in g] for a in q], dtype=torch.float64)
    if exclude_self:
        keys[torch.arange(len(q)), torch.arange(len(q))] = torch.inf
    values, indices = keys.sort(dim=1, stable=True)
    values = -values if metric == "cosine" else values
    return values[:, :k], indices[:, :k]


def assert_matches(result, expected_values, expected_indices, atol=1e-5):
    """Same values; same indices wherever a value is distinct from its row neighbours."""
    values, indices = result
    assert values.shape == indices.shape == expected_indices.shape
    assert indices.dtype == torch.int64
    assert torch.allclose(values.double(), expected_values, atol=atol)
    gaps = (expected_values[:, 1:] - expected_values[:, :-1]).abs() > 10 * atol  # (Q, k - 1)
    distinct = torch.ones_like(expected_values, dtype=torch.bool)
    distinct[:, 1:] &= gaps
    distinct[:, :-1] &= gaps
    assert torch.equal(indices[distinct], expected_indices[distinct])


def random_data(n, dim, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("exclude_self", [True, False])
def test_against_brute_force(backend, metric, exclude_self):
    x = random_data(40, 6)
    result = knn(x, 5, exclude_self=exclude_self, metric=metric, backend=backend)
    assert isinstance(result, Neighbours)
    assert_matches(result, *brute_force(x, x, 5, exclude_self=exclude_self, metric=metric))
    if exclude_self:
        assert not (result.indices == torch.arange(40)[:, None]).any()
    else:
        assert torch.equal(result.indices[:, 0], torch.arange(40))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_separate_gallery(backend, metric):
    queries, gallery = random_data(15, 8, seed=1), random_data(50, 8, seed=2)
    result = knn(queries, 7, gallery=gallery, metric=metric, backend=backend)
    assert_matches(result, *brute_force(queries, gallery, 7, exclude_self=False, metric=metric))
    # exclude_self with a gallery: query i is gallery row i.
    result = knn(queries, 7, gallery=gallery, exclude_self=True, backend=backend)
    assert not (result.indices == torch.arange(15)[:, None]).any()
    assert_matches(result, *brute_force(queries, gallery, 7, exclude_self=True))


def test_default_exclusion():
    x = random_data(10, 3)
    assert not (knn(x, 3, backend="torch").indices == torch.arange(10)[:, None]).any()
    with_gallery = knn(x, 3, gallery=x, backend="torch")
    assert torch.equal(with_gallery.indices[:, 0], torch.arange(10))
    assert torch.equal(with_gallery.distances[:, 0], torch.zeros(10))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@needs_faiss
def test_backends_agree(metric):
    x = random_data(3000, 64, seed=3)
    by_torch = knn(x, 20, metric=metric, backend="torch")
    by_faiss = knn(x, 20, metric=metric, backend="faiss")
    assert torch.allclose(by_torch.distances, by_faiss.distances, atol=1e-4)
    assert_matches(by_faiss, by_torch.distances.double(), by_torch.indices, atol=1e-4)
    assert torch.equal(knn(x, 20, metric=metric).indices, by_faiss.indices)  # auto is faiss


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicates(backend):
    x = random_data(30, 5, seed=4)
    x[7] = x[3]
    x[12] = x[3]
    result = knn(x, 3, backend=backend)
    for query, others in [(3, {7, 12}), (7, {3, 12}), (12, {3, 7})]:
        assert set(result.indices[query, :2].tolist()) == others
        assert torch.equal(result.distances[query, :2], torch.zeros(2))
        assert result.distances[query, 2] > 0
    assert (result.distances[:, 1:] >= result.distances[:, :-1]).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_all_identical_excludes_exactly_self(backend, metric):
    n = 25
    x = torch.ones(n, 4)
    for k in (1, 5, n - 1):
        result = knn(x, k, backend=backend, metric=metric, chunk_size=6)
        assert not (result.indices == torch.arange(n)[:, None]).any()
        assert all(len(set(row)) == k for row in result.indices.tolist())
        expected = 0.0 if metric == "euclidean" else 1.0
        assert torch.allclose(result.distances, torch.full((n, k), expected))
    everyone_else = knn(x, n - 1, backend=backend, metric=metric).indices.sort(dim=1).values
    others = torch.arange(n).expand(n, n)[~torch.eye(n, dtype=torch.bool)].view(n, n - 1)
    assert torch.equal(everyone_else, others)


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunk_size_independence(backend):
    x = random_data(60, 10, seed=5)
    gallery = random_data(80, 10, seed=6)
    for kwargs in ({}, {"gallery": gallery}):
        results = [knn(x, 9, backend=backend, chunk_size=size, **kwargs) for size in (1, 7, 10_000)]
        for other in results[1:]:
            assert torch.equal(other.indices, results[0].indices)
            assert torch.equal(other.distances, results[0].distances)


def test_default_chunk_is_bounded():
    n = 60_502  # Stanford Online Products' test set
    size = knn_module._default_chunk_size(n, torch.float32)
    assert 1 <= size < n
    assert size * n * 4 <= 256 * 2**20
    assert knn_module._default_chunk_size(10**9, torch.float64) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_k_at_the_limit(backend):
    x, gallery = random_data(12, 3), random_data(20, 3, seed=7)
    assert_matches(knn(x, 11, backend=backend), *brute_force(x, x, 11, exclude_self=True))
    assert_matches(
        knn(x, 12, backend=backend, exclude_self=False),
        *brute_force(x, x, 12, exclude_self=False),
    )
    assert_matches(
        knn(x, 20, gallery=gallery, backend=backend),
        *brute_force(x, gallery, 20, exclude_self=False),
    )
    for bad_k, kwargs in [(12, {}), (13, {"exclude_self": False}), (21, {"gallery": gallery})]:
        with pytest.raises(ValueError, match=rf"k must be .*got k={bad_k}"):
            knn(x, bad_k, backend=backend, **kwargs)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: knn(x, 0), r"1 <= k <= 11 \(gallery size 12 less the query itself\), got k=0"),
        (lambda x: knn(x, -1), "got k=-1"),
        (lambda x: knn(x, 2.0), "k must be an int"),
        (lambda x: knn(x, True), "k must be an int"),
        (lambda x: knn(x[0], 1), r"queries must have shape \(N, D\)"),
        (lambda x: knn(x, 1, gallery=x[:, 0]), r"gallery must have shape \(N, D\)"),
        (lambda x: knn(x, 1, gallery=x[:, :2]), "same dimension D, got 3 and 2"),
        (lambda x: knn(x.long(), 1), "floating-point"),
        (lambda x: knn(x.tolist(), 1), "torch.Tensor"),
        (lambda x: knn(x[:4], 1, gallery=x[:3], exclude_self=True), "at least as many"),
        (lambda x: knn(x, 1, metric="manhattan"), "metric must be one of"),
        (lambda x: knn(x, 1, backend="annoy"), "backend must be one of"),
        (lambda x: knn(x, 1, chunk_size=0), "chunk_size must be a positive int"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(random_data(12, 3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite(bad):
    x = random_data(12, 3)
    x[4, 1] = bad
    with pytest.raises(ValueError, match="queries must be finite"):
        knn(x, 2)
    with pytest.raises(ValueError, match="gallery must be finite"):
        knn(random_data(5, 3), 2, gallery=x)


def test_faiss_missing(monkeypatch):
    monkeypatch.setattr(knn_module, "_import_faiss", lambda: None)
    x = random_data(10, 3)
    with pytest.raises(
        ValueError, match=r"needs faiss-cpu: pip install 'sampling-matters\[index\]'$"
    ):
        knn(x, 2, backend="faiss")
    assert torch.equal(knn(x, 2).indices, knn(x, 2, backend="torch").indices)  # auto: torch


@pytest.mark.parametrize("backend", BACKENDS)
def test_dtypes(backend):
    x = random_data(30, 8, seed=8, dtype=torch.float64)
    expected = brute_force(x, x, 4, exclude_self=True)
    double = knn(x, 4, backend=backend)
    assert double.distances.dtype == torch.float64
    assert_matches(double, *expected, atol=1e-12)
    half = knn(x.half(), 4, backend=backend)
    assert half.distances.dtype == torch.float32
    assert_matches(half, *brute_force(x.half(), x.half(), 4, exclude_self=True))
    mixed = knn(x.half(), 4, gallery=x, backend=backend)
    assert mixed.distances.dtype == torch.float64


def test_empty_queries_and_grad():
    gallery = random_data(10, 3)
    empty = knn(gallery[:0], 3, gallery=gallery)
    assert empty.distances.shape == empty.indices.shape == (0, 3)
    x = gallery.clone().requires_grad_()
    assert not knn(x, 3, backend="torch").distances.requires_grad


@pytest.mark.parametrize("backend", BACKENDS)
def test_progress_bar(backend, capsys):
    x = random_data(20, 3)
    shown = knn(x, 3, backend=backend, chunk_size=6, progress=True)
    assert torch.equal(shown.indices, knn(x, 3, backend=backend).indices)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda(backend):
    x = random_data(500, 16, seed=9)
    on_cpu = knn(x, 10, backend="torch")
    on_gpu = knn(x.cuda(), 10, backend=backend)
    assert on_gpu.indices.is_cuda and on_gpu.distances.is_cuda
    assert torch.equal(on_gpu.indices.cpu(), on_cpu.indices)
    assert torch.allclose(on_gpu.distances.cpu(), on_cpu.distances, atol=1e-4)
