import math

import pytest
import torch

from sampling_matters import analysis


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def brute_force_variance(distances, dim, sigma, noise_a, noise_n):
    """The set-up written out: noisy points, renormalised, unit direction, its variance."""
    out = []
    for t in distances.tolist():
        cos = 1 - t * t / 2
        a = torch.zeros(dim, dtype=torch.float64)
        n = torch.zeros(dim, dtype=torch.float64)
        a[0], n[0], n[1] = 1.0, cos, math.sqrt(1 - cos * cos)
        a = torch.nn.functional.normalize(a + sigma * noise_a, dim=1)
        n = torch.nn.functional.normalize(n + sigma * noise_n, dim=1)
        g = torch.nn.functional.normalize(n - a, dim=1)
        out.append(float((g - g.mean(0)).square().sum(1).mean()) * len(g) / (len(g) - 1))
    return torch.tensor(out, dtype=torch.float64)


def test_direction_variance_matches_the_brute_force_simulation():
    distances = torch.tensor([0.05, 0.3, 1.0, 2.0])
    fast = analysis.direction_variance(distances, 12, [0.02, 0.2], draws=300, generator=gen(5))
    noise_a, noise_n = torch.randn(2, 300, 12, generator=gen(5), dtype=torch.float64)
    for i, sigma in enumerate([0.02, 0.2]):
        slow = brute_force_variance(distances, 12, sigma, noise_a, noise_n)
        assert torch.allclose(fast[i], slow, atol=1e-10)


def test_gradient_variance_falls_with_distance_and_grows_with_noise():
    distances = torch.linspace(0.05, 2.0, 14)
    v = analysis.direction_variance(distances, 64, [0.01, 0.05, 0.1], draws=2000, generator=gen())
    assert bool((v[:, 1:] < v[:, :-1]).all())  # falls with distance, at every σ
    assert bool((v[1:] > v[:-1]).all())  # grows with σ, at every distance
    assert float(v[0, 0]) > 0.5 and float(v[0, -1]) < 0.01  # noise swamps only short h
    assert bool(((v >= 0) & (v <= 1.001)).all())


def test_hard_negatives_have_the_noisiest_gradients(uniform16):
    data = analysis.gradient_variance(dim=16, sigmas=[0.05], draws=2000, sampled=uniform16)
    v = {name: float(values[0]) for name, values in data.by_strategy.items()}
    assert v["hard"] > 1.2 * v["distance-weighted"] > 1.2 * v["uniform"]
    assert data.active["distance-weighted"] == 1.0 and data.active["uniform"] < 0.8
    with pytest.raises(ValueError, match="dimension 16"):
        analysis.gradient_variance(dim=32, draws=10, sampled=uniform16)


def test_expected_variance_interpolates_linearly():
    grid = torch.tensor([0.0, 1.0, 2.0])
    curves = torch.tensor([[1.0, 0.5, 0.0], [2.0, 2.0, 2.0]])
    mean = analysis.expected_variance(grid, curves, torch.tensor([0.5, 1.5, 3.0]))
    assert torch.allclose(mean, torch.tensor([1 / 3, 2.0], dtype=torch.float64))
