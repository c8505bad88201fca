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
    >>> print("\n".join(markdown_table(["arm", "R@1"], [["a", "60.0"]])))
    | arm | R@1 |
    |---|---|
    | a | 60.0 |
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

__all__ = ["markdown_table", "mean_std", "paired"]


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


def paired(pairs: Sequence[tuple[float, float]], scale: float = 1.0, digits: int = 1) -> str:
    """The mean of ``a − b`` over pairs (by seed) with its 95% t interval, and a verdict.

    ``+1.2 [+0.4, +2.0]`` when the interval excludes 0, ``+0.3 [-0.9, +1.5], not
    distinguishable`` when it holds 0; one pair gives the difference alone, none "—".
    """
    from scipy import stats  # type: ignore[import-untyped]  # scikit-learn's dependency; imported when a report is written

    diffs = [scale * (a - b) for a, b in pairs]
    if not diffs:
        return "—"
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return f"{mean:+.{digits}f} (1 seed, no interval)"
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    low, high = mean - half, mean + half
    text = f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"
    return text + (", not distinguishable" if low <= 0 <= high else "")
