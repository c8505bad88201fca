"""Speed and peak memory of distance weighted sampling with a cross-batch memory.

One batch of N L2-normalised random embeddings with P×K labels (K = 4) and a memory of
M more, built as M/N earlier batches of the same kind; every batch draws its P classes
from one set of 4·P classes, so the memory holds each batch class about (M/N)·K/4
times, as a real memory would. On these tensors, in one process:

- the floor, ``torch.cdist(batch, pool)`` with ``pool = torch.cat([batch, memory])``: the
  anchors × pool distances any sampling must compute;
- ``sampling_matters.sampling.distance_weighted(batch, labels, references=memory,
  reference_labels=...)``, density "sphere" (the default) and "empirical";
- pytorch-metric-learning 2.9.0's ``CrossBatchMemory(MarginLoss(...), miner=
  DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4))``: the miner call its
  ``forward`` makes, on the tensors it makes it with, and one whole ``forward``;
- the peak resident memory of one call of ours (and of the floor), each in a fresh
  subprocess;
- batch 4,096 alone (no references): ours against ``torch.cdist(x, x)`` today, beside
  the same ratio in the committed ``benchmarks/results/sampling_speed.md``.

Timings are medians of interleaved rounds (``sampling_speed.time_calls``). The table goes
to ``benchmarks/results/memory_speed.md``.

Run it::

    .venv/bin/python benchmarks/memory_speed.py            # full run, about 1-3 minutes
    .venv/bin/python benchmarks/memory_speed.py --quick    # N 64 + M 512, d 32; prints only

Torch uses ``OMP_NUM_THREADS`` threads when it is set, else every CPU this process may
run on. pytorch-metric-learning is optional (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from report import RunClock, fact_lines, machine_facts
from sampling_matters.sampling import MAX_REFERENCE_POSITIVES, Triplets, distance_weighted
from sampling_matters.tables import markdown_table
from sampling_speed import (
    BETA,
    CUTOFF,
    DIMS,
    FLOOR_TARGET,
    MARGIN,
    NONZERO_LOSS_CUTOFF,
    K,
    Timing,
    fmt_ms,
    fmt_pass,
    fmt_ratio,
    make_batch,
    measure_sampling,
    time_calls,
    versions,
)

try:
    import pytorch_metric_learning as pml
    from pytorch_metric_learning.losses import CrossBatchMemory as PMLCrossBatchMemory
    from pytorch_metric_learning.losses import MarginLoss as PMLMarginLoss
    from pytorch_metric_learning.miners import DistanceWeightedMiner
except ImportError:  # the anchor is optional
    pml = None

CLASS_SET = 4  # the classes are drawn from CLASS_SET · P of them
SPEEDUP_TARGET = 50.0  # PML's miner / ours
PML_REPS = 3  # PML's miner: at most this many timed calls ...
PML_BUDGET_S = 180.0  # ... and only one when PML_REPS calls would take longer than this
CAP_S = 120.0  # a PML call running longer is stopped and reported as "> CAP_S"
PEAK_NAMES = ("cdist", "sphere", "empirical")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "memory_speed.md"
COMMITTED = Path(__file__).resolve().parent / "results" / "sampling_speed.md"


@dataclass(frozen=True)
class Sizes:
    """Batch n, memory m (a multiple of n), dimension d; ``alone``: the batch size without."""

    n: int
    m: int
    d: int
    alone: int


FULL = Sizes(n=1024, m=16384, d=128, alone=4096)  # the sizes: targets are judged here
QUICK = Sizes(n=64, m=512, d=32, alone=256)


@dataclass(frozen=True)
class Data:
    """A batch, a memory, and the pool ``cat([batch, memory])`` the triplets index."""

    batch: Tensor  # (N, D)
    labels: Tensor  # (N,)
    memory: Tensor  # (M, D)
    memory_labels: Tensor  # (M,)
    pool: Tensor  # (N + M, D)
    pool_labels: Tensor  # (N + M,)


def make_data(sizes: Sizes, seed: int = 0) -> Data:
    """The batch and m/n earlier batches as the memory, each of P classes out of 4·P."""
    if sizes.m % sizes.n or sizes.n % K:
        raise ValueError(f"need m a multiple of n and n a multiple of {K}, got {sizes}")
    g = torch.Generator().manual_seed(seed)
    classes = sizes.n // K
    xs, labels = [], []
    for i in range(1 + sizes.m // sizes.n):
        x, local = make_batch(sizes.n, sizes.d, seed + i)  # local classes 0..P-1
        xs.append(x)
        labels.append(torch.randperm(CLASS_SET * classes, generator=g)[:classes][local])
    pool, pool_labels = torch.cat(xs), torch.cat(labels)  # (N + M, D), (N + M,)
    n = sizes.n
    return Data(pool[:n], pool_labels[:n], pool[n:], pool_labels[n:], pool, pool_labels)


def ours(data: Data, density: str, generator: torch.Generator) -> Callable[[], Triplets]:
    """One call of our distance weighted sampling of the batch against the memory."""
    return lambda: distance_weighted(
        data.batch,
        data.labels,
        cutoff=CUTOFF,
        nonzero_loss_cutoff=NONZERO_LOSS_CUTOFF,
        density=density,
        references=data.memory,
        reference_labels=data.memory_labels,
        generator=generator,
    )


def sampling_calls(data: Data) -> dict[str, Callable[[], Any]]:
    """The floor and our two densities, by the names of :data:`PEAK_NAMES`."""
    g = torch.Generator().manual_seed(1)
    return {
        "cdist": lambda: torch.cdist(data.batch, data.pool),
        "sphere": ours(data, "sphere", g),
        "empirical": ours(data, "empirical", g),
    }


def other_classes(labels: Tensor, anchor: Tensor, pool_labels: Tensor, negative: Tensor) -> bool:
    """Whether every negative has a class other than its anchor's."""
    return bool((labels[anchor] != pool_labels[negative]).all())


