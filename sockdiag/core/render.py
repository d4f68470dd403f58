"""PURE: rows (dicts) -> an aligned text table, JSON Lines or CSV lines. No I/O here.

Machine formats are stable: JSON Lines objects carry exactly the given keys in the given order
(None becomes null); CSV has a header row of those keys (None becomes an empty field).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterable, Iterator, Mapping, Sequence

FORMATS = ("text", "json", "csv")
# (key, header): key in the row dicts and in JSON/CSV; header shown in the text table.
Column = tuple[str, str]


def cell(value: Any) -> str:
    """How a value looks in a text table: None is '-', floats are short."""
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def text_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[Column], header: bool = True) -> list[str]:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    keys = [key for key, _ in columns]
    body = [[cell(row.get(key)) for key in keys] for row in rows]
    lines = ([[title for _, title in columns]] if header else []) + body
    if not lines:
        return []
    widths = [max(len(line[i]) for line in lines) for i in range(len(keys) - 1)]
    out = []
    for line in lines:
        padded = [text.ljust(width) for text, width in zip(line, widths)] + [line[-1]]
        out.append("  ".join(padded).rstrip())
    return out


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode  # one encoder, not one per row


def json_line(row: Mapping[str, Any], keys: Sequence[str]) -> str:
    """One JSON object on one line, keys in the given order."""
    return _ENCODE({key: row.get(key) for key in keys})


def csv_lines(rows: Iterable[Mapping[str, Any]], keys: Sequence[str], header: bool = True) -> list[str]:
    """RFC 4180 CSV lines (without line terminators)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(keys)
    for row in rows:
        writer.writerow(["" if row.get(key) is None else row.get(key) for key in keys])
    return buf.getvalue().splitlines()


def render(rows: Iterable[Mapping[str, Any]], columns: Sequence[Column], fmt: str, header: bool = True) -> Iterator[str]:
    """Rows in format `fmt` (one of FORMATS), as lines without newlines."""
    keys = [key for key, _ in columns]
    if fmt == "json":
        for row in rows:
            yield json_line(row, keys)
    elif fmt == "csv":
        yield from csv_lines(rows, keys, header)
    elif fmt == "text":
        yield from text_table(rows, columns, header)
    else:
        raise ValueError(f"unknown output format {fmt!r}")
