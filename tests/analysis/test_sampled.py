import pytest
import torch

from sampling_matters import analysis


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_strategies_order_the_distances_they_draw(uniform16):
    d = uniform16.distances
    assert set(d) == {
        "uniform",
        "hard",
        "semihard",
        "distance-weighted",
        "distance-weighted-empirical",
    }
    assert all(len(v) == 8 * 32 * 4 * 3 for v in d.values())
    assert d["hard"].mean() + 0.1 < d["distance-weighted"].mean() < d["uniform"].mean() - 0.1
    # uniform sampling follows the distances available in the batch, which follow q(d)
    assert abs(float(d["uniform"].mean() - uniform16.negatives.mean())) < 0.02
    assert len(uniform16.negatives) == 8 * (128 * 127 // 2 - 32 * 6)


def test_distance_weighted_spreads_over_the_admissible_range(uniform16):
    weighted, hard = uniform16.distances["distance-weighted"], uniform16.distances["hard"]
    assert float(weighted.max()) < analysis.NONZERO_LOSS_CUTOFF
    assert float(weighted.quantile(0.05)) < float(hard.mean())
    assert float(weighted.quantile(0.95)) > 1.3
    assert float(weighted.std()) > 1.8 * float(hard.std())


def test_the_empirical_density_spreads_where_the_sphere_density_does_not():
    # points of low intrinsic dimension in 128-d, as a trained embedding: the sphere's
    # 1/q(d) in 128 dimensions then favours the closest negatives, like hard mining
    g = gen()
    labels = torch.arange(32).repeat_interleave(4)
    low = torch.randn(32, 6, generator=g)[labels] + 0.35 * torch.randn(128, 6, generator=g)
    x = torch.nn.functional.normalize(low @ torch.randn(6, 128, generator=g), dim=1)
    data = analysis.sampled_distances([(x, labels)] * 4, title="clustered", generator=g)
    d = data.distances
    sphere, empirical = d["distance-weighted"], d["distance-weighted-empirical"]
    assert float(sphere.mean()) < float(d["hard"].mean()) + 0.05
    assert float(empirical.mean()) > float(sphere.mean()) + 0.1
    assert float(empirical.std()) > float(sphere.std())


def test_pk_batches_draw_k_items_of_classes_that_have_k():
    labels = torch.cat([torch.arange(10).repeat_interleave(6), torch.tensor([10, 10])])
    x = torch.randn(len(labels), 8, generator=gen())
    batches = list(analysis.pk_batches(x, labels, 3, classes=4, per_class=3, generator=gen()))
    assert len(batches) == 3
    for embeddings, batch_labels in batches:
        _, counts = batch_labels.unique(return_counts=True)
        assert counts.tolist() == [3, 3, 3, 3] and 10 not in batch_labels
        assert torch.allclose(embeddings.norm(dim=1), torch.ones(12))
    with pytest.raises(ValueError, match="at least 2 classes"):
        analysis.pk_batches(x[:6], labels[:6], 1, generator=gen())


def test_sampled_distances_rejects_unknown_strategies():
    with pytest.raises(ValueError, match="unknown strategies"):
        analysis.sampled_distances([], title="", strategies=["hardest"])
