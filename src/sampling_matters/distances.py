"""Pairwise distances between embeddings, with gradients that stay finite at zero.

Half-precision inputs (float16, bfloat16) are computed in float32: the expansion
``|x|² + |y|² - 2 x·y`` cancels catastrophically in half precision, and a distance
of 1e-3 matters to the losses. Results come back in float32 for such inputs and in
the input's dtype otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "check_embeddings",
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


def check_embeddings(embeddings: Tensor, name: str = "embeddings") -> None:
    """Raise ``ValueError`` unless ``embeddings`` is a floating (N, D) tensor with D ≥ 1.

    Args:
        embeddings: the tensor to check.
        name: how the error message names it.
    """
    if not isinstance(embeddings, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, D), got {type(embeddings)}")
    if embeddings.dim() != 2 or embeddings.shape[1] < 1:
        raise ValueError(
            f"{name} must have shape (N, D) with D >= 1, got {tuple(embeddings.shape)}"
        )
    if not embeddings.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {embeddings.dtype}")


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

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
        >>> pairwise_distances(x)
        tensor([[0., 5.],
                [5., 0.]])
    """
    check_embeddings(x, "x")
    x = x.to(compute_dtype(x))
    other = x if y is None else y.to(x.dtype)
    if y is not None:
        check_embeddings(y, "y")
        if y.shape[1] != x.shape[1]:
            raise ValueError(
                f"x and y must have the same dimension D, got {x.shape[1]} and {y.shape[1]}"
            )
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
    x = embeddings.to(compute_dtype(embeddings))
    d2 = (x[first] - x[second]).pow(2).sum(1)  # (T,)
    return d2 if squared else safe_sqrt(d2)


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
    check_embeddings(x, "x")
    x = torch.nn.functional.normalize(x.to(compute_dtype(x)), dim=1, eps=eps)
    if y is None:
        return x @ x.T
    check_embeddings(y, "y")
    y = torch.nn.functional.normalize(y.to(x.dtype), dim=1, eps=eps)
    return x @ y.T
