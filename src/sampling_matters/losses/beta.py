"""The margin loss's boundary β: checked when given, read per pair, or learned.

β of an embedding i with class c(i) is β⁽⁰⁾ + β⁽ᶜˡᵃˢˢ⁾_c(i) + β⁽ⁱᵐᵍ⁾_i (the paper's
Section 5): a shared boundary, optionally a learned offset per class and per
training image. A pair's β is the β of its anchor.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sampling_matters import _checks

__all__ = ["beta_at", "check_beta", "learned_beta", "zeros_parameter"]


def check_beta(beta: object, embeddings: Tensor) -> None:
    """Raise ``ValueError`` unless β is a finite number or a finite () or (N,) tensor."""
    if not isinstance(beta, Tensor):
        _checks.finite_float("beta", beta)
        return
    if not beta.is_floating_point() or beta.shape not in ((), (len(embeddings),)):
        raise ValueError(
            "beta must be a float or a floating tensor of shape () or (N,) = "
            f"({len(embeddings)},), got {_checks.describe(beta)}"
        )
    _checks.same_device("beta", beta, embeddings)
    if not bool(torch.isfinite(beta).all()):
        raise ValueError("beta contains NaN or Inf")


def beta_at(beta: float | Tensor, anchor: Tensor, like: Tensor) -> Tensor:
    """β of each pair, the β of its anchor, as a tensor like ``like`` (same dtype)."""
    if not isinstance(beta, Tensor):
        return torch.full_like(like, float(beta))  # (P,)
    beta = beta.to(like.dtype)
    return beta.index_select(0, anchor) if beta.dim() == 1 else beta.expand(len(anchor))  # (P,)


def zeros_parameter(name: str, size: int | None) -> nn.Parameter | None:
    """A (size,) Parameter of zeros, or None when ``size`` is None (checked > 0 otherwise)."""
    size = _checks.positive_int_or_none(name, size)
    return None if size is None else nn.Parameter(torch.zeros(size))


def learned_beta(
    beta0: Tensor,
    beta_class: Tensor | None,
    beta_image: Tensor | None,
    labels: Tensor,
    indices: Tensor | None,
) -> Tensor:
    """Each embedding's β = β⁽⁰⁾ + β⁽ᶜˡᵃˢˢ⁾[label] + β⁽ⁱᵐᵍ⁾[index], as ``MarginLoss.beta_values``.

    ``beta0`` is the () β⁽⁰⁾; ``beta_class`` (n_classes,) and ``beta_image`` (n_items,)
    are None when their term is off. With the class term on, the (N,) ``labels`` must lie
    in [0, n_classes); with the image term on, ``indices`` must be given, one per label,
    in [0, n_items) (otherwise they are ignored).

    Returns:
        (N,) β values, differentiable with respect to β⁽⁰⁾, β⁽ᶜˡᵃˢˢ⁾ and β⁽ⁱᵐᵍ⁾.

    Raises:
        ValueError: on labels or indices out of range, or missing indices.
    """
    n_classes = None if beta_class is None else len(beta_class)
    _checks.index_tensor("labels", labels, n_classes, bound="n_classes")
    beta = beta0.expand(len(labels))  # (N,)
    if beta_class is not None:
        beta = beta + beta_class[labels.long()]  # (N,) any integer dtype indexes
    if beta_image is not None:
        if indices is None:
            raise ValueError(
                "MarginLoss(n_items=...) learns a β per image, so it needs indices: the "
                "(N,) data-set index of each embedding, forward(embeddings, labels, indices)"
            )
        _checks.index_tensor("indices", indices, len(beta_image), bound="n_items")
        if len(indices) != len(labels):
            raise ValueError(f"got {len(indices)} indices for {len(labels)} labels")
        beta = beta + beta_image[indices.long()]  # (N,)
    return beta
