"""One training step: the epoch's batches, the forward and backward pass, its diagnostics.

In several processes a step's batch is this process's share of the global batch; its
anchors sample from the rows of the other processes too (``pool: global``), the
memory receives the global batch, and β's gradients are averaged like the model's
(:mod:`sampling_matters.training.parallel`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from sampling_matters.training import parallel
from sampling_matters.training.build import _Run


def _batches(run: _Run, epoch: int, start: int) -> Iterator[list[Tensor]]:
    """The batches of ``epoch`` from its ``start``-th on (a resume inside an epoch)."""
    run.sampler.set_epoch(epoch)
    shard = parallel.process_shard(run.sampler.epoch_batches(), run.config.data.samples_per_class)
    plan = shard[start:].tolist()
    loader = DataLoader(run.train_set, batch_sampler=plan, num_workers=run.config.data.workers)
    rng = torch.get_rng_state()
    batches = iter(loader)  # draws a seed from torch's generator, as at the epoch's start
    if start:  # that draw happened before the interruption: do not draw it twice
        torch.set_rng_state(rng)
    yield from batches


def _step(run: _Run, batch: list[Tensor], optimiser: torch.optim.Optimizer) -> dict[str, float]:
    inputs, labels, indices = (t.to(run.device) for t in batch)
    assert run.forward is not None, "the run's forward is set before training"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=run.device.type == "cuda")
    with autocast:
        embeddings = run.forward(inputs)
    _check_finite(embeddings, "the embeddings")
    embeddings = embeddings.float()
    local = run.config.loss.pool == "local"
    everything, all_labels, *others = parallel.global_pool(embeddings, labels, local)
    references = _references(run, others)  # BEFORE the batch is stored: never with itself
    loss = run.loss(embeddings, labels, indices, **references)
    if run.memory is not None:  # AFTER the loss: the next steps' references
        run.memory.add(everything.detach(), all_labels)
    value = float(parallel.mean_over_processes(loss.detach()))
    _check_finite(torch.tensor(value), "the loss")
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    parallel.average_gradients(run.loss.parameters())
    optimiser.step()
    pool = _pool(embeddings.detach(), references.get("references"))
    return _diagnostics(run, pool, labels, indices, value)


def _references(run: _Run, others: list[Tensor | None]) -> dict[str, Tensor | None]:
    """The loss's keyword arguments for its references.

    The other processes' rows, then the memory's (none in one process without a memory).

    Without references the loss is called as before, so a ``loss_factory`` loss need
    not take them; with a memory it must (``None`` while the memory warms up).
    """
    stored = (None, None) if run.memory is None else run.memory.references()
    rows = [r for r in (others[0], stored[0]) if r is not None]
    labels = [r for r in (others[1], stored[1]) if r is not None]
    if not rows:
        return {} if run.memory is None else {"references": None, "reference_labels": None}
    return {"references": torch.cat(rows), "reference_labels": torch.cat(labels)}


def _pool(embeddings: Tensor, references: Tensor | None) -> Tensor:
    """(N + M, D) the rows the triplets index: the batch, then the references (detached)."""
    return embeddings if references is None else torch.cat([embeddings, references.detach()])


def _check_finite(values: Tensor, what: str) -> None:
    if not bool(torch.isfinite(values).all()):
        raise ValueError(
            f"training diverged: {what} became NaN or Inf; lower the learning rates "
            "(lr, backbone_lr, beta_lr) or beta / nu"
        )


def _diagnostics(
    run: _Run, pool: Tensor, labels: Tensor, indices: Tensor, loss: float
) -> dict[str, float]:
    """The step's row of ``log.csv``; ``pool`` (N + M, D) holds the batch's rows first."""
    triplets = run.loss.last_triplets
    distances = torch.zeros(0)
    if triplets is not None and len(triplets.anchor):
        distances = (pool[triplets.anchor] - pool[triplets.negative]).norm(dim=1)
    beta = float("nan")
    beta_values = getattr(run.loss, "beta_values", None)  # MarginLoss, or a loss_factory's
    if beta_values is not None:
        beta = float(beta_values(labels, indices).detach().mean())
    stats = run.loss.last_stats
    return {
        "loss": loss,
        "active_fraction": float(run.loss.last_active_fraction),
        "beta": beta,
        "negative_distance": float(distances.mean()) if len(distances) else float("nan"),
        "negative_distance_std": float(distances.std()) if len(distances) > 1 else float("nan"),
        "fallback": float(stats.fallback),
        "references": float(len(pool) - len(labels)),
    }
