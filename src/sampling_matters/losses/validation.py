"""The checks every loss makes at the door: embeddings, references, index tuples and β."""

from __future__ import annotations

import torch
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.losses.beta import check_beta
from sampling_matters.sampling import Pairs, Triplets

__all__ = ["check_inputs", "check_reference_labels", "check_references"]


def check_references(embeddings: Tensor, references: Tensor | None) -> None:
    """Raise ``ValueError`` unless ``references`` is None or an (M, D) tensor like the batch.

    References extend the pool the triplets index, ``torch.cat([embeddings, references])``;
    they must have the embeddings' dimension D, dtype and device. No host-device sync.
    """
    if references is None:
        return
    _checks.embeddings_2d(references, "references")
    if references.shape[1] != embeddings.shape[1]:
        raise ValueError(
            "references must have the embeddings' dimension D = "
            f"{embeddings.shape[1]}, got shape {tuple(references.shape)}"
        )
    if references.dtype != embeddings.dtype:
        raise ValueError(
            f"references must have the embeddings' dtype {embeddings.dtype}, got {references.dtype}"
        )
    _checks.same_device("references", references, embeddings)


def check_reference_labels(references: Tensor | None, reference_labels: Tensor | None) -> None:
    """Raise ``ValueError`` unless references come with their (M,) labels, or neither is given.

    A loss module samples from the references, so it needs their classes.
    """
    if references is None and reference_labels is None:
        return
    if references is None:
        raise ValueError("reference_labels were given without references; pass both or neither")
    if reference_labels is None:
        raise ValueError(
            "references need their labels: pass reference_labels, one class id per row "
            f"of references ({len(references)},)"
        )
    _checks.labels_1d(reference_labels, len(references), name="reference_labels", of="references")
    _checks.same_device("reference_labels", reference_labels, references, "references")


def _check_ranges(tuples: Triplets | Pairs, n: int, m: int | None) -> None:
    """Indices in [0, N) without references; with them anchors in [0, N), the rest in [0, N + M)."""
    kind = type(tuples).__name__
    if m is None:
        _checks.index_tensor(f"{kind} indices", torch.cat(tuples), n)  # one sync
        return
    fields = dict(zip(tuples._fields, tuples, strict=True))
    anchors = [index for field, index in fields.items() if field.endswith("anchor")]
    others = [index for field, index in fields.items() if not field.endswith("anchor")]
    _checks.index_tensor(f"{kind} anchors (rows of embeddings)", torch.cat(anchors), n)
    _checks.index_tensor(f"{kind} indices", torch.cat(others), n + m, bound="N + M")


def check_inputs(
    embeddings: Tensor,
    tuples: object,
    accepted: tuple[type, ...],
    beta: object = None,
    *,
    references: Tensor | None = None,
) -> None:
    """Check the embeddings, references, index tuples and (for the margin loss) β at the door.

    Args:
        embeddings: must be a finite floating (N, D) tensor.
        tuples: must be an instance of one of ``accepted`` whose fields are 1-d int64
            tensors on the embeddings' device with values in [0, N); the fields of a
            Triplets all have one length, a Pairs' positive and negative fields each.
            With references, anchors must lie in [0, N) (they are rows of
            ``embeddings``) and the other indices in [0, N + M), rows of the pool.
        accepted: the tuple types the loss takes.
        beta: if not ``None``: a finite number, or a finite floating tensor of shape
            () or (N,) on the embeddings' device.
        references: if not ``None``: a finite (M, D) tensor with the embeddings'
            dimension, dtype and device.
    """
    _checks.embeddings_2d(embeddings)
    check_references(embeddings, references)
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
    _check_ranges(tuples, len(embeddings), None if references is None else len(references))
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError("embeddings contain NaN or Inf")
    if references is not None and not bool(torch.isfinite(references).all()):
        raise ValueError("references contain NaN or Inf")
    if beta is not None:
        check_beta(beta, embeddings)
