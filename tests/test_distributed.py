"""sampling_matters.distributed on 2 real processes (gloo on CPU, a file store).

Each test spawns two processes that join one process group and compare what they
compute with what one process computes on the concatenated batch; a process reports
its result (or its error) through a file, so a failure on one rank shows here.
"""

from __future__ import annotations

import json
import traceback
import weakref
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from sampling_matters import distributed
from sampling_matters.losses import LOSSES, MarginLoss
from sampling_matters.sampling import distance_weighted, make_sampling
from sampling_matters.sphere import uniform_on_sphere

ROWS = (3, 5)  # rank 0 embeds 3 rows, rank 1 five: ranks may differ
DIM = 4


def rank_batch(r: int, dim: int = DIM) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank r's embeddings and labels, the same in every process."""
    g = torch.Generator().manual_seed(100 + r)
    return torch.randn(ROWS[r], dim, generator=g, dtype=torch.float64), torch.arange(
        ROWS[r]
    ) + 10 * r


def rank_weights(r: int) -> torch.Tensor:
    """Rank r's loss: a weighted sum over the whole gathered batch."""
    g = torch.Generator().manual_seed(200 + r)
    return torch.randn(sum(ROWS), DIM, generator=g, dtype=torch.float64)


def _worker(r: int, world: int, store: str, out: str, check: str) -> None:
    result: dict[str, object] = {}
    try:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=r, world_size=world)
        result = CHECKS[check](r)
    except Exception as error:  # reported to the test, not lost in a child process
        result = {"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()}
    finally:
        distributed.leave()  # DDP's cycles freed first: no SIGABRT at exit
        Path(out, f"rank{r}.json").write_text(json.dumps(result))


def _gradients(r: int) -> dict[str, object]:
    x, labels = rank_batch(r)
    x.requires_grad_()
    everything, all_labels, offset = distributed.gather(x, labels)
    (everything * rank_weights(r)).sum().backward()
    return {
        "grad": x.grad.tolist(),
        "labels": all_labels.tolist(),
        "offset": offset,
        "world": distributed.world_size(),
        "rank": distributed.rank(),
        "rows": everything.detach().tolist(),
    }


def _others(r: int) -> dict[str, object]:
    x, labels = rank_batch(r)
    everything, all_labels, offset = distributed.gather(x, labels)
    refs, ref_labels = distributed.others(everything, all_labels, offset, len(x))
    return {"labels": ref_labels.tolist(), "rows": refs.tolist()}


def _wrong_dimension(r: int) -> dict[str, object]:
    x, labels = rank_batch(r, dim=DIM + r)
    distributed.gather(x, labels)
    return {}


CASES = [
    (loss, sampling)
    for loss in ("margin", "triplet", "contrastive")
    for sampling in ("hard", "semihard")
]  # deterministic strategies: the same triplets in one process and in two


def criterion(loss: str, sampling: str) -> torch.nn.Module:
    """The loss module of a case, the same in every process (per-class β for the margin)."""
    strategy = make_sampling(sampling, max_reference_positives=100)  # every positive
    if loss == "margin":
        return MarginLoss(sampling=strategy, n_classes=4, nu=0.1).double()
    return LOSSES[loss](sampling=strategy).double()


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """(12, 6) inputs of 4 classes × 3 images; rank r holds classes 2r and 2r + 1."""
    g = torch.Generator().manual_seed(5)
    return torch.randn(12, 6, generator=g, dtype=torch.float64), torch.arange(4).repeat_interleave(
        3
    )


def one_step(loss: str, sampling: str, r: int | None) -> dict[str, list]:
    """The model's and the loss's gradients after one step: rank r of 2, or one process."""
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 4).double()
    criterion_ = criterion(loss, sampling)
    inputs, labels = global_batch()
    if r is None:  # one process, the whole batch
        criterion_(torch.nn.functional.normalize(model(inputs), dim=1), labels).backward()
    else:
        mine = slice(6 * r, 6 * r + 6)
        ddp = DistributedDataParallel(model)
        embeddings = torch.nn.functional.normalize(ddp(inputs[mine]), dim=1)  # (6, 4)
        everything, all_labels, offset = distributed.gather(embeddings, labels[mine])
        refs, ref_labels = distributed.others(everything, all_labels, offset, 6)
        criterion_.across_processes = True
        criterion_(
            embeddings, labels[mine], references=refs, reference_labels=ref_labels
        ).backward()
        for parameter in criterion_.parameters():  # β: reduced like the model's (DDP's mean)
            dist.all_reduce(parameter.grad)
            parameter.grad /= 2
    grads = [p.grad for p in (*model.parameters(), *criterion_.parameters())]
    return {"grads": [g.tolist() for g in grads]}


