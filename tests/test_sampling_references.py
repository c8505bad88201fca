"""Sampling beyond the batch: references, strategy objects and the registry.

Anchors are the batch's rows; positives and negatives come from the pool
``torch.cat([embeddings, references])``, which the triplets index.
"""

import hashlib
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from sampling_matters.sampling import (
    SAMPLINGS,
    DistanceWeighted,
    Hard,
    SamplingStats,
    SemiHard,
    Strategy,
    Uniform,
    distance_weighted,
    hard,
    make_sampling,
    pool,
    semihard,
    uniform,
)
from sampling_matters.sphere import uniform_on_sphere

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_sampling import check_semihard_loop, target_cdf, unit  # the in-batch tests' helpers

FUNCTIONS = {
    "uniform": uniform,
    "hard": hard,
    "semihard": semihard,
    "distance-weighted": distance_weighted,
}


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def strategy(name, cap=8):
    """The registered strategy ``name``, with a cap on reference positives."""
    return make_sampling(name, max_reference_positives=cap)


def memory(n_batch=24, n_references=60, dim=16, n_classes=6, seed=0, dtype=torch.float32):
    """A P×K batch and references of the same classes (plus some others), unit norm."""
    g = seeded(seed)
    x = uniform_on_sphere(n_batch, dim, g, dtype=dtype)
    labels = torch.arange(n_batch) % n_classes
    references = uniform_on_sphere(n_references, dim, g, dtype=dtype)
    reference_labels = torch.randint(-2, n_classes + 3, (n_references,), generator=g)
    return x, labels, references, reference_labels


def check_pool_triplets(t, labels, reference_labels):
    """Valid indices of the pool: anchors in the batch, positives of the anchor's label
    (never the anchor), negatives of another label."""
    pool_labels = torch.cat([labels.long(), reference_labels.long()])
    a, p, n = t
    assert a.dtype == p.dtype == n.dtype == torch.int64
    assert bool((a < len(labels)).all()) and bool((a >= 0).all())
    assert bool((p < len(pool_labels)).all()) and bool((n < len(pool_labels)).all())
    assert bool((a != p).all())
    assert bool((pool_labels[a] == pool_labels[p]).all())
    assert bool((pool_labels[a] != pool_labels[n]).all())


def expected_pairs(labels, reference_labels, cap):
    """Per anchor: its in-batch positive count and its reference positive count (capped)."""
    return [
        (int((labels == labels[a]).sum()) - 1, min(cap, int((reference_labels == labels[a]).sum())))
        for a in range(len(labels))
    ]


# ------------------------------------------------------- without references: as before

GOLDEN = {  # sha256 of torch.stack(triplets) computed before references existed
    ("pk-blocks", "uniform"): "357843ca16c5d53f",
    ("pk-blocks", "hard"): "8e5d7bd4432d2078",
    ("pk-blocks", "semihard"): "720a9b8aa66184cc",
    ("pk-blocks", "distance-weighted"): "76a124632d8be3ff",
    ("shuffled", "uniform"): "ff6b0e7030c35469",
    ("shuffled", "hard"): "ce89dc8164d734e6",
    ("shuffled", "semihard"): "0a912eb5c05ff5d4",
    ("shuffled", "distance-weighted"): "0c1b0e00abb15593",
    ("uneven-f64", "uniform"): "51645f7ff5322f35",
    ("uneven-f64", "hard"): "2f8278c0b6cde7bd",
    ("uneven-f64", "semihard"): "3b61aec6b726ff14",
    ("uneven-f64", "distance-weighted"): "8d8bf7efd9aabeb5",
    ("chunked", "uniform"): "fc1dfbc239f5acb9",
    ("chunked", "hard"): "ef965251f44d9654",
    ("chunked", "semihard"): "449f0ec23e42451b",
    ("chunked", "distance-weighted"): "5238ede0d4dbd54e",
    ("half", "uniform"): "50397f9c69f4ba52",
    ("half", "hard"): "c2622b7bb23449a2",
    ("half", "semihard"): "aa71cb1bb6f37047",
    ("half", "distance-weighted"): "7671dda82ab8301f",
    ("orthogonal", "uniform"): "0e730399f46ae338",
    ("orthogonal", "hard"): "73b86ab012f4a582",
    ("orthogonal", "semihard"): "73b86ab012f4a582",
    ("orthogonal", "distance-weighted"): "ef72a16a63c63830",
}


