"""The cross-batch memory: FIFO order, warm-up, checkpoints, bad inputs, known failure modes."""

from __future__ import annotations

import inspect

import pytest
import torch

from sampling_matters.losses import MarginLoss
from sampling_matters.memory import CrossBatchMemory


def batch(start: int, n: int, dim: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """n distinct rows whose first coordinate is their global index; labels = index % 5."""
    index = torch.arange(start, start + n)
    embeddings = torch.zeros(n, dim)
    embeddings[:, 0] = index.float()
    return embeddings, index % 5


def stored_indices(memory: CrossBatchMemory) -> list[int]:
    references, _ = memory.references()
    assert references is not None
    return references[:, 0].long().tolist()


# ---------------------------------------------------------------------------- FIFO


def test_references_are_the_last_rows_oldest_first_across_wrap_around() -> None:
    memory = CrossBatchMemory(size=5, dim=3)
    seen: list[int] = []
    for start, n in [(0, 2), (2, 2), (4, 3), (7, 1), (8, 4)]:
        memory.add(*batch(start, n))
        seen += list(range(start, start + n))
        assert stored_indices(memory) == seen[-5:]
        assert len(memory) == min(len(seen), 5)
        _, labels = memory.references()
        assert labels is not None and labels.tolist() == [i % 5 for i in seen[-5:]]
    assert memory.step == 5


def test_a_batch_larger_than_the_memory_keeps_its_last_rows() -> None:
    memory = CrossBatchMemory(size=4, dim=3)
    memory.add(*batch(0, 3))
    memory.add(*batch(3, 10))
    assert stored_indices(memory) == [9, 10, 11, 12]
    memory.add(*batch(13, 1))
    assert stored_indices(memory) == [10, 11, 12, 13]


def test_an_empty_batch_counts_a_step_and_stores_nothing() -> None:
    memory = CrossBatchMemory(size=4, dim=3)
    memory.add(*batch(0, 0))
    assert (len(memory), memory.step, memory.references()) == (0, 1, (None, None))


def test_stored_rows_are_detached_copies() -> None:
    memory = CrossBatchMemory(size=4, dim=3)
    embeddings = torch.randn(2, 3, requires_grad=True)
    memory.add(embeddings, torch.tensor([0, 1]))
    references, labels = memory.references()
    assert references is not None and labels is not None
    assert not references.requires_grad and labels.dtype == torch.int64
    expected = embeddings.detach().clone()
    with torch.no_grad():
        embeddings.add_(1.0)  # the caller changes its tensor: the memory does not follow
    assert torch.equal(memory.references()[0], expected)


def test_references_are_not_views_of_the_memory() -> None:
    memory = CrossBatchMemory(size=4, dim=3)
    memory.add(*batch(0, 2))
    before, _ = memory.references()
    memory.add(*batch(2, 3))
    assert before is not None and before[:, 0].tolist() == [0.0, 1.0]


def test_add_after_the_loss_and_before_backward_is_safe() -> None:
    # references() hands out new tensors, so add() writing the buffers in place cannot
    # break the autograd graph of a loss that read them.
    memory = CrossBatchMemory(size=8, dim=3)
    memory.add(torch.randn(4, 3), torch.arange(4))
    x = torch.randn(4, 3, requires_grad=True)
    references, _ = memory.references()
    assert references is not None
    loss = torch.cdist(x, references).sum()
    memory.add(x, torch.arange(4))
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# ---------------------------------------------------------------------------- warm-up


@pytest.mark.parametrize("warmup", [0, 1, 3])
def test_warmup_holds_references_back_while_storing(warmup: int) -> None:
    memory = CrossBatchMemory(size=100, dim=3, warmup=warmup)
    for step in range(5):
        ready = step >= warmup and step > 0
        assert memory.is_ready == ready
        assert (memory.references()[0] is not None) == ready
        memory.add(*batch(2 * step, 2))
    assert stored_indices(memory) == list(range(10))  # stored during the warm-up too


def test_clear_forgets_the_rows_and_keeps_the_step() -> None:
    memory = CrossBatchMemory(size=4, dim=3, warmup=2)
    for step in range(3):
        memory.add(*batch(2 * step, 2))
    memory.clear()
    assert (len(memory), memory.step, memory.references()) == (0, 3, (None, None))
    assert not memory.is_ready
    memory.add(*batch(6, 1))
    assert stored_indices(memory) == [6]


# ---------------------------------------------------------------- failure modes of other libraries


def test_a_batch_is_never_its_own_reference() -> None:
    memory = CrossBatchMemory(size=6, dim=3)
    seen: list[list[int]] = []

    def loss_fn(embeddings, labels, *, references, reference_labels):
        own = embeddings[:, 0].long().tolist()
        refs = [] if references is None else references[:, 0].long().tolist()
        assert not set(own) & set(refs), "the batch is among its own references"
        assert refs == [i for rows in seen for i in rows][-6:]
        seen.append(own)
        return embeddings.sum()

    for step in range(6):
        memory.compute_loss(*batch(4 * step, 4), loss_fn)
    assert memory.step == 6


def test_labels_equal_to_zero_are_real_labels() -> None:
    memory = CrossBatchMemory(size=6, dim=2)
    memory.add(torch.ones(4, 2), torch.zeros(4, dtype=torch.int64))
    references, labels = memory.references()
    assert len(memory) == 4 and references is not None and labels is not None
    assert labels.tolist() == [0, 0, 0, 0] and references.shape == (4, 2)
    memory.add(torch.full((3, 2), 2.0), torch.zeros(3, dtype=torch.int32))
    references, labels = memory.references()
    assert references is not None and labels is not None
    assert len(memory) == 6 and labels.tolist() == [0] * 6
    assert references[:, 0].tolist() == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]


