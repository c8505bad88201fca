import math

import pytest
import torch

import sampling_matters as sm
from sampling_matters.evaluation import evaluate
from sampling_matters.evaluation.knn import faiss_available


def blobs(n_classes=20, per_class=10, dim=16, noise=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(n_classes, dim, generator=g), dim=1)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    labels = labels[torch.randperm(len(labels), generator=g)]
    x = centres[labels] + noise * torch.randn(len(labels), dim, generator=g)
    return torch.nn.functional.normalize(x, dim=1), labels


def test_perfect_embedding_scores_one_everywhere(contract):
    x, labels = blobs()
    scores = evaluate(x, labels, backend="torch")
    assert set(scores) == contract
    for key in contract - {"n_queries", "n_classes", "nmi"}:
        assert scores[key] == pytest.approx(1.0), key
    assert scores["nmi"] > 0.9  # seeded k-means from random starts may merge two blobs
    assert (scores["n_queries"], scores["n_classes"]) == (200, 20)


def test_constant_embedding_scores_chance():
    _, labels = blobs()
    scores = evaluate(torch.ones(200, 16), labels, backend="torch")
    chance = 9 / 199  # another image of the query's class among the other 199
    assert scores["recall@1"] == pytest.approx(chance, abs=0.03)
    assert scores["nmi"] < 0.05


def test_single_image_classes_are_left_out_and_counted():
    x, labels = blobs()
    x = torch.cat([x, torch.nn.functional.normalize(torch.randn(3, 16), dim=1)])
    labels = torch.cat([labels, torch.tensor([100, 101, 102])])
    scores = evaluate(x, labels, backend="torch", with_nmi=False)
    assert scores["n_queries"] == 200 and scores["n_classes"] == 23
    assert scores["recall@1"] == pytest.approx(1.0) and math.isnan(scores["nmi"])


def test_gallery_protocol():
    x, labels = blobs()
    scores = evaluate(
        x[:50],
        labels[:50],
        gallery=x[50:],
        gallery_labels=labels[50:],
        backend="torch",
        with_nmi=False,
    )
    assert scores["recall@1"] == pytest.approx(1.0) and scores["n_queries"] == 50


@pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
def test_backends_agree(contract):
    x, labels = blobs(noise=0.6, seed=3)
    ours = evaluate(x, labels, backend="torch")
    theirs = evaluate(x, labels, backend="faiss")
    for key in contract - {"nmi"}:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key
    assert 0 < ours["nmi"] < 1 and 0 < theirs["nmi"] < 1


def test_matches_pytorch_metric_learning_where_definitions_agree():
    calculators = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    x, labels = blobs(noise=0.8, seed=5)
    ours = evaluate(x, labels, backend="torch", with_nmi=False)
    calculator = calculators.AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"), k="max_bin_count"
    )
    theirs = calculator.get_accuracy(x, labels)
    assert ours["recall@1"] == pytest.approx(theirs["precision_at_1"], abs=1e-4)
    assert ours["r_precision"] == pytest.approx(theirs["r_precision"], abs=1e-4)
    assert ours["map@r"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-4)


def test_bad_input():
    x, labels = blobs()
    with pytest.raises(ValueError, match="one class id per embedding"):
        evaluate(x, labels[:-1])
    with pytest.raises(ValueError, match="at least two classes"):
        evaluate(x, torch.zeros(200, dtype=torch.int64))
    with pytest.raises(ValueError, match="gallery offers"):
        evaluate(x[:5], labels[:5], ks=(1, 8))
    with pytest.raises(ValueError, match="both gallery and gallery_labels"):
        evaluate(x, labels, gallery=x)


def test_exported_from_the_package():
    assert sm.evaluation.evaluate is evaluate