# ---------------------------------------------------------------- pytorch-metric-learning


class OverCapError(Exception):
    """Raised inside a call that ran longer than its cap."""


@contextlib.contextmanager
def time_cap(seconds: float) -> Iterator[None]:
    """Raise :class:`OverCapError` in the block after ``seconds`` (a no-op off the main thread).

    A SIGALRM interrupts Python code between two torch calls, so a long PML call (a
    Python loop over the labels) stops soon after the cap.
    """
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise OverCapError

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def capped(fn: Callable[[], Any], cap_s: float) -> tuple[float | None, Any]:
    """Seconds of one call of ``fn`` and its result; ``(None, None)`` past ``cap_s``."""
    start = time.perf_counter()
    try:
        with time_cap(cap_s):
            result = fn()
    except OverCapError:
        return None, None
    return time.perf_counter() - start, result


class Recorded(torch.nn.Module):
    """A miner that keeps the arguments of its last call (what PML's forward mines)."""

    def __init__(self, miner: torch.nn.Module) -> None:
        super().__init__()
        self.miner = miner
        self.inputs: tuple[Tensor, ...] = ()

    def forward(self, *inputs: Tensor) -> Any:
        """Record ``inputs``, then mine."""
        self.inputs = inputs
        return self.miner(*inputs)


def pml_memory(data: Data) -> Any:
    """PML's CrossBatchMemory holding ``data.memory``, with room for the batch.

    Its ``forward`` first enqueues the batch, then mines the batch against every stored
    row; with N + M slots, M of them filled, it mines against ``cat([memory, batch])``:
    the same N + M rows as ours, in another order.
    """
    n, m = len(data.batch), len(data.memory)
    miner = DistanceWeightedMiner(cutoff=CUTOFF, nonzero_loss_cutoff=NONZERO_LOSS_CUTOFF)
    loss = PMLMarginLoss(margin=MARGIN, nu=0, beta=BETA)
    xbm = PMLCrossBatchMemory(loss, data.batch.shape[1], memory_size=n + m, miner=Recorded(miner))
    xbm.embedding_memory[:m] = data.memory
    xbm.label_memory[:m] = data.memory_labels
    xbm.queue_idx = m
    return xbm


@dataclass
class PMLResult:
    """PML's miner (None: over the cap), ours timed in the same rounds, one forward."""

    miner: Timing | None
    ours: Timing | None
    forward: Timing | None
    triplets: int | None = None
    other_classes: bool | None = None


