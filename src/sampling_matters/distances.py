"""Pairwise distances between embeddings, with gradients that stay finite at zero.

Half-precision inputs (float16, bfloat16) are computed in float32: the expansion
``|x|² + |y|² - 2 x·y`` cancels catastrophically in half precision, and a distance
of 1e-3 matters to the losses. Results come back in float32 for such inputs and in
the input's dtype otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from sampling_matters import _checks

__all__ = [
    "anchor_distances",
    "compute_dtype",
    "cosine_similarity",
    "pair_distances",
    "pairwise_distances",
    "safe_sqrt",
    "unit_squared_distances",
]


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype distances of ``x`` are computed in: float32 for half types, else ``x.dtype``."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def safe_sqrt(squared: Tensor) -> Tensor:
    """Square root that is exactly 0 at 0 with a zero (not infinite) gradient there.

    Args:
        squared: non-negative values of any shape.

    Returns:
        ``sqrt(squared)`` where ``squared > 0``, else 0; same shape.
    """
    positive = squared > 0
    root = torch.where(positive, squared, torch.ones_like(squared)).sqrt()
    return torch.where(positive, root, torch.zeros_like(root))


def pairwise_distances(x: Tensor, y: Tensor | None = None, *, squared: bool = False) -> Tensor:
    """Euclidean distances between every row of ``x`` and every row of ``y``.

    Args:
        x: (N, D) embeddings.
        y: (M, D) embeddings; ``None`` means ``x`` itself, whose diagonal is then exactly 0.
        squared: return squared distances.

    Returns:
        (N, M) distances, in float32 for half-precision inputs.

    Raises:
        ValueError: unless ``x`` and ``y`` are finite floating (·, D) tensors of one D.

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
        >>> pairwise_distances(x)
        tensor([[0., 5.],
                [5., 0.]])
    """
    _checks.embeddings_2d(x, "x", finite=True)
    if y is not None:
        _checks.embeddings_2d(y, "y", finite=True)
        if y.shape[1] != x.shape[1]:
            raise ValueError(
                f"x and y must have the same dimension D, got {x.shape[1]} and {y.shape[1]}"
            )
    x = x.to(compute_dtype(x))
    other = x if y is None else y.to(x.dtype)
    sq_x = x.pow(2).sum(1)  # (N,)
    sq_y = sq_x if y is None else other.pow(2).sum(1)  # (M,)
    d2 = torch.addmm(sq_x[:, None] + sq_y[None, :], x, other.T, alpha=-2.0)  # (N, M)
    d2 = d2.clamp_min(0.0)
    if y is None:
        d2 = d2 * (1.0 - torch.eye(len(x), dtype=d2.dtype, device=d2.device))
    return d2 if squared else safe_sqrt(d2)


def pair_distances(
    embeddings: Tensor, first: Tensor, second: Tensor, *, squared: bool = False
) -> Tensor:
    """Distances between the rows ``first[i]`` and ``second[i]`` of ``embeddings``.

    Costs O(T·D) for T pairs instead of the O(N²·D) of a full distance matrix, and is
    exact for nearby points (no cancellation).

    Args:
        embeddings: (N, D) embeddings.
        first: (T,) int64 row indices.
        second: (T,) int64 row indices.
        squared: return squared distances.

    Returns:
        (T,) distances, in float32 for half-precision inputs.
    """
    return anchor_distances(embeddings, first, (second,), squared=squared)[0]


class _AnchorSquaredDistances(torch.autograd.Function):
    """‖x[anchor] − x[other]‖² for k index tensors ``others`` (k, T), by differences.

    Autograd through gathers, a subtraction and a square takes about a dozen passes
    over the (k, T, D) differences; this backward takes three (a scale and two
    ``index_add_``).
    """

    @staticmethod
    def forward(x: Tensor, anchor: Tensor, others: Tensor) -> tuple[Tensor, Tensor]:
        rows = x.index_select(0, anchor)  # (T, D)
        gathered = x.index_select(0, others.view(-1)).view(*others.shape, x.shape[1])
        diff = rows.sub(gathered)  # (k, T, D)
        return diff.square().sum(2), diff  # (k, T)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, Tensor], output: Any) -> None:
        x, anchor, others = inputs
        ctx.save_for_backward(anchor, others, output[1])
        ctx.n = len(x)
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor, _: Any) -> tuple[Tensor, None, None]:
        anchor, others, diff = ctx.saved_tensors
        grad_diff = diff.mul(grad.mul(2.0)[:, :, None])  # (k, T, D)
        grad_x = diff.new_zeros(ctx.n, diff.shape[2])  # (N, D)
        grad_x.index_add_(0, anchor, grad_diff.sum(0))
        grad_x.index_add_(0, others.view(-1), grad_diff.view(-1, diff.shape[2]), alpha=-1.0)
        return grad_x, None, None


def _gram_squared_distances(x: Tensor, anchor: Tensor, others: Tensor) -> Tensor:
    """‖x[anchor] − x[other]‖² for (k, T) ``others``, read off the Gram matrix x·xᵀ.

    One matrix product forward and two backward: cheaper than differences when the
    batch is small. Values below float rounding of ‖a‖² + ‖b‖² are set to exactly 0,
    so identical rows have distance 0 and no gradient, as with differences.
    """
    n = len(x)
    gram = x @ x.T  # (N, N)
    norms = gram.diagonal()  # (N,)
    dots = gram.view(-1).index_select(0, (anchor * n + others).view(-1)).view(others.shape)
    scale = norms.index_select(0, anchor) + norms.index_select(0, others.view(-1)).view(
        others.shape
    )
    squared = scale - 2.0 * dots  # (k, T)
    tolerance = 16 * torch.finfo(x.dtype).eps
    return torch.where(squared > tolerance * scale, squared, torch.zeros_like(squared))


def anchor_distances(
    embeddings: Tensor, anchor: Tensor, others: Sequence[Tensor], *, squared: bool = False
) -> list[Tensor]:
    """Distances from each ``anchor[i]`` to ``other[i]``, for several index tensors.

    Two exact-in-value routes, chosen by cost: for a small batch (N² ≤ 128 · k·T) the
    distances are read off the Gram matrix (one matrix product), otherwise they are
    computed from the gathered differences, anchor rows gathered once, with a
    three-pass backward. Differentiable once in the embeddings.

    Args:
        embeddings: (N, D) embeddings.
        anchor: (T,) int64 row indices.
        others: (T,) int64 row indices each.
        squared: return squared distances.

    Returns:
        One (T,) tensor of distances per entry of ``others``, in float32 for
        half-precision inputs.
    """
    x = embeddings.to(compute_dtype(embeddings))
    stacked = torch.stack(list(others)) if others else anchor.new_zeros(0, len(anchor))  # (k, T)
    if len(x) ** 2 <= 128 * stacked.numel():
        squares = _gram_squared_distances(x, anchor, stacked)  # (k, T)
    else:
        squares, _ = _AnchorSquaredDistances.apply(x, anchor, stacked)  # type: ignore[no-untyped-call]
    return list(squares if squared else safe_sqrt(squares))


def unit_squared_distances(x: Tensor) -> Tensor:
    """Squared distances ``2 - 2 x·xᵀ`` of L2-normalised rows, in one matrix product.

    The caller guarantees unit norms (the sampling strategies check it). Values lie in
    [0, 4] up to rounding; nothing is clamped, so the caller can fold its own clamping
    into a later pass. Not differentiable by design: sampling runs under ``no_grad``.

    Args:
        x: (N, D) unit-norm embeddings.

    Returns:
        (N, N) squared distances in float32 (float64 for float64 input).
    """
    x = x.detach().to(compute_dtype(x))
    two = torch.full((1, 1), 2.0, dtype=x.dtype, device=x.device)
    return torch.addmm(two, x, x.T, alpha=-2.0)  # (N, N)


def cosine_similarity(x: Tensor, y: Tensor | None = None, *, eps: float = 1e-12) -> Tensor:
    """Cosine similarity between every row of ``x`` and every row of ``y``.

    Args:
        x: (N, D) embeddings.
        y: (M, D) embeddings; ``None`` means ``x`` itself.
        eps: floor on the norms, so zero rows give similarity 0 instead of NaN.

    Returns:
        (N, M) similarities in [-1, 1], in float32 for half-precision inputs.

    Example:
        >>> cosine_similarity(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        tensor([[1., 0.],
                [0., 1.]])
    """
    _checks.embeddings_2d(x, "x")
    x = torch.nn.functional.normalize(x.to(compute_dtype(x)), dim=1, eps=eps)
    if y is None:
        return x @ x.T
    _checks.embeddings_2d(y, "y")
    y = torch.nn.functional.normalize(y.to(x.dtype), dim=1, eps=eps)
    return x @ y.T
