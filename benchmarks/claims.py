r"""Write ``docs/claims.md`` from the committed tables: every number and verdict computed.

Each claim of the paper is checked as comparisons between two arms of a committed table
(``benchmarks/results/``), paired by seed: the mean difference ``a − b`` and its 95%
interval (t with n − 1 degrees of freedom, :func:`sampling_matters.tables.paired`). The
verdict is "holds" where the interval excludes 0 in the claimed direction, "does not
hold" where it excludes 0 the other way, and "not distinguishable at this budget" where
it holds 0. A comparison whose table is not committed yet is "pending", and the page
says which run makes it. The comparisons are data (:data:`CLAIMS`): a new table is
added as a :class:`Table` and a few :class:`Claim` rows.

The prose around the numbers is written here by hand; the numbers are not. Run it
after a table changes (``tests/test_claims.py`` fails until the page is regenerated)::

    .venv/bin/python benchmarks/claims.py            # rewrites docs/claims.md
    .venv/bin/python benchmarks/claims.py --check    # exit 1 if docs/claims.md is stale
    .venv/bin/python benchmarks/claims.py --collect  # first copy the ablations' tables in
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import shutil
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mdtables
from beta_study import ARMS as BETA_ARMS
from sampling_matters.ablation import DEFAULT_LOSSES, DEFAULT_SAMPLINGS, PML_LOSS
from sampling_matters.tables import difference, interval, markdown_table, mean_std

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "claims.md"
SCALE = 100  # metrics are fractions; the page gives percentage points

HOLDS = "holds"
OPEN = "not distinguishable at this budget"
FAILS = "does not hold"
PENDING = "pending"
ONE_SEED = "one seed: no interval"

Runs = dict[str, dict[int, dict[str, str]]]  # arm -> seed -> the table's row


@dataclass(frozen=True)
class Table:
    """A committed (or planned) table of per-seed results under ``benchmarks/results/``.

    Attributes:
        key: its folder, e.g. ``"ablation-kanji"``.
        kind: ``"ablation"`` (arms ``loss + sampling``) or ``"beta"`` (arms by name).
        data: the data set, as ``results/quality.md`` names it.
        setup: the set-up in words, e.g. "kanji, small CNN from scratch".
        budget: the budget in words; the step count is read from the table's ``.md``.
        command: the run that writes it.
        floor: the row of ``results/quality.md`` that scores the untrained input, if any.
        adopted: a sentence on runs it took from another benchmark, if any.
    """

    key: str
    kind: str
    data: str
    setup: str
    budget: str
    command: str
    floor: str = ""
    adopted: str = ""

    @property
    def csv(self) -> Path:
        """The per-seed table."""
        return RESULTS / self.key / f"{self.kind}.csv"

    @property
    def committed(self) -> bool:
        """Whether the table exists (else its claims are pending)."""
        return self.csv.exists()

    @property
    def run_dir(self) -> Path | None:
        """The folder the command writes its tables to (its ``--out``), if it names one."""
        found = re.search(r"--out (\S+)", self.command)
        return Path(found.group(1)) if found else None


def collect(root: Path = ROOT) -> list[str]:
    """Copy each ablation's ``ablation.csv`` and ``.md`` from its run folder into results.

    Only ablation tables are copied: a β study writes its results itself. ``root`` is where
    the commands ran (their ``--out`` is relative to it). A run folder with fewer runs than
    the committed table is left out, so a fresh partial run never replaces finished rows.
    Returns one line per table: copied, or why not.
    """
    said = []
    for table in TABLES:
        source = root / table.run_dir if table.run_dir else None
        if table.kind != "ablation" or source is None or not (source / "ablation.csv").exists():
            continue
        have, had = _row_count(source / "ablation.csv"), _row_count(table.csv)
        if have < had:
            said.append(
                f"left {table.key}: {source} has fewer runs ({have}) than committed ({had})"
            )
            continue
        table.csv.parent.mkdir(parents=True, exist_ok=True)
        for name in ("ablation.csv", "ablation.md"):
            shutil.copyfile(source / name, table.csv.parent / name)
        said.append(f"copied {table.key} ({have} runs) from {source}")
    return said


def _row_count(path: Path) -> int:
    """Data rows of a csv file (0 if there is none)."""
    return len(_csv_rows(path)) if path.exists() else 0


def _csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of the csv file at ``path``, as dicts by column."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@dataclass(frozen=True)
class Claim:
    """One comparison: arm ``a`` against arm ``b``, paired by seed.

    Attributes:
        section: the number of the paper's claim it tests (see :data:`SECTIONS`).
        text: what is claimed, in words.
        table: the table of arm ``a`` (and of ``b`` unless ``table_b`` is given).
        a, b: the arms (``"margin + distance-weighted"``, or a β study's ``"global"``).
        metric: the column compared.
        direction: +1 where ``a`` is claimed above ``b``, −1 where below.
        table_b: the table of arm ``b``, when it is another one.
        caveat: why this comparison cannot test the claim (then it gets no verdict).
    """

    section: int
    text: str
    table: Table
    a: str
    b: str
    metric: str = "recall@1"
    direction: int = 1
    table_b: Table | None = None
    caveat: str = ""


@dataclass(frozen=True)
class Judged:
    """A claim with its paired values (a, b) by seed and its verdict."""

    claim: Claim
    seeds: tuple[int, ...] = ()
    pairs: tuple[tuple[float, float], ...] = ()
    verdict: str = PENDING


@dataclass(frozen=True)
class Section:
    """One of the paper's claims: its title and the words that introduce its comparisons."""

    number: int
    title: str
    text: str
    extras: tuple[Callable[[], list[str]], ...] = ()


# ---------------------------------------------------------------- reading the tables


def read_runs(table: Table) -> Runs:
    """Every row of ``table``'s csv, by arm and seed."""
    runs: Runs = {}
    for row in _csv_rows(table.csv):
        arm = f"{row['loss']} + {row['sampling']}" if "loss" in row else row["arm"]
        runs.setdefault(arm, {})[int(row["seed"])] = row
    return runs


def values(table: Table, arm: str, metric: str = "recall@1") -> dict[int, float]:
    """``metric`` of ``arm`` in ``table`` by seed (in seed order), finite values only.

    Raises:
        ValueError: the table has no such arm or column.
    """
    runs = read_runs(table)
    if arm not in runs:
        raise ValueError(f"{table.csv} has no arm {arm!r}; it has {sorted(runs)}")
    rows = sorted(runs[arm].items())
    if metric not in rows[0][1]:
        raise ValueError(f"{table.csv} has no column {metric!r}")
    found = {seed: float(row[metric]) for seed, row in rows}
    return {seed: value for seed, value in found.items() if math.isfinite(value)}


def not_run_yet(table: Table, arm: str) -> bool:
    """Whether committed ``table`` lacks ``arm`` because its run has not reached that arm yet.

    Raises:
        ValueError: ``arm`` is missing and no run of the table's kind makes an arm so named.
    """
    runs = read_runs(table)
    if arm in runs:
        return False
    grid = [f"{loss} + {s}" for loss in (*DEFAULT_LOSSES, PML_LOSS) for s in DEFAULT_SAMPLINGS]
    if arm not in (BETA_ARMS if table.kind == "beta" else grid):
        raise ValueError(f"{table.csv} has no arm {arm!r}; it has {sorted(runs)}")
    return True


def steps(table: Table) -> int:
    """The training steps per run, read from the ``.md`` beside the table.

    Raises:
        ValueError: the ``.md`` states no budget.
    """
    text = table.csv.with_suffix(".md").read_text()
    found = re.search(r"\*\*([\d,]+) steps\*\*|`steps=(\d+)`", text)
    if found is None:
        raise ValueError(f"{table.csv.with_suffix('.md')} states no number of steps")
    return int((found.group(1) or found.group(2)).replace(",", ""))


def quality_runs() -> list[dict[str, str]]:
    """The per-seed rows ("Every run") of ``results/quality.md``, by column name."""
    return mdtables.section(RESULTS / "quality.md", "Every run").rows


def quality_recall(data: str, row: str) -> float:
    """Mean R@1 over the seeds of ``data``'s ``quality.md`` rows whose name starts with ``row``.

    Raises:
        ValueError: no such row.
    """
    found = [
        float(r["R@1"])
        for r in quality_runs()
        if r["set"] == data and r["loss + sampling"].startswith(row)
    ]
    if not found:
        raise ValueError(f"results/quality.md has no {data!r} row starting with {row!r}")
    return statistics.fmean(found)


def quality_steps(data: str) -> int:
    """The training steps of ``data``'s runs in ``results/quality.md``."""
    text = (RESULTS / "quality.md").read_text()
    found = re.search(rf"^- `{data}`: .*= ([\d,]+) steps", text, re.MULTILINE)
    if found is None:
        raise ValueError(f"results/quality.md states no number of steps for {data!r}")
    return int(found.group(1).replace(",", ""))


# ---------------------------------------------------------------- the statistics


def verdict(pairs: Sequence[tuple[float, float]], direction: int) -> str:
    """The verdict on "a is above b" (``direction`` +1) or "below" (−1), paired by seed.

    Raises:
        ValueError: ``direction`` is neither +1 nor −1.
    """
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 (a above b) or -1 (a below b), got {direction}")
    if not pairs:
        return PENDING
    if len(pairs) < 2:
        return ONE_SEED
    _, low, high = interval([SCALE * (a - b) for a, b in pairs])
    if low <= 0 <= high:
        return OPEN
    return HOLDS if (low > 0) == (direction > 0) else FAILS


def judge(claim: Claim) -> Judged:
    """``claim``'s paired values and verdict; pending while a table or an arm is not run."""
    table_b = claim.table_b or claim.table
    if not (claim.table.committed and table_b.committed):
        return Judged(claim)
    if not_run_yet(claim.table, claim.a) or not_run_yet(table_b, claim.b):
        return Judged(claim)
    a = values(claim.table, claim.a, claim.metric)
    b = values(table_b, claim.b, claim.metric)
    seeds = tuple(sorted(set(a) & set(b)))
    pairs = tuple((a[s], b[s]) for s in seeds)
    return Judged(claim, seeds, pairs, verdict(pairs, claim.direction))


def judge_all() -> list[Judged]:
    """Every claim of :data:`CLAIMS`, judged."""
    return [judge(claim) for claim in CLAIMS]


# ---------------------------------------------------------------- the tables, as data

KANJI = "--data kanji --model small-cnn"  # training's defaults
KANJI_FULL = f"{KANJI} --steps 2500 --seeds 3"
KANJI_BEFORE = (
    f"{KANJI} --classes-per-batch 16 --samples-per-class 5 --backbone-lr 0.0001 "
    "--val-fraction 0.1 --select recall@1 --beta-lr 0.01"
)
"""The first defaults, those of the short grid (its ablation.md lists every setting)."""
EMOJI_HEAD = (
    "--data emoji --model efficientnet-lite0 --image-size 128 --freeze-backbone "
    "--cache-features --classes-per-batch 20 --samples-per-class 4"
)
EMOJI_TUNE = (  # configs/demo.yaml's settings, as flags
    "--data emoji --model efficientnet-lite0 --image-size 128 --frozen-stages 6 "
    "--frozen-batchnorm --cache-features --embedding-dim 512 --classes-per-batch 20 "
    "--samples-per-class 4 --lr 0.001 --backbone-lr 0.0001 --beta-lr 0.01 --steps 300 --seeds 5"
)
RAW = "no training: raw pixels"
FEATURES = "no training: efficientnet-lite0 features"
MARGIN_DW = "--losses margin --samplings distance-weighted"
MEMORY_SIZE, MEMORY_WARMUP = 4096, 500
"""The kanji memory row's M and warm-up (:func:`_memory_choice` says why)."""


def _ablation(
    key: str, setup: str, budget: str, flags: str, floor: str, adopted: str = ""
) -> Table:
    """A table written by ``sampling-matters ablate FLAGS`` (then copied to results/)."""
    command = f"sampling-matters ablate {flags} --out runs/{key}"
    return Table(key, "ablation", _data(flags), setup, budget, command, floor, adopted)


def _data(flags: str) -> str:
    """The data set that ``--data NAME`` in ``flags`` names."""
    return flags.split("--data ", 1)[1].split()[0]


def _beta_study(key: str, setup: str, budget: str, like: Table, floor: str) -> Table:
    """A table written by ``benchmarks/beta_study.py``, like the ablation of ``like``."""
    command = (
        f".venv/bin/python benchmarks/beta_study.py --like runs/{like.key} --out runs/{key} "
        f"--results benchmarks/results/{key}"
    )
    return Table(key, "beta", like.data, setup, budget, command, floor)


SHORT, FULL, HEAD, DEMO = (
    "a short budget: early training",
    "the full budget",
    "the head's budget",
    "the demo recipe's budget",
)
SCRATCH, FROZEN, TUNED = (
    "kanji, small CNN from scratch",
    "emoji, linear head on frozen EfficientNet-Lite0 features",
    "emoji, the demo's fine-tuning recipe",
)
K500 = _ablation(
    "ablation-kanji", SCRATCH, SHORT, f"{KANJI_BEFORE} --steps 500 --seeds 3 --with-pml", RAW
)
E_HEAD = _ablation(
    "ablation-emoji", FROZEN, HEAD, f"{EMOJI_HEAD} --steps 1500 --seeds 3 --with-pml", FEATURES
)
B_K500 = _beta_study("beta-kanji", f"{SCRATCH}, β study", SHORT, K500, RAW)
B_EHEAD = _beta_study("beta-emoji", f"{FROZEN}, β study", HEAD, E_HEAD, FEATURES)
K2500 = _ablation(
    "ablation-kanji-2500",
    SCRATCH,
    FULL,
    f"{KANJI_FULL} --samplings distance-weighted --with-pml",
    RAW,
    "Its margin + distance-weighted runs are the `defaults` arm's of `results/defaults.md` "
    "(`sampling-matters train --data kanji --steps 2500 --seed S`, the same settings), "
    "copied in by `.venv/bin/python benchmarks/adopt_runs.py --ablation "
    "runs/ablation-kanji-2500 --cell margin--distance-weighted "
    "--source benchmarks/results/runs/defaults/kanji-2500/defaults`, "
    "which checks that every setting is the ablation's.",
)
K2500_MARGIN = _ablation(
    "ablation-kanji-2500-margin",
    SCRATCH,
    FULL,
    f"{KANJI_FULL} --losses margin --samplings uniform,semihard",
    RAW,
)
K2500_EMPIRICAL = _ablation(
    "ablation-kanji-2500-empirical",
    f"{SCRATCH}, empirical density",
    FULL,
    f"{KANJI_FULL} {MARGIN_DW} --density empirical",
    RAW,
)
K2500_MEMORY = _ablation(
    "ablation-kanji-2500-memory",
    f"{SCRATCH}, cross-batch memory",
    FULL,
    f"{KANJI_FULL} {MARGIN_DW} --memory-size {MEMORY_SIZE} --memory-warmup {MEMORY_WARMUP}",
    RAW,
)
B_K2500 = _beta_study("beta-kanji-2500", f"{SCRATCH}, β study", FULL, K2500, RAW)
E_TUNE = _ablation(
    "ablation-emoji-finetune",
    TUNED,
    DEMO,
    f"{EMOJI_TUNE} --losses margin --samplings uniform,semihard,distance-weighted",
    FEATURES,
)
E_TUNE_TRIPLET = _ablation(
    "ablation-emoji-finetune-triplet",
    TUNED,
    DEMO,
    f"{EMOJI_TUNE} --losses triplet --samplings hard,distance-weighted",
    FEATURES,
)
E_TUNE_EMPIRICAL = _ablation(
    "ablation-emoji-finetune-empirical",
    f"{TUNED}, empirical density",
    DEMO,
    f"{EMOJI_TUNE} {MARGIN_DW} --density empirical",
    FEATURES,
)
TABLES: tuple[Table, ...] = (K500, E_HEAD, B_K500, B_EHEAD, K2500, K2500_MARGIN)
TABLES += (K2500_EMPIRICAL, K2500_MEMORY, B_K2500, E_TUNE, E_TUNE_TRIPLET, E_TUNE_EMPIRICAL)
"""Every table the page reads, committed or pending, in the order it lists them."""

DW, MDW = "distance-weighted", "margin + distance-weighted"
LOSSES = ("contrastive", "triplet-squared", "triplet", "margin")
PER_IMAGE_IDLE = "per-image offsets cannot act: no training image is seen twice in this budget"


def _above(
    section: int,
    table: Table,
    a: str,
    b: str,
    *,
    metric: str = "recall@1",
    table_b: Table | None = None,
    caveat: str = "",
) -> Claim:
    """A claim that ``a`` scores above ``b``, in those words."""
    return Claim(section, f"{a} above {b}", table, a, b, metric, 1, table_b, caveat)


def _best(table: Table, margin_table: Table | None = None) -> tuple[Claim, ...]:
    """Claim 1: margin + distance weighted above its nearest rivals."""
    rivals = [f"{loss} + {DW}" for loss in LOSSES[:3]]
    claims = [_above(1, table, MDW, rival) for rival in rivals]
    claims.append(_above(1, table, MDW, "margin + semihard", table_b=margin_table))
    pml = Claim(1, "ours above PML's (the same method: equal expected)", table, MDW,
                f"pml-margin + {DW}")  # fmt: skip
    return (*claims, pml)


def _sampling(table: Table, losses: Sequence[str] = LOSSES) -> tuple[Claim, ...]:
    """Claim 2: for a fixed loss, distance weighted sampling above uniform sampling."""
    return tuple(_above(2, table, f"{loss} + {DW}", f"{loss} + uniform") for loss in losses)


def _hard(table: Table, losses: Sequence[str] = LOSSES[1:3]) -> tuple[Claim, ...]:
    """Claim 3: with the triplet losses, distance weighted sampling above hard mining."""
    return tuple(_above(3, table, f"{loss} + {DW}", f"{loss} + hard") for loss in losses)


def _semihard(table: Table) -> tuple[Claim, ...]:
    """Claim 4: distance weighted sampling above semi-hard mining, for every loss."""
    return tuple(_above(4, table, f"{loss} + {DW}", f"{loss} + semihard") for loss in LOSSES)


def _beta_claims(table: Table, per_image_caveat: str = "") -> tuple[Claim, ...]:
    """Claim 6: a learned β above a fixed one; per class and per image above one β."""
    return (
        _above(6, table, "global", "fixed"),
        _above(6, table, "global", "fixed", metric="map@r"),
        _above(6, table, "per-class", "global"),
        _above(6, table, "per-image", "global", caveat=per_image_caveat),
    )


EMPIRICAL, MEMORY = "empirical density above the sphere's", "cross-batch memory above none"


def _beyond(table: Table, text: str, paper: Table) -> tuple[Claim, ...]:
    """Claim 7: an idea of this project against the paper's margin + distance weighted."""
    return tuple(Claim(7, text, table, MDW, MDW, m, 1, paper) for m in ("recall@1", "map@r"))


CLAIMS: tuple[Claim, ...] = (
    *_best(K500), *_best(E_HEAD), *_best(K2500, K2500_MARGIN),
    _above(1, E_TUNE, MDW, "margin + semihard"),
    *_sampling(K500), *_sampling(E_HEAD),
    Claim(2, f"{MDW} above margin + uniform", K2500, MDW, "margin + uniform",
          table_b=K2500_MARGIN),
    *_sampling(E_TUNE, ("margin",)),
    *_hard(K500), *_hard(E_HEAD), *_hard(E_TUNE_TRIPLET, ("triplet",)),
    *_semihard(K500), *_semihard(E_HEAD),
    *_beta_claims(B_K500, PER_IMAGE_IDLE), *_beta_claims(B_EHEAD), *_beta_claims(B_K2500),
    *_beyond(K2500_EMPIRICAL, EMPIRICAL, K2500), *_beyond(K2500_MEMORY, MEMORY, K2500),
    *_beyond(E_TUNE_EMPIRICAL, EMPIRICAL, E_TUNE),
)  # fmt: skip
"""Every comparison on the page, in order; add a row here when a table arrives."""


# ---------------------------------------------------------------- small formatting helpers


def _metric(name: str) -> str:
    """A metric column as the tables name it: ``R@1``, ``MAP@R``."""
    return {"recall@1": "R@1", "map@r": "MAP@R"}.get(name, name)


def _points(values: Sequence[float]) -> str:
    """Values as percentage points with a sign, two decimals: ``+0.00, -0.03, +1.18``."""
    return ", ".join(f"{SCALE * v:+.2f}" for v in values)


def _where(table: Table) -> str:
    """A table's name and budget for a cell of the page, or its name and "(pending)"."""
    if not table.committed:
        return f"`{table.key}` (pending)"
    return f"`{table.key}`, {steps(table):,} steps"


def _setup(claim: Claim) -> str:
    """The table (or the two tables) a claim reads, with budgets."""
    b = claim.table_b
    return _where(claim.table) if b is None else f"{_where(claim.table)} against {_where(b)}"


# ---------------------------------------------------------------- the page's parts


def _intro() -> list[str]:
    """The title, and how the page is made."""
    return [
        "# The paper's claims, checked here",
        "",
        "Written by `benchmarks/claims.py` from the committed tables under "
        "`benchmarks/results/`; do not edit it by hand: change a table or the script, then "
        "run `.venv/bin/python benchmarks/claims.py` (`tests/test_claims.py` fails while "
        "this page and a fresh generation differ). Every number below is read or computed "
        "from those tables.",
        "",
    ]


def _rule(judged: Sequence[Judged]) -> list[str]:
    """The verdict rule, the run-to-run noise and the verdicts at a glance."""
    return [
        "## How a claim is judged",
        "",
        "Each claim is tested as comparisons between two arms trained with the same "
        "settings, budget and seeds, paired by seed: the mean of the per-seed differences "
        "a − b (in percentage points) and its 95% interval (t with n − 1 degrees of "
        "freedom). A comparison **holds** where the interval excludes 0 in the claimed "
        "direction, **does not hold** where it excludes 0 the other way, and is **not "
        "distinguishable at this budget** where the interval holds 0. A comparison whose "
        "table has not been made yet is **pending**; one that cannot test its claim in its "
        "set-up says so instead of a verdict. Each set-up's comparisons end with its floor, "
        "the R@1 of its untrained input: an arm below it compares trainings that do not help.",
        "",
        *_noise(),
        "",
        *_glance(judged),
        "",
    ]


NOISE = (B_K500, "global", "per-image")
"""Two arms that compute the same thing (per-image offsets never act in this budget)."""


def _noise() -> list[str]:
    """Run-to-run noise: the per-seed differences of two arms that compute the same thing."""
    table, a, b = NOISE
    if not table.committed:
        return []
    x, y = values(table, a), values(table, b)
    diffs = [x[s] - y[s] for s in sorted(set(x) & set(y))]
    return [
        "Identical computations are not bit-identical across processes on these CPUs "
        f"(thread scheduling changes the order of float sums). In `{table.key}` "
        f"({steps(table):,} steps) the `{b}` arm computes what the `{a}` arm computes, since "
        f"no training image is seen twice there; their R@1 "
        f"differ by {_points(diffs)} points by seed. Every spread and interval below "
        "includes run-to-run noise of that size."
    ]


VERDICTS = (HOLDS, OPEN, FAILS, ONE_SEED, "no test", PENDING)


def _label(judged: Judged) -> str:
    """The verdict as the page prints it (a caveat replaces it)."""
    if judged.claim.caveat and judged.verdict != PENDING:
        return f"no test ({judged.claim.caveat})"
    return judged.verdict


def _glance(judged: Sequence[Judged]) -> list[str]:
    """How many comparisons of each table got each verdict."""
    counts = {
        table: [sum(_label(j).startswith(v) for j in judged if j.claim.table == table)
                for v in VERDICTS]
        for table in TABLES
    }  # fmt: skip
    shown = [i for i in range(len(VERDICTS)) if any(c[i] for c in counts.values())]
    rows = [
        [_where(table), *(str(c[i]) if c[i] else "" for i in shown)]
        for table, c in counts.items()
        if any(c)
    ]
    intro = "Verdicts at a glance (comparisons per table; one shared by two claims counts twice):"
    return [intro, "", *markdown_table(["table", *(VERDICTS[i] for i in shown)], rows)]


def _to_run(table: Table) -> str:
    """The arms of committed ``table`` that claims read and its run has not reached yet."""
    arms = {(c.table, c.a) for c in CLAIMS} | {(c.table_b or c.table, c.b) for c in CLAIMS}
    return ", ".join(sorted(arm for t, arm in arms if t == table and not_run_yet(table, arm)))


def _sources() -> list[str]:
    """Every table: what it holds and the run that makes it (or will)."""
    lines = ["## The tables", ""]
    for table in TABLES:
        what = f"- `{table.key}/{table.kind}.csv`: {table.setup}; {table.budget}"
        if table.committed:
            seeds = sorted({s for runs in read_runs(table).values() for s in runs})
            lines.append(
                f"{what}, {steps(table):,} steps, seed{'s' * (len(seeds) > 1)} "
                f"{', '.join(map(str, seeds))}. "
                f"Made by `{table.command}`." + f" {table.adopted}" * bool(table.adopted)
            )
            todo = _to_run(table)
            lines[-1] += f" Still to run, for its claims: the arms {todo}." * bool(todo)
            continue
        copy = " (then `benchmarks/claims.py --collect` copies its tables in)"
        copy *= table.kind == "ablation"
        lines.append(f"{what}. **Pending**: made by `{table.command}`{copy}.")
        lines[-1] += f" {table.adopted}" * bool(table.adopted)
    return [*lines, ""]


def _caveats() -> list[str]:
    """What limits the committed tables' verdicts."""
    return ["## Caveats", "", *_early_training(), *_per_image_idle(), *_floors(), ""]


def _early_training() -> list[str]:
    """The short kanji grid against the same cell at the quality benchmark's full budget."""
    if not K500.committed:
        return []
    short = statistics.fmean(values(K500, MDW).values())
    full = quality_recall(K500.data, "ours: `MarginLoss` + distance weighted sampling")
    return [
        f"- `{K500.key}` ran {steps(K500):,} steps: there margin + distance weighted reaches "
        f"R@1 {SCALE * short:.1f}, and at {quality_steps(K500.data):,} steps "
        f"{SCALE * full:.1f} (`results/quality.md`). Its verdicts judge early training only; "
        f"`{K2500.key}` judges the full budget."
    ]


def _per_image_idle() -> list[str]:
    """Why the short kanji β study cannot test per-image offsets."""
    if not B_K500.committed:
        return []
    return [
        f"- In `{B_K500.key}` ({steps(B_K500):,} steps) no training image is seen twice, so "
        "each per-image offset is still at its initial 0 whenever its image is in a batch "
        "and never changes the loss: the per-image arm cannot differ from the global one "
        'except by run-to-run noise, and "per image adds nothing" is no finding there. '
        f"`{B_K2500.key}`, at the full budget, is the test."
    ]


def _floors() -> list[str]:
    """For each committed table: its cells below the untrained input's R@1."""
    lines = []
    for table in (t for t in TABLES if t.committed and t.floor):
        floor, means, below = _below_floor(table)
        best = max(means, key=lambda arm: means[arm])
        text = (
            f"- `{table.key}`: {len(below)} of {len(means)} arm{'s' * (len(means) > 1)} "
            f"score below R@1 "
            f"{SCALE * floor:.1f}, the untrained input's (`results/quality.md`, "
            f'"{table.floor}"); the best, {best}, reaches {SCALE * means[best]:.1f}.'
        )
        if len(below) == len(means):
            text += " **Every arm is below that floor**: its verdicts compare trainings that "
            text += "do not help, and say little about sampling where training helps."
        lines.append(text)
    return lines


def _below_floor(table: Table) -> tuple[float, dict[str, float], list[str]]:
    """The untrained input's R@1, each arm's mean R@1, and the arms below that floor."""
    floor = quality_recall(table.data, table.floor)
    means = _cell_means(table)
    return floor, means, [arm for arm, mean in means.items() if mean < floor]


def _comparisons(judged: Sequence[Judged]) -> list[str]:
    """The table of judged comparisons: arms, differences by seed, interval, verdict."""
    header = ["set-up", "claim", "metric", "seeds", "a", "b", "a − b by seed"]
    header += ["a − b, 95% interval", "verdict"]
    rows = []
    for i, j in enumerate(judged):
        c = j.claim
        a, b = [p[0] for p in j.pairs], [p[1] for p in j.pairs]
        diff = difference(j.pairs, scale=SCALE)
        rows.append([
            _setup(c), c.text, _metric(c.metric), str(len(j.seeds)) if j.seeds else "—",
            mean_std(a, SCALE), mean_std(b, SCALE), _points([x - y for x, y in j.pairs]) or "—",
            diff, _label(j),
        ])  # fmt: skip
        if i + 1 == len(judged) or judged[i + 1].claim.table is not c.table:
            rows += _floor_row(c.table)
    return markdown_table(header, rows)


def _floor_row(table: Table) -> list[list[str]]:
    """After a set-up's comparisons: the R@1 of its untrained input, which training must beat."""
    if not (table.committed and table.floor):
        return []
    floor = SCALE * quality_recall(table.data, table.floor)
    what = f"the floor, {table.floor} (`results/quality.md`)"
    return [[_where(table), what, "R@1", "—", f"{floor:.1f}", "—", "—", "—", "untrained input"]]


def _section(section: Section, judged: Sequence[Judged]) -> list[str]:
    """One claim of the paper: its words, its comparisons and what else its tables show."""
    mine = [j for j in judged if j.claim.section == section.number]
    lines = [f"## {section.number}. {section.title}", "", section.text, ""]
    if mine:
        lines += [*_comparisons(mine), ""]
    for extra in section.extras:
        lines += extra()
    return lines


# ---------------------------------------------------------------- what a claim adds to its table


def _cell_means(table: Table) -> dict[str, float]:
    """Each arm's mean R@1 over its seeds."""
    return {arm: statistics.fmean(values(table, arm).values()) for arm in read_runs(table)}


SAMPLINGS = ("uniform", "hard", "semihard", DW)


def _spread_row(table: Table, held: str, cells: dict[str, float]) -> list[str]:
    """One row: with ``held`` fixed, the lowest and highest of ``cells`` (name -> mean R@1)."""
    low, high = min(cells, key=cells.__getitem__), max(cells, key=cells.__getitem__)
    spread = SCALE * (cells[high] - cells[low])
    return [_where(table), held, f"{low} {SCALE * cells[low]:.1f}",
            f"{high} {SCALE * cells[high]:.1f}", f"{spread:.1f}"]  # fmt: skip


def _spreads() -> list[str]:
    """How far the sampling moves a loss's R@1, and the loss a sampling's (full grids only)."""
    rows = []
    for table in (t for t in TABLES if t.committed and t.kind == "ablation"):
        means = _cell_means(table)
        if any(f"{loss} + {s}" not in means for loss in LOSSES for s in SAMPLINGS):
            continue  # a partial grid has no spread to show
        for loss in LOSSES:
            cells = {s: means[f"{loss} + {s}"] for s in SAMPLINGS}
            rows.append(_spread_row(table, f"loss {loss}", cells))
        for s in SAMPLINGS:
            cells = {loss: means[f"{loss} + {s}"] for loss in LOSSES}
            rows.append(_spread_row(table, f"sampling {s}", cells))
    if not rows:
        return []
    header = ["table", "held fixed", "lowest mean R@1", "highest mean R@1", "spread (points)"]
    intro = "Mean R@1 of each loss over the samplings, and of each sampling over the losses:"
    return [intro, "", *markdown_table(header, rows), ""]


def _collapses() -> list[str]:
    """Per committed ablation table: the cells with collapsed runs."""
    lines = []
    for table in (t for t in TABLES if t.committed and t.kind == "ablation"):
        found = []
        for arm, runs in read_runs(table).items():
            collapsed = sum(row["status"] == "collapsed" for row in runs.values())
            if collapsed:
                found.append(f"{arm} in {collapsed} of {len(runs)} seeds")
        text = "collapsed: " + "; ".join(found) if found else "no run collapsed"
        lines.append(f"- {_where(table)}: {text}.")
    if not lines:
        return []
    intro = (
        "Runs judged collapsed by the ablation (its rule: test R@1 near a random ranking's, "
        'or embeddings fallen onto a point: `ablation.md`, "How runs are judged"):'
    )
    return [intro, "", *lines, ""]


FIGURES = ((K500, "figures-kanji"), (E_HEAD, "figures"))
"""Each ablation table and the folder of figures drawn from its runs."""


def _curves(folder: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``training_curves.csv`` of ``folder``: run -> quantity -> (step, value) in step order."""
    path = RESULTS / folder / "training_curves.csv"
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for row in csv.DictReader(lines):
        seed = re.search(r"seed(\d+)$", row["path"])
        run = row["run"] + (f", seed {seed.group(1)}" if seed else "")
        curves.setdefault(run, {}).setdefault(row["quantity"], []).append(
            (int(row["step"]), float(row["value"]))
        )
    return {run: {q: sorted(v) for q, v in qs.items()} for run, qs in curves.items()}


def _stalls() -> list[str]:
    """The fraction of sampled terms with non-zero loss, first and last logged (figure 5)."""
    rows = []
    for table, folder in FIGURES:
        if not (RESULTS / folder / "training_curves.csv").exists():
            continue
        for run, quantities in _curves(folder).items():
            active = quantities.get("active_fraction")
            negative = quantities.get("negative_distance")
            if not active:
                continue
            (s0, v0), (s1, v1) = active[0], active[-1]
            last = f"{negative[-1][1]:.2f}" if negative else "—"
            where = f"`{folder}/` ({table.key})"
            rows.append([where, run, f"{v0:.2f} (step {s0})", f"{v1:.2f} (step {s1})", last])
    if not rows:
        return []
    header = ["figure", "run", "non-zero-loss fraction, first logged", "last logged",
              "mean negative distance, last logged"]  # fmt: skip
    return [
        "Figure 5's logs (`training_curves.csv`): the band of semi-hard mining empties "
        "where its fraction of terms with non-zero loss falls. The fall-back to the farthest "
        "negative is counted in each run's `log.csv` (`fallback`), which no committed table "
        "holds.",
        "",
        *markdown_table(header, rows),
        "",
    ]


def _drawn(folder: str) -> list[tuple[str, dict[str, str]]]:
    """Figure 2's panels in ``folder``: description, and each series' ``mean ± std``."""
    panels: list[tuple[str, dict[str, str]]] = []
    for line in (RESULTS / folder / "sampled_distances.csv").read_text().splitlines():
        panel = re.match(r"# panel \d+: (.*)", line)
        series = re.match(r"#\s+(.+?): \d+ distances, mean ± std (.+)", line)
        if panel:
            panels.append((panel.group(1), {}))
        elif series and panels:
            panels[-1][1][series.group(1)] = series.group(2)
    return panels


def _distances() -> list[str]:
    """Figure 2's drawn anchor–negative distances, mean ± std, one row per distinct panel."""
    rows, seen = [], set()
    names: list[str] = []
    for _, folder in FIGURES:
        for description, series in _drawn(folder):
            names += [name for name in series if name not in names]
            key = (description, tuple(series.items()))
            if key not in seen:
                seen.add(key)
                rows.append((f"`{folder}/`: {description}", series))
    if not rows:
        return []
    table = [[where, *(series.get(name, "—") for name in names)] for where, series in rows]
    return [*markdown_table(["points", *names], table), ""]


def _beta_moves() -> list[str]:
    """Where β⁽⁰⁾ ended and how far the offsets spread, by arm and seed; identical rows."""
    rows, same = [], []
    for table in (t for t in TABLES if t.committed and t.kind == "beta"):
        for arm in read_runs(table):
            beta0 = ", ".join(f"{v:.2f}" for v in values(table, arm, "beta0").values())
            spread = values(table, arm, "offset_std")  # learned offsets only: nan elsewhere
            offsets = ", ".join(f"{v:.2f}" for v in spread.values()) or "—"
            rows.append([_where(table), arm, beta0, offsets])
        same += _identical(table)
    if not rows:
        return []
    header = ["table", "arm", "β⁽⁰⁾ at the end, by seed", "std of the offsets at the end, by seed"]
    return [*markdown_table(header, rows), "", *same, *([""] if same else [])]


METRIC_COLUMNS = ("recall@1", "recall@2", "recall@4", "recall@8", "map@r", "nmi")


def _identical(table: Table) -> list[str]:
    """Seeds where several arms of ``table`` score identically in every metric."""
    lines = []
    runs = read_runs(table)
    for seed in sorted({s for by_seed in runs.values() for s in by_seed}):
        groups: dict[tuple[str, ...], list[str]] = {}
        for arm, by_seed in runs.items():
            if seed in by_seed:
                scores = tuple(by_seed[seed][m] for m in METRIC_COLUMNS)
                groups.setdefault(scores, []).append(arm)
        for arms in (g for g in groups.values() if len(g) > 1):
            lines.append(
                f"- `{table.key}`, seed {seed}: {', '.join(arms)} score identically in every "
                "metric (the same checkpoint, or the same computation)."
            )
    return lines


def _memory_choice() -> list[str]:
    """Why the kanji memory row has its M and warm-up, in numbers from the training defaults."""
    from sampling_matters.config import TrainConfig

    flat = TrainConfig().flat()
    batch = flat["classes_per_batch"] * flat["samples_per_class"]
    decays = " and ".join(f"{100 * at:.0f}%" for at in flat["lr_decay_at"])
    return [
        f"The memory holds M = {MEMORY_SIZE:,} embeddings, the last {MEMORY_SIZE // batch} "
        f"batches of {batch}: an anchor draws its negative from about {MEMORY_SIZE:,} "
        f"candidates instead of its batch's {batch - flat['samples_per_class']}, so the rare "
        "distances that the sphere's weights favour (on a trained embedding, the nearest "
        "negatives) have members, while the oldest entries "
        f"are only {MEMORY_SIZE // batch} steps stale. It is sampled from after a warm-up of "
        f"{MEMORY_WARMUP} steps ({100 * MEMORY_WARMUP / steps_of(K2500_MEMORY):.0f}% of the "
        "budget): early on the network moves fastest away from its random start, and "
        "embeddings stored then would be stale; after it the memory acts through both "
        f"learning-rate decays (at {decays} of the budget).",
        "",
    ]


def steps_of(table: Table) -> int:
    """A table's budget: read from its ``.md`` once committed, else from its command."""
    if table.committed:
        return steps(table)
    return int(table.command.split("--steps ", 1)[1].split()[0])


def _plainly() -> list[str]:
    """Whether each idea beats the paper's sampling at the full budget, in words."""
    lines = []
    ideas = (
        (K2500_EMPIRICAL, "empirical density"),
        (K2500_MEMORY, "memory"),
        (E_TUNE_EMPIRICAL, "empirical density"),
    )
    for table, idea in ideas:
        judged = [judge(c) for c in CLAIMS if c.table is table]
        if not all(j.pairs for j in judged):
            paper = judged[0].claim.table_b or table
            waiting = [t.key for t in (table, paper) if not t.committed] or [table.key]
            lines.append(
                f"- The {idea} at the full budget on {table.data}: pending "
                f"(`{'`, `'.join(waiting)}`)."
            )
            continue
        words = {HOLDS: "beats it", FAILS: "is worse", OPEN: "is not distinguishable from it"}
        parts = [
            f"{words.get(j.verdict, j.verdict)} in {_metric(j.claim.metric)} "
            f"({difference(j.pairs, scale=SCALE)} points)"
            for j in judged
        ]
        lines.append(
            f"- The {idea}, against the paper's sampling (sphere's density, no memory) on "
            f"{table.data} at {steps(table):,} steps, {len(judged[0].seeds)} seeds paired: "
            f"{' and '.join(parts)}."
        )
    return [*lines, ""]


def full_budget(judged: Sequence[Judged] | None = None) -> list[str]:
    """README's summary: every comparison at a full budget, once each, with its verdict.

    A full budget is kanji's 2,500 steps or the demo's emoji fine-tuning, where every
    trained arm beats its untrained input; a comparison two claims share is listed once.
    """
    judged = judge_all() if judged is None else judged
    rows, seen = [], set()
    for j in judged:
        c = j.claim
        key = (c.table, c.table_b, c.a, c.b, c.metric)
        if c.table.budget not in (FULL, DEMO) or key in seen:
            continue
        seen.add(key)
        diff = difference(j.pairs, scale=SCALE)
        seeds = str(len(j.seeds)) if j.seeds else "—"
        where = f"{c.table.setup}, {steps_of(c.table):,} steps"
        rows.append([where, c.text, _metric(c.metric), seeds, diff, _label(j)])
    header = ["set-up", "comparison", "metric", "seeds", "a − b, points (95% interval)"]
    tables = [t for t in TABLES if t.budget in (FULL, DEMO) and t.committed and t.floor]
    floors = [_below_floor(t) for t in tables]
    below, arms = sum(len(f[2]) for f in floors), sum(len(f[1]) for f in floors)
    intro = (
        "At the full budgets (kanji from scratch at 2,500 steps; emoji on the demo's "
        f"fine-tuning recipe; {below} of their {arms} arms score below the R@1 of their "
        "untrained input), paired by seed with a 95% t interval, in percentage points:"
    )
    return [intro, "", *markdown_table([*header, "verdict"], rows)]


# ---------------------------------------------------------------- the sections, and the page

SECTIONS = (
    Section(
        1,
        "Margin loss with distance weighted sampling is best",
        "The paper's margin loss with distance weighted sampling should beat every other "
        "loss × sampling cell. It is compared with its nearest rivals: the other losses with "
        "distance weighted sampling, and the margin loss with semi-hard mining. The last row "
        "of each set-up compares it with pytorch-metric-learning's `MarginLoss` + "
        '`DistanceWeightedMiner`, the same method in another library: there "not '
        'distinguishable" is the expected outcome.',
    ),
    Section(
        2,
        "The sampling changes results as much as the loss",
        "For each loss, distance weighted sampling against uniform sampling; below the "
        "comparisons, how far the sampling moves each loss's mean Recall@1, and how far the "
        "loss moves each sampling's.",
        (_spreads,),
    ),
    Section(
        3,
        "Hard negative mining with the triplet loss collapses or lags",
        "With the triplet losses, distance weighted sampling against hard mining. The triplet "
        "losses only compare D_an with D_ap, which a shrinking embedding can satisfy, and for "
        "the squared one the gradient −2·D_an vanishes for the hardest negatives (figure 4), "
        "so nothing pushes them apart.",
        (_collapses,),
    ),
    Section(
        4,
        "Semi-hard mining stalls once its band empties",
        "Distance weighted sampling against semi-hard mining, for every loss. When an "
        "anchor's band holds no negative, our semi-hard sampling returns the closest "
        "negative beyond the band (zero triplet loss: the stall) and counts it "
        "(`SamplingStats.band_empty`), so a stall is visible, not silent.",
        (_stalls,),
    ),
    Section(
        5,
        "Distance weighted sampling draws distances spread over the whole admissible range",
        "No paired test: figure 2 draws once from fixed embeddings (`sampled_distances.csv`), "
        "uniform points on the sphere and the test embeddings of a trained margin + distance "
        "weighted run (named in the table). The table gives the mean ± std of the drawn "
        "anchor–negative distances. "
        "Where the sphere's distance weighted draws match hard mining's, its weights 1/q(d) "
        "hand nearly every draw to the nearest negatives (a trained embedding is clustered and "
        'of low intrinsic dimension); `density="empirical"` weighs by each anchor\'s own '
        "distances instead. The ablations train with the sphere's density, the paper's rule.",
        (_distances,),
    ),
    Section(
        6,
        "Learned β (per class, per image) helps over a fixed β",
        "The β study's arms differ only in β: `fixed`, `global` (β⁽⁰⁾ learned), `per-class` "
        "and `per-image` (β⁽⁰⁾ plus a learned offset per training class or image).",
        (_beta_moves,),
    ),
    Section(
        7,
        "Beyond the paper: the empirical density and a cross-batch memory",
        "Two ideas of this project, each against the paper's margin + distance weighted "
        "sampling with the sphere's density and no memory, at the full budget: weights from "
        "each anchor's empirical distance density (`--density empirical`), and a cross-batch "
        "memory of past embeddings as extra negatives (`--memory-size`, `--memory-warmup`).",
        (_memory_choice, _plainly),
    ),
)

EXAMPLE = """\
## Recompute a verdict

```python
import sys
from pathlib import Path

import sampling_matters

benchmarks = Path(sampling_matters.__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(benchmarks))
import claims

# three seeds whose differences scatter widely: the interval holds 0
assert claims.verdict([(0.90, 0.80), (0.95, 0.80), (0.85, 0.80)], direction=1) == claims.OPEN
for judged in claims.judge_all():
    if judged.verdict == claims.HOLDS:
        print(judged.claim.table.key, judged.claim.text, judged.claim.metric)
```
"""


def render() -> str:
    """The whole of ``docs/claims.md``, from the committed tables."""
    judged = judge_all()
    lines = [*_intro(), *_rule(judged), *_sources(), *_caveats()]
    for section in SECTIONS:
        lines += _section(section, judged)
    return "\n".join(lines) + "\n" + EXAMPLE


def main(argv: Sequence[str] | None = None) -> int:
    """Write the page (or, with ``--check``, say whether it is stale); the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    parser.add_argument("--out", type=Path, default=DOC, help=f"the page to write ({DOC})")
    parser.add_argument(
        "--collect", action="store_true", help="first copy the ablations' tables from runs/"
    )
    args = parser.parse_args(argv)
    for line in collect() if args.collect else []:
        print(line, file=sys.stderr)
    text = render()
    if args.check:
        stale = not args.out.exists() or args.out.read_text() != text
        print(f"{args.out} is {'stale' if stale else 'up to date'}", file=sys.stderr)
        return int(stale)
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
