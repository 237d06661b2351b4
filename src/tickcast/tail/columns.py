"""How the terminal tables fit a terminal: columns a narrow terminal drops (never cuts,
since a cut price is a wrong price), and the styles they share. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import rich.table
from rich.cells import cell_len
from rich.text import Text

UP_STYLE: Final = "bold green"
DOWN_STYLE: Final = "bold red"
WARN_STYLE: Final = "bold yellow"
ESSENTIAL: Final = 3


def fit_columns(widths: Sequence[int], available: int | None, essential: int = ESSENTIAL) -> int:
    """How many leading columns of ``widths`` cells fit in ``available`` cells.

    Rich's default box draws a border before each column and after the last, and pads
    each cell with a space on both sides: a column costs its width plus 3, the table 1 more.
    The first ``essential`` columns count as fitting whatever the width.
    """
    if available is None:
        return len(widths)
    used, count = 1, 0
    for width in widths:
        used += width + 3
        if used > available and count >= essential:
            break
        count += 1
    return count


@dataclass(frozen=True)
class Column:
    """One column of a fitted table: its header, and whether it reads from the left."""

    name: str
    left: bool = False


def fitted_table(
    columns: Sequence[Column],
    keep_order: Sequence[str],
    rows: Sequence[Mapping[str, Text]],
    width: int | None,
    *,
    essential: int = ESSENTIAL,
    sections: Sequence[bool] = (),
) -> rich.table.Table:
    """A table of ``rows`` (cells by header) with the ``columns`` that fit in ``width``.

    Columns are dropped in the reverse of ``keep_order`` (its first ``essential`` always
    stay) but shown in the order of ``columns``, so a narrow terminal loses the time of a
    trade before its price whatever their places. ``sections[i]`` ends a section (a rule)
    after row ``i``.
    """
    widths = {
        c.name: max([cell_len(c.name), *(row[c.name].cell_len for row in rows)]) for c in columns
    }
    kept = set(keep_order[: fit_columns([widths[n] for n in keep_order], width, essential)])
    table = rich.table.Table(title_justify="left")
    shown = [c for c in columns if c.name in kept]
    for column in shown:
        table.add_column(
            column.name,
            justify="left" if column.left else "right",
            no_wrap=True,
            min_width=widths[column.name],  # rich may not shrink a column below its cells
            overflow="fold",
        )
    for index, row in enumerate(rows):
        ends = index < len(sections) and sections[index]
        table.add_row(*(row[c.name] for c in shown), end_section=ends)
    return table


def captioned(table: rich.table.Table, caption: Text, width: int | None) -> rich.table.Table:
    """``table`` with ``caption`` under it, left aligned; the table made as wide as the
    caption as far as ``width`` allows, since rich wraps a caption to its table's width."""
    table.caption = caption
    table.caption_justify = "left"
    wanted = caption.cell_len
    table.min_width = wanted if width is None else min(wanted, width)
    return table