def measure_pml(data: Data, sphere: Callable[[], Triplets]) -> PMLResult:
    """PML's CrossBatchMemory forward once, then its miner call interleaved with ``sphere``.

    The forward (cold, capped) also checks that its miner gets ``cat([memory, batch])``
    and warms the miner up; the miner is then called on those very tensors.
    """
    xbm = pml_memory(data)
    seconds, _ = capped(lambda: xbm(data.batch, data.labels), CAP_S)
    if seconds is None:
        return PMLResult(miner=None, ours=None, forward=None)
    embeddings, labels, ref, ref_labels = xbm.miner.inputs
    expected = torch.cat([data.memory, data.batch]), torch.cat([data.memory_labels, data.labels])
    if not (torch.equal(ref, expected[0]) and torch.equal(ref_labels, expected[1])):
        raise RuntimeError("PML's CrossBatchMemory did not mine cat([memory, batch])")
    miner = xbm.miner.miner
    reps = PML_REPS if seconds * PML_REPS <= PML_BUDGET_S else 1
    timings, results = time_calls(
        {"pml": lambda: miner(embeddings, labels, ref, ref_labels), "ours": sphere},
        max_reps=reps,
        warmup=False,
    )
    a, _, n = results["pml"]
    return PMLResult(
        timings["pml"],
        timings["ours"],
        Timing(seconds * 1e3, 1),
        len(a),
        other_classes(labels, a, ref_labels, n),
    )


# ---------------------------------------------------------------- peak memory


def _status_kib(key: str) -> int:
    """``VmRSS`` or ``VmHWM`` of this process in KiB (Linux's ``/proc/self/status``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


def peak_beyond_inputs(name: str, sizes: Sizes) -> float:
    """Peak resident MiB of one call of ``name`` beyond its inputs, in this process (Linux).

    The inputs are built and one call warms up; then the peak resident size is reset
    (``/proc/self/clear_refs``, Linux ≥ 4.0) and the call made again: its peak minus the
    resident size before it.
    """
    call = sampling_calls(make_data(sizes))[name]
    call()  # code paged in, thread pools started
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    result = call()
    peak = _status_kib("VmHWM")
    del result
    return (peak - before) / 1024


def peak_in_subprocess(name: str, sizes: Sizes, threads: int) -> float:
    """:func:`peak_beyond_inputs` in a fresh process, glibc's mmap threshold fixed at 64 KiB.

    With a fixed threshold every tensor over 64 KiB is mapped when allocated and unmapped
    when freed, so what the warm-up call freed is not reused unseen by the measured one.
    """
    command = [sys.executable, str(Path(__file__).resolve()), "--peak-of", name]
    command += ["--sizes", json.dumps(vars(sizes)), "--threads", str(threads)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"peak of {name} failed ({done.returncode}):\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the batch alone


@dataclass
class Alone:
    """Batch n alone at dimension d: today's timings and the committed ones (ms)."""

    d: int
    today: dict[str, Timing]
    committed: dict[str, float] | None


@dataclass
class Committed:
    """The first table of the committed sampling_speed.md: (n, d) -> column -> ms."""

    date: str
    threads: str
    rows: dict[tuple[int, int], dict[str, float]]


_COLUMNS = {"cdist": "cdist ms", "sphere": "ours ms (sphere)", "empirical": "ours ms (empirical)"}


def read_committed(path: Path = COMMITTED) -> Committed | None:
    """The floor table of sampling_speed.md at ``path``, None if it is missing."""
    if not path.exists():
        return None
    text = path.read_text()
    date = re.search(r"^- date: (.+)$", text, re.M)
    threads = re.search(r"torch threads: (\d+)", text)
    lines = iter(text.splitlines())
    header = next((line for line in lines if line.startswith("| n | d | cdist ms |")), None)
    if header is None:
        return None
    names = [cell.strip() for cell in header.strip("|").split("|")]
    rows: dict[tuple[int, int], dict[str, float]] = {}
    for line in lines:
        if not line.startswith("|"):
            break
        cells = dict(zip(names, (c.strip() for c in line.strip("|").split("|")), strict=False))
        if cells["n"].isdigit():
            key = (int(cells["n"]), int(cells["d"]))
            rows[key] = {name: float(cells[column]) for name, column in _COLUMNS.items()}
    return Committed(date[1] if date else "unknown", threads[1] if threads else "?", rows)


def measure_alone(n: int, committed: Committed | None) -> list[Alone]:
    """sampling_speed's floor comparison at batch n, for each of its dimensions."""
    rows = []
    for d in DIMS:
        timings, _ = measure_sampling(*make_batch(n, d))
        rows.append(Alone(d, timings, committed.rows.get((n, d)) if committed else None))
    return rows


# ---------------------------------------------------------------- one run


