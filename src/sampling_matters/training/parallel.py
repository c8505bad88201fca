"""Training in several processes (``torchrun``): the process group, DDP, the global batch.

A run started by ``torchrun --nproc-per-node N -m sampling_matters train …`` (or
``sampling-matters train --nproc N …``, which launches that) trains on one global batch
of ``N × classes_per_batch`` classes per step: each process embeds its share (whole
classes, :func:`~sampling_matters.distributed.shard_batches`), samples its anchors'
triplets from the gathered global batch (``pool: global``; ``local``: from its own
share only) and DDP averages the gradients, so the step is one process's step on the
global batch. β's gradients are averaged the same way and the cross-batch memory
receives the global batch, so both stay identical on every process. Rank 0 alone
writes the run's files, logs and shows progress; a decision that rank 0 takes (may the
run start?) reaches every process, its error included.

Without a process group (no ``torchrun``, or a world of 1) every function here is the
single-process identity, so a world of 1 trains exactly as one process always did.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, Subset, TensorDataset

from sampling_matters import distributed
from sampling_matters.distributed import is_distributed, rank, world_size
from sampling_matters.models import EmbeddingModel

__all__ = [
    "any_process",
    "average_gradients",
    "barrier",
    "device_for",
    "embed_in_shards",
    "from_main",
    "global_pool",
    "is_main",
    "joined",
    "mean_over_processes",
    "process_shard",
    "rng_states",
    "same_buffers",
    "wrap_model",
]

T = TypeVar("T")

TIMEOUT = datetime.timedelta(minutes=30)
"""How long a process waits for the others at a collective before it fails."""


def _launched_world() -> int:
    """The world ``torchrun`` launched this process into (1 when it did not)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(
            f"the environment's WORLD_SIZE {os.environ['WORLD_SIZE']!r} is not a number: "
            "launch several processes with torchrun or sampling-matters train --nproc N"
        ) from None


def device_for(name: str) -> torch.device:
    """The device of ``name`` for this process: with CUDA, GPU ``LOCAL_RANK`` of the node.

    Example:
        >>> device_for("cpu")
        device(type='cpu')
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and _launched_world() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


@contextlib.contextmanager
def joined(device: torch.device) -> Iterator[None]:
    """Join ``torchrun``'s process group for the block (gloo on CPU, NCCL on CUDA).

    Nothing happens in one process, or when the caller already joined a group (it is
    then theirs to leave). The group is left at the end, on an error too.
    """
    if _launched_world() <= 1 or is_distributed():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(distributed.backend_for(device), timeout=TIMEOUT)
    try:
        yield
    finally:
        distributed.leave()


def is_main() -> bool:
    """Whether this process writes the run's files and logs (rank 0, or the only one)."""
    return rank() == 0


def from_main(work: Callable[[], T]) -> T:
    """``work()`` run on rank 0 only; its result, or its error, on every process.

    A refusal decided on rank 0 (a run that may not start) is so raised everywhere at
    once, and no process waits for one that has stopped. The other processes raise an
    error of the same type with the same message (a ``RuntimeError`` if that type cannot
    be made from a message alone).
    """
    if not is_distributed():
        return work()
    outcome: list[Any] = [None, None]
    failure: Exception | None = None
    if is_main():
        try:
            outcome = [work(), None]
        except Exception as error:  # every process raises it, below
            failure, outcome = error, [None, (type(error), str(error))]
    dist.broadcast_object_list(outcome, src=0)
    if failure is not None:
        raise failure
    if outcome[1] is not None:
        raise _remade(*outcome[1])
    result: T = outcome[0]
    return result


def _remade(kind: type[Exception], message: str) -> Exception:
    """An error of type ``kind`` with ``message``, or a RuntimeError saying it."""
    try:
        return kind(message)
    except Exception:  # a type that needs more than a message
        return RuntimeError(f"{kind.__name__}: {message}")