def test_a_batch_on_another_device_is_refused_naming_both() -> None:
    memory = CrossBatchMemory(size=4, dim=3, device="meta")
    with pytest.raises(ValueError, match=r"embeddings are on cpu but the memory is on meta"):
        memory.add(torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64))
    embeddings = torch.zeros(2, 3, device="meta")
    with pytest.raises(ValueError, match=r"labels is on cpu but embeddings on meta"):
        memory.add(embeddings, torch.zeros(2, dtype=torch.int64))
    memory.add(embeddings, torch.zeros(2, dtype=torch.int64, device="meta"))
    references, labels = memory.references()
    assert references is not None and references.device.type == "meta"
    assert labels is not None and labels.device.type == "meta"


def test_to_moves_the_memory() -> None:
    memory = CrossBatchMemory(size=4, dim=3)
    memory.add(*batch(0, 2))
    assert memory.to("meta") is memory and memory.device.type == "meta"
    assert len(memory) == 2
    with pytest.raises(ValueError, match="memory is on meta"):
        memory.add(*batch(2, 1))


def test_an_empty_memory_at_step_zero_gives_none_and_a_loss_still_works() -> None:
    memory = CrossBatchMemory(size=16, dim=4)
    assert (memory.step, len(memory), memory.is_ready) == (0, 0, False)
    assert memory.references() == (None, None)
    criterion = MarginLoss(sampling="uniform", generator=torch.Generator().manual_seed(0))
    embeddings = torch.nn.functional.normalize(torch.randn(8, 4), dim=1).requires_grad_()
    labels = torch.arange(8) // 2
    if "references" in inspect.signature(MarginLoss.forward).parameters:
        loss_fn = criterion
    else:  # until the losses take references: a loss that accepts and ignores None

        def loss_fn(embeddings, labels, *, references, reference_labels):
            assert references is None and reference_labels is None
            return criterion(embeddings, labels)

    loss = memory.compute_loss(embeddings, labels, loss_fn)
    loss.backward()
    assert torch.isfinite(loss) and embeddings.grad is not None
    assert len(memory) == 8 and memory.step == 1


# ---------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_batches_are_cast_up(half: torch.dtype) -> None:
    memory = CrossBatchMemory(size=4, dim=3)
    memory.add(torch.full((2, 3), 0.5, dtype=half), torch.tensor([0, 1]))
    references, _ = memory.references()
    assert references is not None and references.dtype == torch.float32
    assert references.eq(0.5).all()


def test_a_memory_of_float64_keeps_float64() -> None:
    memory = CrossBatchMemory(size=4, dim=3, dtype=torch.float64)
    memory.add(torch.randn(2, 3, dtype=torch.float64), torch.tensor([0, 1]))
    assert memory.references()[0].dtype == torch.float64  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("memory_dtype", "batch_dtype"),
    [
        (torch.float32, torch.float64),
        (torch.float64, torch.float32),
        (torch.float16, torch.bfloat16),
        (torch.float16, torch.float32),
    ],
)
def test_another_floating_dtype_is_refused(memory_dtype, batch_dtype) -> None:
    memory = CrossBatchMemory(size=4, dim=3, dtype=memory_dtype)
    with pytest.raises(ValueError, match=rf"must be {memory_dtype}.*got {batch_dtype}"):
        memory.add(torch.zeros(2, 3, dtype=batch_dtype), torch.tensor([0, 1]))
    assert (len(memory), memory.step) == (0, 0)


# ---------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 0, "dim": 3}, r"^size must be a positive integer .*got 0$"),
        ({"size": -5, "dim": 3}, r"^size must be a positive integer .*got -5$"),
        ({"size": 2.0, "dim": 3}, r"^size must be a positive integer"),
        ({"size": 4, "dim": 0}, r"^dim must be a positive integer .*got 0$"),
        ({"size": 4, "dim": 3, "warmup": -1}, r"^warmup must be an integer >= 0 .*got -1$"),
        ({"size": 4, "dim": 3, "dtype": torch.int64}, r"^dtype must be a floating"),
        ({"size": 4, "dim": 3, "dtype": "float32"}, r"^dtype must be a floating"),
    ],
)
def test_bad_settings_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        CrossBatchMemory(**kwargs)


