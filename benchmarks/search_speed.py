"""Search speed of the gallery index: exact Flat, the ``auto`` choice and HNSW, side by side.

N unit vectors of dimension D shaped like a trained model's embeddings (clustered): C =
N / 100 class centres uniform on the sphere, each class 100 points
``normalize(centre + σ/√D · N(0, I))``, shuffled; 1,000 held-out queries are drawn the
same way (a class at random, fresh noise). σ is 1.45 by default (the construction of
``evaluation_speed.py``: classes as diffuse as Stanford Online Products' embeddings,
with no locality left for an approximate index to use), or, with ``--like FILE`` (an
embedding file of a trained model), the σ that gives the data that model's ratio of
within- to between-class distances. The committed tables are one of each::

    .venv/bin/python benchmarks/search_speed.py --like runs/demo/test_embeddings.pt
    .venv/bin/python benchmarks/search_speed.py --out benchmarks/results/search_speed-diffuse.md
 Each index is built by ``sampling_matters.index.build``
(the library's own path: normalisation, training on its sample, filling) and searched
through ``Index.search``:

- ``Flat``: exact search, the reference and the speed floor;
- ``auto``: what the auto rule picks for N (``IVF4096,Flat`` at a million vectors, its
  ``nprobe`` measured on the gallery when it is built: the fewest lists whose recall@10
  on 1,000 gallery vectors, leave-one-out, reaches 0.95 with 95% confidence; the build
  time includes that measurement);
- ``HNSW32`` with ``efSearch=64`` (the library's default for HNSW).

Per index: build time, bytes per vector (the size of ``index.faiss`` / N), queries per
second one query per call (``--single`` queries, after a warm-up) and batched
(``--batch`` queries per call, median of ``--repeats`` calls), and recall@10 against
the exact search (the share of each query's exact 10 nearest found, averaged). The
target, checked in the same run: ``auto`` recall@10 ≥ 0.95 at ≥ 10× Flat's queries per
second, one at a time and batched. The table goes to ``benchmarks/results/search_speed.md``.

A smaller run, to try it::

    .venv/bin/python benchmarks/search_speed.py --n 100000 --out /tmp/search_speed.md

faiss uses ``--threads`` OpenMP threads (default: all it finds, or ``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from report import RunClock, machine_facts, others_text
from sampling_matters import files, index
from sampling_matters.index.factory import EXACT_MAX, import_faiss
from sampling_matters.tables import markdown_table

N, DIM, PER_CLASS, SIGMA, SEED = 1_000_000, 128, 100, 1.45, 0
QUERIES, K = 1_000, 10
RECALL_TARGET, SPEED_TARGET = 0.95, 10.0
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "search_speed.md"
CHOICES = {"Flat": ("Flat", None), "auto": ("auto", None), "HNSW32": ("HNSW32", "efSearch=64")}


@dataclass(frozen=True)
class Row:
    """One index measured."""

    name: str
    factory: str
    parameters: str
    build_s: float
    bytes_per_vector: float
    single_qps: float
    batched_qps: float
    recall: float
    calibration: str  # what the build measured on the gallery, "" for nothing


# ---------------------------------------------------------------- the data


def make_data(
    n: int, dim: int, seed: int, sigma: float
) -> tuple[
    npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]
]:
    """(N, D) unit gallery vectors, (N,) labels, (Q, D) held-out queries and their labels."""
    rng = np.random.default_rng(seed)
    n_classes = max(2, n // PER_CLASS)
    centres = rng.standard_normal((n_classes, dim), dtype=np.float32)  # (C, D)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.permutation(np.arange(n, dtype=np.int64) % n_classes)  # (N,) 100 per class
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # in chunks: one temporary of 100,000 rows at a time
        part = labels[start : start + 100_000]
        x[start : start + len(part)] = _around(centres[part], rng, sigma)
    query_labels = rng.integers(0, n_classes, QUERIES)
    return x, labels, _around(centres[query_labels], rng, sigma), query_labels


def _around(
    centres: npt.NDArray[np.float32], rng: np.random.Generator, sigma: float
) -> npt.NDArray[np.float32]:
    """normalize(centre + σ/√D · N(0, I)), one row per centre."""
    dim = centres.shape[1]
    points = centres + (sigma / math.sqrt(dim)) * rng.standard_normal(
        centres.shape, dtype=np.float32
    )
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def describe_data(
    x: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    query_labels: npt.NDArray[np.int64],
    exact_ids: npt.NDArray[np.int64],
    seed: int,
) -> dict[str, float]:
    """Mean within- and between-class distances (10,000 random pairs each), P@1, top-10 purity."""
    within, between = pair_distances(x, labels, seed)
    return {
        "within": within,
        "between": between,
        "p_at_1": float((labels[exact_ids[:, 0]] == query_labels).mean()),
        "purity": float((labels[exact_ids] == query_labels[:, None]).mean()),
    }


def pair_distances(
    x: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], seed: int
) -> tuple[float, float]:
    """Mean distance of 10,000 random pairs of one class, and of 10,000 of two classes."""
    rng = np.random.default_rng(seed + 1)
    order = np.argsort(labels, kind="stable")  # rows grouped by class
    starts = np.searchsorted(labels[order], np.arange(labels.max() + 1))
    counts = np.bincount(labels)
    cls = rng.choice(np.flatnonzero(counts >= 2), 10_000)  # a class per pair
    first = rng.integers(0, counts[cls])
    second = (first + rng.integers(1, counts[cls])) % counts[cls]  # another member
    a, b = order[starts[cls] + first], order[starts[cls] + second]
    same = np.linalg.norm(x[a] - x[b], axis=1)
    i, j = rng.integers(0, len(x), 10_000), rng.integers(0, len(x), 10_000)
    other = labels[i] != labels[j]
    between = np.linalg.norm(x[i[other]] - x[j[other]], axis=1)
    return float(same.mean()), float(between.mean())


def sigma_like(path: Path, seed: int) -> tuple[float, dict[str, float]]:
    """σ whose data has the within / between distance ratio of a trained model's embeddings.

    For x = normalize(c + σ/√D · N(0, I)) with centres uniform on the sphere, two points
    of a class lie σ·√(2 / (1 + σ²)) apart and two of different classes about √2, so the
    ratio r of the means gives σ = r / √(1 − r²).
    """
    stored = files.load_embeddings(path)
    x = torch.nn.functional.normalize(stored.embeddings.float(), dim=1).numpy()
    within, between = pair_distances(x, stored.labels.numpy(), seed)
    ratio = within / between
    return ratio / math.sqrt(1 - ratio**2), {"within": within, "between": between, "n": len(x)}


# ---------------------------------------------------------------- the measurements


def measure(
    name: str,
    x: torch.Tensor,
    labels: torch.Tensor,
    queries: torch.Tensor,
    exact: npt.NDArray[np.int64] | None,
    args: argparse.Namespace,
) -> tuple[Row, npt.NDArray[np.int64]]:
    """Build one index, time its searches; the row and its (Q, K) ids."""
    factory, parameters = CHOICES[name]
    start = time.perf_counter()
    built = index.build(x, labels, factory=factory, parameters=parameters, seed=args.seed)
    build_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as scratch:
        built.save(Path(scratch) / "index")
        size = (Path(scratch) / "index" / "index.faiss").stat().st_size
    single = time_single(built, queries, args.single)
    batched, ids = time_batched(built, queries[: args.batch], args.repeats)
    found = ids.numpy()
    recall = 1.0 if exact is None else recall_at(found, exact[: len(found)])
    row = Row(
        name,
        built.meta["factory"],
        built.meta["parameters"],
        build_s,
        size / len(built),
        single,
        batched,
        recall,
        calibration_text(built.meta.get("calibration")),
    )
    print(row, flush=True)
    return row, found


def calibration_text(measured: dict[str, object] | None) -> str:
    """The build's measurement on the gallery, for the table ("" when none was made)."""
    if not measured:
        return ""
    return f"{measured['recall']:.4f} (95% bound {measured['low']:.4f})"


