"""One training step: the epoch's batches, the forward and backward pass, its diagnostics."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from sampling_matters.training.build import _Run


def _batches(run: _Run, epoch: int, start: int) -> Iterator[list[Tensor]]:
    """The batches of ``epoch`` from its ``start``-th on (a resume inside an epoch)."""
    run.sampler.set_epoch(epoch)
    plan = run.sampler.epoch_batches()[start:].tolist()
    loader = DataLoader(run.train_set, batch_sampler=plan, num_workers=run.config.data.workers)
    rng = torch.get_rng_state()
    batches = iter(loader)  # draws a seed from torch's generator, as at the epoch's start
    if start:  # that draw happened before the interruption: do not draw it twice
        torch.set_rng_state(rng)
    yield from batches


def _step(run: _Run, batch: list[Tensor], optimiser: torch.optim.Optimizer) -> dict[str, float]:
    inputs, labels, indices = (t.to(run.device) for t in batch)
    cached = isinstance(run.train_set, TensorDataset)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=run.device.type == "cuda")
    with autocast:
        embeddings = run.model.embed_frozen(inputs) if cached else run.model(inputs)
    _check_finite(embeddings, "the embeddings")
    embeddings = embeddings.float()
    references = _references(run)  # BEFORE the batch is stored: never the batch with itself
    loss = run.loss(embeddings, labels, indices, **references)
    if run.memory is not None:  # AFTER the loss: the next steps' references
        run.memory.add(embeddings.detach(), labels)
    value = float(loss.detach())
    _check_finite(torch.tensor(value), "the loss")
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    pool = _pool(embeddings.detach(), references.get("references"))
    return _diagnostics(run, pool, labels, indices, value)


def _references(run: _Run) -> dict[str, Tensor | None]:
    """The loss's keyword arguments for the memory's references (none without a memory).

    Without a memory the loss is called as before, so a ``loss_factory`` loss need not
    take references; with one it must (``None`` while the memory warms up).
    """
    if run.memory is None:
        return {}
    references, reference_labels = run.memory.references()
    return {"references": references, "reference_labels": reference_labels}


def _pool(embeddings: Tensor, references: Tensor | None) -> Tensor:
    """(N + M, D) the rows the triplets index: the batch, then the references."""
    return embeddings if references is None else torch.cat([embeddings, references])


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
