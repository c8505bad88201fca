"""Speed of distance weighted sampling and the margin loss, side by side with floor and anchor.

For every batch size n and embedding dimension d it builds one batch of L2-normalised
random embeddings with P×K labels (K = 4 images per class, n/4 classes, shuffled
order) and times, in one process on the same tensors:

- ``sampling_matters.sampling.distance_weighted`` (density "sphere", the default, and
  "empirical");
- ``torch.cdist(x, x)``, the floor: the distance matrix any sampling must compute;
- pytorch-metric-learning's ``DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)``,
  the anchor (roughly cubic in n, so it gets fewer repetitions at large n);
- the margin loss forward + backward: ``sampling_matters.losses.margin_loss`` against
  PML's ``MarginLoss(margin=0.2, nu=0, beta=1.2)`` (β fixed), both on the same triplets
  (ours, from distance weighted sampling) and the same leaf tensor.

Each callable is warmed up once, then timed with ``time.perf_counter``, the callables of
one comparison interleaved round by round so they share the background load; the table
gives the median. The results go to ``benchmarks/results/sampling_speed.md``.

Run it (``make bench`` does the first)::

    .venv/bin/python benchmarks/sampling_speed.py             # full run, about 3-6 minutes
    .venv/bin/python benchmarks/sampling_speed.py --quick     # n in {80, 256}, prints only
    .venv/bin/python benchmarks/sampling_speed.py --skip-pml  # without the anchor

pytorch-metric-learning is optional (``pip install -e '.[bench]'``); without it the PML
columns are left out.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from report import RunClock, fact_lines, machine_facts
from sampling_matters.losses import margin_loss
from sampling_matters.sampling import Triplets, distance_weighted
from sampling_matters.tables import markdown_table

try:
    import pytorch_metric_learning as pml
    from pytorch_metric_learning.losses import MarginLoss as PMLMarginLoss
    from pytorch_metric_learning.miners import DistanceWeightedMiner
except ImportError:  # the anchor is optional
    pml = None

SIZES = (80, 256, 1024, 4096)
QUICK_SIZES = (80, 256)
DIMS = (128, 512)
K = 4  # images per class
BETA, MARGIN = 1.2, 0.2
CUTOFF, NONZERO_LOSS_CUTOFF = 0.5, 1.4
BUDGET_S = 1.0  # repeat until this much time is spent ...
MAX_REPS = 15  # ... or this many repetitions, whichever comes first
MIN_REPS = 3
FLOOR_TARGET = 3.0  # ours / cdist must stay at or below this at every size
SPEEDUP_TARGET, SPEEDUP_AT = 100.0, 4096  # PML / ours at n = 4096
LOSS_TARGET = 1.0  # ours / PML margin loss forward + backward
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "sampling_speed.md"


@dataclass
class Timing:
    """Median wall time of repeated calls."""

    ms: float
    reps: int


@dataclass
class Row:
    """Every measurement at one (n, d)."""

    n: int
    d: int
    cdist: Timing
    sphere: Timing
    empirical: Timing
    triplets: int
    loss_ours: Timing
    loss_value: float
    pml_miner: Timing | None = None
    pml_triplets: int | None = None
    loss_pml: Timing | None = None
    pml_loss_value: float | None = None


def time_calls(
    fns: Mapping[str, Callable[[], Any]], *, max_reps: int = MAX_REPS, warmup: bool = True
) -> tuple[dict[str, Timing], dict[str, Any]]:
    """Median time of each ``fn()``, the callables interleaved round by round.

    Interleaving exposes the callables of one comparison to the same background load.
    Rounds repeat until each callable has had about ``BUDGET_S`` or ``max_reps`` rounds
    are done (at least ``MIN_REPS`` unless ``max_reps`` is smaller).

    Returns:
        The timing and the result of the last call of each callable, by name.
    """
    results = {name: fn() for name, fn in fns.items()} if warmup else {}
    times: dict[str, list[float]] = {name: [] for name in fns}
    start, rounds = time.perf_counter(), 0
    while rounds < max_reps and (
        rounds < MIN_REPS or time.perf_counter() - start < BUDGET_S * len(fns)
    ):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
        rounds += 1
    timings = {name: Timing(statistics.median(t) * 1e3, len(t)) for name, t in times.items()}
    return timings, results


def pml_max_reps(n: int) -> int:
    """PML's miner costs about n³: 1 repetition at n ≥ 4096, 3 at n ≥ 1024."""
    if n >= 4096:
        return 1
    return 3 if n >= 1024 else MAX_REPS


