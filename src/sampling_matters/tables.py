r"""Markdown tables and the statistics they show: mean ± std, and paired differences.

Every report the project writes (the ablation's, the benchmarks') formats its tables
and numbers here, so a row means the same thing in all of them. A comparison between
two arms is paired by seed: :func:`paired` gives the mean difference with its 95%
interval (t with n − 1 degrees of freedom) and says "not distinguishable" where the
interval holds 0.

Example:
    >>> mean_std([0.5, 0.7], scale=100)
    '60.0 ± 14.1'
    >>> paired([(0.9, 0.8), (0.95, 0.8), (0.85, 0.8)], scale=100)
    '+10.0 [-2.4, +22.4], not distinguishable'
    >>> difference([(0.9, 0.8), (0.95, 0.8), (0.85, 0.8)], scale=100)  # no verdict
    '+10.0 [-2.4, +22.4]'
    >>> paired([(0.5 + d, 0.5) for d in (0.0116, 0.0034, 0.0029, 0.0074, 0.0016)], scale=100)
    '+0.54 [+0.03, +1.05]'
    >>> print("\n".join(markdown_table(["arm", "R@1"], [["a", "60.0"]])))
    | arm | R@1 |
    |---|---|
    | a | 60.0 |
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

__all__ = ["difference", "interval", "markdown_table", "mean_std", "paired"]

NOT_DISTINGUISHABLE = ", not distinguishable"
"""What :func:`paired` appends where the interval holds 0."""


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a markdown table: ``header``, then one line per row of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    """``mean ± std`` of ``scale × values`` (the mean alone for one value, — for none)."""
    if not values:
        return "—"
    mean = scale * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {scale * statistics.stdev(values):.{digits}f}"


def interval(diffs: Sequence[float]) -> tuple[float, float, float]:
    """The mean of ``diffs`` and its 95% t interval (n − 1 degrees of freedom).

    Raises:
        ValueError: fewer than two differences.
    """
    from scipy import stats  # type: ignore[import-untyped]  # scikit-learn's dependency; imported when a report is written

    if len(diffs) < 2:
        raise ValueError(f"an interval needs at least 2 paired seeds, got {len(diffs)}")
    mean = statistics.fmean(diffs)
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return mean, mean - half, mean + half


def difference(pairs: Sequence[tuple[float, float]], scale: float = 1.0, digits: int = 1) -> str:
    """The mean of ``a − b`` over pairs (by seed) with its 95% t interval, no verdict.

    ``+1.2 [+0.4, +2.0]``; one pair gives the difference alone, none "—".
    """
    return paired(pairs, scale, digits).removesuffix(NOT_DISTINGUISHABLE)


def paired(pairs: Sequence[tuple[float, float]], scale: float = 1.0, digits: int = 1) -> str:
    """The mean of ``a − b`` over pairs (by seed) with its 95% t interval, and a verdict.

    ``+1.2 [+0.4, +2.0]`` when the interval excludes 0, ``+0.3 [-0.9, +1.5], not
    distinguishable`` when it holds 0; one pair gives the difference alone, none "—".
    Where the interval excludes 0 but a bound would print as 0 (``[+0.0, +1.0]``), more
    digits are shown, up to 4, so the printed interval never seems to hold 0.
    """
    diffs = [scale * (a - b) for a, b in pairs]
    if not diffs:
        return "—"
    if len(diffs) < 2:
        return f"{statistics.fmean(diffs):+.{digits}f} (1 seed, no interval)"
    mean, low, high = interval(diffs)
    holds_zero = low <= 0 <= high
    while not holds_zero and digits < 4 and 0 in (round(low, digits), round(high, digits)):
        digits += 1
    text = f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"
    return text + (NOT_DISTINGUISHABLE if holds_zero else "")