def barrier() -> None:
    """Wait until every process is here (rank 0's files written, say)."""
    if is_distributed():
        dist.barrier()


def process_shard(plan: Tensor, samples_per_class: int) -> Tensor:
    """This process's share of every batch of a global P×K plan (all of it in one process)."""
    if not is_distributed():
        return plan
    return distributed.shard_batches(plan, rank(), world_size(), samples_per_class)


class _Forward(nn.Module):
    """The model's training forward: from images, or from the frozen part's cached output."""

    def __init__(self, model: EmbeddingModel, cached: bool) -> None:
        super().__init__()
        self.model, self.cached = model, cached

    def forward(self, inputs: Tensor) -> Tensor:
        return self.model.embed_frozen(inputs) if self.cached else self.model(inputs)


def wrap_model(model: EmbeddingModel, cached: bool, device: torch.device) -> nn.Module:
    """The training forward of ``model``; in several processes, under DDP.

    DDP copies rank 0's weights to every process, then averages the gradients of each
    backward pass over the processes.
    """
    forward = _Forward(model, cached)
    if not is_distributed():
        return forward
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(forward, device_ids=ids)


def global_pool(
    embeddings: Tensor, labels: Tensor, local: bool
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """The global batch and this process's references in it (with gradient).

    Returns:
        ``(all_embeddings, all_labels, references, reference_labels)``: the global
        batch (N_total, D) and (N_total,), ordered by rank, and the rows of the other
        processes (None in one process, or with ``local``).
    """
    everything, all_labels, offset = distributed.gather(embeddings, labels)
    if local:
        return everything, all_labels, None, None
    references, reference_labels = distributed.others(
        everything, all_labels, offset, len(embeddings)
    )
    return everything, all_labels, references, reference_labels


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is set in any process (a collective; itself in one process).

    Ctrl-C may reach the processes at different steps; they stop at the same one.
    """
    if not is_distributed():
        return flag
    return bool(distributed.total(torch.tensor(int(flag), device=_collective_device())) > 0)


def _collective_device() -> torch.device:
    """Where the group's collectives take their tensors (CUDA for NCCL)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def mean_over_processes(values: Tensor) -> Tensor:
    """``values`` averaged over every process (a collective; itself in one process)."""
    if not is_distributed():
        return values
    return distributed.total(values.float()) / world_size()


def average_gradients(parameters: Iterator[nn.Parameter]) -> None:
    """Average the gradients of ``parameters`` over the processes, as DDP does the model's."""
    if not is_distributed():
        return
    for parameter in parameters:
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= world_size()


def same_buffers(model: nn.Module) -> None:
    """Give every process rank 0's buffers (BatchNorm's running statistics).

    DDP copies them at the start of each forward pass, so after the last one each
    process holds statistics of its own share; evaluation and checkpoints use rank 0's.
    """
    if not is_distributed():
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def rng_states(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every process's random state, by rank (``[state]`` in one process)."""
    if not is_distributed():
        return [state]
    states: list[Any] = [None] * world_size()
    dist.all_gather_object(states, state)
    return states


def embed_in_shards(
    dataset: Dataset[Any],
    embed: Callable[[Dataset[Any]], tuple[Tensor, Tensor]],
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """``embed(dataset)``, each process embedding a contiguous share, gathered in order.

    ``embed`` returns CPU tensors; they travel through ``device`` (NCCL needs CUDA).
    """
    if not is_distributed():
        return embed(dataset)
    n = len(dataset)  # type: ignore[arg-type]
    share = torch.tensor_split(torch.arange(n), world_size())[rank()]
    if isinstance(dataset, TensorDataset):
        part: Dataset[Any] = TensorDataset(*(t[share] for t in dataset.tensors))
    else:
        part = Subset(dataset, share.tolist())
    embeddings, labels = embed(part)
    with torch.no_grad():
        everything, all_labels, _ = distributed.gather(embeddings.to(device), labels.to(device))
    return everything.cpu(), all_labels.cpu()
