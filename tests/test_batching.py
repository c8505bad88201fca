from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from sampling_matters.batching import PKSampler


def make_labels(sizes: list[int], *, ids: list[int] | None = None, seed: int = 0) -> torch.Tensor:
    """Labels with sizes[i] images of class ids[i], in a random order."""
    ids = list(range(len(sizes))) if ids is None else ids
    labels = torch.repeat_interleave(torch.tensor(ids), torch.tensor(sizes))
    generator = torch.Generator().manual_seed(seed)
    return labels[torch.randperm(len(labels), generator=generator)]


def check_batches(sampler: PKSampler, labels: torch.Tensor) -> list[list[int]]:
    """Every batch is P runs of K images of one class each, P distinct classes."""
    P, K = sampler.classes_per_batch, sampler.samples_per_class
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert batches, "an epoch has at least one batch"
    plan = torch.tensor(batches)  # (B, P·K)
    assert plan.shape == (len(batches), P * K)
    runs = labels[plan].view(len(batches), P, K)  # (B, P, K)
    assert bool((runs == runs[:, :, :1]).all()), "a run of K mixes classes"
    run_classes = torch.sort(runs[:, :, 0], dim=1).values  # (B, P)
    assert bool((run_classes.diff(dim=1) != 0).all()), "a batch holds a class twice"
    return batches


def used_images(labels: torch.Tensor, minimum: int) -> set[int]:
    ids, counts = torch.unique(labels, return_counts=True)
    keep = ids[counts >= minimum]
    return set(torch.nonzero(torch.isin(labels, keep)).flatten().tolist())


@pytest.mark.parametrize(
    ("sizes", "P", "K"),
    [
        ([4] * 10, 2, 2),
        ([4] * 10, 5, 4),
        ([5, 9, 13, 4, 7, 6], 3, 4),
        ([40, 4, 4, 4], 2, 4),  # one class dominates: extra chunks at the end
        ([10, 3, 7], 3, 2),  # P equals the number of classes
        ([2, 3, 5, 8, 13, 21, 34], 4, 3),
    ],
)
def test_batches_are_p_by_k_and_cover_the_epoch(sizes: list[int], P: int, K: int) -> None:
    labels = make_labels(sizes)
    for epoch in range(3):
        sampler = PKSampler(labels, P, K, seed=epoch)
        sampler.set_epoch(epoch)
        batches = check_batches(sampler, labels)
        seen = {i for batch in batches for i in batch}
        assert seen == used_images(labels, 2)