def make_batch(n: int, d: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(n, d) unit embeddings and (n,) labels, n/K classes of K, in shuffled order."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)  # (n, d)
    labels = torch.arange(n // K).repeat_interleave(K)  # (n,)
    return x, labels[torch.randperm(n, generator=g)]


def loss_step(loss_fn: Callable[[Tensor], Tensor], x: Tensor) -> Callable[[], float]:
    """One forward + backward of ``loss_fn`` on the leaf ``x``; returns the loss value."""

    def step() -> float:
        x.grad = None
        loss = loss_fn(x)
        loss.backward()
        return float(loss.detach())

    return step


def measure_sampling(x: Tensor, labels: Tensor) -> tuple[dict[str, Timing], Triplets]:
    """The floor and our two densities on one batch; the triplets of the last "sphere" call."""
    g = torch.Generator().manual_seed(1)
    timings, results = time_calls(
        {
            "cdist": lambda: torch.cdist(x, x),
            "sphere": lambda: distance_weighted(x, labels, generator=g),
            "empirical": lambda: distance_weighted(x, labels, density="empirical", generator=g),
        }
    )
    return timings, results["sphere"]


def measure_losses(
    x: Tensor, labels: Tensor, triplets: Triplets, with_pml: bool
) -> tuple[dict[str, Timing], dict[str, float]]:
    """Margin loss forward + backward, ours and (``with_pml``) PML's, on the same triplets."""
    steps = {"ours": loss_step(lambda e: margin_loss(e, triplets, BETA, margin=MARGIN), x)}
    if with_pml:
        pml_loss = PMLMarginLoss(margin=MARGIN, nu=0, beta=BETA)  # learn_beta=False: β fixed
        indices = (triplets.anchor, triplets.positive, triplets.negative)
        steps["pml"] = loss_step(lambda e: pml_loss(e, labels, indices_tuple=indices), x)
    return time_calls(steps)


def measure_pml_miner(x: Tensor, labels: Tensor) -> tuple[Timing, int]:
    """PML's distance weighted miner on one batch, and how many triplets it returned."""
    miner = DistanceWeightedMiner(cutoff=CUTOFF, nonzero_loss_cutoff=NONZERO_LOSS_CUTOFF)
    reps = pml_max_reps(len(x))
    timings, results = time_calls({"pml": lambda: miner(x, labels)}, max_reps=reps, warmup=reps > 1)
    return timings["pml"], len(results["pml"][0])


def measure(n: int, d: int, with_pml: bool) -> Row:
    """Every measurement at one (n, d)."""
    x, labels = make_batch(n, d)
    sampling, triplets = measure_sampling(x, labels)
    losses, values = measure_losses(x.clone().requires_grad_(True), labels, triplets, with_pml)
    row = Row(
        n,
        d,
        **sampling,
        triplets=len(triplets.anchor),
        loss_ours=losses["ours"],
        loss_value=values["ours"],
    )
    if with_pml:
        row.pml_miner, row.pml_triplets = measure_pml_miner(x, labels)
        row.loss_pml, row.pml_loss_value = losses["pml"], values["pml"]
    return row


def run(sizes: Sequence[int], with_pml: bool) -> list[Row]:
    rows = []
    for n in sizes:
        for d in DIMS:
            rows.append(measure(n, d, with_pml))
            print(f"n={n:5d} d={d:4d}  {_progress(rows[-1])}", file=sys.stderr, flush=True)
    return rows


def _progress(row: Row) -> str:
    text = (
        f"cdist {fmt_ms(row.cdist)}  sphere {fmt_ms(row.sphere)}  empirical {fmt_ms(row.empirical)}"
        f"  margin {fmt_ms(row.loss_ours)}"
    )
    if row.pml_miner is not None and row.loss_pml is not None:
        text += f"  | PML miner {fmt_ms(row.pml_miner)}  PML margin {fmt_ms(row.loss_pml)}"
    return text


def fmt_ms(t: Timing | None) -> str:
    """A timing's median in ms, to about three significant digits; "—" for None."""
    if t is None:
        return "—"
    if t.ms >= 100:
        return f"{t.ms:.0f}"
    return f"{t.ms:.1f}" if t.ms >= 10 else f"{t.ms:.2f}"


def fmt_ratio(x: float) -> str:
    """A ratio such as "2.55×", "12.3×" or "340×"."""
    return f"{x:.0f}×" if x >= 100 else f"{x:.2f}×" if x < 10 else f"{x:.1f}×"


def fmt_pass(ok: bool) -> str:
    """A target's verdict: "pass" or a bold "FAIL"."""
    return "pass" if ok else "**FAIL**"


def floortable(rows: Sequence[Row]) -> tuple[list[str], bool]:
    header = [
        "n",
        "d",
        "cdist ms",
        "ours ms (sphere)",
        "ours / cdist",
        "target",
        "pass",
        "ours ms (empirical)",
        "empirical / cdist",
    ]
    lines, all_ok = [], True
    for r in rows:
        ratio = r.sphere.ms / r.cdist.ms
        all_ok &= ratio <= FLOOR_TARGET
        lines.append(
            [
                str(r.n),
                str(r.d),
                fmt_ms(r.cdist),
                fmt_ms(r.sphere),
                fmt_ratio(ratio),
                f"≤ {FLOOR_TARGET:g}×",
                fmt_pass(ratio <= FLOOR_TARGET),
                fmt_ms(r.empirical),
                fmt_ratio(r.empirical.ms / r.cdist.ms),
            ]
        )
    return markdown_table(header, lines), all_ok


def anchortable(rows: Sequence[Row]) -> tuple[list[str], bool]:
    header = [
        "n",
        "d",
        "PML ms",
        "PML reps",
        "ours ms",
        "PML / ours",
        "target",
        "pass",
        "triplets ours",
        "triplets PML",
    ]
    lines, all_ok = [], True
    for r in rows:
        assert r.pml_miner is not None
        speedup = r.pml_miner.ms / r.sphere.ms
        target, verdict = "—", "—"
        if r.n == SPEEDUP_AT:
            target, verdict = f"≥ {SPEEDUP_TARGET:g}×", fmt_pass(speedup >= SPEEDUP_TARGET)
            all_ok &= speedup >= SPEEDUP_TARGET
        lines.append(
            [
                str(r.n),
                str(r.d),
                fmt_ms(r.pml_miner),
                str(r.pml_miner.reps),
                fmt_ms(r.sphere),
                fmt_ratio(speedup),
                target,
                verdict,
                str(r.triplets),
                str(r.pml_triplets),
            ]
        )
    return markdown_table(header, lines), all_ok


def losstable(rows: Sequence[Row], with_pml: bool) -> tuple[list[str], bool]:
    if not with_pml:
        header = ["n", "d", "triplets", "ours ms", "loss ours"]
        lines = [
            [str(r.n), str(r.d), str(r.triplets), fmt_ms(r.loss_ours), f"{r.loss_value:.5f}"]
            for r in rows
        ]
        return markdown_table(header, lines), True
    header = [
        "n",
        "d",
        "triplets",
        "ours ms",
        "PML ms",
        "ours / PML",
        "target",
        "pass",
        "loss ours",
        "loss PML",
    ]
    lines, all_ok = [], True
    for r in rows:
        assert r.loss_pml is not None and r.pml_loss_value is not None
        ratio = r.loss_ours.ms / r.loss_pml.ms
        all_ok &= ratio <= LOSS_TARGET
        lines.append(
            [
                str(r.n),
                str(r.d),
                str(r.triplets),
                fmt_ms(r.loss_ours),
                fmt_ms(r.loss_pml),
                fmt_ratio(ratio),
                f"≤ {LOSS_TARGET:g}",
                fmt_pass(ratio <= LOSS_TARGET),
                f"{r.loss_value:.5f}",
                f"{r.pml_loss_value:.5f}",
            ]
        )
    return markdown_table(header, lines), all_ok


def _reps(timings: Sequence[Timing]) -> str:
    low, high = min(t.reps for t in timings), max(t.reps for t in timings)
    return str(low) if low == high else f"{low}–{high}"


def header(info: dict[str, Any], with_pml: bool) -> list[str]:
    pml_version = "not installed" if pml is None else pml.__version__ if with_pml else "skipped"
    return [
        "# Sampling speed",
        "",
        "Written by `benchmarks/sampling_speed.py` (`make bench`). Median wall time per call,",
        "all measurements in one process on the same inputs: L2-normalised Gaussian embeddings,",
        f"P×K labels with K = {K} (n/{K} classes), shuffled. Each callable is warmed up once, then",
        "the callables of one comparison are called in turn, round after round, until each has",
        f"had about {BUDGET_S:g} s or {MAX_REPS} calls, whichever first (at least {MIN_REPS}).",
        "",
        *fact_lines(info, versions(pml_version)),
        "",
    ]


def versions(pml_version: str) -> str:
    """torch's, Python's and pytorch-metric-learning's versions, for the header."""
    return (
        f"torch {torch.__version__}, Python {platform.python_version()}, "
        f"pytorch-metric-learning {pml_version}"
    )


def render(rows: Sequence[Row], info: dict[str, Any], with_pml: bool) -> str:
    floor, floor_ok = floortable(rows)
    anchor, anchor_ok = anchortable(rows) if with_pml else ([], True)
    loss, loss_ok = losstable(rows, with_pml)
    verdict = "all targets pass" if floor_ok and anchor_ok and loss_ok else "**some targets fail**"
    parts = [*header(info, with_pml), f"Summary: {verdict}.", ""]
    parts += [*_floor_notes(), *floor, ""]
    if with_pml:
        parts += [*_anchor_notes(rows), *anchor, ""]
    parts += [*_loss_notes(rows, with_pml), *loss, ""]
    return "\n".join(parts + _notes(rows, with_pml))


def _floor_notes() -> list[str]:
    return [
        "## Distance weighted sampling against the distance-matrix floor",
        "",
        '`distance_weighted(x, labels, generator=g)` (density "sphere", the default;',
        '"empirical" as an extra column) against `torch.cdist(x, x)`. Target: ours / '
        f"cdist ≤ {FLOOR_TARGET:g}× at every size.",
        "",
    ]


def _anchor_notes(rows: Sequence[Row]) -> list[str]:
    reps = ", ".join(f"{pml_max_reps(n)} at n = {n}" for n in sorted({r.n for r in rows}))
    return [
        "## Distance weighted sampling against pytorch-metric-learning",
        "",
        f"`DistanceWeightedMiner(cutoff={CUTOFF}, nonzero_loss_cutoff={NONZERO_LOSS_CUTOFF})"
        '(x, labels)` against our default ("sphere") call on the same batch. Its cost grows '
        f"like n³ (a weight copy per label), so it is repeated at most {reps}, and not "
        "warmed up where it runs once (its code already ran at the smaller sizes). "
        f"Target: PML / ours ≥ {SPEEDUP_TARGET:g}× at n = {SPEEDUP_AT}.",
        "",
        "The triplet counts say what each returned: ours one per ordered positive pair, "
        "n·(K−1); PML draws K positives per anchor with replacement, n·K, less the anchors "
        "whose weights all vanish (it normalises by one maximum over the whole batch).",
        "",
    ]


def _loss_notes(rows: Sequence[Row], with_pml: bool) -> list[str]:
    text = [
        "## Margin loss, forward + backward",
        "",
        f"`margin_loss(x, triplets, {BETA}, margin={MARGIN})` then `.backward()`, on a leaf "
        "tensor with `requires_grad`; the triplets are ours from the sampling above.",
    ]
    if not with_pml:
        return [*text, ""]
    values = [(r.loss_value, r.pml_loss_value) for r in rows if r.pml_loss_value is not None]
    agree = all(abs(a - b) <= 1e-4 * max(1.0, abs(b)) for a, b in values)
    text += [
        f"Against PML's `MarginLoss(margin={MARGIN}, nu=0, beta={BETA})` (β fixed: "
        "`learn_beta=False`, its default) called as `loss(x, labels, indices_tuple=(a, p, n))` "
        "with the same triplets on a copy of the same embeddings. PML L2-normalises its input "
        "again inside the loss and computes the full n×n distance matrix before gathering the "
        "triplets' distances; both are part of what a PML user pays. "
        + (
            "The loss values agree at every size (last two columns)."
            if agree
            else "**The loss values differ** (last two columns): the two reduce differently."
        ),
        f"Target: ours / PML ≤ {LOSS_TARGET:g} at every size.",
        "",
    ]
    return text


def _notes(rows: Sequence[Row], with_pml: bool) -> list[str]:
    ours = [t for r in rows for t in (r.cdist, r.sphere, r.empirical, r.loss_ours)]
    lines = ["## Notes", "", f"- Repetitions: ours and cdist {_reps(ours)} per cell."]
    if with_pml:
        pml_loss = [r.loss_pml for r in rows if r.loss_pml is not None]
        miner = [r.pml_miner for r in rows if r.pml_miner is not None]
        lines += [f"- PML miner {_reps(miner)} per cell; PML margin loss {_reps(pml_loss)}."]
    lines += [
        '- Ratios: "ours / cdist" and "ours / PML" are slow-downs (lower is better); '
        '"PML / ours" is our speed-up (higher is better).',
        "- Timings on a shared machine are noisy: other processes' threads contend with "
        "torch's, and a busy core can inflate a short call many times over. The header says "
        "how much CPU others used during the run.",
    ]
    return [*lines, *_small_batch_note(rows), ""]


def _small_batch_note(rows: Sequence[Row]) -> list[str]:
    """Where ours / cdist misses its target, the times there (none when every row passes).

    Why small batches miss it (a fixed cost per call) is explained in ``docs/sampling.md``.
    """
    missed = [r for r in rows if r.sphere.ms / r.cdist.ms > FLOOR_TARGET]
    if not missed:
        return []
    cells = ", ".join(f"({r.n}, {r.d})" for r in missed)
    text = (
        f"- Ours / cdist misses the target at (n, d) = {cells}, where cdist takes "
        f"{_span([r.cdist for r in missed])} ms and ours {_span([r.sphere for r in missed])} "
        "ms: at these sizes the fixed cost of a call outweighs the distance matrix "
        "(`docs/sampling.md`, Contracts, says where that cost comes from)."
    )
    passing = [n for n in sorted({r.n for r in rows}) if all(r.n < n for r in missed)]
    if passing:
        text += f" From n = {passing[0]} on, every row passes."
    return [text]


def _span(timings: Sequence[Timing]) -> str:
    """The smallest and the largest of ``timings``' medians, as the tables print them."""
    low, high = min(timings, key=lambda t: t.ms), max(timings, key=lambda t: t.ms)
    return fmt_ms(low) if fmt_ms(low) == fmt_ms(high) else f"{fmt_ms(low)}–{fmt_ms(high)}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="n in {80, 256} only; writes a table only when --out is given",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help=f"markdown table to write (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--skip-pml", action="store_true", help="leave out pytorch-metric-learning's miner and loss"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with_pml = not args.skip_pml
    if with_pml and pml is None:
        print(
            "pytorch-metric-learning is not installed (pip install -e '.[bench]'): "
            "skipping its columns.",
            file=sys.stderr,
        )
        with_pml = False
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(threads or 1)
    info = machine_facts(torch.get_num_threads())
    clock = RunClock()
    rows = run(QUICK_SIZES if args.quick else SIZES, with_pml)
    clock.stop(info)
    text = render(rows, info, with_pml)
    print(text)
    out = args.out if args.out is not None or args.quick else DEFAULT_OUT
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
