"""Figure 2, ``sampled_distances``: the anchor–negative distances each strategy draws.

On uniform points with random labels, or on P×K batches of given embeddings (a trained
model's), against every negative distance in the batches and the sphere's q(d).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.analysis._common import FigureSpec, Settings, Table, new_figure
from sampling_matters.distances import pairwise_distances
from sampling_matters.sampling import SAMPLINGS, DistanceWeighted, Triplets, distance_weighted
from sampling_matters.sphere import log_distance_density, uniform_on_sphere

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SAMPLED_DIMS = (16, 128)
"""Figure 2's dimensions of uniform points."""

CLASSES_PER_BATCH, SAMPLES_PER_CLASS = 32, 4
"""Figure 2's P×K batches (and those figure 3 averages over)."""

STRATEGIES: dict[str, Callable[..., Triplets]] = {
    **{name: kind() for name, kind in SAMPLINGS.items()},
    "distance-weighted-empirical": DistanceWeighted(density="empirical"),
}
"""Figure 2's and 3's strategies: the library's samplings, and distance weighted sampling
with the density of the batch's own distances (``density="empirical"``) in place of the
sphere's."""

STRATEGY_COLOURS = {
    "uniform": "tab:blue",
    "hard": "tab:red",
    "semihard": "tab:orange",
    "distance-weighted": "tab:green",
    "distance-weighted-empirical": "tab:olive",
}

_DW = inspect.signature(distance_weighted).parameters
CUTOFF = float(_DW["cutoff"].default)
"""Distance weighted sampling's default cutoff (read from its signature)."""
NONZERO_LOSS_CUTOFF = float(_DW["nonzero_loss_cutoff"].default)
"""Distance weighted sampling's default non-zero loss cutoff, α + β = 1.4."""


@dataclass(frozen=True)
class SampledDistances:
    """The anchor–negative distances each strategy drew from the same batches.

    Attributes:
        title: what the batches were.
        dim: the embeddings' dimension n.
        distances: strategy name -> (T,) the distances D_an of its triplets.
        negatives: (M,) every anchor–negative distance in the batches (each pair once).
    """

    title: str
    dim: int
    distances: dict[str, Tensor]
    negatives: Tensor


def batches_for(draws: int) -> int:
    """Batches of P×K that give about ``draws`` triplets (P·K·(K−1) per batch)."""
    per_batch = CLASSES_PER_BATCH * SAMPLES_PER_CLASS * (SAMPLES_PER_CLASS - 1)
    return max(1, math.ceil(draws / per_batch))


