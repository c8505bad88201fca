"""The paper's analyses and figures: q(d), sampled distances, gradient variance, losses.

Five figures, each a pure data function (tensors in small dataclasses) and a plotting
function that turns its result into a matplotlib ``Figure``:

1. :func:`sphere_distances`: the exact density q(d) of distances between uniform
   points on S^(n-1) (the paper's Eq. 1) against Monte-Carlo histograms.
2. :func:`sampled_distances`: the anchor–negative distances each sampling strategy
   draws, on uniform points with random labels or on given embeddings.
3. :func:`gradient_variance`: the paper's Section 4 argument. The gradient of a loss
   with respect to a negative is w(D_an) · h_an / ‖h_an‖; when the embeddings are
   noisy, the direction h_an / ‖h_an‖ is noisy where ‖h_an‖ is small, so hard
   negatives give high-variance gradients.
4. :func:`loss_shapes`: contrastive, triplet (plain and squared) and margin loss as
   functions of one distance, with their gradients from the library's own loss code.
5. :func:`training_curves`: sampled negative distances, active fraction and β over
   a training run, read from its ``log.csv``.

:func:`write_figures` writes each figure as a PNG and the data behind it as a CSV
(comment lines starting with ``#`` state the set-up; every value is finite).
matplotlib is imported only inside the plotting functions, so ``import
sampling_matters`` stays light, and figures are drawn with the Agg canvas without
touching pyplot's global state.
"""

from __future__ import annotations

import csv
import inspect
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from sampling_matters import files
from sampling_matters.distances import pairwise_distances
from sampling_matters.losses import (
    LOSSES,
    ContrastiveLoss,
    LossModule,
    MarginLoss,
    TripletLoss,
    contrastive_terms,
    make_loss,
    margin_terms,
    triplet_terms,
)
from sampling_matters.sampling import SAMPLINGS, Pairs, Triplets, distance_weighted
from sampling_matters.sphere import log_distance_density, uniform_on_sphere

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_DIMS",
    "FIGURES",
    "STRATEGIES",
    "GradientVariance",
    "LossShapes",
    "SampledDistances",
    "SphereDistances",
    "TrainingCurve",
    "check_figures",
    "direction_variance",
    "exact_bin_density",
    "expected_variance",
    "gradient_variance",
    "load_embeddings",
    "loss_shape",
    "loss_shapes",
    "parse_dims",
    "parse_figures",
    "pk_batches",
    "plot_gradient_variance",
    "plot_loss_shapes",
    "plot_sampled_distances",
    "plot_sphere_distances",
    "plot_training_curves",
    "read_log",
    "sampled_distances",
    "sphere_distances",
    "training_curves",
    "uniform_batches",
    "usable_classes",
    "write_figures",
]

FIGURES = (
    "sphere_distances",
    "sampled_distances",
    "gradient_variance",
    "loss_shapes",
    "training_curves",
)
"""The figures by name; ``--only`` also takes their numbers, 1 to 5."""

DEFAULT_DIMS = (2, 3, 4, 8, 16, 32, 128, 512)
"""Figure 1's dimensions n (points on S^(n-1))."""

SAMPLED_DIMS = (16, 128)
"""Figure 2's dimensions of uniform points."""

NOISE_LEVELS = (0.01, 0.05, 0.1)
"""Figure 3's noise levels σ (standard deviation per coordinate)."""

GRADIENT_DIM = 128
"""Figure 3's dimension n."""

OTHER_DISTANCE = 1.0
"""Figure 4: a triplet's other distance (D_an for positive curves, D_ap for negative ones)."""

CLASSES_PER_BATCH, SAMPLES_PER_CLASS = 32, 4
"""Figure 2's P×K batches."""