@dataclass
class Results:
    """Everything one run measured."""

    sizes: Sizes
    speed: dict[str, Timing]
    triplets: int
    ours_other_classes: bool
    pml: PMLResult | None
    peaks: dict[str, float]
    alone: list[Alone]
    committed: Committed | None = None
    info: dict[str, Any] = field(default_factory=dict)


def run(sizes: Sizes, with_pml: bool, peaks: Callable[[str], float]) -> Results:
    """Every measurement; ``peaks(name)`` measures one peak (a subprocess, in ``main``)."""
    data = make_data(sizes)
    speed, results = time_calls(sampling_calls(data))
    t = results["sphere"]
    say(
        f"N {sizes.n} + M {sizes.m}, d {sizes.d}: "
        + ", ".join(f"{k} {fmt_ms(v)} ms" for k, v in speed.items())
    )
    pml_result = None
    if with_pml:
        sphere = ours(data, "sphere", torch.Generator().manual_seed(2))
        pml_result = measure_pml(data, sphere)
        say(f"PML miner {fmt_ms(pml_result.miner)} ms")
    peak = {name: peaks(name) for name in PEAK_NAMES}
    say("peak MiB: " + ", ".join(f"{k} {v:.1f}" for k, v in peak.items()))
    committed = read_committed()
    alone = measure_alone(sizes.alone, committed)
    ok = other_classes(data.labels, t.anchor, data.pool_labels, t.negative)
    return Results(sizes, speed, len(t.anchor), ok, pml_result, peak, alone, committed)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the table


def judged(sizes: Sizes) -> bool:
    """Targets are judged at the issue's sizes only (quick sizes are all fixed cost)."""
    return sizes == FULL


def _target(sizes: Sizes, ok: bool) -> str:
    return fmt_pass(ok) if judged(sizes) else "not judged (quick sizes)"


def matrix_mib(rows: int, columns: int) -> float:
    """A float32 rows × columns matrix in MiB."""
    return rows * columns * 4 / 2**20


def floor_section(r: Results) -> tuple[list[str], bool]:
    cdist = r.speed["cdist"]
    header = ["density", "cdist ms", "ours ms", "ours / cdist", "target", "verdict"]
    lines, all_ok = [], True
    for density in ("sphere", "empirical"):
        ratio = r.speed[density].ms / cdist.ms
        ok = ratio <= FLOOR_TARGET
        all_ok &= ok or density != "sphere"
        verdict = _target(r.sizes, ok) if density == "sphere" else "— (not a target)"
        lines.append(
            [
                density,
                fmt_ms(cdist),
                fmt_ms(r.speed[density]),
                fmt_ratio(ratio),
                f"≤ {FLOOR_TARGET:g}×",
                verdict,
            ]
        )
    notes = [
        "## Against the floor",
        "",
        "`distance_weighted(batch, labels, references=memory, reference_labels=memory_labels,"
        " generator=g)` against `torch.cdist(batch, cat([batch, memory]))`, interleaved. "
        f"Target (the sphere density, the default): ours / cdist ≤ {FLOOR_TARGET:g}×. "
        f"Triplets from the last call: {r.triplets}; every negative of another class than "
        f"its anchor: {'yes' if r.ours_other_classes else '**no**'}.",
        "",
    ]
    return [*notes, *markdown_table(header, lines), ""], all_ok