def _ddp_steps(r: int) -> dict[str, object]:
    """Every case's step on rank r (one pair of processes for all: spawning is slow)."""
    return {f"{loss}/{sampling}": one_step(loss, sampling, r) for loss, sampling in CASES}


DRAWS = 200  # calls per rank; each draws 64 anchors × 3 positives = 192 negatives


def weighted_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """(128, 8) uniform points on the sphere, 32 classes × 4; rank r holds rows 64r…"""
    points = uniform_on_sphere(128, 8, torch.Generator().manual_seed(9))
    return points, torch.arange(32).repeat_interleave(4)


def negatives_drawn(r: int | None) -> list[list[int]]:
    """(anchor, negative) global rows drawn for rank 0's anchors: by rank r of 2 from its
    batch and the other rank's rows, or (r None) by one process from the global batch."""
    points, labels = weighted_batch()
    if r is None:
        pool_rows = torch.arange(128)
        x, mine, refs, ref_labels = points, labels, None, None
    else:
        mine_rows = slice(64 * r, 64 * r + 64)
        x, mine = points[mine_rows], labels[mine_rows]
        everything, all_labels, offset = distributed.gather(x, mine)
        refs, ref_labels = distributed.others(everything, all_labels, offset, 64)
        pool_rows = torch.cat(
            [torch.arange(offset, offset + 64), torch.arange(64 - offset, 128 - offset)]
        )
    drawn = []
    for seed in range(DRAWS):
        g = torch.Generator().manual_seed(1000 + seed)
        t = distance_weighted(x, mine, references=refs, reference_labels=ref_labels, generator=g)
        ours = t.anchor < 64  # rank 0's anchors (its own rows come first in its pool)
        drawn += torch.stack([pool_rows[t.anchor[ours]], pool_rows[t.negative[ours]]], 1).tolist()
    return drawn


def _weighted(r: int) -> dict[str, object]:
    return {"negatives": negatives_drawn(r)}  # every rank gathers (a collective)


CHECKS = {
    "weighted": _weighted,
    "gradients": _gradients,
    "others": _others,
    "wrong_dimension": _wrong_dimension,
    "ddp": _ddp_steps,
}


def run_two(check: str, tmp_path: Path) -> list[dict]:
    """Run ``check`` on 2 processes; each one's result."""
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(tmp_path), check), nprocs=2)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


def test_the_gathered_batch_and_its_gradient_are_one_process_s(tmp_path):
    results = run_two("gradients", tmp_path)
    assert all("error" not in r for r in results), results
    batches = [rank_batch(r) for r in range(2)]
    x = torch.cat([b[0] for b in batches]).requires_grad_()  # one process, concatenated
    sum((x * rank_weights(r)).sum() for r in range(2)).backward()
    for r, result in enumerate(results):
        assert result["world"] == 2 and result["rank"] == r
        assert result["offset"] == sum(ROWS[:r])
        assert result["labels"] == torch.cat([b[1] for b in batches]).tolist()  # by rank
        assert torch.equal(torch.tensor(result["rows"], dtype=torch.float64), x.detach())
        mine = x.grad[result["offset"] : result["offset"] + ROWS[r]]
        torch.testing.assert_close(
            torch.tensor(result["grad"], dtype=torch.float64), mine, rtol=0, atol=1e-12
        )


def test_two_processes_train_as_one_on_the_global_batch(tmp_path):
    """For each loss × deterministic strategy: DDP's averaged gradients (model and β)
    on 2 processes equal one process's on the concatenated batch, to 1e-6."""
    results = run_two("ddp", tmp_path)
    assert all("error" not in r for r in results), results
    for loss, sampling in CASES:
        expected = one_step(loss, sampling, None)["grads"]
        for r, result in enumerate(results):  # every rank holds one process's gradients
            got = result[f"{loss}/{sampling}"]["grads"]
            for mine, want in zip(got, expected, strict=True):
                torch.testing.assert_close(
                    torch.tensor(mine, dtype=torch.float64),
                    torch.tensor(want, dtype=torch.float64),
                    rtol=0,
                    atol=1e-6,
                    msg=lambda m, case=f"{loss} × {sampling}, rank {r}": f"{case}: {m}",
                )


