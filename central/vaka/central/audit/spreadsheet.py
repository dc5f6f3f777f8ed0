"""CSV for spreadsheets: the one writer of every CSV central hands out.

A spreadsheet opening a CSV runs a cell that begins with ``=``, ``+``, ``-`` or ``@`` as a
formula (and a leading tab or carriage return can smuggle one past a first look); a staff note, a
reason typed at break-glass, or a value a unit sent could thus run ``=HYPERLINK(...)`` or worse on
the administrator's machine (CSV or formula injection). :func:`safe_cell` puts a ``'`` before
such a cell, which spreadsheets show as text; :func:`csv_text` applies it to every cell.
Numbers central writes itself (durations, sequence numbers) are not text from outside and are
written as they are.
"""

import csv
import io
from collections.abc import Iterable, Sequence

#: what a spreadsheet may read as the start of a formula
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Cell = str | int | float | None


def safe_cell(value: Cell) -> str | int | float:
    """``value`` as a spreadsheet shows it as text: a leading ``'`` before a formula start."""
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> str:
    """A CSV document (header first) with every cell made safe by :func:`safe_cell`."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return out.getvalue()