def pml_section(r: Results) -> tuple[list[str], bool]:
    p = r.pml
    assert p is not None
    notes = [
        "## Against pytorch-metric-learning's CrossBatchMemory",
        "",
        f"`CrossBatchMemory(MarginLoss(margin={MARGIN}, nu=0, beta={BETA}), {r.sizes.d}, "
        f"memory_size={r.sizes.n + r.sizes.m}, miner=DistanceWeightedMiner(cutoff={CUTOFF}, "
        f"nonzero_loss_cutoff={NONZERO_LOSS_CUTOFF}))`, its first {r.sizes.m} slots filled with "
        "the memory. Its `forward(batch, labels)` enqueues the batch into the free slots, then "
        "calls `miner(batch, labels, E_mem, L_mem)` with `E_mem = cat([memory, batch])`: the "
        "same N + M rows as ours (checked on each run), then removes self-pairs and computes "
        "the loss. **Timed: that miner call** on those tensors, warmed up by one whole "
        f"`forward` (its time is given too, one cold call), interleaved with our sphere call "
        f"in {p.miner.reps if p.miner else 0} rounds (fewer when slow: it copies an "
        f"N × (N+M) weight matrix once per batch label). A call past {CAP_S:g} s is stopped.",
        "",
    ]
    if p.miner is None or p.ours is None:
        bound = CAP_S * 1e3 / r.speed["sphere"].ms
        text = (
            f"PML's forward ran past {CAP_S:g} s: PML / ours > {fmt_ratio(bound)} (a lower bound)."
        )
        ok = bound >= SPEEDUP_TARGET
        return [*notes, text, f"Target ≥ {SPEEDUP_TARGET:g}×: {_target(r.sizes, ok)}.", ""], ok
    speedup = p.miner.ms / p.ours.ms
    ok = speedup >= SPEEDUP_TARGET
    header = [
        "PML miner ms",
        "PML forward ms (1 cold call)",
        "ours ms",
        "PML / ours",
        "target",
        "verdict",
        "triplets PML",
        "triplets ours",
        "PML negatives of another class",
    ]
    line = [
        fmt_ms(p.miner),
        fmt_ms(p.forward),
        fmt_ms(p.ours),
        fmt_ratio(speedup),
        f"≥ {SPEEDUP_TARGET:g}×",
        _target(r.sizes, ok),
        str(p.triplets),
        str(r.triplets),
        "yes" if p.other_classes else "**no**",
    ]
    counts = (
        "Triplet counts: PML draws per anchor as many positives as its class has in the pool, "
        "with replacement (the anchor itself among them until the forward removes self-pairs), "
        "and drops anchors whose weights all vanish; ours takes every "
        f"in-batch positive plus at most {MAX_REFERENCE_POSITIVES} memory positives per anchor."
    )
    return [*notes, counts, "", *markdown_table(header, [line]), ""], ok


def memory_section(r: Results) -> tuple[list[str], bool]:
    n, pool = r.sizes.n, r.sizes.n + r.sizes.m
    anchors_pool, square = matrix_mib(n, pool), matrix_mib(pool, pool)
    header = ["call", "peak MiB", "/ N·(N+M)·4 B", "/ (N+M)²·4 B", "target", "verdict"]
    lines, all_ok = [], True
    for name, mib in r.peaks.items():
        ours_call = name != "cdist"
        ok = mib < anchors_pool
        all_ok &= ok or not ours_call
        lines.append(
            [
                name if ours_call else "cdist (floor, for scale)",
                f"{mib:.1f}",
                f"{mib / anchors_pool:.3f}",
                f"{mib / square:.4f}",
                f"< {anchors_pool:.1f} MiB" if ours_call else "—",
                _target(r.sizes, ok) if ours_call else "—",
            ]
        )
    notes = [
        "## Peak memory beyond the inputs",
        "",
        "Measured as the process's resident size, which counts torch's CPU allocations "
        "(`tracemalloc` does not see them). Each call runs in a fresh Python process: the "
        "inputs are built, one call warms up, the peak resident size is reset "
        "(`/proc/self/clear_refs`) and the call is made again; the table gives its peak "
        "(`VmHWM`) minus the resident size before it (`VmRSS`). glibc's mmap threshold is "
        "fixed at 64 KiB (`MALLOC_MMAP_THRESHOLD_`), so every tensor over 64 KiB is mapped "
        "when allocated and unmapped when freed, and nothing the warm-up freed is reused "
        "unseen. The kernel's resident-size counters lag by up to 64 pages a thread: "
        "differences under about 0.5 MiB are noise. For scale: one N×(N+M) float32 matrix "
        f"is {anchors_pool:.1f} MiB, one (N+M)² matrix {square:.0f} MiB; cdist's output is "
        "the former.",
        "",
        "The O(N + M) rule: a call passes when its peak beyond the inputs stays below one "
        "N×(N+M) float32 matrix, the least that any implementation holding the anchors × pool "
        "distances needs. What such a call holds is O(N + M) (a copy of the pool, labels, "
        "triplets) plus a fixed chunk of distances (about 2^21 entries, whatever N and M). One "
        "size cannot prove an order of growth; this rules out the N·(N+M) and (N+M)² terms.",
        "",
    ]
    return [*notes, *markdown_table(header, lines), ""], all_ok