def time_single(built: index.Index, queries: torch.Tensor, count: int) -> float:
    """Queries per second, one query per ``search`` call (after 10 warm-up calls)."""
    for i in range(10):
        built.search(queries[i : i + 1], K)
    start = time.perf_counter()
    for i in range(count):
        built.search(queries[i % len(queries) : i % len(queries) + 1], K)
    return count / (time.perf_counter() - start)


def time_batched(
    built: index.Index, queries: torch.Tensor, repeats: int
) -> tuple[float, torch.Tensor]:
    """Queries per second in calls of all ``queries`` (median of ``repeats``); the ids found."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _, ids = built.search(queries, K)
        times.append(time.perf_counter() - start)
    return len(queries) / statistics.median(times), ids


def recall_at(found: npt.NDArray[np.int64], exact: npt.NDArray[np.int64]) -> float:
    """Mean over queries of |found ∩ exact| / K."""
    hits = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, exact, strict=True)]
    return sum(hits) / (K * len(exact))


# ---------------------------------------------------------------- the report


def verdict(rows: dict[str, Row]) -> tuple[str, list[list[str]]]:
    """The summary line and the target table, computed from the rows."""
    auto, flat = rows["auto"], rows["Flat"]
    checks = [
        (
            "auto recall@10",
            f"{auto.recall:.4f}",
            f"≥ {RECALL_TARGET}",
            auto.recall >= RECALL_TARGET,
        ),
        (
            "auto / Flat queries per second, one per call",
            f"{auto.single_qps / flat.single_qps:.1f}×",
            f"≥ {SPEED_TARGET:g}×",
            auto.single_qps >= SPEED_TARGET * flat.single_qps,
        ),
        (
            f"auto / Flat queries per second, {QUERIES:,} per call",
            f"{auto.batched_qps / flat.batched_qps:.1f}×",
            f"≥ {SPEED_TARGET:g}×",
            auto.batched_qps >= SPEED_TARGET * flat.batched_qps,
        ),
    ]
    exact = auto.factory == "Flat"  # the speed checks do not apply
    table = [
        [what, value, target, "n/a" if exact and i else "pass" if ok else "fail"]
        for i, (what, value, target, ok) in enumerate(checks)
    ]
    if exact:
        return (
            f"the target does not apply at this size: auto picks exact search (Flat) up to "
            f"{EXACT_MAX:,} vectors",
            table,
        )
    failed = [what for what, _, _, ok in checks if not ok]
    return (
        "the target is met" if not failed else f"the target is missed ({'; '.join(failed)})"
    ), table


def report(
    rows: dict[str, Row], data: dict[str, float], args: argparse.Namespace, info: dict[str, object]
) -> str:
    faiss = import_faiss()
    summary, checks = verdict(rows)
    flat = rows["Flat"]
    lines = [
        "# Search speed",
        "",
        "Written by `benchmarks/search_speed.py`. Each index is built by "
        "`sampling_matters.index.build` and searched through `Index.search` (k = 10), in one "
        "process, one index after the other.",
        "",
        f"- date: {info['date']}",
        f"- CPU: {info['cpu']}; faiss (OpenMP) threads: {faiss.omp_get_max_threads()}",
        f"- load average (1 min) before the run: {info['load']}; {others_text(info['others'])}",
        f"- faiss {faiss.__version__}, torch {torch.__version__}",
        f"- run time: {info['elapsed']:.0f} s",
        f"- data: {args.n:,} unit vectors, D = {args.dim}, {max(2, args.n // PER_CLASS):,} "
        f"classes of {PER_CLASS} (class centres uniform on the sphere; "
        "x = normalize(centre + σ/√D · N(0, I)), "
        f"σ = {args.sigma:.3f}, seed {args.seed}, shuffled), {_sigma_reason(args)}. "
        f"Measured: mean distance within a class **{data['within']:.3f}**, between classes "
        f"**{data['between']:.3f}**; of {QUERIES:,} held-out queries drawn the same way, "
        f"precision@1 (the exact nearest shares the query's class) **{data['p_at_1']:.3f}**, and "
        f"**{data['purity']:.1%}** of the exact 10 nearest share it.",
        f"- queries per second: one query per call, {args.single:,} calls after 10 warm-up calls; "
        f"batched, {args.batch:,} queries per call, median of {args.repeats} calls. Recall@10: "
        "the share of each query's exact 10 nearest (Flat's) that the index returns, averaged "
        f"over the {args.batch:,} queries. Bytes per vector: the size of `index.faiss` / N. "
        "Recall@10 measured at build: what the index's calibration of `nprobe` measured on "
        "1,000 of the gallery's own vectors, each leaving itself out (its mean and 95% lower "
        "bound), beside the recall on the held-out queries.",
        "",
        f"Summary: {summary}.",
        "",
        "## Indexes",
        "",
    ]
    header = (
        "index",
        "faiss factory",
        "search parameters",
        "build (s)",
        "bytes per vector",
        "queries/s, one per call",
        f"queries/s, {args.batch:,} per call",
        "× Flat (one / batched)",
        "recall@10",
        "recall@10 measured at build (gallery)",
    )
    table = [
        [
            row.name,
            f"`{row.factory}`",
            f"`{row.parameters}`" if row.parameters else "—",
            f"{row.build_s:.1f}",
            f"{row.bytes_per_vector:.0f}",
            f"{row.single_qps:,.0f}",
            f"{row.batched_qps:,.0f}",
            f"{row.single_qps / flat.single_qps:.1f}× / {row.batched_qps / flat.batched_qps:.1f}×",
            f"{row.recall:.4f}",
            row.calibration or "—",
        ]
        for row in rows.values()
    ]
    lines += markdown_table(header, table)
    lines += [
        "",
        "## Target",
        "",
        f"`auto` recall@10 ≥ {RECALL_TARGET} at ≥ {SPEED_TARGET:g}× Flat's "
        "queries per second, one query per call and batched, in this run.",
        "",
    ]
    lines += markdown_table(("check", "measured", "target", "pass"), checks)
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=N, help=f"gallery vectors ({N:,})")
    parser.add_argument("--dim", type=int, default=DIM, help=f"dimension ({DIM})")
    parser.add_argument("--single", type=int, default=200, help="queries timed one per call (200)")
    parser.add_argument(
        "--batch", type=int, default=QUERIES, help=f"queries per batched call ({QUERIES:,})"
    )
    parser.add_argument("--repeats", type=int, default=3, help="batched calls timed (3)")
    parser.add_argument("--threads", type=int, help="faiss threads (default: faiss's own)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--like",
        type=Path,
        help="an embedding file of a trained model (written by `sampling-matters embed`): "
        f"σ gives the data its within / between-class distance ratio (default: σ = {SIGMA})",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the markdown table to write")
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= QUERIES:
        parser.error(f"--batch must be in [1, {QUERIES}]")
    if args.n < 2 * PER_CLASS:
        parser.error(f"--n must be at least {2 * PER_CLASS}")
    return args


def _sigma_reason(args: argparse.Namespace) -> str:
    """Why σ has its value, in words, with the numbers it came from."""
    stats = args.model_stats
    if stats is None:
        return (
            "the construction of `evaluation_speed.py`: classes as diffuse as a model's "
            "embeddings of Stanford Online Products' test set"
        )
    return (
        f"chosen so that the mean distance within a class over that between classes is "
        f"{stats['within'] / stats['between']:.3f}, as in the trained model's embeddings of "
        f"`{args.like}` ({stats['n']:,} vectors: {stats['within']:.3f} within, "
        f"{stats['between']:.3f} between)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    faiss = import_faiss()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    info: dict[str, object] = dict(machine_facts(faiss.omp_get_max_threads()))
    clock = RunClock()
    args.sigma, args.model_stats = SIGMA, None
    if args.like is not None:
        args.sigma, args.model_stats = sigma_like(args.like, args.seed)
    x, labels, queries, query_labels = make_data(args.n, args.dim, args.seed, args.sigma)
    gallery, gallery_labels, query_x = (
        torch.from_numpy(x),
        torch.from_numpy(labels),
        torch.from_numpy(queries),
    )
    rows: dict[str, Row] = {}
    rows["Flat"], exact = measure("Flat", gallery, gallery_labels, query_x, None, args)
    data = describe_data(x, labels, query_labels[: len(exact)], exact, args.seed)
    for name in ("auto", "HNSW32"):
        rows[name], _ = measure(name, gallery, gallery_labels, query_x, exact, args)
    clock.stop(info)
    text = report(rows, data, args, info)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