def golden_batch(shape):
    if shape == "pk-blocks":
        return unit(24, 16, seed=1), torch.arange(24) // 4
    if shape == "shuffled":
        labels = torch.tensor([3, 1, 3, 7, 1, 1, 9, 7, 3, 9, 9, 1, 7, 3, 9, 7, 1, 3])
        return unit(18, 8, seed=2), labels
    if shape == "uneven-f64":
        labels = torch.tensor([5, 5, 5, 5, 5, 5, 2, 2, 8, 0, 0, 0, 4])
        return unit(13, 32, seed=3, dtype=torch.float64), labels
    if shape == "chunked":  # several chunks of rows in distance weighted sampling
        return unit(1500, 8, seed=4), (torch.arange(1500) // 5)[
            torch.randperm(1500, generator=seeded())
        ]
    if shape == "half":
        return unit(64, 32, seed=5).half(), torch.arange(64) % 16
    return torch.eye(4).repeat_interleave(3, dim=0), torch.arange(12) // 3  # "orthogonal"


def digest(t):
    return hashlib.sha256(torch.stack(list(t)).numpy().tobytes()).hexdigest()[:16]


@pytest.mark.parametrize(("shape", "name"), GOLDEN)
def test_without_references_the_triplets_are_those_of_before(shape, name):
    x, labels = golden_batch(shape)
    calls = {
        "function": lambda g: FUNCTIONS[name](x, labels, generator=g),
        "references=None": lambda g: FUNCTIONS[name](
            x, labels, references=None, reference_labels=None, generator=g
        ),
        "no reference rows": lambda g: FUNCTIONS[name](
            x, labels, references=x[:0], reference_labels=labels[:0], generator=g
        ),
        "object": lambda g: SAMPLINGS[name]()(x, labels, generator=g),
    }
    for how, call in calls.items():
        assert digest(call(seeded(7))) == GOLDEN[shape, name], how


# ------------------------------------------------------------------ pool semantics


@pytest.mark.parametrize("name", SAMPLINGS)
@pytest.mark.parametrize("cap", [0, 1, 3, 8, 100])
def test_every_pair_gets_a_pool_negative_of_another_class(name, cap):
    x, labels, references, reference_labels = memory()
    stats_ = SamplingStats()
    t = strategy(name, cap)(
        x,
        labels,
        references=references,
        reference_labels=reference_labels,
        generator=seeded(),
        stats=stats_,
    )
    check_pool_triplets(t, labels, reference_labels)
    counts = expected_pairs(labels, reference_labels, cap)
    assert len(t.anchor) == sum(b + r for b, r in counts) == stats_.triplets
    for a, (in_batch, from_references) in enumerate(counts):
        positives = t.positive[t.anchor == a]
        assert int((positives < len(labels)).sum()) == in_batch
        assert int((positives >= len(labels)).sum()) == from_references
        assert len(set(positives.tolist())) == len(positives)  # no pair twice
    assert stats_.anchors_without_negative == 0


@pytest.mark.parametrize("name", SAMPLINGS)
def test_negatives_come_from_both_batch_and_references(name):
    x, labels, references, reference_labels = memory(n_batch=32, n_references=256, dim=4)
    t = strategy(name)(
        x, labels, references=references, reference_labels=reference_labels, generator=seeded()
    )
    assert bool((t.negative < len(x)).any()) and bool((t.negative >= len(x)).any())


