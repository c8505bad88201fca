"""The checks every loss makes at the door: embeddings, index tuples and β."""

from __future__ import annotations

import torch
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.losses.beta import check_beta
from sampling_matters.sampling import Pairs, Triplets

__all__ = ["check_inputs"]


def check_inputs(
    embeddings: Tensor,
    tuples: object,
    accepted: tuple[type, ...],
    beta: object = None,
) -> None:
    """Check the embeddings, the index tuples and (for the margin loss) β at the door.

    Args:
        embeddings: must be a finite floating (N, D) tensor.
        tuples: must be an instance of one of ``accepted`` whose fields are 1-d int64
            tensors on the embeddings' device with values in [0, N); the fields of a
            Triplets all have one length, a Pairs' positive and negative fields each.
        accepted: the tuple types the loss takes.
        beta: if not ``None``: a finite number, or a finite floating tensor of shape
            () or (N,) on the embeddings' device.
    """
    _checks.embeddings_2d(embeddings)
    if not isinstance(tuples, (Triplets, Pairs)) or not isinstance(tuples, accepted):
        names = " or ".join(kind.__name__ for kind in accepted)
        raise ValueError(f"expected index tuples as {names}, got {_checks.describe(tuples)}")
    kind = type(tuples).__name__
    for field, index in zip(tuples._fields, tuples, strict=True):
        _checks.index_tensor(f"{kind}.{field}", index, int64=True)
        _checks.same_device(f"{kind}.{field}", index, embeddings)
    groups = [tuples[:2], tuples[2:]] if isinstance(tuples, Pairs) else [tuples]
    for group in groups:
        if len({len(index) for index in group}) > 1:
            lengths = {f: len(i) for f, i in zip(tuples._fields, tuples, strict=True)}
            raise ValueError(
                f"index tensors that form tuples must have equal lengths, got {lengths}"
            )
    _checks.index_tensor(f"{kind} indices", torch.cat(tuples), len(embeddings))  # one sync
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError("embeddings contain NaN or Inf")
    if beta is not None:
        check_beta(beta, embeddings)