def test_number_of_batches_is_about_chunks_over_p() -> None:
    labels = make_labels([4, 5, 8, 9, 12, 3, 6, 7] * 25)
    sampler = PKSampler(labels, 8, 4)
    chunks = sum((c + 3) // 4 for c in [4, 5, 8, 9, 12, 3, 6, 7]) * 25
    assert sampler.n_chunks == chunks
    for epoch in range(4):
        sampler.set_epoch(epoch)
        assert -(-chunks // 8) <= len(sampler) <= -(-chunks // 8) + 1


def test_a_dominant_class_needs_one_batch_per_chunk() -> None:
    labels = make_labels([40, 4, 4, 4])  # 10 chunks of class 0, 3 of the others
    sampler = PKSampler(labels, 2, 4)
    batches = check_batches(sampler, labels)
    assert len(batches) == 10
    assert all(0 in labels[batch].tolist() for batch in batches)
    assert "7 extra chunks" in sampler.describe()


def test_big_classes_are_spread_over_the_epoch() -> None:
    labels = make_labels([4] * 200 + [64])  # class 200: 16 chunks among 216
    for seed in range(5):
        sampler = PKSampler(labels, 4, 4, seed=seed)
        plan = sampler.epoch_batches()
        assert len(plan) == 54
        has_big = (labels[plan] == 200).any(dim=1)  # (B,)
        per_quarter = [int(q.sum()) for q in has_big.chunk(4)]
        assert sum(per_quarter) == 16
        assert all(2 <= n <= 6 for n in per_quarter), per_quarter


def test_chunks_of_a_big_class_have_distinct_images() -> None:
    labels = make_labels([7, 7, 7, 7])  # 7 images, K = 4: the second chunk wraps around
    sampler = PKSampler(labels, 2, 4)
    for epoch in range(5):
        sampler.set_epoch(epoch)
        for batch in sampler:
            for run in range(2):
                chunk = batch[run * 4 : run * 4 + 4]
                assert len(set(chunk)) == 4


def test_len_agrees_with_iteration_and_dataloader() -> None:
    labels = make_labels([6, 3, 9, 4, 4, 11, 2, 5], seed=3)
    data = torch.arange(len(labels), dtype=torch.float32)[:, None] * 10  # (N, 1)
    dataset = TensorDataset(data, labels)
    sampler = PKSampler(labels, 3, 2, seed=7)
    loader = DataLoader(dataset, batch_sampler=sampler)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        seen = 0
        for (x, y), batch in zip(loader, sampler.epoch_batches(), strict=True):
            assert x.shape == (6, 1)
            assert torch.equal(x[:, 0], batch.float() * 10)
            assert torch.equal(y, labels[batch])
            seen += 1
        assert seen == len(loader) == len(sampler)


def test_same_seed_and_epoch_give_same_batches() -> None:
    labels = make_labels([5, 6, 7, 8, 9, 4, 3, 2] * 4)
    first = PKSampler(labels, 4, 3, seed=11)
    second = PKSampler(labels, 4, 3, seed=11)
    assert list(first) == list(first)  # iterating twice
    assert list(first) == list(second)
    first.set_epoch(5)
    second.set_epoch(5)
    assert list(first) == list(second)  # a resumed run that sets the epoch
    epoch_5 = list(first)
    first.set_epoch(6)
    assert list(first) != epoch_5
    first.set_epoch(5)
    assert list(first) == epoch_5
    assert list(PKSampler(labels, 4, 3, seed=12)) != list(PKSampler(labels, 4, 3, seed=11))


def test_epoch_batches_is_a_copy() -> None:
    sampler = PKSampler([0, 0, 1, 1, 2, 2], 2, 2)
    plan = sampler.epoch_batches()
    plan.fill_(-1)
    assert bool((sampler.epoch_batches() >= 0).all())


def test_labels_in_any_order_with_any_values() -> None:
    ids = [-5, 1000, 3, 10**12, 42]
    labels = make_labels([4, 5, 6, 7, 8], ids=ids, seed=1)
    sampler = PKSampler(labels, 3, 4)
    assert sampler.classes.tolist() == sorted(ids)
    batches = check_batches(sampler, labels)
    assert {i for batch in batches for i in batch} == set(range(len(labels)))


@pytest.mark.parametrize(
    "convert",
    [
        lambda t: t,
        lambda t: t.tolist(),
        lambda t: tuple(t.tolist()),
        lambda t: t.numpy(),
        lambda t: t.numpy().astype(np.uint16),
        lambda t: t.to(torch.int32),
    ],
)
def test_label_containers(convert: object) -> None:
    labels = make_labels([3, 4, 5])
    sampler = PKSampler(convert(labels), 2, 2)  # type: ignore[operator]
    assert list(sampler) == list(PKSampler(labels, 2, 2))


def test_small_classes_repeat() -> None:
    labels = make_labels([2, 3, 8, 8])  # K = 5: classes 0 and 1 are small
    sampler = PKSampler(labels, 2, 5)
    assert sampler.n_small_classes == 2
    assert sampler.n_classes_used == 4
    assert sampler.n_dropped_classes == 0
    assert sampler.n_images_used == 21
    assert "2 small classes (< 5 images) repeated" in sampler.describe()
    for epoch in range(5):
        sampler.set_epoch(epoch)
        batches = check_batches(sampler, labels)
        assert {i for batch in batches for i in batch} == set(range(len(labels)))
        for batch in batches:
            for run in range(2):
                chunk = batch[run * 5 : run * 5 + 5]
                size = [2, 3, 8, 8][int(labels[chunk[0]])]
                copies = torch.bincount(torch.tensor(chunk)).tolist()
                copies = [n for n in copies if n > 0]
                if size < 5:  # every image, each ⌊K/c⌋ or ⌈K/c⌉ times
                    assert len(copies) == size
                    assert set(copies) <= {5 // size, -(-5 // size)}
                else:
                    assert copies == [1] * 5


def test_small_classes_drop() -> None:
    labels = make_labels([2, 3, 8, 8, 5])
    sampler = PKSampler(labels, 2, 5, small_classes="drop")
    assert sampler.n_small_classes == 2
    assert sampler.n_classes_used == 3
    assert sampler.n_dropped_classes == 2
    assert sampler.n_images_used == 21
    assert sampler.classes.tolist() == [2, 3, 4]
    batches = check_batches(sampler, labels)
    assert {i for batch in batches for i in batch} == used_images(labels, 5)
    assert "2 small classes (< 5 images) dropped" in sampler.describe()


@pytest.mark.parametrize("small_classes", ["repeat", "drop"])
def test_single_image_classes_are_always_dropped(small_classes: str) -> None:
    labels = make_labels([1, 1, 1, 4, 4, 4])
    sampler = PKSampler(labels, 2, 2, small_classes=small_classes)  # type: ignore[arg-type]
    assert sampler.n_single_image_classes == 3
    assert sampler.n_dropped_classes == 3
    assert sampler.n_classes_used == 3
    assert "3 single-image classes dropped" in sampler.describe()
    batches = check_batches(sampler, labels)
    assert {i for batch in batches for i in batch} == used_images(labels, 2)


def test_describe_is_one_line() -> None:
    sampler = PKSampler(make_labels([4, 4, 4, 1]), 2, 2)
    summary = sampler.describe()
    assert "\n" not in summary
    assert "3 of 4 classes used" in summary
    assert "epoch 0" in summary
    assert "PKSampler(" in repr(sampler)


@pytest.mark.parametrize(
    ("labels", "P", "K", "kwargs", "match"),
    [
        (
            [0, 0, 1, 1],
            2,
            1,
            {},
            r"samples_per_class must be an integer >= 2 \(a class needs 2 images",
        ),
        (
            [0, 0, 1, 1],
            1,
            2,
            {},
            r"classes_per_batch must be an integer >= 2 \(a batch needs 2 classes",
        ),
        ([0, 0, 1, 1], 2.0, 2, {}, "classes_per_batch must be an integer"),
        ([0, 0, 1, 1], 2, "2", {}, "samples_per_class must be an integer"),
        ([0, 0, 1, 1], True, 2, {}, "classes_per_batch must be an integer"),
        ([0, 0, 1, 1, 2], 3, 2, {}, r"classes_per_batch=3 but only 2 of the 3 classes are usable"),
        ([0, 0, 1, 1, 2, 2], 3, 3, {"small_classes": "drop"}, r"only 0 of the 3 classes"),
        ([0, 0, 1, 1], 2, 2, {"small_classes": "pad"}, "small_classes must be one of"),
        ([0, 0, 1, 1], 2, 2, {"seed": 0.5}, "seed must be an integer"),
        ([], 2, 2, {}, "labels is empty"),
        ([[0, 0], [1, 1]], 2, 2, {}, "labels must be 1-d"),
        (torch.tensor(3), 2, 2, {}, "labels must be 1-d"),
        ([0.0, 0.0, 1.0, 1.0], 2, 2, {}, "labels must be integer class ids"),
        ([True, True, False, False], 2, 2, {}, "labels must be integer class ids"),
        (["a", "a", "b", "b"], 2, 2, {}, "labels must be"),
        ([[0, 0], [1]], 2, 2, {}, "labels must be"),
    ],
)
def test_impossible_settings_raise(
    labels: object, P: object, K: object, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        PKSampler(labels, P, K, **kwargs)  # type: ignore[arg-type]


def test_set_epoch_needs_an_integer() -> None:
    sampler = PKSampler([0, 0, 1, 1], 2, 2)
    with pytest.raises(ValueError, match="epoch must be an integer"):
        sampler.set_epoch(1.5)  # type: ignore[arg-type]


def test_stanford_online_products_scale() -> None:
    # ~120,000 images, classes of 2 to 12 images (K = 4: many are small), shuffled.
    generator = torch.Generator().manual_seed(0)
    sizes = torch.randint(2, 9, (30_000,), generator=generator)
    sizes[::50] = 12
    sizes = sizes[: int((sizes.cumsum(0) <= 120_000).sum())]
    labels = torch.repeat_interleave(torch.arange(len(sizes)) * 3 + 1, sizes)
    labels = labels[torch.randperm(len(labels), generator=generator)]

    sampler = PKSampler(labels, 20, 4, seed=3)
    assert sampler.n_classes_used == len(sizes)
    assert sampler.n_small_classes == int((sizes < 4).sum())
    assert sampler.n_chunks == int(((sizes + 3) // 4).sum())
    for epoch in range(2):
        sampler.set_epoch(epoch)
        plan = sampler.epoch_batches()  # (B, 80)
        assert len(plan) == len(sampler)
        assert -(-sampler.n_chunks // 20) <= len(plan) <= -(-sampler.n_chunks // 20) + 1
        assert torch.unique(plan).numel() == len(labels)  # every image, every epoch
        runs = labels[plan].view(len(plan), 20, 4)  # (B, P, K)
        assert bool((runs == runs[:, :, :1]).all())
        run_classes = torch.sort(runs[:, :, 0], dim=1).values  # (B, P)
        assert bool((run_classes.diff(dim=1) != 0).all())
