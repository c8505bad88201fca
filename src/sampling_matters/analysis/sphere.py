"""Figure 1, ``sphere_distances``: the exact q(d) on S^(n-1) against Monte-Carlo histograms.

q(d) is the density of distances between uniform points on the sphere (the paper's
Eq. 1), from :func:`sampling_matters.sphere.log_distance_density`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.analysis._common import (
    FigureSpec,
    Settings,
    Table,
    check_dims,
    new_figure,
)
from sampling_matters.sphere import log_distance_density, uniform_on_sphere

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEFAULT_DIMS = (2, 3, 4, 8, 16, 32, 128, 512)
"""Figure 1's dimensions n (points on S^(n-1))."""


@dataclass(frozen=True)
class SphereDistances:
    """Distances between uniform points on S^(n-1): Monte-Carlo against exact.

    Attributes:
        dims: the K dimensions n.
        edges: (B + 1,) bin edges over [0, 2].
        monte_carlo: (K, B) histogram densities of ``draws`` distances per dimension,
            each between two independent uniform points.
        exact: (K, B) q(d) averaged over each bin (finite even where q diverges).
        draws: distances drawn per dimension.
    """

    dims: tuple[int, ...]
    edges: Tensor
    monte_carlo: Tensor
    exact: Tensor
    draws: int

    def total_variation(self) -> Tensor:
        """(K,) the total variation ½ Σ |p̂ − p| between the two bin distributions."""
        width = self.edges.diff()  # (B,)
        return 0.5 * ((self.monte_carlo - self.exact).abs() * width).sum(1)  # (K,)


def exact_bin_density(edges: Tensor, dim: int, *, points: int = 64) -> Tensor:
    """The exact q(d) averaged over each bin, from :func:`sphere.log_distance_density`.

    Integrated over the angle θ (d = 2 sin(θ/2)) by the midpoint rule: the integrand
    q(d(θ)) · cos(θ/2) is bounded for every n ≥ 2, although q itself diverges at d = 2
    for n = 2. Midpoints never touch the ends, so the result is always finite.

    Args:
        edges: (B + 1,) increasing bin edges within [0, 2].
        dim: the dimension n ≥ 2.
        points: midpoints per bin.

    Returns:
        (B,) float64 mean densities; times the bin widths they sum to 1 over [0, 2].

    Example:
        >>> exact_bin_density(torch.tensor([0.0, 1.0, 2.0]), 3)  # q(d) = d / 2
        tensor([0.2500, 0.7500], dtype=torch.float64)
    """
    edges = edges.double()
    theta = 2.0 * torch.asin((edges / 2).clamp(0.0, 1.0))  # (B + 1,)
    u = (torch.arange(points, dtype=torch.float64) + 0.5) / points  # (S,)
    mid = theta[:-1, None] + u * theta.diff()[:, None]  # (B, S)
    integrand = log_distance_density(2 * torch.sin(mid / 2), dim).exp() * torch.cos(mid / 2)
    return integrand.mean(1) * theta.diff() / edges.diff()  # (B,)


def sphere_distances(
    dims: Sequence[int] = DEFAULT_DIMS,
    *,
    draws: int = 10_000,
    bins: int = 100,
    generator: torch.Generator | None = None,
) -> SphereDistances:
    """Monte-Carlo histograms of distances between uniform points, and the exact q(d).

    Args:
        dims: dimensions n ≥ 2.
        draws: distances per dimension (independent pairs of uniform points).
        bins: equal bins over [0, 2].
        generator: the random source.

    Returns:
        The densities, see :class:`SphereDistances`.
    """
    dims = check_dims(dims)
    _checks.integer("draws", draws, 2)
    _checks.positive_int("bins", bins)
    edges = torch.linspace(0.0, 2.0, bins + 1, dtype=torch.float64)  # (B + 1,)
    width = 2.0 / bins
    histograms, exact = [], []
    for n in dims:
        x, y = uniform_on_sphere(draws, n, generator), uniform_on_sphere(draws, n, generator)
        d = (x - y).norm(dim=1)  # (draws,)
        histograms.append(torch.histc(d, bins, 0.0, 2.0).double() / (draws * width))  # (B,)
        exact.append(exact_bin_density(edges, n))
    return SphereDistances(dims, edges, torch.stack(histograms), torch.stack(exact), draws)


def sphere_table(data: SphereDistances) -> Table:
    """One row per dimension and bin: the Monte-Carlo and the exact density."""
    tv = data.total_variation()
    rows = [
        (n, float(lo), float(hi), float(data.monte_carlo[k, b]), float(data.exact[k, b]))
        for k, n in enumerate(data.dims)
        for b, (lo, hi) in enumerate(zip(data.edges[:-1], data.edges[1:], strict=True))
    ]
    comments = [
        f"distances between {data.draws} pairs of independent uniform points on S^(n-1) per n",
        "exact_density: q(d) of sphere.log_distance_density averaged over the bin",
        "total variation: "
        + ", ".join(f"n={n}: {float(t):.4f}" for n, t in zip(data.dims, tv, strict=True)),
    ]
    return Table(
        comments, ("dim", "bin_left", "bin_right", "monte_carlo_density", "exact_density"), rows
    )


def plot_sphere_distances(data: SphereDistances) -> Figure:
    """Figure 1: one panel per dimension, histogram and exact q(d); √2 marked."""
    cols = min(4, len(data.dims))
    rows = math.ceil(len(data.dims) / cols)
    figure, axes = new_figure(rows, cols, (3.4 * cols, 2.7 * rows + 0.6))
    grid = (torch.arange(800, dtype=torch.float64) + 0.5) / 400  # (800,) inside (0, 2)
    tv = data.total_variation()
    for k, (ax, n) in enumerate(zip(axes, data.dims, strict=False)):
        ax.stairs(
            data.monte_carlo[k].numpy(),
            data.edges.numpy(),
            fill=True,
            alpha=0.4,
            color="tab:blue",
            label="Monte Carlo",
        )
        ax.plot(
            grid.numpy(),
            log_distance_density(grid, n).exp().numpy(),
            color="black",
            lw=1.2,
            label="exact q(d)",
        )
        ax.axvline(math.sqrt(2), color="grey", ls=":", lw=1)
        top = float(torch.cat([data.monte_carlo[k], data.exact[k]]).max())
        ax.set(xlim=(0, 2), ylim=(0, 1.15 * top), title=f"n = {n}   (TV = {float(tv[k]):.3f})")
        ax.set_xlabel("distance d")
    for ax in axes[len(data.dims) :]:
        ax.set_visible(False)
    axes[0].set_ylabel("density")
    axes[0].legend(loc="upper left", fontsize=8)
    figure.suptitle(
        f"Distances between uniform points on the sphere S^(n−1): {data.draws} pairs per n\n"
        "against the exact q(d) ∝ d^(n−2)(1 − d²/4)^((n−3)/2); dotted: √2"
    )
    return figure


def _compute(s: Settings) -> SphereDistances:
    return sphere_distances(s.dims, draws=s.draws, generator=s.generator(1))


FIGURE = FigureSpec(
    name="sphere_distances",
    help="q(d) on the sphere against Monte Carlo, per n (--dims)",
    compute=_compute,
    table=sphere_table,
    plot=plot_sphere_distances,
)
