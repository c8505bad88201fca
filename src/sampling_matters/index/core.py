"""The :class:`Index`: a faiss index of unit embeddings with their ids, labels and items.

Searching is safe from several threads at once: a search reads one snapshot of the
index (faiss index, labels, items) and faiss searches a read-only index concurrently.
:meth:`Index.add` never changes that snapshot: under a lock it adds to a copy (read
afresh from the folder when the loaded index is memory-mapped) and then swaps the
copy in, so a search running meanwhile finishes on the old snapshot.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.index import calibrate, store
from sampling_matters.index.factory import (
    EXACT_MAX,
    _faiss_reason,
    auto_factory,
    build_faiss,
    import_faiss,
    ivf_of,
    set_parameters,
)

if TYPE_CHECKING:
    from sampling_matters.index.query import QueryEmbedder

__all__ = ["Index", "build", "load"]


@dataclass(frozen=True)
class _Snapshot:
    """One consistent state of an index; never changed once made."""

    faiss: Any
    ids: Tensor  # (N,) int64: 0 … N−1
    labels: Tensor  # (N,) int64
    items: list[str]  # N; never changed (an add makes a new list)
    mapped: bool

    @staticmethod
    def make(faiss: Any, labels: Tensor, items: list[str], mapped: bool) -> _Snapshot:
        """A snapshot of ``faiss`` with its ids 0 … N−1."""
        return _Snapshot(faiss, torch.arange(len(labels)), labels, items, mapped)


class Index:
    """A searchable index of N unit embeddings of dimension D.

    Make one with :func:`build` or :func:`load`, not directly.

    Attributes:
        dim: D.
        meta: what the index is (``meta.json``'s keys: ``config``, ``checkpoint_sha256``,
            ``run``, ``faiss_version``, ``factory``, ``parameters``, ``size``, ``kind``,
            ``sources``, ...); ``size`` follows :meth:`add`.
        folder: the folder it was loaded from or last saved to, or None.
    """

    def __init__(self, parts: store.Parts, folder: Path | None = None) -> None:
        self.dim: int = int(parts.meta["dim"])
        self.meta: dict[str, Any] = dict(parts.meta)
        self.folder = folder
        labels = torch.from_numpy(parts.labels.copy())
        self._snapshot = _Snapshot.make(parts.faiss, labels, list(parts.items), parts.mapped)
        self._lock = threading.Lock()

    @property
    def ids(self) -> Tensor:
        """(N,) int64: 0 … N−1, the ids :meth:`search` returns, in order of addition."""
        return self._snapshot.ids

    @property
    def labels(self) -> Tensor:
        """(N,) int64: the label of each id (shared: do not change it in place)."""
        return self._snapshot.labels

    @property
    def items(self) -> list[str]:
        """N strings: each id's image (a file path or ``spec#split#index``), or ``""``.

        The list is shared, not copied (cheap to index per result): do not change it.
        """
        return self._snapshot.items

    def __len__(self) -> int:
        """N, the number of vectors."""
        return len(self._snapshot.labels)

    def __repr__(self) -> str:
        """``Index(N=…, dim=…, factory=…)``."""
        return f"Index(N={len(self)}, dim={self.dim}, factory={self.meta['factory']!r})"

    def search(self, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The ``k`` nearest indexed vectors of each query, nearest first.

        Args:
            queries: (Q, D) embeddings; rows are normalised to unit length (the model's
                embeddings already are).
            k: neighbours per query, 1 ≤ k ≤ N.

        Returns:
            ``(distances, ids)``, both (Q, k): float32 Euclidean distances between unit
            vectors, √max(2 − 2·inner product, 0), ascending along each row, and the
            int64 ids of the neighbours. An approximate index that finds fewer than k
            neighbours for a query fills the rest of its row with id −1 and distance inf.

        Raises:
            ValueError: ``queries`` is not a finite (Q, D) float tensor of non-zero rows
                with D = :attr:`dim`, or ``k`` is not in [1, N].
        """
        snapshot = self._snapshot
        vectors = _unit_rows(queries, self.dim, "queries")
        k = _checks.integer("k", k, 1, len(snapshot.labels), why="the index's size")
        return _search(snapshot.faiss, vectors, k)

    def search_ids(self, ids: Tensor | Sequence[int], k: int) -> tuple[Tensor, Tensor]:
        """The ``k`` nearest neighbours of indexed vectors, each leaving itself out.

        Args:
            ids: (Q,) ids of indexed vectors.
            k: neighbours per query, 1 ≤ k ≤ N − 1.

        Returns:
            ``(distances, ids)``, both (Q, k), as :meth:`search` gives them.

        Raises:
            ValueError: an id out of [0, N), ``k`` out of [1, N − 1], or an index type
                that cannot give back its vectors (faiss's ``reconstruct``).
        """
        snapshot = self._snapshot
        wanted = self._check_ids(ids, len(snapshot.labels))
        k = _checks.integer("k", k, 1, len(snapshot.labels) - 1, why="the index's size − 1")
        queries = self._vectors(snapshot, wanted).numpy()  # (Q, D)
        distances, found = _search(snapshot.faiss, queries, k + 1)
        itself = found == wanted[:, None]  # (Q, k + 1)
        itself[:, -1] |= ~itself.any(1)  # the query not among them: drop the farthest
        keep = ~itself
        return distances[keep].view(-1, k), found[keep].view(-1, k)

    def vectors(self, ids: Tensor | Sequence[int]) -> Tensor:
        """The (Q, D) float32 vectors stored under ``ids`` (approximate if compressed).

        Raises:
            ValueError: an id out of range, or an index type that cannot give them back.
        """
        snapshot = self._snapshot
        return self._vectors(snapshot, self._check_ids(ids, len(snapshot.labels)))

    def add(self, embeddings: Tensor, labels: Tensor, items: Sequence[str] | None = None) -> Tensor:
        """Add vectors under the next ids (N, N + 1, …); the index must be saved to keep them.

        Args:
            embeddings: (M, D) embeddings (rows normalised to unit length).
            labels: (M,) integer labels.
            items: M image names (file paths or ``spec#split#index``), or None for ``""``.

        Returns:
            The (M,) int64 ids given to them.

        Raises:
            ValueError: shapes or types that do not fit (the message says which).
        """
        vectors = _unit_rows(embeddings, self.dim, "embeddings")
        labels, names = _check_labels_items(labels, items, len(vectors))
        with self._lock:
            old = self._snapshot
            index = self._writable_copy(old)
            try:
                index.add(vectors)
            except RuntimeError as error:
                raise ValueError(
                    f"faiss could not add the vectors: {_faiss_reason(error)}"
                ) from None
            self._snapshot = _Snapshot.make(
                index, torch.cat([old.labels, labels]), old.items + names, False
            )
            self.meta["size"] = len(self._snapshot.labels)
        return torch.arange(len(old.labels), len(old.labels) + len(vectors), dtype=torch.int64)

    def save(self, folder: Path | str, *, replace: bool = False) -> None:
        """Write the index to ``folder`` atomically (see :mod:`sampling_matters.index.store`).

        Args:
            folder: the index folder to write.
            replace: replace ``folder`` if it holds an index already.

        Raises:
            ValueError: ``folder`` exists (and ``replace`` is False, or it is no index).
        """
        folder = Path(folder)
        snapshot = self._snapshot
        meta = {**self.meta, "size": len(snapshot.labels)}
        ids = np.arange(len(snapshot.labels), dtype=np.int64)
        parts = store.Parts(
            snapshot.faiss, ids, snapshot.labels.numpy(), list(snapshot.items), meta, False
        )
        store.write_folder(folder, parts, replace=replace)
        self.folder = folder

    def check_model(self, embedder: QueryEmbedder) -> None:
        """Refuse a query model that is not the one the index was built with.

        Raises:
            ValueError: the embedder's dimension differs from the index's, or its
                checkpoint's sha256 from the one recorded (when one is).
        """
        if embedder.dim != self.dim:
            raise ValueError(
                f"the index holds {self.dim}-d vectors but the run {embedder.run} embeds in "
                f"{embedder.dim} dimensions: query with the run the index was built with"
            )
        recorded = self.meta.get("checkpoint_sha256")
        if recorded is not None and recorded != embedder.checkpoint_sha256:
            raise ValueError(
                f"the index was built with a checkpoint of sha256 {recorded[:12]}… but "
                f"{embedder.run}/best.pt has sha256 {embedder.checkpoint_sha256[:12]}… "
                "(retrained since?): rebuild the index, or query with the model it was built with"
            )

    def approximate_hint(self) -> str | None:
        """A note when the factory does not suit the index: outgrown, or no faster than exact.

        An exact index past :data:`EXACT_MAX` vectors would be faster as ``auto``'s IVF; an
        IVF index whose calibrated ``nprobe`` scans an eighth of its lists or more gains
        little over exact search (the gallery has little locality); one appended to twice
        the size it was calibrated at may have lost recall.
        """
        if self.meta["factory"] == "Flat" and len(self) > EXACT_MAX:
            return (
                f"the index holds {len(self):,} vectors in exact search ('Flat'); for this "
                f"size the auto rule picks {auto_factory(len(self))!r}: rebuild it for faster "
                "searches"
            )
        measured = self.meta.get("calibration")
        ivf = ivf_of(self._snapshot.faiss)
        if measured and ivf is not None and 8 * ivf.nprobe >= ivf.nlist:
            return (
                f"reaching recall {measured['target']} takes {ivf.nprobe} of the {ivf.nlist} "
                "lists: the gallery has little locality, and exact search (--factory Flat) "
                "may answer as fast, batched faster"
            )
        if measured and len(self) >= 2 * measured.get("size", len(self)):
            return (
                f"{measured['parameters']} was measured on {measured['size']:,} vectors and the "
                f"index now holds {len(self):,}: rebuild it to measure the recall again"
            )
        return None

    @staticmethod
    def _check_ids(ids: Tensor | Sequence[int], n: int) -> Tensor:
        wanted = torch.as_tensor(ids)
        if wanted.dim() != 1 or not _checks.is_integer_dtype(wanted):
            raise ValueError(
                f"ids must be a 1-d sequence of integers, got {_checks.describe(wanted)}"
            )
        if len(wanted) and not (int(wanted.min()) >= 0 and int(wanted.max()) < n):
            raise ValueError(f"ids must be in [0, {n - 1}] (the index holds {n}), got {ids}")
        return wanted.long()

    @staticmethod
    def _vectors(snapshot: _Snapshot, ids: Tensor) -> Tensor:
        out = np.empty((len(ids), int(snapshot.faiss.d)), dtype=np.float32)
        try:
            for row, i in enumerate(ids.tolist()):
                out[row] = snapshot.faiss.reconstruct(int(i))
        except RuntimeError as error:
            raise ValueError(
                f"this index ({snapshot.faiss.__class__.__name__}) cannot give back its vectors "
                f"({_faiss_reason(error)}): query with an image instead of an id"
            ) from None
        return torch.from_numpy(out)

    def _writable_copy(self, snapshot: _Snapshot) -> Any:
        """A copy of the faiss index that may be changed (a mapped one is read afresh)."""
        faiss = import_faiss()
        if snapshot.mapped:
            if self.folder is None:
                raise ValueError("a memory-mapped index must have a folder")  # not reached
            index, _ = store.read_faiss(self.folder / "index.faiss", mmap=False)
            if int(index.ntotal) != len(snapshot.labels):
                raise ValueError(
                    f"{self.folder} changed on disk since it was loaded: load it again"
                )
            set_parameters(index, self.meta["parameters"])
            return index
        try:
            return faiss.clone_index(snapshot.faiss)
        except RuntimeError:  # a type clone_index does not know: through bytes
            return faiss.deserialize_index(faiss.serialize_index(snapshot.faiss))


