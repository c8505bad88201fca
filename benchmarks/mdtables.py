r"""Read back the markdown tables the benchmarks write, by section and column name.

The reports under ``benchmarks/results/`` are markdown; the pages that quote them
(``docs/claims.md``, README's result blocks) read their cells here instead of copying
numbers by hand, and :func:`replace_block` rewrites a generated block of such a page. A
table belongs to the nearest ``#`` heading above it.

Example:
    >>> text = "## Speed\n\n| n | ms |\n|---|---|\n| 80 | 0.5 |\n| 1,024 | 4.7 |\n"
    >>> [t.heading for t in parse(text)], parse(text)[0].rows[1]["ms"]
    (['Speed'], '4.7')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MdTable", "parse", "read", "replace_block", "row", "section"]


@dataclass(frozen=True)
class MdTable:
    """One markdown table: its section heading, its column names and its rows by name."""

    heading: str
    header: list[str]
    rows: list[dict[str, str]]


def parse(text: str) -> list[MdTable]:
    """Every table of a markdown text, in order."""
    tables: list[MdTable] = []
    heading, header, rows = "", [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not header:
                header = cells
            elif not re.fullmatch(r"[-:| ]+", line) and len(cells) == len(header):
                rows.append(dict(zip(header, cells, strict=True)))
            continue
        if header:
            tables.append(MdTable(heading, header, rows))
            header, rows = [], []
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
    return tables


def read(path: Path) -> list[MdTable]:
    """Every table of the markdown file ``path``."""
    return parse(path.read_text(encoding="utf-8"))


def section(path: Path, heading: str) -> MdTable:
    """The first table under the heading that starts with ``heading``.

    Raises:
        ValueError: no such table.
    """
    for table in read(path):
        if table.heading.startswith(heading):
            return table
    raise ValueError(f"{path} has no table under a heading starting with {heading!r}")


def row(table: MdTable, wanted: Mapping[str, str]) -> dict[str, str]:
    """The first row whose cells equal ``wanted`` (column name → text).

    Raises:
        ValueError: no such row.
    """
    for found in table.rows:
        if all(found.get(column) == text for column, text in wanted.items()):
            return found
    raise ValueError(f"the table under {table.heading!r} has no row with {wanted}")


def replace_block(text: str, start: str, end: str, lines: list[str]) -> str:
    """``text`` with what lies between the marker lines ``start`` and ``end`` replaced by ``lines``.

    Raises:
        ValueError: ``text`` does not hold ``start`` once, followed later by ``end``.
    """
    at = text.find(start)
    if at < 0 or text.count(start) != 1 or text.find(end, at) < 0:
        raise ValueError(f"expected one {start} … {end} block")
    stop = text.find(end, at) + len(end)
    return text[:at] + "\n".join([start, *lines, end]) + text[stop:]