def test_distance_weighted_draws_from_the_global_batch_with_its_probabilities(tmp_path):
    """Rank 0's negatives, drawn from its batch and rank 1's rows, are distributed as one
    process draws them from the global batch: a two-sample chi-square test."""
    from scipy.stats import chi2_contingency

    results = run_two("weighted", tmp_path)
    assert "error" not in results[0], results
    labels = weighted_batch()[1]
    for result in results:
        pairs = torch.tensor(result["negatives"])  # (T, 2) global rows
        assert bool((labels[pairs[:, 0]] != labels[pairs[:, 1]]).all()), "negative of its class"
    pairs = torch.tensor(results[0]["negatives"])
    assert len(pairs) == DRAWS * 64 * 3  # every (anchor, positive) pair of rank 0, each call
    two, one = pairs[:, 1], torch.tensor(negatives_drawn(None))[:, 1]
    assert bool((two >= 64).any()), "no negative came from the other rank's rows"
    counts = torch.stack([torch.bincount(two, minlength=128), torch.bincount(one, minlength=128)])
    seen = counts.sum(0) > 0  # (128,) rows ever drawn
    _, p_value, _, _ = chi2_contingency(counts[:, seen].numpy())
    assert p_value > 1e-3, f"2 processes and 1 draw differently (chi-square p = {p_value:.2g})"


def test_others_are_the_other_rank_s_rows(tmp_path):
    results = run_two("others", tmp_path)
    for r, result in enumerate(results):
        x, labels = rank_batch(1 - r)
        assert result["labels"] == labels.tolist()
        assert torch.equal(torch.tensor(result["rows"], dtype=torch.float64), x)


def test_ranks_of_different_dimensions_fail_together_with_the_reason(tmp_path):
    results = run_two("wrong_dimension", tmp_path)
    for result in results:  # both raise: neither waits for the other
        assert "ValueError: every rank must embed in the same dimension" in result["error"]


def test_one_process_is_the_identity():
    x, labels = rank_batch(0)
    everything, all_labels, offset = distributed.gather(x, labels)
    assert everything is x and all_labels is labels and offset == 0
    assert distributed.others(x, labels, 0, len(x)) == (None, None)
    assert distributed.world_size() == 1 and distributed.rank() == 0


def test_leaving_frees_what_still_holds_the_group_first(tmp_path):
    """A DDP model left in a reference cycle is freed when the group is left, not at the
    interpreter's exit (where gloo's threads would abort the process)."""
    distributed.leave()  # no group: nothing to do
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        model = DistributedDataParallel(torch.nn.Linear(3, 2))
        model.itself = [model]  # a cycle: only the collector frees it
        alive = weakref.ref(model)
        del model
        assert alive() is not None
    finally:
        distributed.leave()
    assert alive() is None and not distributed.is_distributed()


def test_shards_are_whole_classes_none_on_two_ranks():
    from sampling_matters.batching import PKSampler

    labels = torch.arange(40).repeat_interleave(6)  # 40 classes × 6 images
    plan = PKSampler(labels, 8, 3, seed=1).epoch_batches()  # global: 8 classes × 3
    shards = [distributed.shard_batches(plan, r, 4, 3) for r in range(4)]
    assert all(s.shape == (len(plan), 6) for s in shards)
    for b in range(len(plan)):
        classes = [set(labels[s[b]].tolist()) for s in shards]
        assert all(len(c) == 2 for c in classes)  # 2 whole classes a rank
        assert len(set().union(*classes)) == 8  # no class on two ranks
        assert sorted(torch.cat([s[b] for s in shards]).tolist()) == sorted(plan[b].tolist())


@pytest.mark.parametrize(
    ("shape", "rank", "world", "k", "message"),
    [
        ((2, 12), 0, 5, 2, "cannot be split into 5 equal shares"),
        ((2, 12), 3, 3, 2, "rank must be"),
        ((2, 13), 0, 1, 2, "cannot be split"),
    ],
)
def test_bad_shards_are_refused(shape, rank, world, k, message):
    with pytest.raises(ValueError, match=message):
        distributed.shard_batches(torch.zeros(shape, dtype=torch.int64), rank, world, k)
