import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from sampling_matters.sphere import log_distance_density, log_normaliser, uniform_on_sphere


def density(d: float, dim: int) -> float:
    return math.exp(float(log_distance_density(torch.tensor(d, dtype=torch.float64), dim)))


@pytest.mark.parametrize("dim", [2, 3, 4, 16, 128, 1024])
def test_density_integrates_to_one(dim):
    if dim == 2:  # integrable singularity at d = 2: substitute d = 2 sin(t), t in [0, pi/2]
        total, _ = integrate.quad(
            lambda t: density(2 * math.sin(t), dim) * 2 * math.cos(t), 0, math.pi / 2
        )
    else:
        total, _ = integrate.quad(density, 0, 2, args=(dim,), points=[math.sqrt(2)], limit=200)
    assert total == pytest.approx(1.0, abs=1e-6)


def test_closed_forms():
    d = torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64)
    assert torch.allclose(log_distance_density(d, 3).exp(), d / 2)  # S^2: q(d) = d / 2
    assert torch.allclose(log_distance_density(d, 2).exp(), 1 / (math.pi * (1 - d**2 / 4).sqrt()))
    assert math.exp(log_normaliser(4)) == pytest.approx(math.pi / 2)


def test_edges_and_outside():
    values = log_distance_density(torch.tensor([-0.1, 0.0, 2.0, 2.1]), 8)
    assert values.tolist() == [-math.inf, -math.inf, -math.inf, -math.inf]
    assert log_distance_density(torch.tensor([2.0]), 2).item() == math.inf
    assert math.isfinite(log_distance_density(torch.tensor([0.0]), 2).item())
    assert math.isfinite(log_distance_density(torch.tensor([2.0]), 3).item())


def test_high_dimension_stays_finite():
    d = torch.linspace(0.01, 1.99, 199)
    for dim in (512, 4096, 65536):
        values = log_distance_density(d, dim)
        assert torch.isfinite(values).all()
        assert abs(d[values.argmax()].item() - math.sqrt(2)) < 0.02


@pytest.mark.parametrize("dim", [2, 3, 8, 128])
def test_matches_monte_carlo(dim):
    g = torch.Generator().manual_seed(dim)
    x, y = (
        uniform_on_sphere(20_000, dim, g, dtype=torch.float64),
        uniform_on_sphere(20_000, dim, g, dtype=torch.float64),
    )
    distances = (x - y).norm(dim=1).numpy()
    grid = np.linspace(0, 2, 4001)
    pdf = np.exp(log_distance_density(torch.from_numpy(grid), dim).numpy())
    pdf[~np.isfinite(pdf)] = 0.0
    cdf = np.concatenate([[0.0], np.cumsum((pdf[1:] + pdf[:-1]) / 2 * np.diff(grid))])
    cdf /= cdf[-1]
    result = stats.kstest(distances, lambda v: np.interp(v, grid, cdf))
    assert result.statistic < 0.015


def test_uniform_on_sphere():
    g = torch.Generator().manual_seed(0)
    x = uniform_on_sphere(5000, 3, g)
    assert x.shape == (5000, 3) and x.dtype == torch.float32
    assert torch.allclose(x.norm(dim=1), torch.ones(5000), atol=1e-5)
    assert x.mean(0).abs().max() < 0.05
    again = uniform_on_sphere(5000, 3, torch.Generator().manual_seed(0))
    assert torch.equal(x, again)


@pytest.mark.parametrize("dim", [1, 0, 2.5, True])
def test_bad_dim(dim):
    with pytest.raises(ValueError, match="dim must be an integer >= 2"):
        log_distance_density(torch.tensor([1.0]), dim)


def test_nan_distance_raises_instead_of_density_zero():
    with pytest.raises(ValueError, match="d contains NaN"):
        log_distance_density(torch.tensor([1.0, math.nan]), 8)
    with pytest.raises(ValueError, match="d contains NaN"):
        log_distance_density(math.nan, 3)


@pytest.mark.parametrize("n", [-1, 2.0, True])
def test_uniform_on_sphere_bad_n(n):
    with pytest.raises(ValueError, match="n must be an integer >= 0"):
        uniform_on_sphere(n, 3, torch.Generator().manual_seed(0))
