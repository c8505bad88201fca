"""The sampling strategies by their command-line names."""

from __future__ import annotations

from collections.abc import Callable

from sampling_matters.sampling.simple import hard, semihard, uniform
from sampling_matters.sampling.triplets import Triplets
from sampling_matters.sampling.weighted import distance_weighted

__all__ = ["SAMPLINGS"]

SAMPLINGS: dict[str, Callable[..., Triplets]] = {
    "uniform": uniform,
    "hard": hard,
    "semihard": semihard,
    "distance-weighted": distance_weighted,
}
"""The strategies by their command-line names."""