def build(
    embeddings: Tensor,
    labels: Tensor,
    items: Sequence[str] | None = None,
    *,
    factory: str = "auto",
    parameters: str | None = None,
    recall: float = calibrate.RECALL,
    embedder: QueryEmbedder | None = None,
    sources: Sequence[dict[str, Any]] = (),
    seed: int = 0,
) -> Index:
    """An index of ``embeddings`` (ids 0 … N−1 in row order), not yet saved.

    Args:
        embeddings: (N, D) embeddings (rows normalised to unit length).
        labels: (N,) integer labels.
        items: N image names (file paths or ``spec#split#index``), or None for ``""``.
        factory: ``"auto"`` (see :mod:`sampling_matters.index.factory`) or a faiss
            factory string such as ``"HNSW32"``.
        parameters: search-time parameters (``"nprobe=32"``); None: an IVF's ``nprobe`` is
            calibrated on the gallery (:func:`~sampling_matters.index.calibrate.calibrate`),
            an HNSW's ``efSearch`` is 64.
        recall: the recall@10 the calibration aims for (with ``parameters`` None).
        embedder: the run's model that made ``embeddings``: its run, checkpoint hash,
            config and image kind are recorded (and its dimension checked); None records none.
        sources: what the vectors came from, recorded in ``meta["sources"]``.
        seed: seeds the training sample of a trained index and the calibration's queries.

    Returns:
        The index; ``meta["calibration"]`` says what was measured (None: not calibrated).

    Raises:
        ValueError: bad shapes or types, a dimension unlike the embedder's, a factory
            or parameters faiss refuses, or a recall outside (0, 1].
    """
    vectors = _unit_rows(embeddings, None, "embeddings")
    labels, names = _check_labels_items(labels, items, len(vectors))
    if len(vectors) == 0:
        raise ValueError("embeddings is empty: an index needs at least one vector")
    dim = vectors.shape[1]
    chosen = auto_factory(len(vectors)) if factory == "auto" else factory
    if embedder is not None and embedder.dim != dim:
        raise ValueError(
            f"the embeddings have dimension {dim} but the run {embedder.run} embeds in "
            f"{embedder.dim}: were they made by another run?"
        )
    index = build_faiss(vectors, chosen, parameters or "", seed=seed)
    measured = None
    if parameters is None:
        measured = calibrate.calibrate(index, vectors, target=recall, seed=seed)
        parameters = calibrate.fixed(index) if measured is None else measured.parameters
        set_parameters(index, parameters)
    meta = _meta(dim, len(vectors), chosen, parameters, embedder, list(sources))
    meta["calibration"] = None if measured is None else measured.as_dict()
    ids = np.arange(len(vectors), dtype=np.int64)
    return Index(store.Parts(index, ids, labels.numpy(), names, meta, False))


