"""render: aligned text, JSON Lines and CSV, parsed back."""

from __future__ import annotations

import csv
import io
import json

import pytest

from sockdiag.core.render import render, text_table

COLUMNS = [("proto", "Proto"), ("local", "Local Address"), ("pid", "PID")]
ROWS = [
    {"proto": "tcp", "local": "127.0.0.1:80", "pid": 1},
    {"proto": "tcp6", "local": "[::1]:8080", "pid": None},
]


def test_text_is_aligned_with_dash_for_missing():
    lines = text_table(ROWS, COLUMNS)
    assert lines[0].split() == ["Proto", "Local", "Address", "PID"]
    assert lines[2].endswith("-")
    starts = {line.index(part) for line, part in zip(lines, ["Local", "127.0.0.1", "[::1]"])}
    assert len(starts) == 1
    assert all(line == line.rstrip() for line in lines)


def test_text_without_header():
    assert len(text_table(ROWS, COLUMNS, header=False)) == 2


def test_json_lines_round_trip_with_stable_keys():
    lines = list(render(ROWS, COLUMNS, "json"))
    objects = [json.loads(line) for line in lines]
    assert [list(o) for o in objects] == [["proto", "local", "pid"]] * 2
    assert objects[1]["pid"] is None


def test_csv_round_trip():
    text = "\n".join(render(ROWS + [{"proto": "x,y", "local": 'q"', "pid": 3}], COLUMNS, "csv"))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0] == {"proto": "tcp", "local": "127.0.0.1:80", "pid": "1"}
    assert rows[1]["pid"] == ""
    assert rows[2]["proto"] == "x,y" and rows[2]["local"] == 'q"'


def test_empty_rows():
    assert list(render([], COLUMNS, "text")) == ["Proto  Local Address  PID"]
    assert list(render([], COLUMNS, "json")) == []


def test_unknown_format():
    with pytest.raises(ValueError):
        list(render(ROWS, COLUMNS, "xml"))
