import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from sampling_matters.sampling import (
    SAMPLINGS,
    SamplingStats,
    Triplets,
    distance_bins,
    distance_weighted,
    hard,
    semihard,
    uniform,
    weighted,
)
from sampling_matters.sampling.density import Weighting, sphere_weights_
from sampling_matters.sampling.groups import group
from sampling_matters.sphere import log_distance_density, uniform_on_sphere

LAYOUTS = {
    "pk-blocks": torch.arange(24) // 4,
    "shuffled": torch.tensor([3, 1, 3, 7, 1, 1, 9, 7, 3, 9, 9, 1, 7, 3, 9, 7, 1, 3]),
    "uneven": torch.tensor([5, 5, 5, 5, 5, 5, 2, 2, 8, 0, 0, 0, 4]),
    "negative-ids": torch.tensor([-3, 100, -3, 100, 7, 7, -3]),
}


def unit(n, dim, seed=0, dtype=torch.float32):
    return uniform_on_sphere(n, dim, torch.Generator().manual_seed(seed), dtype=dtype)


def positive_pairs_loop(labels):
    return {
        (a, p)
        for a in range(len(labels))
        for p in range(len(labels))
        if a != p and labels[a] == labels[p]
    }


def check_valid(triplets, labels):
    a, p, n = triplets
    assert a.dtype == p.dtype == n.dtype == torch.int64
    assert (a != p).all() and (labels[a] == labels[p]).all() and (labels[a] != labels[n]).all()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_grouping_against_loop(layout):
    labels = LAYOUTS[layout]
    groups = group(labels)
    order = groups.order.tolist()
    sorted_labels = labels[groups.order]
    assert (sorted_labels[1:] >= sorted_labels[:-1]).all()
    for s in range(len(labels)):
        block = [t for t in range(len(labels)) if sorted_labels[t] == sorted_labels[s]]
        assert (groups.start[s], groups.size[s]) == (block[0], len(block))
        listed = groups.positive[s][groups.valid[s]].tolist()
        assert sorted(listed) == [t for t in block if t != s]
        assert (groups.positive[s][~groups.valid[s]] == s).all()  # padding points at itself
    assert groups.width == max(int((labels == label).sum()) - 1 for label in labels)
    t = groups.triplets(groups.positive)  # "negative" = positive: checks the mapping only
    listed = list(zip(t.anchor.tolist(), t.positive.tolist()))
    assert len(listed) == len(set(listed)) and set(listed) == positive_pairs_loop(labels.tolist())
    assert torch.equal(t.negative, t.positive)
    assert order == sorted(range(len(labels)), key=lambda i: (labels[i].item(), i))


def test_uniform_negatives_cover_exactly_the_negatives():
    labels = torch.tensor([4, 1, 4, 9, 1, 1, 7])
    groups = group(labels)
    drawn = groups.uniform_negatives(4000, torch.Generator().manual_seed(0))
    for s in range(len(labels)):
        seen = set(drawn[s].tolist())
        negatives = {
            t for t in range(len(labels)) if labels[groups.order[t]] != labels[groups.order[s]]
        }
        assert seen == negatives


