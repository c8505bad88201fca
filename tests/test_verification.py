import itertools
import statistics

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from sampling_matters.evaluation.verification import roc_auc, tar_at_far, verification_accuracy


def random_pairs(seed, n=240, decimals=1):
    """Overlapping same/different distances, rounded so that ties occur."""
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.5
    distances = np.where(same, rng.normal(0.8, 0.3, n), rng.normal(1.2, 0.3, n))
    return np.round(distances, decimals), same


def loop_best_threshold(distances, same):
    values = sorted(set(distances.tolist()))
    candidates = [-np.inf] + [(a + b) / 2 for a, b in itertools.pairwise(values)] + [np.inf]
    accuracies = [
        sum((d < t) == s for d, s in zip(distances.tolist(), same.tolist())) for t in candidates
    ]
    return candidates[accuracies.index(max(accuracies))]


def loop_verification(distances, same, fold_ids):
    accuracies, thresholds = [], []
    for fold in sorted(set(fold_ids.tolist())):
        test = fold_ids == fold
        threshold = loop_best_threshold(distances[~test], same[~test])
        thresholds.append(threshold)
        accuracies.append(float(np.mean((distances[test] < threshold) == same[test])))
    return statistics.mean(accuracies), statistics.stdev(accuracies), thresholds


def loop_tar(distances, same, far):
    best = (-np.inf, 0.0)
    for t in sorted(set(distances.tolist())):
        accepted = distances <= t
        if accepted[~same].mean() <= far:
            best = max(best, (t, accepted[same].mean()))
    return best[1]


@pytest.mark.parametrize("seed", range(3))
def test_accuracy_against_loop(seed):
    distances, same = random_pairs(seed)
    fold_ids = np.arange(len(same)) * 10 // len(same)
    mean, std, thresholds = verification_accuracy(distances, same)
    expected = loop_verification(distances, same, fold_ids)
    assert (mean, std) == pytest.approx(expected[:2], abs=1e-12)
    assert thresholds.tolist() == pytest.approx(expected[2])


def test_known_threshold():
    """Separable pairs: each fold's threshold is the midpoint of the training gap."""
    rng = np.random.default_rng(0)
    same = np.tile([True, False], 300)  # 10 folds of 60 pairs, like LFW's 600
    distances = np.where(same, rng.uniform(0.0, 1.0, 600), rng.uniform(1.2, 2.2, 600))
    mean, std, thresholds = verification_accuracy(torch.from_numpy(distances), same)
    assert (mean, std) == (1.0, 0.0)
    for fold, threshold in enumerate(thresholds.tolist()):
        train = np.arange(600) // 60 != fold
        gap = (distances[train & same].max(), distances[train & ~same].min())
        assert threshold == pytest.approx(sum(gap) / 2)


def test_fold_ids_and_similarities():
    distances, same = random_pairs(4, n=200)
    in_order = verification_accuracy(distances, same, folds=5)
    explicit = verification_accuracy(distances, same, folds=np.arange(200) // 40 + 7)
    assert in_order[:2] == explicit[:2] and torch.equal(in_order[2], explicit[2])
    flipped = verification_accuracy(-distances, same, folds=5, similarity=True)
    assert flipped[:2] == in_order[:2] and torch.equal(flipped[2], -in_order[2])
    shuffled = np.random.default_rng(0).permutation(np.arange(200) % 4)
    mean, std, thresholds = verification_accuracy(distances, same, folds=shuffled)
    assert (mean, std) == pytest.approx(loop_verification(distances, same, shuffled)[:2])
    assert thresholds.shape == (4,)


@pytest.mark.parametrize("seed", range(3))
def test_roc_auc_matches_sklearn(seed):
    distances, same = random_pairs(seed, decimals=1)  # many ties
    assert roc_auc(distances, same) == pytest.approx(roc_auc_score(same, -distances), abs=1e-12)
    assert roc_auc(-distances, same, similarity=True) == roc_auc(distances, same)
    pairs = [(p, n) for p in distances[same] for n in distances[~same]]
    by_loop = np.mean([1.0 if p < n else 0.5 if p == n else 0.0 for p, n in pairs])
    assert roc_auc(torch.from_numpy(distances), torch.from_numpy(same)) == pytest.approx(by_loop)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("far", [0.0, 1e-3, 0.05, 0.3, 0.5, 1.0])
def test_tar_at_far_against_loop(seed, far):
    distances, same = random_pairs(seed, n=200, decimals=2)
    assert tar_at_far(distances, same, far) == pytest.approx(loop_tar(distances, same, far))
    assert tar_at_far(-distances, same, far, similarity=True) == tar_at_far(distances, same, far)


def test_tar_at_far_exact_fraction():
    """FAR = 29/100 is allowed at far = 0.29 although 0.29 * 100 rounds to 28.999…"""
    negatives = np.arange(1, 101) / 100
    distances = np.array([0.295, 0.305, *negatives])
    same = np.array([True, True] + [False] * 100)
    assert 0.29 * 100 < 29
    assert tar_at_far(distances, same, 0.29) == 0.5  # accepts the negatives 0.01 … 0.29
    assert tar_at_far(distances, same, 0.3) == 1.0


@pytest.mark.parametrize(
    ("distances", "same", "kwargs", "match"),
    [
        (np.zeros(4), np.array([True, False, True]), {}, "shape"),
        (np.zeros((2, 2)), np.ones((2, 2), bool), {}, r"shape \(P,\)"),
        (np.zeros(0), np.zeros(0, bool), {}, r"P >= 1"),
        (np.zeros(4), np.array([1, 0, 1, 0]), {}, "bool"),
        (np.array([0.0, np.nan, 1, 1]), np.array([True, False] * 2), {}, "NaN"),
        (np.zeros(4), np.array([True, False] * 2), {"folds": 1}, "folds"),
        (np.zeros(4), np.array([True, False] * 2), {"folds": 5}, "folds"),
        (np.zeros(4), np.array([True, False] * 2), {"folds": np.zeros(4, int)}, "two"),
        (np.zeros(4), np.array([True, False] * 2), {"folds": np.zeros(3, int)}, "fold ids"),
    ],
)
def test_accuracy_bad_inputs(distances, same, kwargs, match):
    with pytest.raises(ValueError, match=match):
        verification_accuracy(distances, same, **kwargs)


def test_auc_and_tar_need_both_kinds_of_pair():
    with pytest.raises(ValueError, match="both same and different"):
        roc_auc(np.arange(3.0), np.ones(3, bool))
    with pytest.raises(ValueError, match="both same and different"):
        tar_at_far(np.arange(3.0), np.zeros(3, bool))
    with pytest.raises(ValueError, match="far"):
        tar_at_far(np.arange(2.0), np.array([True, False]), far=1.5)