def load(folder: Path | str, *, mmap: bool = True) -> Index:
    """The index saved in ``folder``, checked (see :func:`store.read_folder`).

    Args:
        folder: an index folder.
        mmap: memory-map the faiss index where faiss can.

    Raises:
        FileNotFoundError: no such folder.
        ValueError: not an index folder, or a file missing or disagreeing with meta.json.
    """
    folder = Path(folder)
    return Index(store.read_folder(folder, mmap=mmap), folder)


def _meta(
    dim: int,
    size: int,
    factory: str,
    parameters: str,
    embedder: QueryEmbedder | None,
    sources: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "format": store.FORMAT,
        "dim": dim,
        "size": size,
        "factory": factory,
        "parameters": parameters,
        "metric": "inner product of unit vectors; distance = sqrt(max(2 - 2 ip, 0))",
        "faiss_version": str(import_faiss().__version__),
        "run": None if embedder is None else str(embedder.run.absolute()),
        "checkpoint_sha256": None if embedder is None else embedder.checkpoint_sha256,
        "config": None if embedder is None else embedder.config_dict(),
        "kind": None if embedder is None else _known_kind(embedder),
        "sources": sources,
    }


def _known_kind(embedder: QueryEmbedder) -> str | None:
    """The embedder's image kind, or None when the run's data set cannot tell it."""
    try:
        return embedder.kind
    except ValueError:
        return None


