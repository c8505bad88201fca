"""Figure 3, ``gradient_variance``: hard negatives give high-variance gradients.

The paper's Section 4 argument. The gradient of a loss with respect to a negative is
w(D_an) · h_an / ‖h_an‖; when the embeddings are noisy, the direction h_an / ‖h_an‖ is
noisy where ‖h_an‖ is small, so hard negatives give high-variance gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.analysis._common import (
    FigureSpec,
    Settings,
    Table,
    check_sigmas,
    new_figure,
)
from sampling_matters.analysis.sampled import (
    CLASSES_PER_BATCH,
    NONZERO_LOSS_CUTOFF,
    SAMPLES_PER_CLASS,
    STRATEGY_COLOURS,
    SampledDistances,
    batches_for,
    sampled_distances,
    uniform_batches,
    uniform_panel,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

NOISE_LEVELS = (0.01, 0.05, 0.1)
"""Figure 3's noise levels σ (standard deviation per coordinate)."""

GRADIENT_DIM = 128
"""Figure 3's dimension n."""


@dataclass(frozen=True)
class GradientVariance:
    """Variance of the gradient direction of D_an w.r.t. a noisy negative.

    Attributes:
        dim: the dimension n.
        sigmas: the S noise levels σ.
        draws: noise draws per distance.
        distances: (G,) the distances t.
        variance: (S, G) E‖g − E g‖² of the unit direction g at each σ and t.
        by_strategy: strategy name -> (S,) the variance averaged over the distances
            the strategy draws on uniform points in dimension n.
        mean_distance: strategy name -> the mean of those distances.
        active: strategy name -> the fraction of them below the non-zero loss cutoff
            (1.4 = α + β of the margin loss): the draws that can give any loss.
    """

    dim: int
    sigmas: tuple[float, ...]
    draws: int
    distances: Tensor
    variance: Tensor
    by_strategy: dict[str, Tensor] = field(default_factory=dict)
    mean_distance: dict[str, float] = field(default_factory=dict)
    active: dict[str, float] = field(default_factory=dict)

    @property
    def setup(self) -> str:
        """The simulation's set-up in one line."""
        sigmas = ", ".join(f"{s:g}" for s in self.sigmas)
        return (
            f"n = {self.dim}, noise σ ∈ {{{sigmas}}} per coordinate on anchor and negative "
            f"(then renormalised), {self.draws} draws per distance"
        )


