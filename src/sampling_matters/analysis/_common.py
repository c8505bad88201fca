"""What every figure shares: argument checks, CSV tables, the canvas, the registry entry.

A figure module defines its data function, a ``table`` and a ``plot`` of that data,
and one :class:`FigureSpec` named ``FIGURE`` that :mod:`.registry` lists.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar

import torch
from torch import Tensor

from sampling_matters import _checks
from sampling_matters._optional import require

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from sampling_matters.analysis.sampled import SampledDistances

MAX_DIM = 65_536
MAX_DRAWS = 10_000_000


def check_dims(dims: Sequence[int]) -> tuple[int, ...]:
    """One or more dimensions n in [2, MAX_DIM]."""
    if not len(dims):
        raise ValueError("dims must name at least one dimension")
    return tuple(_checks.integer("each dimension", n, 2, MAX_DIM) for n in dims)


def check_sigmas(sigmas: Sequence[float]) -> tuple[float, ...]:
    """One or more noise levels σ > 0, as floats."""
    if not len(sigmas):
        raise ValueError(f"sigmas must be one or more numbers > 0, got {sigmas!r}")
    return tuple(_checks.finite_float("each sigma", s, 0, low_open=True) for s in sigmas)


# ---------------------------------------------------------------------------- tables


class Table(NamedTuple):
    """A CSV: comment lines (the set-up), a header and rows of finite values."""

    comments: list[str]
    header: tuple[str, ...]
    rows: Sequence[tuple[object, ...]]


def write_csv(path: Path, table: Table) -> None:
    """Write ``table`` as ``# comment`` lines, then the CSV; floats to 6 significant digits.

    Raises:
        ValueError: on a NaN or infinite value.
    """
    with path.open("w", newline="") as handle:
        handle.writelines(f"# {line}\n" for line in table.comments)
        writer = csv.writer(handle)
        writer.writerow(table.header)
        for row in table.rows:
            if any(isinstance(v, float) and not math.isfinite(v) for v in row):
                raise ValueError(f"non-finite value in a row of {path.name}: {row}")
            writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])


# -------------------------------------------------------------------------- plotting


def new_figure(rows: int, cols: int, size: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    """A matplotlib ``Figure`` on the Agg canvas (no pyplot state) and its axes, row-major."""
    require("matplotlib")  # missing: an ImportError naming the figures extra
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False)
    return figure, list(axes.flat)


# -------------------------------------------------------------------------- registry


@dataclass
class Settings:
    """What :func:`~sampling_matters.analysis.write_figures` was asked for, shared by figures.

    Attributes:
        dims: figure 1's dimensions.
        draws: Monte-Carlo draws per estimate.
        seed: the seed of every draw.
        embeddings: optional (N, D) embeddings and (N,) labels.
        embeddings_name: what they are, for titles.
        logs: run directories (or their log.csv).
        panels: strategies' distances on uniform points by dimension, drawn once
            (see :func:`~sampling_matters.analysis.sampled.uniform_panel`).
    """

    dims: tuple[int, ...]
    draws: int
    seed: int
    embeddings: tuple[Tensor, Tensor] | None
    embeddings_name: str
    logs: tuple[Path, ...]
    panels: dict[int, SampledDistances] = field(default_factory=dict)

    def generator(self, salt: int) -> torch.Generator:
        """A generator seeded by the seed and a figure-specific salt (order-independent)."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + salt)


Data = TypeVar("Data")


def _no_check(settings: Settings) -> None:
    """Nothing to check before drawing."""


@dataclass(frozen=True)
class FigureSpec(Generic[Data]):
    """One figure: its data from the settings, the CSV and the picture of that data.

    Attributes:
        name: the files' stem (``NAME.png``, ``NAME.csv``) and the name ``--only`` takes.
        help: what the figure shows, in a line (the ``figures`` command's help).
        compute: the figure's data from :class:`Settings`.
        table: the data as a :class:`Table`.
        plot: the data as a matplotlib ``Figure``.
        check: raises ``ValueError`` on inputs the figure cannot use, before any figure
            is drawn (reading files and tensors, which ``compute`` would reach late).
        reads_embeddings: whether it draws given embeddings (they are optional).
        needs_logs: whether it needs runs' logs; drawn by default only when logs are given.
    """

    name: str
    help: str
    compute: Callable[[Settings], Data]
    table: Callable[[Data], Table]
    plot: Callable[[Data], Figure]
    check: Callable[[Settings], None] = _no_check
    reads_embeddings: bool = False
    needs_logs: bool = False

    def draw(self, settings: Settings) -> tuple[Figure, Table]:
        """The picture and the table of one computation of the data."""
        data = self.compute(settings)
        return self.plot(data), self.table(data)