def _search(index: Any, vectors: npt.NDArray[np.float32], k: int) -> tuple[Tensor, Tensor]:
    """Search with faiss, inner products turned into distances; rows ascending."""
    scores, ids = index.search(vectors, k)  # (Q, k) each, largest inner product first
    distances = np.sqrt(np.maximum(2.0 - 2.0 * scores, 0.0)).astype(np.float32)
    distances[ids < 0] = math.inf
    return torch.from_numpy(distances), torch.from_numpy(ids.astype(np.int64))


def _unit_rows(x: object, dim: int | None, name: str) -> npt.NDArray[np.float32]:
    """(N, D) C-contiguous float32 unit rows of the tensor ``x``, checked."""
    _checks.embeddings_2d(x, name, finite=True)
    assert isinstance(x, Tensor)
    if dim is not None and x.shape[1] != dim:
        raise ValueError(
            f"{name} must have shape (Q, {dim}) (the index's dimension), got {tuple(x.shape)}"
        )
    x = x.detach().to("cpu", torch.float32)
    norms = x.norm(dim=1, keepdim=True)  # (N, 1)
    if bool((norms == 0).any()):
        raise ValueError(f"{name} holds all-zero rows, which have no direction")
    return np.ascontiguousarray((x / norms).numpy())


def _check_labels_items(
    labels: object, items: Sequence[str] | None, n: int
) -> tuple[Tensor, list[str]]:
    _checks.labels_1d(labels, n)
    assert isinstance(labels, Tensor)
    names = [""] * n if items is None else list(items)
    if len(names) != n or not all(isinstance(item, str) for item in names):
        raise ValueError(f"items must be {n} strings, one per embedding, or None")
    return labels.detach().to("cpu", torch.int64), names