def direction_variance(
    distances: Tensor,
    dim: int,
    sigmas: Sequence[float],
    *,
    draws: int = 10_000,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Variance of the gradient direction ∂D_an/∂f(x_n) = h / ‖h‖ under embedding noise.

    The anchor a and the negative n lie on the unit sphere in Rⁿ at distance t. Each
    draw adds Gaussian noise of standard deviation σ per coordinate to both, projects
    them back onto the sphere, and takes the direction g = (n' − a') / ‖n' − a'‖ (the
    gradient of D_an with respect to the negative; the paper's Section 4 multiplies
    it by the loss's weight w(t)). The variance is the trace of g's covariance,
    E‖g − E g‖² ∈ [0, 1]: 0 for a noise-free direction, 1 for a uniformly random one.
    The same noise serves every t and σ (common random numbers), so the curves are
    smooth and comparable.

    Args:
        distances: (G,) distances t in (0, 2].
        dim: the dimension n ≥ 2.
        sigmas: S noise levels σ > 0.
        draws: noise draws (≥ 2).
        generator: the random source.

    Returns:
        (S, G) float64 variances (unbiased over the draws).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> v = direction_variance(torch.tensor([0.1, 1.5]), 32, [0.05], draws=2000, generator=g)
        >>> bool(v[0, 0] > v[0, 1])
        True
    """
    _checks.integer("dim", dim, 2)
    _checks.integer("draws", draws, 2)
    sigmas = check_sigmas(sigmas)
    if distances.dim() != 1 or not bool(((distances > 0) & (distances <= 2)).all()):
        raise ValueError("distances must be a 1-d tensor of values in (0, 2]")
    noise_a, noise_n = torch.randn(2, draws, dim, generator=generator, dtype=torch.float64)
    t = distances.double()  # (G,)
    cos = 1.0 - t.square() / 2  # anchor e₁, negative p = cos·e₁ + sin·e₂
    sin = (1.0 - cos.square()).clamp_min(0.0).sqrt()  # (G,)
    return torch.stack(
        [_direction_variance(noise_a, noise_n, cos, sin, sigma) for sigma in sigmas]
    )  # (S, G)


def _direction_variance(
    noise_a: Tensor, noise_n: Tensor, cos: Tensor, sin: Tensor, sigma: float
) -> Tensor:
    """(G,) the variance of g for one σ, without forming the (R, G, n) noisy points.

    With ε_a, ε_n the (R, n) noise draws, everything g depends on reduces to per-draw
    scalars (ε's first two coordinates, ‖ε_a‖², ‖ε_n‖², ε_a·ε_n), except the mean
    E g, whose noise part is one matrix product εᵀ · weights. As ‖g‖ = 1, the
    variance is 1 − ‖E g‖² (times R / (R − 1)).
    """
    r = len(noise_a)
    a1, a2, n1, n2 = noise_a[:, :1], noise_a[:, 1:2], noise_n[:, :1], noise_n[:, 1:2]  # (R, 1)
    aa, nn = noise_a.square().sum(1, keepdim=True), noise_n.square().sum(1, keepdim=True)
    an = (noise_a * noise_n).sum(1, keepdim=True)  # (R, 1)
    norm_a = (1 + 2 * sigma * a1 + sigma**2 * aa).sqrt()  # (R, 1) ‖e₁ + σ ε_a‖
    norm_n = (1 + 2 * sigma * (cos * n1 + sin * n2) + sigma**2 * nn).sqrt()  # (R, G)
    dot = cos + sigma * (cos * a1 + sin * a2 + n1) + sigma**2 * an  # (R, G) unnormalised
    h = (2 - 2 * dot / (norm_a * norm_n)).clamp_min(1e-30).sqrt()  # (R, G) ‖n' − a'‖
    w_n, w_a = 1 / (h * norm_n), 1 / (h * norm_a)  # (R, G): g = w_n (p + σε_n) − w_a (e₁ + σε_a)
    mean = sigma * (noise_n.T @ w_n - noise_a.T @ w_a) / r  # (n, G) noise part of E g
    mean[0] += cos * w_n.mean(0) - w_a.mean(0)
    mean[1] += sin * w_n.mean(0)
    return (1 - mean.square().sum(0)) * r / (r - 1)  # (G,)


def expected_variance(distances: Tensor, variance: Tensor, samples: Tensor) -> Tensor:
    """The mean of variance curves over sampled distances (linear interpolation).

    Args:
        distances: (G,) increasing distances of the curves.
        variance: (S, G) curves.
        samples: (T,) distances a strategy drew (clamped into the curves' range).

    Returns:
        (S,) mean interpolated variance.

    Example:
        >>> expected_variance(torch.tensor([0.0, 2.0]), torch.tensor([[1.0, 0.0]]),
        ...                   torch.tensor([0.5, 1.5]))
        tensor([0.5000], dtype=torch.float64)
    """
    if not len(samples):
        raise ValueError("no sampled distances to average over")
    grid = distances.double()
    x = samples.double().clamp(float(grid[0]), float(grid[-1]))  # (T,)
    i = torch.searchsorted(grid, x).clamp(1, len(grid) - 1)  # (T,)
    w = (x - grid[i - 1]) / (grid[i] - grid[i - 1])  # (T,)
    values = variance.double()
    return (values[:, i - 1] * (1 - w) + values[:, i] * w).mean(1)  # (S,)


def gradient_variance(
    *,
    dim: int = GRADIENT_DIM,
    sigmas: Sequence[float] = NOISE_LEVELS,
    draws: int = 10_000,
    points: int = 40,
    sampled: SampledDistances | None = None,
    generator: torch.Generator | None = None,
) -> GradientVariance:
    """The paper's Section 4 simulation, and the gradient variance of each strategy.

    Computes :func:`direction_variance` on ``points`` distances t from 0.05 to 2, then
    averages each curve over the anchor–negative distances each strategy draws on
    uniform points in dimension n with random labels (``sampled``; drawn here when
    None, :func:`~.sampled.sampled_distances` of about ``draws`` triplets per strategy).

    Args:
        dim: the dimension n.
        sigmas: noise levels σ per coordinate.
        draws: noise draws per distance.
        points: distances on the grid (≥ 2).
        sampled: the strategies' distances, in dimension ``dim``.
        generator: the random source.

    Returns:
        See :class:`GradientVariance`.
    """
    _checks.integer("points", points, 2)
    if sampled is None:
        sampled = sampled_distances(
            uniform_batches(dim, batches_for(draws), generator=generator),
            title="",
            generator=generator,
        )
    if sampled.dim != dim:
        raise ValueError(f"sampled distances are in dimension {sampled.dim}, not {dim}")
    grid = torch.linspace(0.05, 2.0, points, dtype=torch.float64)  # (G,)
    variance = direction_variance(grid, dim, sigmas, draws=draws, generator=generator)
    by_strategy = {
        name: expected_variance(grid, variance, d) for name, d in sampled.distances.items()
    }
    means = {name: float(d.mean()) for name, d in sampled.distances.items()}
    active = {
        name: float((d < NONZERO_LOSS_CUTOFF).double().mean())
        for name, d in sampled.distances.items()
    }
    return GradientVariance(dim, tuple(sigmas), draws, grid, variance, by_strategy, means, active)


def variance_table(data: GradientVariance) -> Table:
    """Rows of the curves (σ, t, variance) and of each strategy's expected variance per σ."""
    rows: list[tuple[object, ...]] = [
        ("curve", sigma, float(t), float(data.variance[i, j]))
        for i, sigma in enumerate(data.sigmas)
        for j, t in enumerate(data.distances)
    ]
    rows += [
        (f"strategy:{name}", sigma, data.mean_distance[name], float(v[i]))
        for name, v in data.by_strategy.items()
        for i, sigma in enumerate(data.sigmas)
    ]
    comments = [
        f"set-up: {data.setup}",
        "curve rows: variance E|g - E g|^2 of g = (n'-a')/|n'-a'| at distance t",
        "strategy rows: that variance averaged over the distances each strategy draws on "
        f"uniform points in n = {data.dim} with random labels, {CLASSES_PER_BATCH} classes x "
        f"{SAMPLES_PER_CLASS} per batch; distance = the strategy's mean drawn distance",
    ]
    return Table(comments, ("series", "sigma", "distance", "variance"), rows)


def plot_gradient_variance(data: GradientVariance) -> Figure:
    """Figure 3: variance against distance per σ, and each strategy's variance relative to DW."""
    figure, (left, right) = new_figure(1, 2, (12.5, 4.8))
    for i, sigma in enumerate(data.sigmas):
        left.plot(data.distances.numpy(), data.variance[i].numpy(), label=f"σ = {sigma:g}")
    for name, mean in data.mean_distance.items():
        left.axvline(mean, color=STRATEGY_COLOURS.get(name), ls=":", lw=1.2)
    left.set(
        xlim=(0, 2),
        ylim=(0, 1.02),
        xlabel="anchor–negative distance t  (dotted: each strategy's mean, colours as right)",
        ylabel="variance of the gradient direction",
        title="E‖g − E g‖² of g = h / ‖h‖ at distance t",
    )
    left.legend(fontsize=8)
    _strategy_bars(right, data)
    figure.suptitle(f"Gradient variance under noisy embeddings\n{data.setup}", fontsize=10)
    return figure


def _strategy_bars(ax: Axes, data: GradientVariance) -> None:
    """Grouped bars: per σ, each strategy's expected variance over distance weighted's."""
    reference = data.by_strategy.get("distance-weighted")
    width = 0.8 / len(data.by_strategy)
    top = 0.0
    for k, (name, values) in enumerate(data.by_strategy.items()):
        ratio = values / reference if reference is not None else values
        top = max(top, float(ratio.max()))
        offset = (k - (len(data.by_strategy) - 1) / 2) * width
        label = f"{name}: mean t {data.mean_distance[name]:.2f}, {data.active[name]:.0%} active"
        bars = ax.bar(
            [i + offset for i in range(len(data.sigmas))],
            ratio.tolist(),
            width,
            color=STRATEGY_COLOURS.get(name),
            label=label,
        )
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ticks = [f"σ = {s:g}" for s in data.sigmas]
    if reference is not None:
        ticks = [f"{t}\n(DW: {float(v):.3g})" for t, v in zip(ticks, reference, strict=True)]
    ax.set_xticks(range(len(data.sigmas)), ticks)
    ax.axhline(1.0, color="grey", lw=0.5)
    what = "relative to distance weighted" if reference is not None else ""
    ax.set(
        ylabel=f"expected variance {what}",
        title=f"under each strategy's distances (uniform points, n = {data.dim})",
    )
    ax.set_ylim(0, 1.45 * top)
    ax.legend(
        fontsize=7,
        loc="upper center",
        ncols=2,
        title=f"active: D_an < {NONZERO_LOSS_CUTOFF:g}",
        title_fontsize=7,
    )


def _compute(s: Settings) -> GradientVariance:
    return gradient_variance(
        draws=s.draws, sampled=uniform_panel(s, GRADIENT_DIM), generator=s.generator(3)
    )


FIGURE = FigureSpec(
    name="gradient_variance",
    help="gradient variance under noise, and under each strategy",
    compute=_compute,
    table=variance_table,
    plot=plot_gradient_variance,
)
