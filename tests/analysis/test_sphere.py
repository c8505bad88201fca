import itertools
import math

import pytest
import torch

from sampling_matters import analysis


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dim", [2, 3, 16, 128])
def test_monte_carlo_distances_follow_the_exact_density(dim):
    data = analysis.sphere_distances([dim], draws=20_000, bins=40, generator=gen(dim))
    assert float(data.total_variation()[0]) < 0.03


def test_total_variation_tells_neighbouring_dimensions_apart():
    data = analysis.sphere_distances([16], draws=20_000, bins=40, generator=gen())
    wrong = analysis.exact_bin_density(data.edges, 32)
    tv = 0.5 * float(((data.monte_carlo[0] - wrong).abs() * data.edges.diff()).sum())
    assert tv > 0.12  # sampling noise alone gives about 0.02


@pytest.mark.parametrize("dim", [2, 3, 4, 512])
def test_exact_bin_density_is_normalised_and_finite_where_q_diverges(dim):
    edges = torch.linspace(0.0, 2.0, 101, dtype=torch.float64)
    density = analysis.exact_bin_density(edges, dim)
    assert bool(density.isfinite().all()) and bool((density >= 0).all())
    assert float((density * edges.diff()).sum()) == pytest.approx(1.0, abs=1e-4)


def test_exact_bin_density_matches_the_closed_form_cdf_in_two_dimensions():
    # n = 2: d = 2 sin(θ/2) with θ uniform on [0, π], so P(d <= x) = (2/π) asin(x/2).
    edges = torch.tensor([0.0, 1.0, 1.99, 2.0], dtype=torch.float64)
    mass = analysis.exact_bin_density(edges, 2) * edges.diff()
    cdf = [2 / math.pi * math.asin(x / 2) for x in edges.tolist()]
    expected = torch.tensor([b - a for a, b in itertools.pairwise(cdf)], dtype=torch.float64)
    assert torch.allclose(mass, expected, atol=1e-10)
