"""The weights of distance weighted sampling: the sphere's q(d)^-1 or an empirical histogram.

Each weighting turns a block of rows of squared distances (+inf where a column is
never admissible: the row itself and its positives) into non-negative weights, in
place, exactly 0 where a negative cannot produce loss.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Weighting", "distance_bins", "empirical_weights_", "sphere_weights_"]


def distance_bins(
    distances: Tensor, cutoff: float, nonzero_loss_cutoff: float, bins: int
) -> Tensor:
    """The histogram bin of each distance for ``density="empirical"``.

    ``bins`` equal bins cover [cutoff, nonzero_loss_cutoff); distances below the cutoff
    share the first bin (the cutoff's clamp), those above share the last.

    Args:
        distances: distances, any shape.
        cutoff: lower end of the binned range.
        nonzero_loss_cutoff: upper end of the binned range.
        bins: number of bins.

    Returns:
        int64 bin indices in [0, bins), same shape.

    Example:
        >>> distance_bins(torch.tensor([0.1, 0.5, 0.96, 1.39, 1.9]), 0.5, 1.4, 10)
        tensor([0, 0, 5, 9, 9])
    """
    scale = bins / (nonzero_loss_cutoff - cutoff)
    position = (distances - cutoff).mul_(scale).clamp_(0, bins - 1)
    return position.long()


class Weighting(NamedTuple):
    """The settings of one distance weighted sampling call."""

    dim: int
    cutoff: float
    upper: float  # admissible: squared distance < upper
    density: str
    bins: int

    @property
    def monotone(self) -> bool:
        """Whether q(d)^-1 decreases over [cutoff, sqrt(upper)]: q's mode lies beyond it."""
        mode_squared = 4.0 if self.dim <= 3 else 4.0 * (self.dim - 2) / (2 * self.dim - 5)
        return self.upper <= mode_squared


def sphere_weights_(squared: Tensor, setting: Weighting, buffer: Tensor) -> Tensor:
    """In place: w(d) = q(max(d, cutoff))^-1, normalised by each row's largest.

    ``squared`` (B, N) holds squared distances, +inf where never admissible. With
    x = clamp(d², cutoff², upper), -log q = -(n-2)/2 · log x - (n-3)/2 · log(4 - x)
    + const (the paper's Eq. 1). The second log is taken as
    y = log(1 + (upper - x) / (4 - upper)), equal to log(4 - x) up to a constant, which
    is exactly 0 where x = upper (inadmissible) and positive elsewhere: its sign is the
    admissibility mask, with no boolean tensor. Log weights are clamped to [-80, 0]
    relative to the row's largest admissible one: -80 keeps ``exp`` out of float32's
    slow subnormal range (such weights lie below the cdf's resolution anyway), and 0
    caps the inadmissible entries, which the mask then zeroes.

    Returns:
        ``squared``, now (B, N) weights in [0, 1], exactly 0 where inadmissible.
    """
    a, b = (setting.dim - 2) / 2, (setting.dim - 3) / 2
    x = squared.clamp_(setting.cutoff**2, setting.upper)
    y = torch.sub(setting.upper, x, out=buffer).mul_(1.0 / (4.0 - setting.upper))
    y = y.add_(1.0).log_()  # log(1 + z) is exactly 0 at z = 0, and faster than log1p
    log_w = x.log_().mul_(-a).add_(y, alpha=-b)  # (B, N)
    if setting.monotone:  # the largest weight is admissible whenever any entry is
        row_max = log_w.amax(1, keepdim=True)  # (B, 1)
    else:
        row_max = log_w.masked_fill(y == 0, -math.inf).amax(1, keepdim=True).clamp_(min=-1e30)
    return log_w.sub_(row_max).clamp_(-80.0, 0.0).exp_().mul_(y.sign_())


def empirical_weights_(squared: Tensor, setting: Weighting, buffer: Tensor) -> Tensor:
    """Weights 1 / (the row's admissible entries in the same distance bin).

    ``squared`` (B, N) holds squared distances, +inf where never admissible; it is
    overwritten. ``buffer`` is not used (the sphere's weighting needs one).
    """
    weights = torch.lt(squared, setting.upper).to(squared.dtype)  # (B, N) admissible
    distances = squared.clamp_(0.0, setting.upper).sqrt_()  # (B, N)
    bin_index = distance_bins(distances, setting.cutoff, math.sqrt(setting.upper), setting.bins)
    counts = torch.zeros(len(squared), setting.bins, dtype=weights.dtype, device=weights.device)
    counts.scatter_add_(1, bin_index, weights)  # (B, bins)
    return weights.div_(counts.gather(1, bin_index).clamp_min_(1.0))