@pytest.mark.parametrize("name", SAMPLINGS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_strategy_gives_every_positive_pair_a_negative(name, layout):
    labels = LAYOUTS[layout]
    stats = SamplingStats()
    t = SAMPLINGS[name]()(
        unit(len(labels), 16), labels, generator=torch.Generator().manual_seed(0), stats=stats
    )
    check_valid(t, labels)
    assert set(zip(t.anchor.tolist(), t.positive.tolist())) == positive_pairs_loop(labels.tolist())
    assert stats.triplets == len(t.anchor) and stats.anchors_without_negative == 0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_hard_against_loop(layout):
    labels = LAYOUTS[layout]
    x = unit(len(labels), 8, seed=1)
    t = hard(x, labels)
    for a, n in zip(t.anchor.tolist(), t.negative.tolist()):
        negatives = [j for j in range(len(labels)) if labels[j] != labels[a]]
        closest = min(negatives, key=lambda j: float((x[a] - x[j]).norm()))
        assert n == closest


def check_semihard_loop(triplets, x, labels, margin, stats, tolerance=0.0):
    """Each negative against FaceNet's rule, looped; the counted fall-backs and empty bands."""
    dist = torch.cdist(x, x)
    fallbacks = band_empty = 0
    for a, p, n in zip(*(index.tolist() for index in triplets)):
        negatives = [j for j in range(len(labels)) if labels[j] != labels[a]]
        beyond = [j for j in negatives if dist[a, j] > dist[a, p]]
        if beyond:
            expected = min(beyond, key=lambda j: float(dist[a, j]))
        else:
            expected = max(negatives, key=lambda j: float(dist[a, j]))
            fallbacks += 1
        assert abs(float(dist[a, n] - dist[a, expected])) <= tolerance
        band_empty += not any(dist[a, p] < dist[a, j] < dist[a, p] + margin for j in negatives)
    assert (stats.fallback, stats.band_empty) == (fallbacks, band_empty)
    return fallbacks


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("margin", [0.05, 0.2, 1.0])
def test_semihard_against_loop(layout, margin):
    labels = LAYOUTS[layout]
    x = unit(len(labels), 4, seed=2).double()
    stats = SamplingStats()
    t = semihard(x, labels, margin=margin, stats=stats)
    check_semihard_loop(t, x, labels, margin, stats)


def sphere_weights_loop(x, labels, cutoff, nonzero_loss_cutoff):
    """Per anchor, probabilities ∝ q(max(d, cutoff))^-1 over admissible negatives (float64)."""
    n, dim = x.shape
    probabilities = torch.zeros(n, n, dtype=torch.float64)
    for a in range(n):
        logs = {}
        for j in range(n):
            d = float((x[a].double() - x[j].double()).norm())
            if labels[j] != labels[a] and d < nonzero_loss_cutoff:
                logs[j] = -float(
                    log_distance_density(torch.tensor(max(d, cutoff), dtype=torch.float64), dim)
                )
        if logs:
            top = max(logs.values())
            for j, value in logs.items():
                probabilities[a, j] = math.exp(value - top)
            probabilities[a] /= probabilities[a].sum()
    return probabilities


@pytest.mark.parametrize("dim", [2, 3, 8, 64, 512])
@pytest.mark.parametrize("nonzero_loss_cutoff", [1.4, 1.9])
def test_sphere_weights_against_loop(dim, nonzero_loss_cutoff):
    labels = torch.arange(40) // 4
    x = unit(40, dim, seed=dim)
    x[1] = x[12]  # a negative at distance 0 from anchor 12's row
    x[20] = torch.nn.functional.normalize(x[21] + 0.3 * x[20], dim=0)  # a close positive
    groups = group(labels)  # labels already sorted: positions = indices
    squared = (2 - 2 * x @ x.T).clamp_min(0)
    groups.block_(squared, 0, math.inf)
    setting = Weighting(dim, 0.5, nonzero_loss_cutoff**2, "sphere", 8)
    weights = sphere_weights_(squared, setting, torch.empty(40, 40)).double()
    totals = weights.sum(1, keepdim=True)
    expected = sphere_weights_loop(x, labels, 0.5, nonzero_loss_cutoff)
    admissible_rows = expected.sum(1) > 0
    assert torch.equal(totals[:, 0] > 0, admissible_rows)
    normalised = weights / totals.clamp_min(1e-300)
    assert torch.allclose(normalised[admissible_rows], expected[admissible_rows], atol=1e-4)


def test_draw_follows_weights():
    weights = torch.tensor([[0.0, 1.0, 2.0, 0.0, 5.0], [3.0, 0.0, 0.0, 1.0, 0.0]])
    drawn = weighted._draw_(weights, 20_000, torch.Generator().manual_seed(0), torch.empty(2, 5))
    for row in range(2):
        counts = torch.bincount(drawn[row], minlength=5).numpy()
        assert (counts[weights[row].numpy() == 0] == 0).all()
        nonzero = weights[row].numpy() > 0
        expected = weights[row].numpy()[nonzero] / weights[row].sum().item() * 20_000
        assert stats.chisquare(counts[nonzero], expected).pvalue > 1e-3


def test_chunked_sampling_matches_one_chunk(monkeypatch):
    x, labels = (
        unit(300, 16),
        (torch.arange(300) // 3)[torch.randperm(300, generator=torch.Generator().manual_seed(0))],
    )
    whole = distance_weighted(x, labels, generator=torch.Generator().manual_seed(5))
    monkeypatch.setattr(weighted, "_chunk_rows", lambda n: 7)
    chunked = distance_weighted(x, labels, generator=torch.Generator().manual_seed(5))
    assert torch.equal(whole.anchor, chunked.anchor) and torch.equal(
        whole.positive, chunked.positive
    )
    check_valid(chunked, labels)


def target_cdf(dim, cutoff, nonzero_loss_cutoff):
    """CDF of q(d)·w(d) on [0, nonzero_loss_cutoff), w(d) = q(max(d, cutoff))^-1."""
    q_cut = math.exp(float(log_distance_density(torch.tensor(cutoff, dtype=torch.float64), dim)))
    below, _ = integrate.quad(
        lambda d: math.exp(float(log_distance_density(torch.tensor(d, dtype=torch.float64), dim))),
        0,
        cutoff,
    )
    total = below / q_cut + (nonzero_loss_cutoff - cutoff)
    grid = np.linspace(0, nonzero_loss_cutoff, 2001)
    pdf = np.where(
        grid < cutoff,
        np.exp(log_distance_density(torch.from_numpy(grid), dim).numpy()) / q_cut,
        1.0,
    )
    cdf = np.concatenate([[0.0], np.cumsum((pdf[1:] + pdf[:-1]) / 2 * np.diff(grid))])
    assert cdf[-1] == pytest.approx(total, rel=1e-3)
    return lambda d: np.interp(d, grid, cdf / cdf[-1])


@pytest.mark.parametrize("dim", [3, 8])
def test_distance_weighted_follows_target_density(dim):
    """Kolmogorov–Smirnov: sampled D_an against q(d)·w(d), normalised, on uniform points."""
    g = torch.Generator().manual_seed(dim)
    n = 1000
    labels = torch.arange(n) // 2
    draws = []
    for _ in range(20):  # 20 batches x 1,000 pairs = 20,000 draws
        x = uniform_on_sphere(n, dim, g)
        t = distance_weighted(x, labels, generator=g)
        draws.append((x[t.anchor] - x[t.negative]).norm(dim=1))
    sampled = torch.cat(draws).numpy()
    assert len(sampled) >= 20_000 and sampled.max() < 1.4
    result = stats.kstest(sampled, target_cdf(dim, 0.5, 1.4))
    assert result.statistic <= 0.03


def clustered(n_classes=64, per_class=4, dim=128, subspace=8, noise=0.05, seed=0):
    """Embeddings shaped like a trained model's: class centres in a low-dimensional subspace."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(dim, subspace, generator=g))[0]  # (dim, subspace)
    centres = torch.randn(n_classes, subspace, generator=g) @ basis.T
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    x = centres[labels] + noise * torch.randn(len(labels), dim, generator=g)
    perm = torch.randperm(len(labels), generator=g)
    return torch.nn.functional.normalize(x[perm], dim=1), labels[perm]


def draws_by_anchor(x, labels, rounds, **kwargs):
    g = torch.Generator().manual_seed(1)
    triplets = [distance_weighted(x, labels, generator=g, **kwargs) for _ in range(rounds)]
    return torch.cat([t.anchor for t in triplets]), torch.cat([t.negative for t in triplets])


def test_sphere_density_turns_into_hard_mining_on_clustered_embeddings():
    x, labels = clustered()
    anchor, negative = draws_by_anchor(x, labels, 20)
    t = hard(x, labels)
    nearest = torch.zeros(len(labels), dtype=torch.int64)
    nearest[t.anchor] = t.negative
    assert (negative == nearest[anchor]).float().mean() > 0.5


def test_empirical_density_spreads_draws_evenly_over_occupied_bins():
    """Chi-square: each anchor's draws are uniform over its occupied distance bins."""
    x, labels = clustered()
    bins = 8
    anchor, negative = draws_by_anchor(x, labels, 100, density="empirical", bins=bins)
    dist = torch.cdist(x.double(), x.double())
    admissible = (labels[:, None] != labels[None, :]) & (dist < 1.4)
    bin_of = distance_bins(dist, 0.5, 1.4, bins)
    chi2 = dof = 0.0
    nearest_share = []
    for a in range(len(labels)):
        occupied = bin_of[a][admissible[a]].unique()
        drawn = bin_of[a, negative[anchor == a]]
        assert admissible[a, negative[anchor == a]].all()
        observed = np.array([(drawn == b).sum().item() for b in occupied])
        expected = len(drawn) / len(occupied)
        chi2 += ((observed - expected) ** 2 / expected).sum()
        dof += len(occupied) - 1
        closest = dist[a].masked_fill(~admissible[a], math.inf).argmin()
        nearest_share.append((negative[anchor == a] == closest).float().mean().item())
    assert dof > 500
    assert stats.chi2.sf(chi2, dof) > 1e-3
    assert np.mean(nearest_share) < 0.3


def test_fallback_when_no_admissible_negative():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    x = torch.zeros(6, 3)
    x[:2, 0], x[2:4, 1], x[4:, 2] = 1.0, 1.0, 1.0  # classes orthogonal: D_an = sqrt(2) > 1.4
    stats = SamplingStats()
    t = distance_weighted(x, labels, generator=torch.Generator().manual_seed(0), stats=stats)
    check_valid(t, labels)
    assert len(t.anchor) == 6 and stats.fallback == 6
    stats = SamplingStats()
    distance_weighted(x, labels, nonzero_loss_cutoff=1.5, stats=stats)
    assert stats.fallback == 0


def test_one_class_gives_no_triplets_and_says_so():
    stats = SamplingStats()
    for name, strategy in SAMPLINGS.items():
        t = strategy()(unit(5, 8), torch.zeros(5, dtype=torch.int64), stats=stats)
        assert len(t.anchor) == 0, name
        assert stats.as_dict() == {
            "triplets": 0,
            "anchors_without_negative": 5,
            "fallback": 0,
            "band_empty": 0,
        }


@pytest.mark.parametrize("name", SAMPLINGS)
@pytest.mark.parametrize("dim", [2, 3, 64, 1024, 4096])
def test_any_dimension(name, dim):
    labels = torch.arange(32) // 4
    t = SAMPLINGS[name]()(
        unit(32, dim, seed=dim), labels, generator=torch.Generator().manual_seed(0)
    )
    check_valid(t, labels)
    assert len(t.anchor) == 96


def test_high_dimension_does_not_collapse_to_fallback():
    x, labels = unit(256, 4096), torch.arange(256) // 4
    x[0] = torch.nn.functional.normalize(x[0] + x[8], dim=0)  # one close pair
    stats = SamplingStats()
    distance_weighted(x, labels, nonzero_loss_cutoff=1.42, stats=stats)
    assert stats.fallback == 0  # per-anchor normalisation: every anchor keeps its own negatives


@pytest.mark.parametrize("name", SAMPLINGS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(name, dtype):
    labels = torch.arange(16) // 4
    t = SAMPLINGS[name]()(
        unit(16, 32).to(dtype), labels, generator=torch.Generator().manual_seed(0)
    )
    check_valid(t, labels)


@pytest.mark.parametrize("name", SAMPLINGS)
def test_identical_embeddings(name):
    labels = torch.arange(12) // 3
    x = torch.nn.functional.normalize(torch.ones(12, 8), dim=1)
    t = SAMPLINGS[name]()(x, labels, generator=torch.Generator().manual_seed(0))
    check_valid(t, labels)
    assert len(t.anchor) == 24


@pytest.mark.parametrize("name", SAMPLINGS)
def test_singletons_and_tiny_batches(name):
    strategy = SAMPLINGS[name]()
    t = strategy(unit(4, 8), torch.tensor([0, 1, 2, 3]))  # no positives at all
    assert len(t.anchor) == 0
    t = strategy(unit(3, 8), torch.tensor([0, 0, 1]))  # a class of one image is a negative
    assert t.negative.tolist() == [2, 2]
    t = strategy(unit(0, 8), torch.zeros(0, dtype=torch.int64))
    assert len(t.anchor) == 0


@pytest.mark.parametrize("name", ["uniform", "distance-weighted"])
def test_deterministic_given_generator(name):
    x, labels = unit(64, 16), torch.arange(64) // 4
    first = SAMPLINGS[name]()(x, labels, generator=torch.Generator().manual_seed(7))
    second = SAMPLINGS[name]()(x, labels, generator=torch.Generator().manual_seed(7))
    third = SAMPLINGS[name]()(x, labels, generator=torch.Generator().manual_seed(8))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not torch.equal(first.negative, third.negative)


def test_uniform_is_uniform_over_negatives():
    labels = torch.tensor([0] * 50 + [1, 2, 2, 3])
    g = torch.Generator().manual_seed(0)
    t = [uniform(unit(54, 4), labels, generator=g) for _ in range(10)]
    negatives = torch.cat([x.negative[x.anchor < 50] for x in t])  # 10 x 2,450 draws
    counts = torch.bincount(negatives, minlength=54).numpy()
    assert counts[:50].sum() == 0 and stats.chisquare(counts[50:]).pvalue > 1e-3


def test_runs_without_gradient():
    x = unit(8, 4).requires_grad_()
    t = distance_weighted(x, torch.arange(8) // 2)
    assert not t.anchor.requires_grad


def test_triplets_to_pairs():
    t = Triplets(torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([2, 3]))
    pairs = t.to_pairs()
    assert pairs.positive_anchor.tolist() == [0, 1] and pairs.negative.tolist() == [2, 3]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cutoff": 1.4, "nonzero_loss_cutoff": 1.4}, "cutoff < nonzero_loss_cutoff"),
        ({"cutoff": 0.0}, "0 < cutoff"),
        ({"density": "gaussian"}, "density must be 'sphere' or 'empirical'"),
        ({"bins": 0}, "bins must be a positive integer"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        distance_weighted(unit(8, 4), torch.arange(8) // 2, **kwargs)


@pytest.mark.parametrize("name", SAMPLINGS)
def test_bad_input(name):
    strategy = SAMPLINGS[name]()
    x = unit(8, 4)
    with pytest.raises(ValueError, match="same length N"):
        strategy(x, torch.arange(7))
    with pytest.raises(ValueError, match="integer tensor"):
        strategy(x, torch.arange(8).float())
    with pytest.raises(ValueError, match="1-d tensor"):
        strategy(x, torch.arange(8).view(2, 4))
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        strategy(x[0], torch.arange(8))
    bad = x.clone()
    bad[3, 0] = math.nan
    with pytest.raises(ValueError, match=r"NaN|finite"):
        strategy(bad, torch.arange(8) // 2)


def test_distance_weighted_needs_unit_norm():
    with pytest.raises(ValueError, match="L2-normalised"):
        distance_weighted(2 * unit(8, 4), torch.arange(8) // 2)
    with pytest.raises(ValueError, match="dimension D >= 2"):
        distance_weighted(torch.ones(4, 1), torch.arange(4) // 2)


def test_semihard_margin_must_be_positive():
    with pytest.raises(ValueError, match="margin must be a finite number > 0"):
        semihard(unit(8, 4), torch.arange(8) // 2, margin=0.0)


@pytest.mark.parametrize("density", ["sphere", "empirical"])
def test_distance_weighted_rejects_a_cutoff_whose_square_underflows(density):
    x, labels = unit(8, 4), torch.arange(8) // 2
    with pytest.raises(ValueError, match=r"cutoff must be >= 1.08e-19 for torch.float32"):
        distance_weighted(x, labels, cutoff=1e-30, nonzero_loss_cutoff=2e-30, density=density)
    with pytest.raises(ValueError, match=r"cutoff must be >= 1.49e-154 for torch.float64"):
        distance_weighted(x.double(), labels, cutoff=1e-300, density=density)
    g = torch.Generator().manual_seed(0)
    t = distance_weighted(x.double(), labels, cutoff=1e-30, density=density, generator=g)
    assert len(t.anchor) == 8 and bool((t.negative < 8).all())
