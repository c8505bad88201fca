"""The sampling strategies by their command-line names, and :func:`make_sampling`."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sampling_matters.sampling.strategies import DistanceWeighted, Hard, SemiHard, Strategy, Uniform

__all__ = ["SAMPLINGS", "make_sampling"]

SAMPLINGS: dict[str, type[Strategy]] = {
    "uniform": Uniform,
    "hard": Hard,
    "semihard": SemiHard,
    "distance-weighted": DistanceWeighted,
}
"""The strategy classes by their command-line names: ``SAMPLINGS[name](**settings)``
builds a configured strategy, ``SAMPLINGS[name]()`` the default one. Adding a
strategy is one class (a :class:`~sampling_matters.sampling.Strategy`) and one entry
here."""


def make_sampling(name: str, **settings: Any) -> Strategy:
    """The strategy ``name`` with the given settings (the others at their defaults).

    Raises:
        ValueError: an unknown name or setting (the message lists the known ones), or
            a setting out of range.

    Example:
        >>> make_sampling("semihard", margin=0.3)
        SemiHard(max_reference_positives=8, margin=0.3)
        >>> make_sampling("semihard", cutoff=0.3)
        Traceback (most recent call last):
        ...
        ValueError: sampling 'semihard' has no setting 'cutoff'; its settings are ['max_reference_positives', 'margin']
    """  # noqa: E501
    if name not in SAMPLINGS:
        raise ValueError(f"unknown sampling {name!r}; expected one of {sorted(SAMPLINGS)}")
    kind = SAMPLINGS[name]
    if not (isinstance(kind, type) and issubclass(kind, Strategy)):  # registered by hand
        raise ValueError(
            f"SAMPLINGS[{name!r}] must be a Strategy class to take settings, got {kind!r}"
        )
    known = [field.name for field in fields(kind)]
    for key in settings:
        if key not in known:
            raise ValueError(f"sampling {name!r} has no setting {key!r}; its settings are {known}")
    strategy: Strategy = kind(**settings)
    return strategy
