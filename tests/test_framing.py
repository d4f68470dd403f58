"""The pure frame codec and line splitter: parametrized cases plus hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockdiag.core.errors import SockdiagError
from sockdiag.core.framing import (LENGTH_LIMIT, FrameDecoder, FrameError, LineSplitter, encode)
from sockdiag.core.status import ExitStatus

payloads = st.lists(st.binary(max_size=300), max_size=20)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    pieces, start = [], 0
    for point in points + [len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces


@pytest.mark.parametrize("payload, wire", [
    pytest.param(b"", b"\x00\x00\x00\x00", id="empty"),
    pytest.param(b"a", b"\x00\x00\x00\x01a", id="one-byte"),
    pytest.param(b"x" * 258, b"\x00\x00\x01\x02" + b"x" * 258, id="big-endian"),
])
def test_encode(payload, wire):
    assert encode(payload) == wire


def test_encode_refuses_oversized():
    with pytest.raises(FrameError, match="larger than the maximum of 3"):
        encode(b"abcd", max_frame=3)


@pytest.mark.parametrize("wire, frames", [
    pytest.param(b"", [], id="nothing"),
    pytest.param(b"\x00\x00\x00\x00", [b""], id="empty-frame"),
    pytest.param(b"\x00\x00\x00\x02hi\x00\x00\x00\x01!", [b"hi", b"!"], id="two-frames-one-read"),
    pytest.param(b"\x00\x00\x00\x02h", [], id="partial-payload"),
    pytest.param(b"\x00\x00", [], id="partial-header"),
])
def test_decode_examples(wire, frames):
    assert FrameDecoder().frames(wire) == frames


@pytest.mark.parametrize("header", [
    pytest.param(b"\xff\xff\xff\xff", id="max-u32"),
    pytest.param(b"\x80\x00\x00\x00", id="sign-bit"),
    pytest.param(b"\x01\x00\x00\x01", id="just-over-16M"),
])
def test_hostile_header_rejected_before_payload(header):
    decoder = FrameDecoder()  # default 16 MiB
    with pytest.raises(FrameError, match="more than the maximum of 16777216") as info:
        decoder.feed(header)
    assert info.value.status == ExitStatus.FAILURE
    assert decoder.buffered == 4  # only what was fed: nothing allocated for the claimed size


def test_hostile_header_split_bytewise_still_rejected():
    decoder = FrameDecoder(max_frame=10)
    decoder.feed(b"\x00")
    decoder.feed(b"\x00\x00")
    with pytest.raises(FrameError, match="announces 11 bytes"):
        decoder.feed(b"\x0b")


def test_header_exactly_at_limit_is_fine():
    decoder = FrameDecoder(max_frame=3)
    assert decoder.frames(b"\x00\x00\x00\x03abc") == [b"abc"]


def test_hostile_header_after_good_frame():
    decoder = FrameDecoder(max_frame=5)
    with pytest.raises(FrameError):
        decoder.frames(b"\x00\x00\x00\x01a" + b"\x00\x00\x00\x06")


@pytest.mark.parametrize("wire, message", [
    pytest.param(b"\x00\x00", "inside a frame header (2 of 4 bytes)", id="in-header"),
    pytest.param(b"\x00\x00\x00\x05abc", "inside a frame (3 of 5 payload bytes)", id="in-payload"),
])
def test_close_reports_truncation(wire, message):
    decoder = FrameDecoder()
    decoder.feed(wire)
    with pytest.raises(FrameError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decoder.close()


def test_close_after_whole_frames_is_quiet():
    decoder = FrameDecoder()
    assert decoder.frames(encode(b"ok")) == [b"ok"]
    decoder.close()


def test_negative_max_is_a_bug():
    with pytest.raises(ValueError):
        FrameDecoder(max_frame=-1)


def test_frame_error_is_a_sockdiag_error():
    assert issubclass(FrameError, SockdiagError)


@given(payloads, st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_any_split_decodes_to_the_same_frames(frames, cuts):
    wire = b"".join(encode(f) for f in frames)
    decoder = FrameDecoder(max_frame=300)
    got = []
    for piece in _split(wire, cuts):
        got += decoder.frames(piece)
    decoder.close()
    assert got == frames
    assert decoder.buffered == 0


@given(st.binary(max_size=64), st.lists(st.integers(min_value=0, max_value=64), max_size=8))
@settings(max_examples=300)
def test_arbitrary_bytes_only_raise_frame_error(data, cuts):
    decoder = FrameDecoder(max_frame=16)
    try:
        for piece in _split(data, cuts):
            decoder.frames(piece)
            assert decoder.buffered <= 4 + 16 + len(piece)
        decoder.close()
    except FrameError:
        pass


@given(st.integers(min_value=17, max_value=LENGTH_LIMIT))
def test_any_oversized_header_is_rejected(length):
    with pytest.raises(FrameError):
        FrameDecoder(max_frame=16).feed(length.to_bytes(4, "big"))


# --- LineSplitter ---------------------------------------------------------------------------------

@pytest.mark.parametrize("chunks, lines, rest", [
    pytest.param([b"a\nb\n"], [b"a", b"b"], None, id="two-lines"),
    pytest.param([b"a", b"b\nc"], [b"ab"], b"c", id="split-and-tail"),
    pytest.param([b"\n\n"], [b"", b""], None, id="empty-lines"),
    pytest.param([b"x\r\n"], [b"x\r"], None, id="cr-kept"),
])
def test_line_splitter(chunks, lines, rest):
    splitter = LineSplitter()
    got = []
    for chunk in chunks:
        got += splitter.feed(chunk)
    assert got == lines
    assert splitter.finish() == rest


def test_line_splitter_keeps_newline():
    splitter = LineSplitter(keep_newline=True)
    assert splitter.feed(b"a\nb") == [b"a\n"]
    assert splitter.finish() == b"b"


def test_line_splitter_refuses_endless_line_early():
    splitter = LineSplitter(max_line=5, what="stdin line")
    splitter.feed(b"abc")
    with pytest.raises(FrameError, match="stdin line longer than the maximum of 5 bytes"):
        splitter.feed(b"def")


def test_line_at_limit_is_fine():
    assert LineSplitter(max_line=3).feed(b"abc\n") == [b"abc"]
    assert LineSplitter(max_line=4, keep_newline=True).feed(b"abc\n") == [b"abc\n"]


@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=15),
       st.lists(st.integers(min_value=0, max_value=700), max_size=20))
def test_lines_survive_any_split(lines, cuts):
    data = b"".join(line + b"\n" for line in lines)
    splitter = LineSplitter()
    got = []
    for piece in _split(data, cuts):
        got += splitter.feed(piece)
    assert got == lines
    assert splitter.finish() is None


# --- header formats, json mode (issue 12) ------------------------------------------------------------

from sockdiag.core.framing import FrameSpec, HeaderFormat, JsonFrameDecoder, encode_json  # noqa: E402


@pytest.mark.parametrize("fmt, size, signed", [
    pytest.param("!I", 4, False, id="default"), pytest.param("i", 4, True, id="tutorial-native-int"),
    pytest.param("<H", 2, False, id="le-short"), pytest.param(">Q", 8, False, id="be-long-long"),
    pytest.param("=b", 1, True, id="signed-byte"),
])
def test_header_formats(fmt, size, signed):
    header = HeaderFormat(fmt)
    assert (header.size, header.signed) == (size, signed)
    payload = b"x" * 100
    assert FrameDecoder(1000, header).frames(encode(payload, header=header)) == [payload]


@pytest.mark.parametrize("fmt", ["", "ii", "f", "!d", "s", "4I", "!", "<>I", "@P", "?"])
def test_other_formats_are_refused(fmt):
    with pytest.raises(ValueError):
        HeaderFormat(fmt)


def test_negative_length_is_malformed():
    header = HeaderFormat("i")
    with pytest.raises(FrameError, match="negative length"):
        FrameDecoder(100, header).frames(header.pack(-1))


def test_small_header_caps_the_frame():
    with pytest.raises(FrameError):
        encode(b"x" * 70000, header=HeaderFormat("!H"))


@given(st.lists(st.binary(max_size=300), max_size=8), st.data())
def test_json_frames_survive_any_split(bodies, data):
    header = HeaderFormat("i")
    stream = b"".join(encode_json(body, header=header) for body in bodies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder, out, last = JsonFrameDecoder(1000, header), [], 0
    for cut in cuts + [len(stream)]:
        out += decoder.frames(stream[last:cut])
        last = cut
    decoder.close()
    assert [body for _meta, body in out] == bodies
    assert all(meta == {"total_size": len(body)} for meta, body in out)


@pytest.mark.parametrize("meta", [b"not json", b"[1,2]", b'{"size": 3}', b'{"total_size": "3"}',
                                  b'{"total_size": -1}', b'{"total_size": 99999}', b"\xff\xfe"])
def test_bad_json_headers_are_malformed(meta):
    with pytest.raises(FrameError):
        JsonFrameDecoder(1000).frames(encode(meta))


def test_json_stream_ending_inside_a_body():
    decoder = JsonFrameDecoder(1000)
    decoder.frames(encode_json(b"hello")[:-2])
    with pytest.raises(FrameError, match="inside a body"):
        decoder.close()


def test_frame_spec_directions_and_printing():
    spec = FrameSpec(direction="in")
    assert spec.reads_frames and not spec.sends_frames
    assert FrameSpec(direction="out").sends_frames and not FrameSpec(direction="out").reads_frames
    assert spec.printable(b"line") == (b"line\n", None)
    assert FrameSpec(mode="json").printable(({"total_size": 2}, b"ok")) == (b"ok", {"total_size": 2})
