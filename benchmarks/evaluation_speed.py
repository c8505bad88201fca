"""Speed, memory and values of evaluation at Stanford Online Products' test size.

The data: 60,502 L2-normalised embeddings of dimension 128 in 11,316 classes of 2 to 12
images (SOP's test split: sizes 2-12, mean 5.35), built to be realistically hard:
unit class centres plus Gaussian noise, so that precision@1 is about 0.7. It is
generated once, seeded, and shared with the measurements through ``.npy`` files.

Measurements, each call in a fresh Python process (so its peak memory is its own):

- the floor: one exact faiss flat search of the set against itself with the k that
  MAP@R needs (``IndexFlatL2``, ``add``, ``search(x, k + 1)``, k = largest class − 1);
- ours: ``sampling_matters.evaluation.evaluate(x, labels, with_nmi=False)`` with
  ``backend="faiss"`` (every kNN metric: Recall@1/2/4/8, MAP@R, R-precision) and,
  for information, ``backend="torch"``;
- the kNN anchor: pytorch-metric-learning's ``AccuracyCalculator`` with
  precision_at_1, r_precision and mean_average_precision_at_r, ``k="max_bin_count"``;
- NMI: ours, ``clustering_scores(x, labels, backend="faiss")``, against
  ``AccuracyCalculator(include=("NMI",))``.

Each process loads the data, imports what its measurement needs, warms the call up on
the first 2,000 embeddings, then times one call on the full set with
``time.perf_counter`` and reads its peak resident memory (``ru_maxrss``) before and
after. The measurements are run in turn, round after round (``--repeats`` rounds,
default 3), so they share the background load; the table gives the median time. The
results go to ``benchmarks/results/evaluation_speed.md``.

Run it (about 6 minutes on two cores)::

    .venv/bin/python benchmarks/evaluation_speed.py              # full run
    .venv/bin/python benchmarks/evaluation_speed.py --skip-pml   # without the anchors
    .venv/bin/python benchmarks/evaluation_speed.py --repeats 1 --out /tmp/eval.md

faiss is required; pytorch-metric-learning is optional (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from report import (
    busy_cpu_seconds,
    cpu_model,
    others_share,
    others_text,
    own_cpu_seconds,
)
from sampling_matters.tables import markdown_table

N_ITEMS, N_CLASSES, DIM = 60_502, 11_316, 128  # Stanford Online Products' test split
MIN_SIZE, MAX_SIZE = 2, 12  # its class sizes
SIGMA = 1.45  # noise scale: precision@1 about 0.7
SEED = 0
P1_RANGE = (0.6, 0.8)  # the data must be this hard
WARMUP_ITEMS = 2_000
FLOOR_TARGET = 1.3  # ours kNN / floor
ANCHOR_TARGET = 1.0  # ours / PML, kNN (strictly below) and NMI (at most)
MEMORY_TARGET_MB = 2_048.0
VALUE_TOLERANCE = 1e-4
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "evaluation_speed.md"

Values = dict[str, float]


@dataclass(frozen=True)
class Spec:
    """One measurement: its label in the table and what it calls."""

    label: str
    call: str
    pml: bool = False


SPECS: dict[str, Spec] = {
    "floor": Spec("floor: faiss flat search", "`IndexFlatL2(128)`, `add`, `search(x, k + 1)`"),
    "ours-knn": Spec(
        "ours, kNN metrics (faiss)",
        '`evaluate(x, labels, with_nmi=False, backend="faiss", progress=False)`',
    ),
    "ours-knn-torch": Spec(
        "ours, kNN metrics (torch)",
        '`evaluate(x, labels, with_nmi=False, backend="torch", progress=False)`',
    ),
    "pml-knn": Spec(
        "anchor: PML kNN metrics",
        '`AccuracyCalculator(include=(P@1, R-prec., MAP@R), k="max_bin_count")`',
        pml=True,
    ),
    "ours-nmi": Spec(
        "ours, NMI (faiss k-means)", '`clustering_scores(x, labels, backend="faiss")`'
    ),
    "pml-nmi": Spec("anchor: PML NMI", '`AccuracyCalculator(include=("NMI",))`', pml=True),
}


# ---------------------------------------------------------------- the data


def class_sizes(rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """(N_CLASSES,) sizes in [MIN_SIZE, MAX_SIZE] summing to exactly N_ITEMS.

    Drawn from a truncated geometric law p(s) ∝ exp(−s/τ) whose mean is N_ITEMS /
    N_CLASSES (τ by bisection), then the few classes needed to hit the total exactly
    are grown or shrunk by one.
    """
    support = np.arange(MIN_SIZE, MAX_SIZE + 1)
    low, high = 1e-2, 1e2
    for _ in range(100):
        tau = (low + high) / 2
        p = np.exp(-support / tau)
        p /= p.sum()
        low, high = (tau, high) if (p * support).sum() < N_ITEMS / N_CLASSES else (low, tau)
    sizes = rng.choice(support, size=N_CLASSES, p=p)  # (C,)
    missing = N_ITEMS - int(sizes.sum())
    movable = np.flatnonzero(sizes < MAX_SIZE if missing > 0 else sizes > MIN_SIZE)
    sizes[rng.choice(movable, abs(missing), replace=False)] += np.sign(missing)
    return sizes.astype(np.int64)


def make_data(seed: int = SEED) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """(N, D) unit embeddings ``normalize(centre + σ/√D · N(0, I))`` and (N,) labels, shuffled."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(N_CLASSES), class_sizes(rng))  # (N,)
    centres = rng.standard_normal((N_CLASSES, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)  # (C, D)
    x = centres[labels] + SIGMA / math.sqrt(DIM) * rng.standard_normal((N_ITEMS, DIM))  # (N, D)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    order = rng.permutation(N_ITEMS)
    return np.ascontiguousarray(x[order], dtype=np.float32), labels[order]


# ---------------------------------------------------------------- the worker


def _floor(x: Any, labels: Any) -> Callable[[], Any]:
    import faiss

    x_np = x.numpy()
    k = int(np.bincount(labels.numpy()).max()) - 1  # what MAP@R needs

    def call() -> Any:
        index = faiss.IndexFlatL2(x_np.shape[1])
        index.add(x_np)
        return index.search(x_np, k + 1)[1]  # (N, k + 1) int64 numpy

    return call


def _ours_knn(backend: Literal["faiss", "torch"]) -> Callable[[Any, Any], Callable[[], Any]]:
    def build(x: Any, labels: Any) -> Callable[[], Any]:
        from sampling_matters.evaluation import evaluate

        return lambda: evaluate(x, labels, with_nmi=False, backend=backend, progress=False)

    return build


def _pml_knn(x: Any, labels: Any) -> Callable[[], Any]:
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    include = ("precision_at_1", "r_precision", "mean_average_precision_at_r")
    calculator = AccuracyCalculator(include=include, k="max_bin_count")
    return lambda: calculator.get_accuracy(x, labels)


def _ours_nmi(x: Any, labels: Any) -> Callable[[], Any]:
    from sampling_matters.evaluation import clustering_scores

    return lambda: clustering_scores(x, labels, backend="faiss")


def _pml_nmi(x: Any, labels: Any) -> Callable[[], Any]:
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    calculator = AccuracyCalculator(include=("NMI",))
    return lambda: calculator.get_accuracy(x, labels)


BUILDERS: dict[str, Callable[[Any, Any], Callable[[], Any]]] = {
    "floor": _floor,
    "ours-knn": _ours_knn("faiss"),
    "ours-knn-torch": _ours_knn("torch"),
    "pml-knn": _pml_knn,
    "ours-nmi": _ours_nmi,
    "pml-nmi": _pml_nmi,
}
"""Each builds, from (N, D) embeddings and (N,) labels, the call to time."""


def summarise(name: str, result: Any, labels: npt.NDArray[np.int64]) -> Values:
    """The values of a timed call's result (untimed): the floor's precision@1, else its dict."""
    if name != "floor":
        values = {key: float(value) for key, value in result.items()}
        return {key: value for key, value in values.items() if not math.isnan(value)}
    own = np.arange(len(result))
    nearest = np.where(result[:, 0] == own, result[:, 1], result[:, 0])  # (N,) self excluded
    return {"precision_at_1": float((labels[nearest] == labels).mean())}


def worker(name: str, data: Path) -> dict[str, Any]:
    """Time one call of measurement ``name`` on the data in ``data``; its peak memory."""
    import faiss
    import torch

    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(threads or 1)
    x = torch.from_numpy(np.load(data / "x.npy"))  # (N, D)
    labels = torch.from_numpy(np.load(data / "labels.npy"))  # (N,)
    BUILDERS[name](x[:WARMUP_ITEMS], labels[:WARMUP_ITEMS])()  # imports, thread pools, caches
    call = BUILDERS[name](x, labels)
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    values = summarise(name, result, labels.numpy())
    env = {
        "torch": torch.__version__,
        "faiss": faiss.__version__,
        "torch_threads": torch.get_num_threads(),
        "faiss_threads": faiss.omp_get_max_threads(),
    }
    if SPECS[name].pml:
        import pytorch_metric_learning

        env["pml"] = pytorch_metric_learning.__version__
    return {
        "seconds": seconds,
        "baseline_mb": baseline_kib / 1024,
        "peak_mb": peak_kib / 1024,
        "values": values,
        "env": env,
    }


# ---------------------------------------------------------------- the parent


@dataclass
class Result:
    """Every run of one measurement."""

    name: str
    seconds: list[float]
    baseline_mb: list[float]
    peak_mb: list[float]
    values: list[Values]
    env: dict[str, Any]

    @property
    def median(self) -> float:
        """Median wall time in seconds."""
        return statistics.median(self.seconds)

    @property
    def peak(self) -> float:
        """The largest peak RSS of any run, MB."""
        return max(self.peak_mb)

    @property
    def above(self) -> float:
        """The largest rise of peak RSS during the timed call, MB."""
        return max(p - b for p, b in zip(self.peak_mb, self.baseline_mb, strict=True))

    def value(self, key: str) -> float:
        """``key``'s value in the first run."""
        return self.values[0][key]

    def varies(self, key: str) -> bool:
        """Whether ``key``'s value differed between runs."""
        return len({v[key] for v in self.values}) > 1


def run_worker(name: str, data: Path) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--data", str(data)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {name} failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(names: Sequence[str], repeats: int, data: Path) -> dict[str, Result]:
    results: dict[str, Result] = {}
    for round_ in range(repeats):
        for name in names:
            out = run_worker(name, data)
            if name not in results:
                results[name] = Result(name, [], [], [], [], out["env"])
            r = results[name]
            r.seconds.append(out["seconds"])
            r.baseline_mb.append(out["baseline_mb"])
            r.peak_mb.append(out["peak_mb"])
            r.values.append(out["values"])
            print(
                f"round {round_ + 1}/{repeats}  {name:15s} {out['seconds']:7.2f} s  "
                f"peak {out['peak_mb']:6.0f} MB (+{out['peak_mb'] - out['baseline_mb']:.0f})",
                file=sys.stderr,
                flush=True,
            )
    return results


def _s(seconds: float) -> str:
    return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"


def _ratio(x: float) -> str:
    return f"{x:.2f}×"


def _pass(failures: Sequence[str]) -> str:
    return "pass" if not failures else "**FAIL**: " + "; ".join(failures)


def _checks(name: str, r: dict[str, Result]) -> tuple[str, list[str]]:
    """The target of row ``name`` and the reasons it fails (none: it passes)."""
    memory = r[name].peak < MEMORY_TARGET_MB
    failures = [] if memory else [f"peak {r[name].peak:.0f} MB"]
    if name == "ours-knn":
        target = f"≤ {FLOOR_TARGET:g}× floor, < {ANCHOR_TARGET:g}× anchor, < 2 GB"
        to_floor = r[name].median / r["floor"].median
        if to_floor > FLOOR_TARGET:
            failures.append(f"{_ratio(to_floor)} floor")
        if "pml-knn" in r and r[name].median >= ANCHOR_TARGET * r["pml-knn"].median:
            failures.append(f"{_ratio(r[name].median / r['pml-knn'].median)} anchor")
        return target, failures
    if name == "ours-nmi":
        if "pml-nmi" in r and r[name].median > ANCHOR_TARGET * r["pml-nmi"].median:
            failures.append(f"{_ratio(r[name].median / r['pml-nmi'].median)} anchor")
        return f"≤ {ANCHOR_TARGET:g}× anchor, < 2 GB", failures
    return "—", []


def speedtable(r: dict[str, Result]) -> tuple[list[str], bool]:
    header = [
        "measurement",
        "call",
        "seconds (median)",
        "runs (s)",
        "ratio to floor",
        "ratio to anchor",
        "peak RSS MB (+ above baseline)",
        "target",
        "pass",
    ]
    anchors = {"ours-knn": "pml-knn", "ours-knn-torch": "pml-knn", "floor": "pml-knn"}
    anchors |= {"pml-knn": "pml-knn", "ours-nmi": "pml-nmi", "pml-nmi": "pml-nmi"}
    lines, all_ok = [], True
    for name, result in r.items():
        target, failures = _checks(name, r)
        all_ok &= not failures
        knn = name in ("floor", "ours-knn", "ours-knn-torch", "pml-knn")
        anchor = anchors[name]
        lines.append(
            [
                SPECS[name].label,
                SPECS[name].call,
                _s(result.median),
                ", ".join(_s(s) for s in result.seconds),
                _ratio(result.median / r["floor"].median) if knn else "—",
                _ratio(result.median / r[anchor].median) if anchor in r else "—",
                f"{result.peak:.0f} (+{result.above:.0f})",
                target,
                _pass(failures) if target != "—" else "—",
            ]
        )
    return markdown_table(header, lines), all_ok


VALUE_ROWS = (  # (label, ours key, PML key, ours measurement, PML measurement, compared)
    ("Recall@1 = precision@1", "recall@1", "precision_at_1", "ours-knn", "pml-knn", True),
    ("R-precision", "r_precision", "r_precision", "ours-knn", "pml-knn", True),
    ("MAP@R", "map@r", "mean_average_precision_at_r", "ours-knn", "pml-knn", True),
    ("NMI", "nmi", "NMI", "ours-nmi", "pml-nmi", False),
)


def valuestable(r: dict[str, Result]) -> tuple[list[str], bool]:
    header = ["metric", "ours (faiss)", "ours (torch)", "PML", "difference", "target", "pass"]
    lines, all_ok = [], True
    for label, ours_key, pml_key, ours, pml_name, compared in VALUE_ROWS:
        mine = r[ours].value(ours_key)
        torch_value = r["ours-knn-torch"].value(ours_key) if ours == "ours-knn" else None
        theirs = r[pml_name].value(pml_key) if pml_name in r else None
        cells = [label, _v(mine, r[ours].varies(ours_key)), _v(torch_value), _v(theirs)]
        if theirs is None:
            lines.append([*cells, "—", "—", "—"])
            continue
        gap = abs(mine - theirs)
        ok = gap <= VALUE_TOLERANCE
        all_ok &= ok or not compared
        target = f"≤ {VALUE_TOLERANCE:g}" if compared else "— (different k-means runs)"
        verdict = ("pass" if ok else "**FAIL**") if compared else "—"
        lines.append([*cells, f"{gap:.2e}", target, verdict])
    for k in (2, 4, 8):
        key = f"recall@{k}"
        torch_value = r["ours-knn-torch"].value(key) if "ours-knn-torch" in r else None
        lines.append([f"Recall@{k}", _v(r["ours-knn"].value(key)), _v(torch_value)] + ["—"] * 4)
    return markdown_table(header, lines), all_ok


def _v(value: float | None, varies: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:.6f}" + (" (varies between runs)" if varies else "")


def header(info: dict[str, Any], r: dict[str, Result]) -> list[str]:
    env = r["floor"].env
    pml_env = r["pml-knn"].env.get("pml", "?") if "pml-knn" in r else info["pml"]
    p1 = r["floor"].value("precision_at_1")
    in_range = P1_RANGE[0] <= p1 <= P1_RANGE[1]
    sizes = info["sizes"]
    return [
        "# Evaluation speed",
        "",
        "Written by `benchmarks/evaluation_speed.py`. Each call runs in a fresh process that "
        f"loads the data, warms the call up on the first {WARMUP_ITEMS:,} embeddings, then "
        "times one call on the full set; the measurements are run in turn, round after round "
        f"({info['repeats']} round{'s' if info['repeats'] > 1 else ''}). Seconds are the "
        "median over the rounds; peak RSS is the "
        "largest `ru_maxrss` of the process over the rounds, with in brackets the largest "
        "rise during the timed call (the baseline being the process after imports, data "
        "and warm-up).",
        "",
        f"- date: {info['date']}",
        f"- CPU: {info['cpu']}; torch threads: {env['torch_threads']}, "
        f"faiss (OpenMP) threads: {env['faiss_threads']}",
        f"- load average (1 min) before the run: {info['load']}; {others_text(info['others'])}",
        f"- torch {env['torch']}, faiss {env['faiss']}, pytorch-metric-learning {pml_env}, "
        f"Python {platform.python_version()}",
        f"- run time: {info['elapsed']:.0f} s",
        f"- data (Stanford Online Products' test size): {N_ITEMS:,} unit embeddings, "
        f"D = {DIM}, {N_CLASSES:,} classes of {sizes.min()}–{sizes.max()} "
        f"(mean {sizes.mean():.2f}), shuffled; x = normalize(centre + σ/√D · N(0, I)), "
        f"unit random centres, σ = {SIGMA}, seed {SEED}. Measured precision@1 (from the "
        f"floor's search): **{p1:.4f}** "
        + (
            f"(within the wanted {P1_RANGE[0]}–{P1_RANGE[1]})."
            if in_range
            else f"(**outside the wanted {P1_RANGE[0]}–{P1_RANGE[1]}**)."
        ),
        f"- k for MAP@R: largest class − 1 = {int(sizes.max()) - 1}. The full {N_ITEMS:,}² "
        f"float32 distance matrix would need {N_ITEMS**2 * 4 / 1e9:.1f} GB.",
        "",
    ]


def notes(r: dict[str, Result], info: dict[str, Any]) -> list[str]:
    """The notes under the tables: every number in them computed from this run.

    How each call spends its time (our chunks, PML's label counting, the two k-means)
    is explained, without numbers, in ``docs/evaluation.md``.
    """
    classes = len(info["sizes"])
    lines = [
        "## Notes",
        "",
        "- Ratios are slow-downs: the row's median over the floor's, or over its anchor's "
        "(PML kNN for the kNN rows, PML NMI for the NMI rows); lower is better.",
        "- What each call does beyond the floor's search, and why PML's kNN row needs more "
        'time and memory: `docs/evaluation.md`, section "Speed against '
        'pytorch-metric-learning".',
        *_counting_note(r, info),
        f"- NMI: both run faiss k-means with k = {classes:,} (one centroid per class) on every "
        "point; the two NMI values differ because the starting centroids do.",
        "- The torch backend row is for information (no target): chunked matrix products "
        "and `topk` instead of faiss.",
    ]
    knn_varies = [key for key in r["ours-knn"].values[0] if r["ours-knn"].varies(key)]
    if knn_varies:
        lines.append(f"- Our kNN values varied between runs: {', '.join(knn_varies)}.")
    return [*lines, ""]


def _counting_note(r: dict[str, Result], info: dict[str, Any]) -> list[str]:
    """PML's (classes, items) label-count table, sized from this run's data (none without PML)."""
    if "pml-knn" not in r:
        return []
    classes, items = len(info["sizes"]), int(info["sizes"].sum())
    as_bool, as_int64 = classes * items / 2**20, classes * items * 8 / 2**20
    return [
        f"- PML's label counting compares each of the {classes:,} classes with all {items:,} "
        f"labels: a ({classes:,}, {items:,}) table, {as_bool:.0f} MB as bool and "
        f"{as_int64:.0f} MB once summed as int64; its row's peak RSS rose by "
        f"{r['pml-knn'].above:.0f} MB during the call."
    ]


def render(r: dict[str, Result], info: dict[str, Any]) -> str:
    speed, speed_ok = speedtable(r)
    values, values_ok = valuestable(r)
    verdict = "all targets pass" if speed_ok and values_ok else "**some targets fail**"
    parts = [*header(info, r), f"Summary: {verdict}.", "", "## Time and memory", "", *speed, ""]
    parts += ["## Values, ours against PML", "", *values, ""]
    return "\n".join(parts + notes(r, info))


# ---------------------------------------------------------------- the command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"markdown table to write ({DEFAULT_OUT})"
    )
    parser.add_argument(
        "--skip-pml", action="store_true", help="leave out pytorch-metric-learning's anchors"
    )
    parser.add_argument("--repeats", type=int, default=3, help="rounds of measurements (3)")
    parser.add_argument("--worker", choices=tuple(BUILDERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.worker is not None and args.data is None:
        parser.error("--worker needs --data")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.data)))
        return
    if importlib.util.find_spec("faiss") is None:
        sys.exit("faiss is needed: pip install faiss-cpu")
    has_pml = importlib.util.find_spec("pytorch_metric_learning") is not None
    with_pml = has_pml and not args.skip_pml
    if not has_pml and not args.skip_pml:
        print("pytorch-metric-learning is not installed: skipping the anchors.", file=sys.stderr)
    names = [name for name, spec in SPECS.items() if with_pml or not spec.pml]
    info: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_model(),
        "load": f"{os.getloadavg()[0]:.2f}",
        "repeats": args.repeats,
        "pml": "skipped" if has_pml else "not installed",
    }
    with tempfile.TemporaryDirectory(prefix="evaluation_speed_") as tmp:
        data = Path(tmp)
        x, labels = make_data()
        np.save(data / "x.npy", x)
        np.save(data / "labels.npy", labels)
        info["sizes"] = np.bincount(labels)
        busy, own, start = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
        results = run(names, args.repeats, data)
    info["elapsed"] = time.perf_counter() - start
    info["others"] = others_share(busy, own, info["elapsed"])
    text = render(results, info)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
