"""The figures in order, and :func:`write_figures`, which draws them as PNG + CSV files.

Adding a figure is a module that ends in a :class:`~._common.FigureSpec` named
``FIGURE`` (its data, table and plot together) and one line in :data:`FIGURES`; the
``figures`` command, its help and the tests iterate over :data:`FIGURES`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from sampling_matters import _checks
from sampling_matters.analysis import curves, gradients, sampled, shapes, sphere
from sampling_matters.analysis._common import (
    MAX_DRAWS,
    FigureSpec,
    Settings,
    check_dims,
    write_csv,
)
from sampling_matters.analysis.sphere import DEFAULT_DIMS

FIGURES: dict[str, FigureSpec[Any]] = {
    spec.name: spec
    for spec in (
        sphere.FIGURE,
        sampled.FIGURE,
        gradients.FIGURE,
        shapes.FIGURE,
        curves.FIGURE,
    )
}
"""The figures by name, numbered from 1 in this order; ``--only`` takes names or numbers."""


def number(name: str) -> int:
    """The figure's number: its place in :data:`FIGURES`, from 1."""
    return list(FIGURES).index(name) + 1


def _numbered() -> str:
    """``1 = sphere_distances, 2 = …``: the figures by number."""
    return ", ".join(f"{number(name)} = {name}" for name in FIGURES)


def _drawn_by(which: Callable[[FigureSpec[Any]], bool]) -> str:
    """``figure 5, training_curves``: the figures that ``which`` picks."""
    return " or ".join(f"figure {number(n)}, {n}" for n, spec in FIGURES.items() if which(spec))


def resolve(figures: Iterable[str]) -> tuple[str, ...]:
    """Figure names from names or numbers, in the order given, each once.

    Raises:
        ValueError: on an unknown figure, or none.

    Example:
        >>> resolve(["3", "1", "sphere_distances"])
        ('gradient_variance', 'sphere_distances')
    """
    order = list(FIGURES)
    names = []
    for part in (str(p).strip() for p in figures):
        if not part:
            continue
        name = order[int(part) - 1] if part.isdigit() and 1 <= int(part) <= len(order) else part
        if name not in FIGURES:
            raise ValueError(f"unknown figure {part!r}; expected names or numbers: {_numbered()}")
        names.append(name)
    if not names:
        raise ValueError(f"no figure given; name figures by number or name: {_numbered()}")
    return tuple(dict.fromkeys(names))


def check_figures(
    figures: Sequence[str] | None = None,
    *,
    dims: Sequence[int] = DEFAULT_DIMS,
    draws: int = 10_000,
    seed: int = 0,
    embeddings: bool = False,
    logs: bool = False,
) -> tuple[str, ...]:
    """The figures :func:`write_figures` would draw, checking what it checks before reading.

    Args:
        figures: names or numbers; None for the default: every figure that needs no
            logs, and those that do when ``logs``.
        dims: figure 1's dimensions.
        draws: Monte-Carlo draws per estimate.
        seed: the seed.
        embeddings: whether embeddings are given (figure 2 draws them).
        logs: whether runs' logs are given (figure 5 needs them).

    Returns:
        The figures' names.

    Raises:
        ValueError: on an unknown figure, a figure without an input it needs, an input
            no asked figure uses, dims < 2, draws < 2 or a negative seed.
    """
    if figures is None:
        names = tuple(name for name, spec in FIGURES.items() if logs or not spec.needs_logs)
    else:
        names = resolve(figures)
    asked = [FIGURES[name] for name in names]
    for spec in asked:
        if spec.needs_logs and not logs:
            raise ValueError(f"the {spec.name} figure needs runs to read (logs / --logs RUN ...)")
    if logs and not any(spec.needs_logs for spec in asked):
        by = _drawn_by(lambda spec: spec.needs_logs)
        raise ValueError(f"runs' logs are drawn only by {by}: ask for it too")
    if embeddings and not any(spec.reads_embeddings for spec in asked):
        by = _drawn_by(lambda spec: spec.reads_embeddings)
        raise ValueError(f"embeddings are drawn only by {by}: ask for it too")
    check_dims(dims)
    _checks.integer("draws", draws, 2, MAX_DRAWS)
    _checks.integer("seed", seed, 0, 2**63 - 1)
    return names


def write_figures(
    out_dir: str | Path,
    *,
    figures: Sequence[str] | None = None,
    dims: Sequence[int] = DEFAULT_DIMS,
    draws: int = 10_000,
    seed: int = 0,
    embeddings: tuple[Tensor, Tensor] | None = None,
    embeddings_name: str = "given embeddings",
    logs: Sequence[str | Path] = (),
) -> list[Path]:
    """Write each figure as ``out_dir/NAME.png`` and its data as ``out_dir/NAME.csv``.

    Args:
        out_dir: the folder (created if needed).
        figures: names or numbers from :data:`FIGURES`; default the first four, and
            ``training_curves`` when ``logs`` are given.
        dims: figure 1's dimensions.
        draws: Monte-Carlo draws per estimate: distances per dimension (figure 1),
            triplets per strategy and panel (figure 2), noise draws per distance
            (figure 3).
        seed: the seed of every random draw; each figure's draws do not depend on which
            other figures are drawn.
        embeddings: optional (N, D) embeddings and (N,) labels for figure 2's last panel.
        embeddings_name: what they are, for that panel's title.
        logs: run directories whose log.csv figure 5 reads.

    Returns:
        The files written, in order.

    Raises:
        ValueError: on an unknown figure, dims < 2, draws < 2, figure 5 without logs,
            a run without log.csv, embeddings or logs given to no figure that uses them.
    """
    names = check_figures(
        figures,
        dims=dims,
        draws=draws,
        seed=seed,
        embeddings=embeddings is not None,
        logs=bool(logs),
    )
    settings = Settings(
        tuple(dims), draws, seed, embeddings, embeddings_name, tuple(Path(p) for p in logs)
    )
    for name in names:  # fail before drawing anything
        FIGURES[name].check(settings)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in names:
        figure, table = FIGURES[name].draw(settings)
        figure.savefig(out / f"{name}.png", dpi=110)
        write_csv(out / f"{name}.csv", table)
        written += [out / f"{name}.png", out / f"{name}.csv"]
    return written