def test_reference_positives_are_a_uniform_subset_when_capped():
    """Anchor 0 has 12 reference positives and a cap of 4: each reference row is chosen
    with probability 1/3, every pair of them with probability 1/11, never twice."""
    x = unit(4, 8)
    labels = torch.tensor([0, 1, 1, 2])
    references = unit(20, 8, seed=1)
    reference_labels = torch.tensor([0] * 12 + [1] * 3 + [5] * 5)
    g = seeded()
    singles, pairs = np.zeros(12), np.zeros(66)
    pair_index = {pair: i for i, pair in enumerate(itertools.combinations(range(12), 2))}
    rounds = 3000
    for _ in range(rounds):
        t = uniform(
            x,
            labels,
            references=references,
            reference_labels=reference_labels,
            max_reference_positives=4,
            generator=g,
        )
        chosen = sorted((t.positive[t.anchor == 0] - 4).tolist())
        assert len(chosen) == len(set(chosen)) == 4 and max(chosen) < 12
        singles[chosen] += 1
        for pair in itertools.combinations(chosen, 2):
            pairs[pair_index[pair]] += 1
        assert sorted((t.positive[t.anchor == 1]).tolist()) == [2, 16, 17, 18]  # 3 ≤ cap: all
    assert stats.chisquare(singles, np.full(12, rounds / 3)).pvalue > 1e-3
    assert stats.chisquare(pairs, np.full(66, rounds * 6 / 66)).pvalue > 1e-3


def pool_of(x, labels, references, reference_labels):
    return torch.cat([x, references]), torch.cat([labels, reference_labels])


@pytest.mark.parametrize("n_classes", [3, 12])  # large and small classes: both ways to block
def test_hard_with_references_against_loop(n_classes):
    x, labels, references, reference_labels = memory(dim=6, n_classes=n_classes)
    t = hard(x, labels, references=references, reference_labels=reference_labels)
    rows, pool_labels = pool_of(x, labels, references, reference_labels)
    dist = torch.cdist(rows.double(), rows.double())
    for a, n in zip(t.anchor.tolist(), t.negative.tolist()):
        negatives = [j for j in range(len(rows)) if pool_labels[j] != pool_labels[a]]
        assert n == min(negatives, key=lambda j: float(dist[a, j]))


@pytest.mark.parametrize("margin", [0.05, 0.2, 1.0])
@pytest.mark.parametrize("n_classes", [3, 12])
def test_semihard_with_references_against_loop(margin, n_classes):
    x, labels, references, reference_labels = memory(dim=3, n_classes=n_classes)
    x, references = x.double(), references.double()
    stats_ = SamplingStats()
    t = semihard(
        x,
        labels,
        margin=margin,
        references=references,
        reference_labels=reference_labels,
        stats=stats_,
    )
    rows, pool_labels = pool_of(x, labels, references, reference_labels)
    fallbacks = check_semihard_loop(t, rows, pool_labels, margin, stats_, tolerance=1e-12)
    assert fallbacks > 0 or n_classes > 3  # few large classes: some pairs need the fall-back


@pytest.mark.parametrize(("n_references", "n_classes"), [(40, 2), (40, 30), (1000, 300)])
def test_pool_blocks_exactly_the_rows_of_the_anchors_label(n_references, n_classes):
    g = seeded()
    labels = torch.randint(0, n_classes, (50,), generator=g)
    reference_labels = torch.randint(0, n_classes, (n_references,), generator=g)
    grouped = pool.make_pool(labels, reference_labels, 8, g)
    pool_labels = torch.cat([labels, reference_labels])
    blocked = grouped.block_(torch.zeros(50, len(pool_labels)), slice(0, 50))
    assert torch.equal(blocked.isinf(), labels[:, None] == pool_labels[None, :])
    assert torch.equal(grouped.keep, (labels[:, None] != pool_labels[None, :]).any(1))


def test_uniform_with_references_is_uniform_over_pool_negatives():
    x = unit(6, 4)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    references = unit(10, 4, seed=1)
    reference_labels = torch.tensor([0, 0, 0, 3, 3, 3, 1, 4, 4, 4])
    g = seeded()
    drawn = []
    for _ in range(400):
        s = uniform(
            x, labels, references=references, reference_labels=reference_labels, generator=g
        )
        drawn.append(s.negative[s.anchor == 0])
    counts = torch.bincount(torch.cat(drawn), minlength=16).numpy()
    negatives_of_0 = [2, 3, 4, 5, 9, 10, 11, 12, 13, 14, 15]
    assert counts[[0, 1, 6, 7, 8]].sum() == 0
    assert stats.chisquare(counts[negatives_of_0]).pvalue > 1e-3