def alone_section(r: Results) -> list[str]:
    c = r.committed
    when = f"dated {c.date}, torch threads {c.threads}" if c else "missing: no committed columns"
    header = [
        "d",
        "cdist ms",
        "ours ms",
        "ours / cdist",
        "ours / cdist, committed",
        "empirical / cdist",
        "empirical / cdist, committed",
    ]
    lines = []
    for row in r.alone:
        t = row.today
        old = row.committed
        lines.append(
            [
                str(row.d),
                fmt_ms(t["cdist"]),
                fmt_ms(t["sphere"]),
                fmt_ratio(t["sphere"].ms / t["cdist"].ms),
                fmt_ratio(old["sphere"] / old["cdist"]) if old else "—",
                fmt_ratio(t["empirical"].ms / t["cdist"].ms),
                fmt_ratio(old["empirical"] / old["cdist"]) if old else "—",
            ]
        )
    notes = [
        f"## Batch {r.sizes.alone:,} alone: no regression",
        "",
        f"`distance_weighted(x, labels, generator=g)` without references against "
        f"`torch.cdist(x, x)`, n = {r.sizes.alone}, measured today by sampling_speed's own "
        f"`measure_sampling`; the committed columns are parsed from "
        f"`benchmarks/results/sampling_speed.md` ({when}). **Measured on different days**, "
        "maybe under another load: compare the ratios, not the milliseconds.",
        "",
    ]
    return [*notes, *markdown_table(header, lines), ""]


def header(r: Results, with_pml: bool) -> list[str]:
    pml_version = "not installed" if pml is None else pml.__version__ if with_pml else "skipped"
    s = r.sizes
    return [
        "# Sampling with a cross-batch memory: speed and memory",
        "",
        "Written by `benchmarks/memory_speed.py`. Median wall time per call, all measurements "
        f"in one process on the same tensors: a batch of N = {s.n:,} and a memory of "
        f"M = {s.m:,} L2-normalised Gaussian embeddings in d = {s.d}, P×K labels with K = {K}; "
        f"the memory is {s.m // s.n} earlier batches, each batch's {s.n // K} classes drawn "
        f"from the same {CLASS_SET * s.n // K}, so each batch class is in the memory about "
        f"{s.m // s.n * K // CLASS_SET} times. Callables of one comparison are warmed up, then "
        "called in turn round after round (`sampling_speed.time_calls`).",
        "",
        *fact_lines(r.info, versions(pml_version)),
        "",
    ]


def render(r: Results, with_pml: bool) -> str:
    floor, floor_ok = floor_section(r)
    anchor, anchor_ok = pml_section(r) if r.pml is not None else ([], True)
    memory, memory_ok = memory_section(r)
    if not judged(r.sizes):
        summary = "targets not judged (quick sizes)"
    else:
        summary = (
            "all targets pass" if floor_ok and anchor_ok and memory_ok else "**some targets fail**"
        )
    notes = [
        "## Notes",
        "",
        '- Ratios: "ours / cdist" is a slow-down (lower is better), "PML / ours" our '
        "speed-up (higher is better).",
        "- Timings on a shared machine are noisy; the header says how much CPU other processes "
        "used during the run.",
        "",
    ]
    parts = [*header(r, with_pml), f"Summary: {summary}.", "", *floor, *anchor, *memory]
    return "\n".join([*parts, *alone_section(r), *notes])


# ---------------------------------------------------------------- command line


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when set, else every CPU this process may run on."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cpus or 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="N 64 + M 512, d 32; writes a table only with --out"
    )
    parser.add_argument("--out", type=Path, default=None, help=f"default {DEFAULT_OUT}")
    parser.add_argument("--skip-pml", action="store_true", help="leave out pytorch-metric-learning")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (see above)")
    parser.add_argument("--peak-of", choices=PEAK_NAMES, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=json.loads, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    if args.peak_of is not None:
        print(peak_beyond_inputs(args.peak_of, Sizes(**args.sizes)))
        return
    with_pml = not args.skip_pml
    if with_pml and pml is None:
        say("pytorch-metric-learning is not installed (pip install -e '.[bench]'): skipping it.")
        with_pml = False
    sizes = QUICK if args.quick else FULL
    info, clock = machine_facts(torch.get_num_threads()), RunClock()
    results = run(sizes, with_pml, lambda name: peak_in_subprocess(name, sizes, threads))
    clock.stop(info)
    results.info = info
    text = render(results, with_pml)
    print(text)
    out = args.out if args.out is not None or args.quick else DEFAULT_OUT
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        say(f"wrote {out}")


if __name__ == "__main__":
    main()
