"""Progress bars that suit where they are written; every bar of the package is one of these.

On a terminal, :func:`tqdm` is tqdm's bar, redrawn in place (in a notebook, its widget).
Anywhere else (stderr redirected to a log file, a CI job) a redrawn bar would be a stream
of carriage returns, so each report is a line of its own: one at the start, then at most
one every :data:`LOG_EVERY` of the total and :data:`LOG_INTERVAL_S` seconds, and one at
the end (a line a minute when the total is unknown). ``disable=True`` writes nothing.

Example:
    >>> total = 0
    >>> for i in tqdm(range(100), desc="demo", disable=True):
    ...     total += i
    >>> total
    4950
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sized
from typing import TYPE_CHECKING, Any, TypeVar, cast

from tqdm import auto, autonotebook, std

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

__all__ = ["LOG_EVERY", "LOG_INTERVAL_S", "tqdm", "write"]

T = TypeVar("T")

LOG_EVERY = 0.05
"""Off a terminal, the least share of the total between two lines."""

LOG_INTERVAL_S = 10.0
"""Off a terminal, the least time between two lines (six times this without a total)."""

LOG_WIDTH = 100
"""Off a terminal, the width of a line."""


def tqdm(
    iterable: Iterable[T] | None = None,
    *,
    desc: str,
    total: float | None = None,
    initial: int = 0,
    unit: str = "it",
    disable: bool = False,
) -> std.tqdm[T]:
    """A tqdm bar over ``iterable`` (or updated by hand), set for where stderr goes.

    Args:
        iterable: what to iterate over; None for a bar moved by ``update``.
        desc: what it counts, the bar's prefix (``"train"``).
        total: the expected count (default ``len(iterable)`` when it has one).
        initial: the count to start from (a resumed run).
        unit: the name of one item (``"step"``).
        disable: write nothing (the bar still iterates).

    Returns:
        The bar: iterate it, or call ``update`` / ``set_postfix`` / ``close``.
    """
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    if disable or _is_terminal(sys.stderr) or autonotebook.tqdm is not std.tqdm:
        bar = auto.tqdm(
            iterable, desc=desc, total=total, initial=initial, unit=unit, disable=disable
        )
        return cast("std.tqdm[T]", bar)  # the stubs type a bar without iterable tqdm[Never]
    miniters, mininterval = (None, 6 * LOG_INTERVAL_S)  # no total: by time alone
    if total is not None and total > 0:
        miniters, mininterval = math.ceil(LOG_EVERY * total), LOG_INTERVAL_S
    return _LogLines(
        iterable,
        desc=desc,
        total=total,
        initial=initial,
        unit=unit,
        miniters=miniters,
        mininterval=mininterval,
        ncols=LOG_WIDTH,
        ascii=True,
        leave=False,  # closing "erases" the bar, which here writes its final state
    )


def write(message: str) -> None:
    """Print ``message`` on stdout as a line, without breaking a bar open on stderr."""
    std.tqdm.write(message)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # None (no console), or a closed stream
        return False


if TYPE_CHECKING:
    _Bar = std.tqdm[Any]
else:
    _Bar = std.tqdm


class _LogLines(_Bar):
    """A tqdm bar that writes a new line for each report and never redraws or erases one."""

    monitor_interval = 0  # no thread forcing reports (it would also reset ``miniters`` to 1)

    @staticmethod
    def status_printer(file: SupportsWrite[str]) -> Callable[[str], None]:
        """Write each report as a line."""

        def print_line(text: str) -> None:
            if text:
                file.write(text.rstrip() + "\n")
                getattr(file, "flush", lambda: None)()

        return print_line

    def display(self, msg: str | None = None, pos: int | None = None) -> None:
        """Write the bar as a line if its count moved since the last one.

        tqdm erases a bar it does not leave with ``msg=""``; here that writes the final
        count instead, and returning None keeps tqdm from writing a carriage return after it.
        """
        if self.n == getattr(self, "_line_n", None):
            return
        self._line_n = self.n
        self.sp(msg or self.__str__())

    def clear(self, nolock: bool = False) -> None:
        """Keep the lines written (tqdm would erase the bar before ``write``)."""

    def moveto(self, n: int) -> None:
        """Stay on the current line (no cursor movement in a log)."""

    def set_postfix(
        self,
        ordered_dict: Mapping[str, object] | None = None,
        refresh: bool | None = True,
        **kwargs: Any,
    ) -> None:
        """Set the postfix; it shows in the next line (no extra report)."""
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_description(self, desc: str | None = None, refresh: bool | None = True) -> None:
        """Set the description; it shows in the next line (no extra report)."""
        super().set_description(desc, refresh=False)