@pytest.mark.parametrize("dim", [3, 8])
def test_distance_weighted_with_references_follows_target_density(dim):
    """Kolmogorov–Smirnov: batch 256 + 4,096 references, uniform on the sphere; the drawn
    D_an against q(d)·w(d), normalised (as without references)."""
    g = seeded(dim)
    labels = torch.arange(256) // 2  # 128 classes, one in-batch positive each
    draws, from_references = [], 0
    for _ in range(16):
        x, references = uniform_on_sphere(256, dim, g), uniform_on_sphere(4096, dim, g)
        reference_labels = torch.randint(0, 1024, (4096,), generator=g)
        t = distance_weighted(
            x, labels, references=references, reference_labels=reference_labels, generator=g
        )
        rows = torch.cat([x, references])
        draws.append((rows[t.anchor] - rows[t.negative]).norm(dim=1))
        from_references += int((t.negative >= 256).sum())
    sampled = torch.cat(draws).numpy()
    assert len(sampled) >= 20_000 and sampled.max() < 1.4
    assert from_references > 0.8 * len(sampled)  # 4,096 of the 4,352 rows are references
    assert stats.kstest(sampled, target_cdf(dim, 0.5, 1.4)).statistic <= 0.03


@pytest.mark.parametrize("density", ["sphere", "empirical"])
def test_distance_weighted_with_references_counts_the_fallback(density):
    x = torch.eye(3).repeat_interleave(2, dim=0)  # classes orthogonal: D_an = √2 > 1.4
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    references = torch.eye(3)
    reference_labels = torch.tensor([0, 1, 2])
    stats_ = SamplingStats()
    t = distance_weighted(
        x,
        labels,
        density=density,
        references=references,
        reference_labels=reference_labels,
        generator=seeded(),
        stats=stats_,
    )
    check_pool_triplets(t, labels, reference_labels)
    assert len(t.anchor) == 12 and stats_.fallback == 12
    assert fallbacks(x, labels, references, reference_labels, nonzero_loss_cutoff=1.5) == 0


def fallbacks(x, labels, references, reference_labels, **settings):
    """How many triplets of a distance weighted sampling call came from the fall-back."""
    stats_ = SamplingStats()
    pool = {"references": references, "reference_labels": reference_labels}
    distance_weighted(x, labels, **pool, **settings, stats=stats_)
    return stats_.fallback


def test_distance_weighted_with_references_keeps_per_anchor_weights():
    """In 4,096 dimensions one close pair must not cost other anchors their negatives."""
    x, labels = unit(64, 4096), torch.arange(64) // 4
    references, reference_labels = unit(192, 4096, seed=1), torch.arange(192) // 4
    x[0] = torch.nn.functional.normalize(x[0] + references[100], dim=0)
    assert fallbacks(x, labels, references, reference_labels, nonzero_loss_cutoff=1.42) == 0


@pytest.mark.parametrize("name", SAMPLINGS)
def test_anchors_without_a_pool_negative_give_no_triplet_and_are_counted(name):
    x, labels = unit(5, 8), torch.zeros(5, dtype=torch.int64)
    stats_ = SamplingStats()
    t = strategy(name)(
        x,
        labels,
        references=unit(3, 8, seed=1),
        reference_labels=torch.zeros(3, dtype=torch.int64),
        stats=stats_,
    )
    assert len(t.anchor) == 0 and stats_.anchors_without_negative == 5
    t = strategy(name)(  # a reference of another class is a negative for every anchor
        x,
        labels,
        references=unit(3, 8, seed=1),
        reference_labels=torch.tensor([0, 0, 1]),
        stats=stats_,
    )
    assert len(t.anchor) == 5 * 6 and bool((t.negative == 7).all())


