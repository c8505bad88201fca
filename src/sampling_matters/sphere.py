"""The geometry of the unit sphere S^(n-1): distances between uniform points.

For two points drawn uniformly on S^(n-1) ⊂ Rⁿ, the distance d ∈ [0, 2] has density
(the paper's Eq. 1)

    q(d) = d^(n-2) · (1 - d²/4)^((n-3)/2) / B(1/2, (n-1)/2),

where B is the Beta function. In high dimensions it concentrates near √2. Everything
here works in log space so that n = 4096 neither overflows nor underflows.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sampling_matters import _checks

__all__ = ["log_distance_density", "log_normaliser", "uniform_on_sphere"]


def _check_dim(dim: int) -> None:
    _checks.integer("dim", dim, 2, why="points on S^(dim-1)")


def log_normaliser(dim: int) -> float:
    """Log B(1/2, (dim-1)/2), the log of ∫₀² d^(dim-2) (1 - d²/4)^((dim-3)/2) dd.

    Args:
        dim: the dimension n of the embedding space (points on S^(n-1)), n ≥ 2.

    Returns:
        The log normaliser of q(d).

    Example:
        >>> round(math.exp(log_normaliser(3)), 6)  # q(d) = d / 2 on [0, 2]
        2.0
    """
    _check_dim(dim)
    return math.lgamma(0.5) + math.lgamma((dim - 1) / 2) - math.lgamma(dim / 2)


def log_distance_density(d: Tensor | float, dim: int) -> Tensor:
    """Log q(d): the exactly normalised log density of distances on S^(dim-1).

    Args:
        d: distances, any shape; values outside [0, 2] have density 0 (log = -inf).
        dim: the dimension n ≥ 2 of the embedding space.

    Returns:
        log q(d), same shape as ``d`` (float32 unless ``d`` is float64). It is -inf
        where q vanishes (d = 0 for n > 2, d = 2 for n > 3) and +inf where q
        diverges (d = 2 for n = 2).

    Raises:
        ValueError: on a NaN distance or a ``dim`` that is not an integer ≥ 2.

    Example:
        >>> log_distance_density(torch.tensor([1.0]), 3).exp()  # q(d) = d / 2
        tensor([0.5000])
    """
    _check_dim(dim)
    d = torch.as_tensor(d)
    d = d if d.dtype == torch.float64 else d.float()
    if bool(d.isnan().any()):
        raise ValueError("d contains NaN; expected distances (outside [0, 2] they have density 0)")
    inside = (d >= 0) & (d <= 2)
    dc = d.clamp(0.0, 2.0)
    one_minus = (1.0 - dc.square() / 4).clamp_min(0.0)  # 1 - d²/4
    log_q = torch.xlogy(torch.tensor(dim - 2.0, dtype=d.dtype), dc)
    log_q = log_q + torch.xlogy(torch.tensor((dim - 3) / 2, dtype=d.dtype), one_minus)
    log_q = log_q - log_normaliser(dim)
    return torch.where(inside, log_q, torch.full_like(log_q, -math.inf))


def uniform_on_sphere(
    n: int,
    dim: int,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Draw ``n`` points uniformly on S^(dim-1) (normalised standard Gaussians).

    Args:
        n: number of points.
        dim: dimension of the embedding space, ≥ 2.
        generator: the random source; its device decides where the points live.
        dtype: floating dtype of the result.

    Returns:
        (n, dim) unit-norm rows.

    Raises:
        ValueError: unless ``n`` is an integer ≥ 0 and ``dim`` one ≥ 2.

    Example:
        >>> x = uniform_on_sphere(4, 3, torch.Generator().manual_seed(0))
        >>> torch.allclose(x.norm(dim=1), torch.ones(4))
        True
    """
    _check_dim(dim)
    _checks.integer("n", n, 0, why="the number of points")
    device = generator.device if generator is not None else torch.device("cpu")
    x = torch.randn(n, dim, generator=generator, dtype=dtype, device=device)  # (n, dim)
    return torch.nn.functional.normalize(x, dim=1)