@pytest.mark.parametrize(
    ("embeddings", "labels", "message"),
    [
        (torch.zeros(2, 4), torch.tensor([0, 1]), r"dimension D = 3 .*got shape \(2, 4\)"),
        (torch.zeros(3), torch.tensor([0, 1, 2]), r"shape \(N, D\)"),
        (torch.zeros(2, 3, dtype=torch.int64), torch.tensor([0, 1]), "floating-point"),
        (torch.zeros(2, 3), torch.tensor([0.0, 1.0]), "integer tensor of class ids"),
        (torch.zeros(2, 3), torch.tensor([True, False]), "integer tensor of class ids"),
        (torch.zeros(2, 3), torch.tensor([[0, 1]]), "1-d tensor of class ids"),
        (torch.zeros(2, 3), torch.tensor([0, 1, 2]), "same length N, got 3 labels for 2"),
        (torch.zeros(2, 3), [0, 1], "1-d tensor of class ids, got list"),
    ],
)
def test_bad_batches_are_refused_and_not_stored(embeddings, labels, message) -> None:
    memory = CrossBatchMemory(size=4, dim=3)
    with pytest.raises(ValueError, match=message):
        memory.add(embeddings, labels)
    assert (len(memory), memory.step) == (0, 0)


# ---------------------------------------------------------------------------- checkpoints


def filled(size: int = 5, dim: int = 3, adds: int = 4) -> CrossBatchMemory:
    memory = CrossBatchMemory(size=size, dim=dim)
    for step in range(adds):
        memory.add(*batch(2 * step, 2, dim))
    return memory


@pytest.mark.parametrize("adds", [0, 2, 4])
def test_a_state_round_trips_through_a_weights_only_file(adds: int, tmp_path) -> None:
    memory = filled(adds=adds)
    torch.save(memory.state_dict(), tmp_path / "memory.pt")
    restored = CrossBatchMemory(size=5, dim=3)
    restored.load_state_dict(torch.load(tmp_path / "memory.pt", weights_only=True))
    assert (len(restored), restored.step) == (len(memory), memory.step)
    for a, b in zip(restored.references(), memory.references()):
        assert (a is None and b is None) or torch.equal(a, b)
    for more in (memory, restored):  # and they go on identically
        more.add(*batch(100, 3))
    assert stored_indices(restored) == stored_indices(memory)


def test_a_state_is_a_copy() -> None:
    memory = filled()
    state = memory.state_dict()
    memory.add(*batch(50, 5))
    restored = CrossBatchMemory(size=5, dim=3)
    restored.load_state_dict(state)
    assert stored_indices(restored) == [3, 4, 5, 6, 7]


def test_a_state_loads_onto_the_memory_device() -> None:
    restored = CrossBatchMemory(size=5, dim=3, device="meta")
    restored.load_state_dict(filled().state_dict())
    assert restored.device.type == "meta" and len(restored) == 5


@pytest.mark.parametrize(
    ("size", "dim", "dtype", "message"),
    [
        (6, 3, torch.float32, r"embeddings must be a torch.float32 tensor of shape \(6, 3\)"),
        (5, 4, torch.float32, r"shape \(5, 4\) for this memory \(size=5, dim=4\)"),
        (5, 3, torch.float64, r"embeddings must be a torch.float64 tensor"),
    ],
)
def test_a_state_of_another_size_dim_or_dtype_is_refused(size, dim, dtype, message) -> None:
    memory = CrossBatchMemory(size=size, dim=dim, dtype=dtype)
    with pytest.raises(ValueError, match=message):
        memory.load_state_dict(filled().state_dict())
    assert (len(memory), memory.step) == (0, 0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"count": 6}, r"count must be an integer in \[0, 5\]"),
        ({"head": 5}, r"head must be an integer in \[0, 4\]"),
        ({"step": -1}, r"step must be an integer >= 0"),
        ({"count": 2, "head": 3}, "head must equal its count 2 until full, got 3"),
        ({"labels": torch.zeros(5)}, r"labels must be a torch.int64 tensor of shape \(5,\)"),
        ({"extra": 1}, "must have the keys"),
    ],
)
def test_a_bad_state_is_refused(change, message) -> None:
    memory = CrossBatchMemory(size=5, dim=3)
    with pytest.raises(ValueError, match=message):
        memory.load_state_dict({**filled().state_dict(), **change})


def test_a_state_with_a_missing_key_or_of_another_type_is_refused() -> None:
    memory = CrossBatchMemory(size=5, dim=3)
    state = filled().state_dict()
    del state["step"]
    with pytest.raises(ValueError, match="must have the keys"):
        memory.load_state_dict(state)
    with pytest.raises(ValueError, match="got list"):
        memory.load_state_dict([])  # type: ignore[arg-type]


def test_repr_names_the_settings_and_the_fill() -> None:
    assert repr(filled(adds=1)) == (
        "CrossBatchMemory(size=5, dim=3, warmup=0, filled=2, step=1, device=cpu, "
        "dtype=torch.float32)"
    )