STRATEGIES: dict[str, Callable[..., Triplets]] = {
    **SAMPLINGS,
    "distance-weighted-empirical": partial(distance_weighted, density="empirical"),
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

_LINE_STYLES = ("-", "--", "-.", ":")

_DW = inspect.signature(distance_weighted).parameters
CUTOFF = float(_DW["cutoff"].default)
"""Distance weighted sampling's default cutoff (read from its signature)."""
NONZERO_LOSS_CUTOFF = float(_DW["nonzero_loss_cutoff"].default)
"""Distance weighted sampling's default non-zero loss cutoff, α + β = 1.4."""

_LOG_COLUMNS = ("step", "negative_distance", "negative_distance_std", "active_fraction", "beta")


# --------------------------------------------------------------------------- checks


MAX_DIM = 65_536
MAX_DRAWS = 10_000_000


def _check_int(name: str, value: object, minimum: int, maximum: int = 2**62) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValueError(f"{name} must be an integer in [{minimum}, {maximum}], got {value!r}")
    return value


def _check_dims(dims: Sequence[int]) -> tuple[int, ...]:
    if not len(dims):
        raise ValueError("dims must name at least one dimension")
    return tuple(_check_int("each dimension", n, 2, MAX_DIM) for n in dims)


def _check_sigmas(sigmas: Sequence[float]) -> tuple[float, ...]:
    if not len(sigmas) or not all(isinstance(s, (int, float)) and s > 0 for s in sigmas):
        raise ValueError(f"sigmas must be one or more numbers > 0, got {sigmas!r}")
    return tuple(float(s) for s in sigmas)


def parse_dims(text: str) -> tuple[int, ...]:
    """Dimensions from a comma-separated list, e.g. ``"2,3,128"``.

    Raises:
        ValueError: on anything but integers ≥ 2.

    Example:
        >>> parse_dims("2, 3,128")
        (2, 3, 128)
    """
    try:
        dims = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"dims must be comma-separated integers >= 2, got {text!r}") from None
    return _check_dims(dims)


def numbered_figures() -> str:
    """``1 = sphere_distances, 2 = …``: the figures by number."""
    return ", ".join(f"{i} = {n}" for i, n in enumerate(FIGURES, 1))


def parse_figures(text: str) -> tuple[str, ...]:
    """Figure names from a comma-separated list of names or numbers (1 = sphere_distances).

    Raises:
        ValueError: on an unknown figure.

    Example:
        >>> parse_figures("1,loss_shapes")
        ('sphere_distances', 'loss_shapes')
    """
    names = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name = FIGURES[int(part) - 1] if part.isdigit() and 1 <= int(part) <= 5 else part
        if name not in FIGURES:
            raise ValueError(
                f"unknown figure {part!r}; expected names or numbers: {numbered_figures()}"
            )
        names.append(name)
    if not names:
        raise ValueError(f"no figure given; name figures by number or name: {numbered_figures()}")
    return tuple(dict.fromkeys(names))


# ------------------------------------------------------------- 1. sphere distances


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
    dims = _check_dims(dims)
    _check_int("draws", draws, 2)
    _check_int("bins", bins, 1)
    edges = torch.linspace(0.0, 2.0, bins + 1, dtype=torch.float64)  # (B + 1,)
    width = 2.0 / bins
    histograms, exact = [], []
    for n in dims:
        x, y = uniform_on_sphere(draws, n, generator), uniform_on_sphere(draws, n, generator)
        d = (x - y).norm(dim=1)  # (draws,)
        histograms.append(torch.histc(d, bins, 0.0, 2.0).double() / (draws * width))  # (B,)
        exact.append(exact_bin_density(edges, n))
    return SphereDistances(dims, edges, torch.stack(histograms), torch.stack(exact), draws)


# ------------------------------------------------------------ 2. sampled distances


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


def _batches_for(draws: int, classes: int, per_class: int) -> int:
    """Batches of P×K that give about ``draws`` triplets (P·K·(K−1) per batch)."""
    return max(1, math.ceil(draws / (classes * per_class * (per_class - 1))))


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
    _check_int("dim", dim, 2)
    _check_int("classes", classes, 2)
    _check_int("per_class", per_class, 2)
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
    _check_int("classes", classes, 2)
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
    _check_int("per_class", per_class, 2)
    if not isinstance(embeddings, Tensor) or not isinstance(labels, Tensor):
        raise ValueError("embeddings and labels must be tensors")
    if embeddings.dim() != 2 or labels.shape != (len(embeddings),):
        raise ValueError(
            "expected (N, D) embeddings and (N,) labels, got shapes "
            f"{tuple(embeddings.shape)} and {tuple(labels.shape)}"
        )
    if not embeddings.is_floating_point() or labels.is_floating_point():
        raise ValueError("expected floating embeddings and integer labels")
    if not bool(embeddings.isfinite().all()):
        raise ValueError("embeddings contain NaN or Inf")
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


