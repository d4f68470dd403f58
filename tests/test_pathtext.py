"""core.pathtext: the lossless, printable text form of socket names and paths."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockdiag.core.pathtext import path_bytes, path_text, unix_name_bytes, unix_name_text


@pytest.mark.parametrize("raw, text", [
    (b"/run/app.sock", "/run/app.sock"),
    (b"/tmp/caf\xc3\xa9", "/tmp/caf\u00e9"),
    (b"a\nb", "a\\x0ab"),
    (b"a\x1cb", "a\\x1cb"),
    (b"\xff\xfe", "\\xff\\xfe"),
    (b"back\\slash", "back\\\\slash"),
    (b"lit\\x41", "lit\\\\x41"),
    (b"rlo\xe2\x80\xae", "rlo\\xe2\\x80\\xae"),  # U+202E RIGHT-TO-LEFT OVERRIDE
    (b"tab\t", "tab\\x09"),
    (b"del\x7f", "del\\x7f"),
    (b"", ""),
], ids=["plain", "utf8", "newline", "x1c", "not-utf8", "backslash", "literal-escape", "bidi", "tab", "del", "empty"])
def test_path_text(raw, text):
    assert path_text(raw) == text
    assert path_bytes(text) == raw


@pytest.mark.parametrize("name, text", [
    (b"\0abstract", "@abstract"),
    (b"\0a\nb", "@a\\x0ab"),
    (b"\0", "@"),
    (b"\0\0x", "@\\x00x"),
    (b"@literal", "\\x40literal"),
    (b"/run/x", "/run/x"),
], ids=["abstract", "abstract-newline", "abstract-empty", "abstract-nul", "at-path", "path"])
def test_unix_name_text(name, text):
    assert unix_name_text(name) == text
    assert unix_name_bytes(text) == name


@pytest.mark.parametrize("text", ["a\\", "a\\q", "\\x4", "\\xAB", "\\x41", "a\nb", "\ud800", "\\x00x"],
                         ids=["trailing", "unknown", "short", "upper-hex", "needless-escape", "raw-newline",
                              "surrogate", "nul-path"])
def test_non_canonical_texts_rejected(text):
    with pytest.raises(ValueError):
        path_bytes(text) if text != "\\x00x" else unix_name_bytes(text)


@given(st.binary(max_size=120))
def test_path_round_trip(raw):
    text = path_text(raw)
    assert path_bytes(text) == raw
    assert text.isprintable()


@given(st.binary(max_size=120))
def test_unix_name_round_trip(raw):
    text = unix_name_text(raw)
    assert unix_name_bytes(text) == raw
    assert text.isprintable()
    assert text.startswith("@") == raw.startswith(b"\0")


@given(st.text(max_size=60))
def test_printable_text_without_backslash_is_itself(text):
    raw = text.encode("utf-8", "surrogatepass")
    if text.isprintable() and "\\" not in text:
        assert path_text(raw) == text


@given(st.text(max_size=60))
def test_inverse_raises_only_value_error(text):
    try:
        raw = path_bytes(text)
    except ValueError:
        return
    assert path_text(raw) == text