@pytest.mark.parametrize("name", SAMPLINGS)
def test_empty_batch_with_references(name):
    t = strategy(name)(
        unit(0, 8),
        torch.zeros(0, dtype=torch.int64),
        references=unit(3, 8),
        reference_labels=torch.arange(3),
    )
    assert all(len(index) == 0 for index in t)


@pytest.mark.parametrize("name", SAMPLINGS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("label_dtype", [torch.int64, torch.int32, torch.uint8])
def test_references_in_every_dtype(name, dtype, label_dtype):
    x, labels, references, reference_labels = memory(dtype=dtype)
    reference_labels = reference_labels.clamp(min=0).to(label_dtype)
    t = strategy(name)(
        x,
        labels.to(label_dtype),
        references=references,
        reference_labels=reference_labels,
        generator=seeded(),
    )
    check_pool_triplets(t, labels, reference_labels)
    assert len(t.anchor) == sum(b + r for b, r in expected_pairs(labels, reference_labels, 8))


@pytest.mark.parametrize("name", SAMPLINGS)
def test_deterministic_given_generator(name):
    x, labels, references, reference_labels = memory()

    def run(seed):
        return strategy(name)(
            x,
            labels,
            references=references,
            reference_labels=reference_labels,
            generator=seeded(seed),
        )

    assert all(torch.equal(a, b) for a, b in zip(run(3), run(3)))


@pytest.mark.parametrize("name", SAMPLINGS)
def test_memory_is_held_in_chunks_of_rows(name, monkeypatch):
    """Only (chunk × P) blocks of distances are built, and the chunk size does not change
    the triplets."""
    x, labels, references, reference_labels = memory(n_batch=60, n_references=140, dim=8)

    def run():
        return strategy(name)(
            x,
            labels,
            references=references,
            reference_labels=reference_labels,
            generator=seeded(5),
            stats=SamplingStats(),
        )

    whole = run()
    shapes = []

    def recording(rows_x, rows, norms, out):
        shapes.append((rows.stop - rows.start, len(rows_x)))
        return squared_distances(rows_x, rows, norms, out)

    squared_distances = pool.squared_distances
    monkeypatch.setattr(pool, "chunk_rows", lambda rows, columns: 7)
    monkeypatch.setattr(pool, "squared_distances", recording)
    chunked = run()
    assert all(torch.equal(a, b) for a, b in zip(whole, chunked))
    if name != "uniform":  # uniform needs no distances at all
        assert shapes and max(rows for rows, _ in shapes) <= 7
        assert sum(rows for rows, _ in shapes) == len(x) and {p for _, p in shapes} == {200}
    else:
        assert not shapes


def test_sampling_runs_without_gradient():
    x, labels, references, reference_labels = memory()
    x.requires_grad_()
    references.requires_grad_()
    for fn in FUNCTIONS.values():
        t = fn(x, labels, references=references, reference_labels=reference_labels)
        assert not t.anchor.requires_grad and not t.negative.requires_grad


# ------------------------------------------------------------------------ bad input


R, Y = "references", "reference_labels"
BAD = {  # case: (the keyword arguments, from references r and labels y; the message)
    "without labels": (lambda r, y: {R: r}, "references given without reference_labels"),
    "labels without references": (lambda r, y: {Y: y}, "reference_labels given without refer"),
    "dimension": (lambda r, y: {R: unit(10, 8), Y: y}, r"dimension D = 16, got shape \(10, 8\)"),
    "dtype": (lambda r, y: {R: r.double(), Y: y}, "dtype torch.float32, got torch.float64"),
    "device": (lambda r, y: {R: r.to("meta"), Y: y}, "references is on meta but embeddings on"),
    "label device": (lambda r, y: {R: r, Y: y.to("meta")}, "reference_labels is on meta but"),
    "label shape": (lambda r, y: {R: r, Y: y.view(2, 5)}, "reference_labels must be a 1-d tensor"),
    "label count": (lambda r, y: {R: r, Y: y[:9]}, "same length N, got 9 reference_labels for 10"),
    "label dtype": (
        lambda r, y: {R: r, Y: y.float()},
        "reference_labels must be an integer tensor",
    ),
    "1-d references": (lambda r, y: {R: r[0], Y: y}, r"references must have shape \(N, D\)"),
    "integer references": (lambda r, y: {R: r.long(), Y: y}, "references must be a floating-point"),
    "negative cap": (lambda r, y: {"max_reference_positives": -1}, "an integer >= 0, got -1"),
    "fractional cap": (lambda r, y: {"max_reference_positives": 2.5}, "an integer >= 0, got 2.5"),
}


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("case", BAD)
def test_bad_references_raise_value_error(name, case):
    x, labels, references, reference_labels = memory(n_references=10)
    kwargs, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        FUNCTIONS[name](x, labels, **kwargs(references, reference_labels))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_non_finite_references_raise_value_error(name):
    x, labels, references, reference_labels = memory()
    references[3, 0] = math.nan
    with pytest.raises(ValueError, match="references"):
        FUNCTIONS[name](x, labels, references=references, reference_labels=reference_labels)


def test_distance_weighted_needs_unit_norm_references():
    x, labels, references, reference_labels = memory()
    with pytest.raises(ValueError, match="L2-normalised references"):
        distance_weighted(x, labels, references=2 * references, reference_labels=reference_labels)


# ------------------------------------------------------------ objects and registry


def test_registry_maps_names_to_strategy_classes():
    expected = {
        "uniform": Uniform,
        "hard": Hard,
        "semihard": SemiHard,
        "distance-weighted": DistanceWeighted,
    }
    assert expected == SAMPLINGS
    for kind in SAMPLINGS.values():
        assert issubclass(kind, Strategy) and kind.function in FUNCTIONS.values()


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("uniform", {"max_reference_positives": 2}),
        ("hard", {"max_reference_positives": 0}),
        ("semihard", {"margin": 0.5, "max_reference_positives": 3}),
        (
            "distance-weighted",
            {"cutoff": 0.3, "nonzero_loss_cutoff": 1.6, "density": "empirical", "bins": 4},
        ),
    ],
)
def test_an_object_samples_as_its_function_with_its_settings(name, settings):
    x, labels, references, reference_labels = memory()
    strategy = make_sampling(name, **settings)
    assert strategy == SAMPLINGS[name](**settings) and hash(strategy) == hash(
        SAMPLINGS[name](**settings)
    )
    assert strategy != SAMPLINGS[name]() and f"{next(iter(settings))}=" in repr(strategy)
    for extra in ({}, {"references": references, "reference_labels": reference_labels}):
        s1, s2 = SamplingStats(), SamplingStats()
        by_object = strategy(x, labels, generator=seeded(1), stats=s1, **extra)
        by_function = FUNCTIONS[name](x, labels, generator=seeded(1), stats=s2, **settings, **extra)
        assert all(torch.equal(a, b) for a, b in zip(by_object, by_function))
        assert s1 == s2


def test_strategies_are_frozen():
    with pytest.raises(AttributeError):
        SemiHard().margin = 0.4  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("gaussian", {}, r"unknown sampling 'gaussian'; expected one of \['distance-weighted'"),
        ("hard", {"margin": 0.2}, r"sampling 'hard' has no setting 'margin'; its settings are"),
        ("semihard", {"margin": 0.0}, "margin must be a finite number > 0"),
        ("distance-weighted", {"cutoff": 1.5}, "0 < cutoff < nonzero_loss_cutoff"),
        ("distance-weighted", {"density": "gaussian"}, "density must be 'sphere' or 'empirical'"),
        ("distance-weighted", {"bins": 0}, "bins must be a positive integer"),
        ("uniform", {"max_reference_positives": -2}, "max_reference_positives must be an integer"),
    ],
)
def test_make_sampling_rejects_bad_names_and_settings(name, settings, message):
    with pytest.raises(ValueError, match=message):
        make_sampling(name, **settings)


def test_a_registered_function_takes_no_settings(monkeypatch):
    monkeypatch.setitem(SAMPLINGS, "plain", uniform)
    with pytest.raises(ValueError, match="must be a Strategy class"):
        make_sampling("plain")