def load_embeddings(path: str | Path) -> tuple[Tensor, Tensor]:
    """Embeddings and labels from a file written by ``sampling-matters embed``.

    Returns:
        (N, D) float embeddings and (N,) labels.

    Raises:
        FileNotFoundError: no such file.
        ValueError: if the file does not hold them, or holds anything but plain data.
    """
    saved = files.load_embeddings(Path(path))
    return saved.embeddings, saved.labels


# ------------------------------------------------------------ 3. gradient variance


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
    _check_int("dim", dim, 2)
    _check_int("draws", draws, 2)
    sigmas = _check_sigmas(sigmas)
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
    None, :func:`sampled_distances` of about ``draws`` triplets per strategy).

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
    _check_int("points", points, 2)
    if sampled is None:
        batches = _batches_for(draws, CLASSES_PER_BATCH, SAMPLES_PER_CLASS)
        sampled = sampled_distances(
            uniform_batches(dim, batches, generator=generator), title="", generator=generator
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


# ------------------------------------------------------------------ 4. loss shapes


@dataclass(frozen=True)
class LossShapes:
    """Each loss and its gradient as a function of one distance d.

    Attributes:
        distances: (G,) the distances d.
        other_distance: a triplet's fixed other distance.
        labels: loss name -> its label with hyperparameters, e.g. ``margin (β=1.2, α=0.2)``.
        values: (loss name, ``"positive"`` or ``"negative"``) -> (G,) per-pair loss.
        gradients: same keys -> (G,) dℓ/dd.
    """

    distances: Tensor
    other_distance: float
    labels: dict[str, str]
    values: dict[tuple[str, str], Tensor]
    gradients: dict[tuple[str, str], Tensor]


def _loss_label(module: LossModule) -> str:
    if isinstance(module, MarginLoss):
        return f"(β={float(module.beta0.detach()):g}, α={module.margin:g})"
    return f"(α={module.margin:g})"


def _shape_terms(module: LossModule, d: Tensor, pair: str, other: float) -> Tensor:
    """(G,) per-term losses where the anchor–positive or anchor–negative distance is d."""
    n = len(d)
    zero = torch.zeros_like(d)
    varying = torch.stack([d, zero], 1)  # (G, 2) at distance d from the origin
    fixed = torch.tensor([[0.0, other]], dtype=d.dtype)  # (1, 2) at distance `other`
    x = torch.cat([torch.zeros(1, 2, dtype=d.dtype), varying, fixed])  # (G + 2, 2)
    anchor, moving = torch.zeros(n, dtype=torch.int64), torch.arange(1, n + 1)
    if isinstance(module, TripletLoss):
        still = torch.full((n,), n + 1)
        t = (
            Triplets(anchor, moving, still)
            if pair == "positive"
            else Triplets(anchor, still, moving)
        )
        return triplet_terms(x, t, module.margin, module.squared)
    none = torch.zeros(0, dtype=torch.int64)
    pairs = (
        Pairs(anchor, moving, none, none)
        if pair == "positive"
        else Pairs(none, none, anchor, moving)
    )
    if isinstance(module, ContrastiveLoss):
        return contrastive_terms(x, pairs, module.margin)
    return margin_terms(x, pairs, float(module.beta0.detach()), module.margin, 0.0)[0]


def loss_shape(
    loss: str, pair: str, distances: Tensor, *, other_distance: float = OTHER_DISTANCE
) -> tuple[Tensor, Tensor]:
    """One loss's per-pair value and gradient dℓ/dd, from the library's loss code.

    The hyperparameters are the loss module's defaults (:func:`~losses.make_loss`):
    contrastive α = 1, triplet α = 0.2, margin β = 1.2 and α = 0.2. Points sit in the
    plane at the chosen distances from an anchor; autograd gives the gradient.

    Args:
        loss: a name in :data:`sampling_matters.losses.LOSSES`.
        pair: ``"positive"`` (d = D_ap) or ``"negative"`` (d = D_an).
        distances: (G,) distances d > 0 (at d = 0 the distance's gradient is 0).
        other_distance: a triplet's other distance, fixed.

    Returns:
        (G,) float64 losses and (G,) float64 gradients.

    Example:
        >>> value, grad = loss_shape("triplet-squared", "negative", torch.tensor([0.5]))
        >>> value, grad  # (1² − 0.5² + 0.2)₊ and −2 · 0.5
        (tensor([0.9500], dtype=torch.float64), tensor([-1.], dtype=torch.float64))
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)}")
    if pair not in ("positive", "negative"):
        raise ValueError(f"pair must be 'positive' or 'negative', got {pair!r}")
    module = make_loss(loss, sampling="uniform")
    d = distances.detach().double().clone().requires_grad_(True)  # (G,)
    terms = _shape_terms(module, d, pair, other_distance)  # (G,)
    (gradient,) = torch.autograd.grad(terms.sum(), d)
    return terms.detach(), gradient


def loss_shapes(*, points: int = 200, other_distance: float = OTHER_DISTANCE) -> LossShapes:
    """Every loss of :data:`~losses.LOSSES` on positive and negative pairs, d ∈ (0, 2).

    The distances are bin midpoints (never 0 and never a loss's kink).

    Args:
        points: distances on the grid.
        other_distance: a triplet's fixed other distance (see :func:`loss_shape`).

    Returns:
        See :class:`LossShapes`.
    """
    _check_int("points", points, 2)
    d = (torch.arange(points, dtype=torch.float64) + 0.5) * (2.0 / points)  # (G,)
    values, gradients = {}, {}
    for loss in LOSSES:
        for pair in ("positive", "negative"):
            values[loss, pair], gradients[loss, pair] = loss_shape(
                loss, pair, d, other_distance=other_distance
            )
    labels = {name: f"{name} {_loss_label(make_loss(name, sampling='uniform'))}" for name in LOSSES}
    return LossShapes(d, other_distance, labels, values, gradients)


# --------------------------------------------------------------- 5. training curves


@dataclass(frozen=True)
class TrainingCurve:
    """One run's logged diagnostics (NaN where the run logged none, e.g. β without margin loss).

    Attributes:
        label: the run's loss and sampling, e.g. ``margin + distance-weighted``.
        path: its log.csv.
        step: (R,) steps.
        negative_distance: (R,) mean sampled anchor–negative distance.
        negative_distance_std: (R,) their standard deviation.
        active_fraction: (R,) fraction of terms with non-zero loss.
        beta: (R,) mean β.
    """

    label: str
    path: Path
    step: Tensor
    negative_distance: Tensor
    negative_distance_std: Tensor
    active_fraction: Tensor
    beta: Tensor


def _run_label(run: Path) -> str:
    config = run / "config.yaml"
    if not config.is_file():
        return run.name
    import yaml

    with config.open() as handle:
        values = yaml.safe_load(handle) or {}
    if not isinstance(values, dict) or not {"loss", "sampling"} <= set(values):
        return run.name
    return f"{values['loss']} + {values['sampling']}"


def read_log(run: str | Path) -> TrainingCurve:
    """A run's ``log.csv`` (rows that logged no training step are dropped).

    Args:
        run: the run directory (or its log.csv).

    Raises:
        ValueError: if there is no log.csv or it lacks a column.
    """
    path = Path(run)
    path = path if path.name == "log.csv" else path / "log.csv"
    if not path.is_file():
        raise ValueError(f"{path.parent} has no log.csv: is it a training run directory?")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = sorted(set(_LOG_COLUMNS) - set(reader.fieldnames or ()))
            if missing:
                raise ValueError(f"{path} lacks the column(s) {missing}")
            rows = [_log_row(row, path, i) for i, row in enumerate(reader, 2)]
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path} is not a CSV log ({error})") from None
    table = torch.tensor(rows, dtype=torch.float64).reshape(-1, len(_LOG_COLUMNS))  # (R, 5)
    table = table[~table[:, 1:].isnan().all(1)]  # drop validation-only rows
    if not len(table):
        raise ValueError(f"{path} holds no logged training step")
    return TrainingCurve(_run_label(path.parent), path, *table.T)


def _log_row(row: dict[str, str], path: Path, line: int) -> list[float]:
    try:
        return [float(row[c] or "nan") for c in _LOG_COLUMNS]
    except (TypeError, ValueError):
        raise ValueError(f"{path}, line {line}: expected numbers, got {row}") from None


def training_curves(runs: Sequence[str | Path]) -> list[TrainingCurve]:
    """:func:`read_log` of each run; equal labels get the run's folder name appended."""
    if not runs:
        raise ValueError("training_curves needs at least one run")
    curves = [read_log(run) for run in runs]
    labels = [c.label for c in curves]
    return [
        c if labels.count(c.label) == 1 else replace(c, label=f"{c.label} ({c.path.parent.name})")
        for c in curves
    ]


# ------------------------------------------------------------------------ plotting


def _figure(rows: int, cols: int, size: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False)
    return figure, list(axes.flat)


def plot_sphere_distances(data: SphereDistances) -> Figure:
    """Figure 1: one panel per dimension, histogram and exact q(d); √2 marked."""
    cols = min(4, len(data.dims))
    rows = math.ceil(len(data.dims) / cols)
    figure, axes = _figure(rows, cols, (3.4 * cols, 2.7 * rows + 0.6))
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


def plot_sampled_distances(panels: Sequence[SampledDistances]) -> Figure:
    """Figure 2: per panel, the density of each strategy's distances, q(d), all negatives."""
    figure, axes = _figure(1, len(panels), (5.2 * len(panels), 4.2))
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


def _density(d: Tensor, edges: Tensor) -> Tensor:
    counts = torch.histc(d.float(), len(edges) - 1, float(edges[0]), float(edges[-1]))
    return counts / max(len(d), 1) / float(edges[1] - edges[0])


def _mean_std(d: Tensor) -> str:
    return f"{float(d.mean()):.2f} ± {float(d.std()):.2f}"


def plot_gradient_variance(data: GradientVariance) -> Figure:
    """Figure 3: variance against distance per σ, and each strategy's variance relative to DW."""
    figure, (left, right) = _figure(1, 2, (12.5, 4.8))
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


def plot_loss_shapes(data: LossShapes) -> Figure:
    """Figure 4: loss and dℓ/dd for positive and negative pairs, one line per loss."""
    figure, axes = _figure(2, 2, (10.5, 7.0))
    d = data.distances.numpy()
    for col, pair in enumerate(("positive", "negative")):
        for (name, label), style in zip(data.labels.items(), _LINE_STYLES, strict=False):
            axes[col].plot(d, data.values[name, pair].numpy(), style, label=label)
            axes[2 + col].plot(d, data.gradients[name, pair].numpy(), style, label=label)
        other = "D_an" if pair == "positive" else "D_ap"
        axes[col].set(
            title=f"{pair} pairs (triplet: {other} fixed at {data.other_distance:g})",
            ylabel="loss ℓ",
            xlim=(0, 2),
        )
        axes[2 + col].set(
            xlabel=f"distance d = {'D_ap' if pair == 'positive' else 'D_an'}",
            ylabel="gradient dℓ/dd",
            xlim=(0, 2),
        )
        axes[2 + col].axhline(0, color="grey", lw=0.5)
    axes[0].legend(fontsize=8)
    axes[3].annotate(
        "triplet-squared: −2d → 0\nas d → 0: the hardest\nnegatives get no push",
        xy=(0.04, -0.08),
        xytext=(1.2, -1.95),
        fontsize=8,
        arrowprops={"arrowstyle": "->", "lw": 0.8},
    )
    figure.suptitle("Loss shapes and gradients (hyperparameters: the library's defaults)")
    return figure


def plot_training_curves(curves: Sequence[TrainingCurve]) -> Figure:
    """Figure 5: sampled negative distance (mean ± std), active fraction and β over steps."""
    figure, (dist, active, beta) = _figure(1, 3, (15.0, 4.2))
    for curve in curves:
        step = curve.step.numpy()
        mean, std = curve.negative_distance.numpy(), curve.negative_distance_std.numpy()
        (line,) = dist.plot(step, mean, label=curve.label)
        dist.fill_between(step, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        colour = line.get_color()  # one colour per run in every panel
        active.plot(step, curve.active_fraction.numpy(), color=colour, label=curve.label)
        if bool(curve.beta.isfinite().any()):
            beta.plot(step, curve.beta.numpy(), color=colour, label=curve.label)
    dist.set(
        xlabel="step", ylabel="anchor–negative distance", title="sampled negatives: mean ± std"
    )
    active.set(xlabel="step", ylabel="fraction", title="active fraction (non-zero loss)")
    beta.set(xlabel="step", ylabel="β", title="β (margin loss only)")
    dist.legend(fontsize=8)
    return figure


# ---------------------------------------------------------------------------- files


class _Table(NamedTuple):
    """A CSV: comment lines (the set-up), a header and rows of finite values."""

    comments: list[str]
    header: tuple[str, ...]
    rows: Sequence[tuple[object, ...]]


def _write_csv(path: Path, table: _Table) -> None:
    with path.open("w", newline="") as handle:
        handle.writelines(f"# {line}\n" for line in table.comments)
        writer = csv.writer(handle)
        writer.writerow(table.header)
        for row in table.rows:
            if any(isinstance(v, float) and not math.isfinite(v) for v in row):
                raise ValueError(f"non-finite value in a row of {path.name}: {row}")
            writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])


def _sphere_table(data: SphereDistances) -> _Table:
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
    return _Table(
        comments, ("dim", "bin_left", "bin_right", "monte_carlo_density", "exact_density"), rows
    )


def _sampled_table(panels: Sequence[SampledDistances]) -> _Table:
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
    return _Table(comments, ("panel", "dim", "series", "bin_left", "bin_right", "density"), rows)


def _variance_table(data: GradientVariance) -> _Table:
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
    return _Table(comments, ("series", "sigma", "distance", "variance"), rows)


def _loss_table(data: LossShapes) -> _Table:
    rows = [
        (
            name,
            pair,
            float(d),
            float(data.values[name, pair][g]),
            float(data.gradients[name, pair][g]),
        )
        for (name, pair) in data.values
        for g, d in enumerate(data.distances)
    ]
    comments = [
        "per-pair loss and its gradient d(loss)/dd from the library's loss code (autograd)",
        "hyperparameters: " + "; ".join(data.labels.values()),
        f"triplet losses: the other distance is fixed at {data.other_distance:g} "
        "(D_an for positive pairs, D_ap for negative pairs)",
    ]
    return _Table(comments, ("loss", "pair", "distance", "loss_value", "gradient"), rows)


def _curves_table(curves: Sequence[TrainingCurve]) -> _Table:
    quantities = ("negative_distance", "negative_distance_std", "active_fraction", "beta")
    rows: list[tuple[object, ...]] = []
    for curve in curves:
        for q in quantities:
            values = getattr(curve, q)
            rows += [
                (curve.label, str(curve.path.parent), int(s), q, float(v))
                for s, v in zip(curve.step, values, strict=True)
                if math.isfinite(float(v))
            ]
    comments = ["training diagnostics from each run's log.csv; missing values are left out"]
    return _Table(comments, ("run", "path", "step", "quantity", "value"), rows)


@dataclass
class _Settings:
    """What :func:`write_figures` was asked for, and the uniform panels it has drawn."""

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

    def uniform_panel(self, dim: int) -> SampledDistances:
        """Strategies' distances on uniform points in ``dim``, drawn once."""
        if dim not in self.panels:
            g = self.generator(dim)
            batches = _batches_for(self.draws, CLASSES_PER_BATCH, SAMPLES_PER_CLASS)
            pk = f"{CLASSES_PER_BATCH}×{SAMPLES_PER_CLASS}"
            title = f"uniform points, n = {dim}, random labels ({pk})"
            self.panels[dim] = sampled_distances(
                uniform_batches(dim, batches, generator=g), title=title, generator=g
            )
        return self.panels[dim]


def _figure_1(s: _Settings) -> tuple[Figure, _Table]:
    data = sphere_distances(s.dims, draws=s.draws, generator=s.generator(1))
    return plot_sphere_distances(data), _sphere_table(data)


def _figure_2(s: _Settings) -> tuple[Figure, _Table]:
    panels = [s.uniform_panel(dim) for dim in SAMPLED_DIMS]
    if s.embeddings is not None:
        x, labels = s.embeddings
        g = s.generator(2)
        batches = pk_batches(
            x, labels, _batches_for(s.draws, CLASSES_PER_BATCH, SAMPLES_PER_CLASS), generator=g
        )
        title = f"{s.embeddings_name}, n = {x.shape[1]}, P×K batches of its labels"
        panels.append(sampled_distances(batches, title=title, generator=g))
    return plot_sampled_distances(panels), _sampled_table(panels)


def _figure_3(s: _Settings) -> tuple[Figure, _Table]:
    data = gradient_variance(
        draws=s.draws, sampled=s.uniform_panel(GRADIENT_DIM), generator=s.generator(3)
    )
    return plot_gradient_variance(data), _variance_table(data)


def _figure_4(s: _Settings) -> tuple[Figure, _Table]:
    data = loss_shapes()
    return plot_loss_shapes(data), _loss_table(data)


def _figure_5(s: _Settings) -> tuple[Figure, _Table]:
    curves = training_curves(s.logs)
    return plot_training_curves(curves), _curves_table(curves)


_BUILDERS: dict[str, Callable[[_Settings], tuple[Figure, _Table]]] = dict(
    zip(FIGURES, (_figure_1, _figure_2, _figure_3, _figure_4, _figure_5), strict=True)
)


def check_figures(names: Sequence[str], *, embeddings: bool, logs: bool) -> None:
    """Raise ``ValueError`` on unknown figures, or inputs that no asked figure uses or lacks.

    Args:
        names: figure names (see :data:`FIGURES`).
        embeddings: whether embeddings are given (figure 2 uses them).
        logs: whether runs' logs are given (figure 5 needs them).
    """
    parse_figures(",".join(names) or ",")  # the unknown-name error
    if "training_curves" in names and not logs:
        raise ValueError("the training_curves figure needs runs to read (logs / --logs RUN ...)")
    if logs and "training_curves" not in names:
        raise ValueError("runs' logs are drawn only by figure 5, training_curves: ask for it too")
    if embeddings and "sampled_distances" not in names:
        raise ValueError("embeddings are drawn only by figure 2, sampled_distances: ask for it too")


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
        figures: names from :data:`FIGURES`; default the first four, and
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
    names = tuple(figures) if figures is not None else FIGURES[: 5 if logs else 4]
    check_figures(names, embeddings=embeddings is not None, logs=bool(logs))
    settings = _Settings(
        _check_dims(dims),
        _check_int("draws", draws, 2, MAX_DRAWS),
        _check_int("seed", seed, 0, 2**63 - 1),
        embeddings,
        embeddings_name,
        tuple(Path(p) for p in logs),
    )
    for log in settings.logs:  # fail before drawing anything
        read_log(log)
    if embeddings is not None:
        usable_classes(*embeddings, SAMPLES_PER_CLASS)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in names:
        figure, table = _BUILDERS[name](settings)
        figure.savefig(out / f"{name}.png", dpi=110)
        _write_csv(out / f"{name}.csv", table)
        written += [out / f"{name}.png", out / f"{name}.csv"]
    return written