def uniform_batches(
    dim: int,
    batches: int,
    *,
    classes: int = CLASSES_PER_BATCH,
    per_class: int = SAMPLES_PER_CLASS,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches of uniform points on S^(dim-1) with random labels, P classes × K points.

    Args:
        dim: the dimension n ≥ 2.
        batches: how many batches.
        classes: P ≥ 2.
        per_class: K ≥ 2.
        generator: the random source.

    Returns:
        An iterator of (P·K, dim) embeddings and (P·K,) int64 labels (the inputs are
        checked at the call, not at the first batch).
    """
    _checks.integer("dim", dim, 2)
    _checks.integer("classes", classes, 2)
    _checks.integer("per_class", per_class, 2)
    labels = torch.arange(classes).repeat_interleave(per_class)  # (P·K,)
    return ((uniform_on_sphere(len(labels), dim, generator), labels) for _ in range(batches))


def pk_batches(
    embeddings: Tensor,
    labels: Tensor,
    batches: int,
    *,
    classes: int = CLASSES_PER_BATCH,
    per_class: int = SAMPLES_PER_CLASS,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """P×K batches drawn from given embeddings: random classes, random items of each.

    Only classes with at least K items are drawn; P is capped at their number. Rows are
    L2-normalised (a trained model's embeddings already are).

    Args:
        embeddings: (N, D) embeddings.
        labels: (N,) integer class ids.
        batches: how many batches.
        classes: P ≥ 2.
        per_class: K ≥ 2.
        generator: the random source.

    Returns:
        An iterator of (P·K, D) embeddings and (P·K,) labels (the inputs are checked at
        the call, not at the first batch).

    Raises:
        ValueError: on mismatched inputs or fewer than two classes with K items.
    """
    _checks.integer("classes", classes, 2)
    usable = usable_classes(embeddings, labels, per_class)  # (C,) checks the inputs
    x = torch.nn.functional.normalize(embeddings.detach().float(), dim=1)  # (N, D)
    return (
        _pk_batch(x, labels, usable, min(classes, len(usable)), per_class, generator)
        for _ in range(batches)
    )


def _pk_batch(
    x: Tensor,
    labels: Tensor,
    usable: Tensor,
    classes: int,
    per_class: int,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """One batch: ``classes`` random classes of ``usable``, ``per_class`` random items each."""
    chosen = usable[torch.randperm(len(usable), generator=generator)[:classes]]  # (P,)
    index = torch.isin(labels, chosen).nonzero().squeeze(1)
    index = index[torch.randperm(len(index), generator=generator)]  # shuffled
    index = index[labels[index].sort(stable=True).indices]  # grouped by class
    _, sizes = torch.unique_consecutive(labels[index], return_counts=True)
    start = torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes)
    index = index[torch.arange(len(index)) - start < per_class]  # (P·K,)
    return x[index], labels[index]


def usable_classes(embeddings: Tensor, labels: Tensor, per_class: int) -> Tensor:
    """The classes with at least ``per_class`` items, checking the inputs.

    Args:
        embeddings: (N, D) floating embeddings.
        labels: (N,) integer class ids.
        per_class: K ≥ 2.

    Returns:
        (C,) the class ids, C ≥ 2.

    Raises:
        ValueError: on malformed inputs or fewer than two such classes.
    """
    _checks.integer("per_class", per_class, 2)
    _checks.embeddings_2d(embeddings, finite=True)
    _checks.labels_1d(labels, len(embeddings))
    names, counts = torch.unique(labels, return_counts=True)
    usable: Tensor = names[counts >= per_class]  # (C,)
    if len(usable) < 2:
        raise ValueError(f"need at least 2 classes with {per_class} items each, got {len(usable)}")
    return usable


def sampled_distances(
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    title: str,
    strategies: Sequence[str] = tuple(STRATEGIES),
    generator: torch.Generator | None = None,
) -> SampledDistances:
    """Run every strategy on the same batches and keep the anchor–negative distances.

    Each strategy runs with its defaults (semi-hard's margin 0.2; distance weighted's
    cutoff 0.5, non-zero loss cutoff 1.4 and the sphere's density).

    Args:
        batches: (N, D) unit-norm embeddings and (N,) labels, e.g. from
            :func:`uniform_batches` or :func:`pk_batches`.
        title: what the batches are, for the figure.
        strategies: names in :data:`STRATEGIES`.
        generator: the random source of the random strategies.

    Returns:
        See :class:`SampledDistances`.
    """
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; expected some of {sorted(STRATEGIES)}")
    drawn: dict[str, list[Tensor]] = {name: [] for name in strategies}
    negatives, dim = [], 0
    for x, labels in batches:
        dim = x.shape[1]
        for name in strategies:
            t = STRATEGIES[name](x, labels, generator=generator)
            drawn[name].append((x[t.anchor] - x[t.negative]).norm(dim=1))  # (T,)
        upper = torch.triu(labels[:, None] != labels[None, :], diagonal=1)  # (N, N)
        negatives.append(pairwise_distances(x)[upper])  # (M,)
    if not negatives:
        raise ValueError("no batch given")
    return SampledDistances(
        title, dim, {name: torch.cat(d) for name, d in drawn.items()}, torch.cat(negatives)
    )


def _density(d: Tensor, edges: Tensor) -> Tensor:
    counts = torch.histc(d.float(), len(edges) - 1, float(edges[0]), float(edges[-1]))
    return counts / max(len(d), 1) / float(edges[1] - edges[0])


def _mean_std(d: Tensor) -> str:
    return f"{float(d.mean()):.2f} ± {float(d.std()):.2f}"


def sampled_table(panels: Sequence[SampledDistances]) -> Table:
    """One row per panel, series (a strategy or all negatives) and bin: the density."""
    edges = torch.linspace(0.0, 2.0, 81)
    rows: list[tuple[object, ...]] = []
    comments = ["density of the anchor-negative distances each strategy drew; per panel:"]
    for p, panel in enumerate(panels):
        comments.append(f"panel {p}: {panel.title}")
        series = {**panel.distances, "all negatives": panel.negatives}
        for name, d in series.items():
            comments.append(f"  {name}: {len(d)} distances, mean ± std {_mean_std(d)}")
            density = _density(d, edges)
            rows += [
                (p, panel.dim, name, float(edges[b]), float(edges[b + 1]), float(density[b]))
                for b in range(len(density))
            ]
    return Table(comments, ("panel", "dim", "series", "bin_left", "bin_right", "density"), rows)


def plot_sampled_distances(panels: Sequence[SampledDistances]) -> Figure:
    """Figure 2: per panel, the density of each strategy's distances, q(d), all negatives."""
    figure, axes = new_figure(1, len(panels), (5.2 * len(panels), 4.2))
    edges = torch.linspace(0.0, 2.0, 81)
    grid = (torch.arange(800, dtype=torch.float64) + 0.5) / 400
    for ax, panel in zip(axes, panels, strict=True):
        ax.stairs(
            _density(panel.negatives, edges).numpy(),
            edges.numpy(),
            fill=True,
            color="lightgrey",
            label="all negatives in the batch",
        )
        ax.plot(
            grid.numpy(),
            log_distance_density(grid, panel.dim).exp().numpy(),
            "k--",
            lw=1,
            label=f"sphere q(d), n = {panel.dim}",
        )
        for name, d in panel.distances.items():
            ax.stairs(
                _density(d, edges).numpy(),
                edges.numpy(),
                lw=1.6,
                color=STRATEGY_COLOURS.get(name),
                label=f"{name}: {_mean_std(d)}",
            )
        for x in (CUTOFF, NONZERO_LOSS_CUTOFF):
            ax.axvline(x, color="tab:green", ls=":", lw=1)
        ax.set_ylim(0, 1.1 * max(float(_density(d, edges).max()) for d in panel.distances.values()))
        ax.set(xlim=(0, 2), xlabel="anchor–negative distance", ylabel="density", title=panel.title)
        ax.legend(fontsize=7, loc="upper left")
    figure.suptitle(
        "Distances drawn by each sampling strategy (one negative per anchor–positive pair)\n"
        f"dotted: distance weighted's cutoff {CUTOFF:g} and non-zero loss cutoff "
        f"{NONZERO_LOSS_CUTOFF:g}"
    )
    return figure


def uniform_panel(s: Settings, dim: int) -> SampledDistances:
    """Strategies' distances on uniform points in ``dim``, drawn once per :class:`Settings`.

    Figure 3 averages over the panel figure 2 draws in its dimension; the draws depend
    only on the seed and ``dim``, so they are the same whichever figure draws first.
    """
    if dim not in s.panels:
        g = s.generator(dim)
        pk = f"{CLASSES_PER_BATCH}×{SAMPLES_PER_CLASS}"
        title = f"uniform points, n = {dim}, random labels ({pk})"
        s.panels[dim] = sampled_distances(
            uniform_batches(dim, batches_for(s.draws), generator=g), title=title, generator=g
        )
    return s.panels[dim]


def _compute(s: Settings) -> list[SampledDistances]:
    panels = [uniform_panel(s, dim) for dim in SAMPLED_DIMS]
    if s.embeddings is not None:
        x, labels = s.embeddings
        g = s.generator(2)
        batches = pk_batches(x, labels, batches_for(s.draws), generator=g)
        title = f"{s.embeddings_name}, n = {x.shape[1]}, P×K batches of its labels"
        panels.append(sampled_distances(batches, title=title, generator=g))
    return panels


def _check(s: Settings) -> None:
    if s.embeddings is not None:
        usable_classes(*s.embeddings, SAMPLES_PER_CLASS)


FIGURE = FigureSpec(
    name="sampled_distances",
    help="distances each strategy draws (and --run, --embeddings)",
    compute=_compute,
    table=sampled_table,
    plot=plot_sampled_distances,
    check=_check,
    reads_embeddings=True,
)
