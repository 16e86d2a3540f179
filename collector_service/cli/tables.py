"""Render query results for people (tables that fit the terminal) or scripts (JSON).

On a terminal a table is shrunk to the window's width (the widest text columns give
way first, cut with an ellipsis; numbers and times keep their width), numbers are
right-aligned, and the header and statuses are coloured unless ``NO_COLOR`` is set.
Piped to another program, cells are never cut and no colour codes are written.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TextIO

from collector_service.config import colour_wanted

_MIN_COLUMN = 8
_STATUS_COLOURS = {"ok": "32", "error": "31", "pending": "33", "running": "36"}


class Style:
    """Whether and how to decorate output for the stream it goes to."""

    def __init__(self, stream: TextIO | None = None) -> None:
        stream = stream or sys.stdout
        self.terminal = stream.isatty()
        self.colour = colour_wanted(self.terminal)
        self.width = shutil.get_terminal_size().columns if self.terminal else None

    def paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour and code else text

    def bold(self, text: str) -> str:
        return self.paint(text, "1")

    def status(self, text: str) -> str:
        return self.paint(text, _STATUS_COLOURS.get(text.strip(), ""))


def cell(value: Any) -> str:
    """A short, readable form of one value."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def decode_json_texts(texts: Sequence[str | None]) -> list[Any]:
    """Values given as PostgreSQL's text of them as ``jsonb`` (``None`` for SQL NULL),
    decoded in one pass: one ``json.loads`` of a whole run's values is four times faster
    than one call per value, and ``xray show`` of a long run decodes tens of thousands."""
    values: list[Any] = json.loads("[" + ",".join("null" if t is None else t for t in texts)
                                   + "]")
    return values


def json_text_cells(texts: Sequence[str | None]) -> list[str | None]:
    """What :func:`cell` prints for each value given as PostgreSQL's text of it as
    ``jsonb``, without decoding it (``None`` stays ``None``).

    PostgreSQL writes an object or array with ``", "`` and ``": "`` between items, and
    outside strings those are its only spaces, so dropping them gives the compact form.
    That is done on all the texts joined by newlines (which ``jsonb`` text never holds
    raw), in one pass. Scalars, and text with an escaped quote (where splitting at quotes
    would misread the strings), are decoded and printed as :func:`cell` prints them.
    """
    cells: list[str | None] = [None] * len(texts)
    where: list[int] = []
    compactable: list[str] = []
    for i, text in enumerate(texts):
        if text is None:
            continue
        if text.startswith(("{", "[")) and '\\"' not in text:
            where.append(i)
            compactable.append(text)
        else:
            cells[i] = cell(json.loads(text))
    if compactable:
        parts = "\n".join(compactable).split('"')
        parts[::2] = [outside.replace(" ", "") for outside in parts[::2]]
        for i, compact in zip(where, '"'.join(parts).split("\n"), strict=True):
            cells[i] = compact
    return cells


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
          style: Style | None = None) -> str:
    """Rows as an aligned text table, fitted to the terminal's width when there is one."""
    style = style or Style()
    cells = [[cell(v).replace("\n", " ") for v in row] for row in rows]
    numeric = [all(_is_number(row[i]) for row in rows) and bool(rows)
               for i in range(len(headers))]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    if style.width is not None:
        fixed = [numeric[i] or all(isinstance(row[i], datetime | None) for row in rows)
                 for i in range(len(headers))]
        widths = _fit(widths, fixed, style.width - 2 * (len(headers) - 1))

    def line(values: Sequence[str], paint: bool) -> str:
        parts = []
        for i, (text, width) in enumerate(zip(values, widths, strict=True)):
            text = _cut(text, width)
            padded = text.rjust(width) if numeric[i] else text.ljust(width)
            if paint and headers[i] == "status":
                padded = style.status(padded)
            parts.append(padded)
        return "  ".join(parts).rstrip()

    lines = [style.bold(line(headers, False)), "  ".join("-" * w for w in widths)]
    lines.extend(line(r, True) for r in cells)
    return "\n".join(lines)


def _fit(widths: list[int], fixed: list[bool], room: int) -> list[int]:
    """Narrow the widest text columns until the table fits in ``room`` characters.

    Numbers and times keep their width; a cut id still works as a unique prefix.
    """
    widths = list(widths)
    text = [i for i in range(len(widths)) if not fixed[i]]
    while text and sum(widths) > room:
        widest = max(text, key=lambda i: widths[i])
        if widths[widest] <= _MIN_COLUMN:
            break
        widths[widest] -= 1
    return widths


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float | Decimal)
                             and not isinstance(value, bool))


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def as_json(record: Any, indent: int | None = None) -> str:
    return json.dumps(record, default=json_default, ensure_ascii=False, indent=indent)


def print_records(records: Sequence[dict[str, Any]], lines: bool) -> None:
    """One JSON document (an array), or with ``lines`` one object per line."""
    if lines:
        for record in records:
            print(as_json(record))
    else:
        print(as_json(list(records), indent=2))


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"
