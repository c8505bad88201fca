"""Strategies as objects: the settings as dataclass fields, one call signature.

``SemiHard(margin=0.3)`` is the strategy :func:`~sampling_matters.sampling.semihard`
with that margin, checked when it is built; calling it samples::

    strategy(embeddings, labels, *, references=None, reference_labels=None,
             generator=None, stats=None) -> Triplets

Each class names its function (``function``) and declares that function's settings as
fields; the call passes them on, so the function stays the one implementation. The
objects are frozen (hashable, comparable: ``Hard() == Hard()``) and print their settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import Tensor

from sampling_matters import _checks
from sampling_matters.sampling.pool import MAX_REFERENCE_POSITIVES
from sampling_matters.sampling.simple import hard, semihard, uniform
from sampling_matters.sampling.triplets import SamplingStats, Triplets
from sampling_matters.sampling.weighted import check_distance_weighted_args, distance_weighted

__all__ = ["DistanceWeighted", "Hard", "SemiHard", "Strategy", "Uniform"]


@dataclass(frozen=True, kw_only=True)
class Strategy:
    """A sampling strategy with its settings; call it to sample triplets.

    A subclass sets ``function`` (whose keyword arguments its fields are) and checks
    its own fields in ``__post_init__``.

    Attributes:
        max_reference_positives: the most reference positives per anchor, drawn
            uniformly without replacement when it has more (every strategy has it).
    """

    function: ClassVar[Callable[..., Triplets]]
    max_reference_positives: int = MAX_REFERENCE_POSITIVES

    def __call__(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        references: Tensor | None = None,
        reference_labels: Tensor | None = None,
        generator: torch.Generator | None = None,
        stats: SamplingStats | None = None,
    ) -> Triplets:
        """Sample one negative for every (anchor, positive) pair: see ``function``.

        Args:
            embeddings: (N, D) the batch's embeddings.
            labels: (N,) integer class ids.
            references: (M, D) more rows to sample from, or None; the triplets then
                index ``torch.cat([embeddings, references])``.
            reference_labels: (M,) the references' class ids, given with them.
            generator: the random source.
            stats: if given, filled with what the call did.
        """
        settings = {field.name: getattr(self, field.name) for field in fields(self)}
        return type(self).function(
            embeddings,
            labels,
            references=references,
            reference_labels=reference_labels,
            generator=generator,
            stats=stats,
            **settings,
        )

    def __post_init__(self) -> None:
        _checks.integer("max_reference_positives", self.max_reference_positives, 0)


@dataclass(frozen=True, kw_only=True)
class Uniform(Strategy):
    """:func:`~sampling_matters.sampling.uniform`: a negative drawn uniformly."""

    function = uniform


@dataclass(frozen=True, kw_only=True)
class Hard(Strategy):
    """:func:`~sampling_matters.sampling.hard`: the anchor's closest negative."""

    function = hard


@dataclass(frozen=True, kw_only=True)
class SemiHard(Strategy):
    """:func:`~sampling_matters.sampling.semihard`: FaceNet's semi-hard negative."""

    function = semihard
    margin: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        _checks.finite_float("margin", self.margin, 0, low_open=True)


@dataclass(frozen=True, kw_only=True)
class DistanceWeighted(Strategy):
    """:func:`~sampling_matters.sampling.distance_weighted`: the paper's Section 4.

    Example:
        >>> DistanceWeighted(nonzero_loss_cutoff=1.5)
        DistanceWeighted(max_reference_positives=8, cutoff=0.5, nonzero_loss_cutoff=1.5, density='sphere', bins=8)
        >>> DistanceWeighted(cutoff=2.0)
        Traceback (most recent call last):
        ...
        ValueError: expected 0 < cutoff < nonzero_loss_cutoff, got cutoff=2.0, nonzero_loss_cutoff=1.4
    """  # noqa: E501

    function = distance_weighted
    cutoff: float = 0.5
    nonzero_loss_cutoff: float = 1.4
    density: str = "sphere"
    bins: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        check_distance_weighted_args(
            self.cutoff, self.nonzero_loss_cutoff, self.density, self.bins, torch.float64
        )
