"""Exact k-nearest neighbours for retrieval evaluation, by chunked matrix products or faiss.

The zero-shot protocol searches every test embedding against all the others
(Stanford Online Products: 60,502 queries against themselves); In-Shop searches a
query set against a separate gallery. Both are one exact search here:

- ``backend="torch"``: for each chunk of queries, one matrix product against the
  whole gallery, then ``topk``. Memory is bounded by ``chunk_size × gallery size``
  (by default a block of at most 256 MB), never an N×N matrix. Runs on the
  tensors' device, CPU or CUDA.
- ``backend="faiss"``: an exact flat index (``IndexFlatL2``, or ``IndexFlatIP`` on
  L2-normalised rows for cosine), on the GPU when faiss has GPU support and the
  inputs are on CUDA. faiss is optional: the ``index`` extra installs it.

Both backends only *rank*; the values returned for the k neighbours found are then
recomputed the same way for both, from differences (Euclidean) or dot products of
normalised rows (cosine), so they are exact to the working precision (an identical
embedding is at distance exactly 0), identical between backends for the same
neighbours, and each row is sorted by them.

Half-precision inputs (float16, bfloat16) are computed in float32; values come back
in float32, or float64 for float64 inputs (faiss then ranks in float32).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from sampling_matters import _checks
from sampling_matters._optional import MissingExtraError
from sampling_matters.distances import compute_dtype

__all__ = ["BACKENDS", "METRICS", "Neighbours", "faiss_available", "knn"]

Metric = Literal["euclidean", "cosine"]
Backend = Literal["auto", "torch", "faiss"]
METRICS: tuple[str, ...] = ("euclidean", "cosine")
BACKENDS: tuple[str, ...] = ("auto", "torch", "faiss")

_BLOCK_BYTES = 256 * 2**20  # the largest (chunk, gallery) or (chunk, k, D) block built at once
_FAISS_CHUNK = 4096  # faiss's own query block size in a flat search
_FAISS_GPU_MAX_K = 2048  # faiss's GPU flat search returns at most this many neighbours

Search = Callable[[Tensor], Tensor]  # (C, D) queries -> (C, k') int64 gallery indices


class Neighbours(NamedTuple):
    """The k nearest gallery rows of each query, nearest first.

    Attributes:
        distances: (Q, k) Euclidean distances (not squared), ascending; for
            ``metric="cosine"`` cosine *similarities*, descending.
        indices: (Q, k) int64 gallery row indices.
    """

    distances: Tensor
    indices: Tensor


def knn(
    queries: Tensor,
    k: int,
    *,
    gallery: Tensor | None = None,
    exclude_self: bool | None = None,
    metric: Metric = "euclidean",
    backend: Backend = "auto",
    chunk_size: int | None = None,
    progress: bool = False,
) -> Neighbours:
    """Exact k nearest neighbours of each query in the gallery.

    Args:
        queries: (Q, D) floating embeddings.
        k: neighbours per query, 1 ≤ k ≤ M (M − 1 when excluding self).
        gallery: (M, D) floating embeddings on the queries' device; ``None`` means
            the queries themselves (the zero-shot protocol, M = Q).
        exclude_self: never return query i's own row i of the gallery. Exclusion is
            by index: another row with the same embedding is still returned, at
            distance 0. Defaults to True when ``gallery`` is None, else False (with
            a gallery, True means query i is gallery row i; it needs Q ≤ M).
        metric: ``"euclidean"`` (distances, ascending) or ``"cosine"`` (cosine
            similarities, descending; zero rows have similarity 0 to everything).
        backend: ``"torch"`` (chunked matrix products), ``"faiss"`` (exact flat
            index) or ``"auto"``: faiss when it is installed, unless the inputs are
            on CUDA and faiss has no GPU support; else torch.
        chunk_size: queries searched at once; default: as many as keep the
            (chunk, M) block of scores within 256 MB. Results do not depend on it
            (ties aside).
        progress: show a progress bar over the chunks, if ``tqdm`` is installed.

    Returns:
        ``Neighbours(distances, indices)``, each (Q, k), on the queries' device;
        values in float32 (float64 for float64 inputs). Among equal values the
        order is the backend's.

    Raises:
        ValueError: bad shapes, dimensions, dtypes, devices, non-finite values, an
            out-of-range k, an unknown metric or backend, or faiss asked for but
            not installed.

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
        >>> result = knn(x, k=2, backend="torch")
        >>> result.indices
        tensor([[2, 1],
                [2, 0],
                [0, 1]])
        >>> result.distances
        tensor([[1.0000, 5.0000],
                [4.2426, 5.0000],
                [1.0000, 4.2426]])
    """
    queries, gallery, exclude = _prepare(queries, gallery, exclude_self, metric)
    _check_options(k, len(gallery), exclude, metric, backend, chunk_size)
    if len(queries) == 0:
        empty = queries.new_zeros(0, k)
        return Neighbours(empty, empty.long())
    wanted = k + int(exclude)  # one more, when the query itself may be among them
    search, default_size = _searcher(backend, gallery, wanted, metric)
    size = chunk_size or default_size
    parts = [
        _search_chunk(search, queries, gallery, start, size, exclude, metric)
        for start in _progress(range(0, len(queries), size), progress)
    ]
    return Neighbours(
        torch.cat([p.distances for p in parts]), torch.cat([p.indices for p in parts])
    )


def faiss_available() -> bool:
    """Whether faiss can be imported (``backend="auto"`` then uses it)."""
    return _import_faiss() is not None


def _prepare(
    queries: Tensor, gallery: Tensor | None, exclude_self: bool | None, metric: str
) -> tuple[Tensor, Tensor, bool]:
    """Check the inputs; return them detached in the compute dtype, and whether to exclude self.

    For the cosine metric the rows are L2-normalised (zero rows stay zero).
    """
    _checks.embeddings_2d(queries, "queries", finite=True)
    exclude = gallery is None if exclude_self is None else bool(exclude_self)
    if gallery is None:
        gallery = queries
    else:
        _check_gallery(queries, gallery, exclude)
    dtype = torch.promote_types(compute_dtype(queries), compute_dtype(gallery))
    queries, gallery = queries.detach().to(dtype), gallery.detach().to(dtype)
    if metric == "cosine":
        queries = torch.nn.functional.normalize(queries, dim=1)
        gallery = torch.nn.functional.normalize(gallery, dim=1)
    return queries, gallery, exclude


def _check_gallery(queries: Tensor, gallery: Tensor, exclude: bool) -> None:
    """Raise ``ValueError`` unless ``gallery`` can be searched with ``queries``."""
    _checks.embeddings_2d(gallery, "gallery", finite=True)
    if gallery.shape[1] != queries.shape[1]:
        raise ValueError(
            "queries and gallery must have the same dimension D, "
            f"got {queries.shape[1]} and {gallery.shape[1]}"
        )
    _checks.same_device("gallery", gallery, queries, "queries")
    if exclude and len(gallery) < len(queries):
        raise ValueError(
            "exclude_self with a gallery means query i is gallery row i, so it needs "
            f"at least as many gallery rows as queries, got {len(gallery)} < {len(queries)}"
        )


def _check_options(
    k: int, gallery_size: int, exclude: bool, metric: str, backend: str, chunk_size: int | None
) -> None:
    """Raise ``ValueError`` for an out-of-range k or chunk size, or an unknown name."""
    _checks.one_of("metric", metric, METRICS)
    _checks.one_of("backend", backend, BACKENDS)
    available = gallery_size - int(exclude)
    if not _checks.is_integer(k) or not 1 <= k <= available:
        less_self = " less the query itself" if exclude else ""
        raise ValueError(
            f"k must be an integer with 1 <= k <= {available} (gallery size {gallery_size}"
            f"{less_self}), got k={k!r}"
        )
    _checks.positive_int_or_none("chunk_size", chunk_size)


def _default_chunk_size(gallery_size: int, dtype: torch.dtype) -> int:
    """Queries per chunk so that a (chunk, gallery) block of scores fits in 256 MB."""
    itemsize = torch.empty(0, dtype=dtype).element_size()
    return max(1, _BLOCK_BYTES // (max(1, gallery_size) * itemsize))


def _progress(chunks: range, enabled: bool) -> Iterable[int]:
    """``chunks``, wrapped in a tqdm progress bar when enabled and tqdm is installed."""
    if not enabled:
        return chunks
    try:
        tqdm = importlib.import_module("sampling_matters._progress").tqdm
    except ImportError:
        return chunks
    return tqdm(chunks, desc="knn", unit="chunk")  # type: ignore[no-any-return]


def _search_chunk(
    search: Search,
    queries: Tensor,
    gallery: Tensor,
    start: int,
    size: int,
    exclude: bool,
    metric: str,
) -> Neighbours:
    """The neighbours of queries ``start : start + size``, self removed, values exact."""
    block = queries[start : start + size]  # (C, D)
    indices = search(block)  # (C, k + exclude)
    if exclude:
        indices = _drop_self(indices, start)  # (C, k)
    return _exact_values(block, gallery, indices, metric)


def _drop_self(indices: Tensor, start: int) -> Tensor:
    """Remove each row's own index from (C, k + 1) neighbours; (C, k).

    Row i belongs to query ``start + i``. Where that index is among the k + 1 (it
    need not be: other rows may tie with it), it is removed; otherwise the last
    neighbour is. Either way k distinct neighbours other than the query remain, in
    order.
    """
    own = torch.arange(start, start + len(indices), device=indices.device)  # (C,)
    is_self = indices == own[:, None]  # (C, k + 1)
    is_self[:, -1] |= ~is_self.any(dim=1)
    keep = is_self.to(torch.uint8).argsort(dim=1, stable=True)[:, :-1]  # (C, k)
    return indices.gather(1, keep)


def _exact_values(block: Tensor, gallery: Tensor, indices: Tensor, metric: str) -> Neighbours:
    """Recompute the values of (C, k) neighbours exactly and sort each row by them.

    Euclidean distances come from differences, not the ``|q|² + |g|² − 2 q·g``
    expansion the search ranks by, so identical embeddings are at exactly 0.
    Rows are handled in groups whose (rows, k, D) gathered block fits in 256 MB.
    """
    per_row = indices.shape[1] * gallery.shape[1] * gallery.element_size()
    rows = max(1, _BLOCK_BYTES // max(1, per_row))
    values = torch.cat(
        [
            _pair_values(block[s : s + rows], gallery, indices[s : s + rows], metric)
            for s in range(0, len(block), rows)
        ]
    )  # (C, k)
    order = values.argsort(dim=1, descending=metric == "cosine", stable=True)  # (C, k)
    return Neighbours(values.gather(1, order), indices.gather(1, order))


def _pair_values(block: Tensor, gallery: Tensor, indices: Tensor, metric: str) -> Tensor:
    """(C, k) distances (or similarities) from each query to its k gallery rows."""
    neighbours = gallery[indices]  # (C, k, D)
    if metric == "cosine":
        return torch.bmm(neighbours, block[:, :, None]).squeeze(2)  # (C, k)
    return neighbours.sub_(block[:, None, :]).square_().sum(dim=2).sqrt_()  # (C, k)


def _searcher(backend: str, gallery: Tensor, k: int, metric: str) -> tuple[Search, int]:
    """The ranking function of ``backend`` for ``k`` neighbours, and its default chunk size.

    The torch search builds a (chunk, gallery) block of scores, so its chunk keeps that
    block within 256 MB; faiss blocks its own work and returns only (chunk, k), so its
    chunk is at least faiss's query block (4,096).
    """
    faiss = None if backend == "torch" else _import_faiss()
    if backend == "faiss" and faiss is None:
        missing = MissingExtraError("faiss")  # the package and extra listed in _optional.EXTRAS
        raise ValueError(f"backend='faiss' needs {missing.package}: {missing.hint}")
    chunk = _default_chunk_size(len(gallery), gallery.dtype)
    if faiss is None or (gallery.is_cuda and not _faiss_has_gpu(faiss) and backend == "auto"):
        return _torch_searcher(gallery, k, metric), chunk
    return _faiss_searcher(faiss, gallery, k, metric), max(chunk, _FAISS_CHUNK)


def _torch_searcher(gallery: Tensor, k: int, metric: str) -> Search:
    """Rank by one matrix product per chunk: −‖g‖² + 2 q·g (= ‖q‖² − d²) or cos, top k."""
    gallery_t = gallery.T  # (D, M)
    bias = gallery.square().sum(dim=1).neg_() if metric == "euclidean" else None  # (M,)

    def search(block: Tensor) -> Tensor:
        if bias is None:
            scores = block @ gallery_t  # (C, M) similarities
        else:
            scores = torch.addmm(bias, block, gallery_t, alpha=2.0)  # (C, M)
        return scores.topk(k, dim=1).indices  # (C, k)

    return search


def _faiss_searcher(faiss: ModuleType, gallery: Tensor, k: int, metric: str) -> Search:
    """Rank with an exact faiss flat index (squared L2, or inner product of unit rows)."""
    flat = faiss.IndexFlatL2 if metric == "euclidean" else faiss.IndexFlatIP
    index = flat(gallery.shape[1])
    resources = None
    if gallery.is_cuda and _faiss_has_gpu(faiss) and k <= _FAISS_GPU_MAX_K:
        resources = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(resources, gallery.device.index or 0, index)
    index.add(_to_numpy(gallery))

    def search(block: Tensor, _resources: Any = resources) -> Tensor:
        # _resources keeps faiss's GPU memory alive as long as the index is used.
        _, indices = index.search(_to_numpy(block), k)  # (C, k) int64 numpy
        return torch.from_numpy(indices).to(block.device)

    return search


def _to_numpy(x: Tensor) -> Any:
    """A contiguous float32 numpy copy (or view) of ``x``, as faiss needs."""
    return x.detach().to("cpu", torch.float32).contiguous().numpy()


def _faiss_has_gpu(faiss: ModuleType) -> bool:
    """Whether this faiss build can search on a GPU."""
    return hasattr(faiss, "StandardGpuResources")


def _import_faiss() -> ModuleType | None:
    """faiss, imported on first use, or None when it is not installed."""
    try:
        return importlib.import_module("faiss")
    except ImportError:
        return None
