"""PURE: the message codecs of --frame mode. No I/O.

The cure for "sticky packets": TCP is a byte stream, so a protocol that needs messages prefixes
each one with its length. FrameDecoder is fed whatever the socket returned, in any split, and
hands back whole frames. A header is checked against the maximum as soon as its bytes are in,
BEFORE anything is buffered for the payload: a hostile `ff ff ff ff` costs nothing.

The length header is a struct format with one integer code (HeaderFormat): `!I` (4 bytes,
big-endian, the default), or what the tutorials write, `struct.pack("i", n)`: native order and
size, signed. --frame-mode json adds the tutorials' two-level header: a length header, a UTF-8
JSON object carrying `total_size`, then that many body bytes (JsonFrameDecoder, encode_json).
LineSplitter is the other half of --frame mode: stdin lines in, with a bound on their length.
"""

from __future__ import annotations

import json
import struct

from sockdiag.core.errors import SockdiagError

HEADER_SIZE = 4
LENGTH_LIMIT = 2**32 - 1  # the largest length a 4-byte header can express
DEFAULT_MAX_FRAME = 16 * 1024 * 1024


class FrameError(SockdiagError):
    """A frame stream that cannot be decoded (oversized or truncated), or a frame too big to send."""


_INTEGER_CODES = "bBhHiIlLqQ"
_ORDER_PREFIXES = "@=<>!"


class HeaderFormat:
    """A frame's length header: a struct format of exactly one integer code, with an optional
    byte-order prefix (@ = < > !). `!I` is 4 bytes big-endian unsigned; `i` the tutorials'
    struct.pack("i", n): native order and size, signed (a negative length is a malformed frame)."""

    def __init__(self, fmt: str = "!I"):
        body = fmt[1:] if fmt[:1] in _ORDER_PREFIXES else fmt
        if len(body) != 1 or body not in _INTEGER_CODES:
            raise ValueError(f"not a struct format with one integer code: {fmt!r} "
                             f"(e.g. !I, i, <H, >Q; codes {_INTEGER_CODES}, optional prefix {_ORDER_PREFIXES})")
        self.fmt = fmt
        self._struct = struct.Struct(fmt)
        self.size = self._struct.size
        self.signed = body.islower()
        self.limit = 2 ** (8 * self.size - (1 if self.signed else 0)) - 1  # the largest length it can say

    def pack(self, length: int) -> bytes:
        return self._struct.pack(length)

    def unpack(self, header) -> int:
        return self._struct.unpack(bytes(header))[0]


DEFAULT_HEADER = HeaderFormat("!I")


def encode(payload: bytes, max_frame: int = LENGTH_LIMIT, header: HeaderFormat = DEFAULT_HEADER) -> bytes:
    """One frame: the payload's length as the header says (4 big-endian bytes by default), then it."""
    size = len(payload)
    limit = min(max_frame, header.limit)
    if size > limit:
        raise FrameError(f"frame of {size} bytes is larger than the maximum of {limit}")
    return header.pack(size) + bytes(payload)


def encode_json(body: bytes, max_frame: int = LENGTH_LIMIT, header: HeaderFormat = DEFAULT_HEADER,
                **fields) -> bytes:
    """--frame-mode json: length header, the JSON object {"total_size": N, ...}, then the body."""
    if len(body) > max_frame:
        raise FrameError(f"frame of {len(body)} bytes is larger than the maximum of {max_frame}")
    meta = json.dumps({"total_size": len(body), **fields}, separators=(",", ":")).encode()
    return encode(meta, max_frame, header) + bytes(body)


class FrameDecoder:
    """Incremental decoder: feed(bytes) any number of times, take frames with next_frame().

    Buffered data never exceeds one maximal frame plus what the caller fed in one go, because a
    header announcing more than `max_frame` raises FrameError as soon as its 4 bytes arrive.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, header: HeaderFormat = DEFAULT_HEADER):
        if max_frame < 0:
            raise ValueError("max_frame must not be negative")
        self.header = header
        self.max_frame = min(max_frame, header.limit)
        self._buffer = bytearray()
        self._length: int | None = None  # payload length of the frame being assembled, once known

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buffer)

    @property
    def needed(self) -> int:
        """How many more bytes complete the header or frame being read (at least 1): a reader
        that must not read past one frame asks for exactly this much."""
        size = self.header.size
        if self._length is None:
            return max(1, size - len(self._buffer))
        return max(1, size + self._length - len(self._buffer))

    def feed(self, data: bytes) -> None:
        """Add received bytes. Raises FrameError at once if the next header is oversized."""
        self._buffer += data
        self._read_header()

    def next_frame(self) -> bytes | None:
        """The next complete frame's payload, or None until more data is fed."""
        self._read_header()
        size = self.header.size
        if self._length is None or len(self._buffer) < size + self._length:
            return None
        end = size + self._length
        payload = bytes(self._buffer[size:end])
        del self._buffer[:end]  # bytearray deletes from the front in O(1) (it moves its start)
        self._length = None
        self._read_header()
        return payload

    def frames(self, data: bytes = b"") -> list[bytes]:
        """feed(data), then every frame that is now complete."""
        if data:
            self.feed(data)
        out = []
        while (frame := self.next_frame()) is not None:
            out.append(frame)
        return out

    def close(self) -> None:
        """The stream ended: raise FrameError if it stopped inside a header or a payload."""
        have = len(self._buffer)
        if have == 0:
            return
        size = self.header.size
        if have < size:
            raise FrameError(f"stream ended inside a frame header ({have} of {size} bytes)")
        raise FrameError(f"stream ended inside a frame ({have - size} of {self._length} payload bytes)")

    def _read_header(self) -> None:
        size = self.header.size
        if self._length is not None or len(self._buffer) < size:
            return
        length = self.header.unpack(self._buffer[:size])
        if length < 0:
            raise FrameError(f"frame header ({self._buffer[:size].hex(' ')}) announces a negative length "
                             f"({length})")
        if length > self.max_frame:
            header = self._buffer[:size].hex(" ")
            raise FrameError(f"frame header ({header}) announces {length} bytes, "
                             f"more than the maximum of {self.max_frame}")
        self._length = length


class JsonFrameDecoder:
    """--frame-mode json: a length header, a UTF-8 JSON object with an integer `total_size`,
    then `total_size` body bytes. frames() returns (header object, body) pairs. The JSON header
    is bounded by --max-frame like any frame, and so is total_size, before anything is kept."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, header: HeaderFormat = DEFAULT_HEADER):
        self.max_frame = max_frame
        self._meta = FrameDecoder(max_frame, header)
        self._pending: dict | None = None  # the JSON header of the body being read
        self._body = bytearray()

    @property
    def buffered(self) -> int:
        return self._meta.buffered + len(self._body)

    @property
    def needed(self) -> int:
        if self._pending is None:
            return self._meta.needed
        return max(1, self._pending["total_size"] - len(self._body))

    def frames(self, data: bytes = b"") -> list[tuple[dict, bytes]]:
        """feed(data); every (header object, body) now complete. The length-framed JSON header is
        fed exactly the bytes it needs, so body bytes are never read as a header."""
        out: list[tuple[dict, bytes]] = []
        view, pos = memoryview(bytes(data)), 0
        while True:
            if self._pending is None:
                if pos >= len(view):
                    return out
                chunk = view[pos:pos + self._meta.needed]
                pos += len(chunk)
                self._meta.feed(bytes(chunk))
                meta = self._meta.next_frame()
                if meta is None:
                    continue
                self._pending = self._parse(meta)
            size = self._pending["total_size"]
            chunk = view[pos:pos + size - len(self._body)]
            pos += len(chunk)
            self._body += chunk
            if len(self._body) < size:
                return out
            out.append((self._pending, bytes(self._body)))
            self._pending, self._body = None, bytearray()

    def close(self) -> None:
        if self._pending is not None:
            raise FrameError(f"stream ended inside a body ({len(self._body)} of {self._pending['total_size']} bytes)")
        self._meta.close()

    def _parse(self, meta: bytes) -> dict:
        try:
            obj = json.loads(meta.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise FrameError(f"frame header is not a UTF-8 JSON object: {meta[:40]!r}") from None
        size = obj.get("total_size") if isinstance(obj, dict) else None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise FrameError("frame header has no non-negative integer total_size")
        if size > self.max_frame:
            raise FrameError(f"frame header announces total_size {size}, more than the maximum of {self.max_frame}")
        return obj


class LineSplitter:
    """Bytes in any split -> complete lines. A line longer than `max_line` raises FrameError
    as soon as it is known to be too long, so an endless line never fills memory."""

    def __init__(self, max_line: int | None = None, keep_newline: bool = False, what: str = "line"):
        self.max_line = max_line
        self.keep_newline = keep_newline
        self.what = what
        self._partial = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The lines completed by `data` (without b"\\n" unless keep_newline)."""
        lines = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            piece = data[start:end]
            if self._partial:
                self._partial += piece
                line = bytes(self._partial)
                self._partial.clear()
            else:
                line = bytes(piece)
            self._check(len(line) + self.keep_newline)
            lines.append(line + b"\n" if self.keep_newline else line)
            start = end + 1
        if start < len(data):
            self._partial += data[start:]
            self._check(len(self._partial))
        return lines

    def finish(self) -> bytes | None:
        """At end of input: the last line if it had no newline, else None."""
        if not self._partial:
            return None
        line = bytes(self._partial)
        self._partial.clear()
        return line

    def _check(self, size: int) -> None:
        if self.max_line is not None and size > self.max_line:
            raise FrameError(f"{self.what} longer than the maximum of {self.max_line} bytes")


FRAME_MODES = ("length", "json", "ascii-ack")
FRAME_DIRECTIONS = ("both", "in", "out", "none")  # none: raw both ways (a dialogue without --frame)


class FrameSpec:
    """What --frame, --frame-header, --frame-mode, --frame-dir, --max-frame and --ack ask for.

    `direction` says which way messages are framed: "both", "in" (frames arrive, stdin goes raw)
    or "out" (stdin goes as frames, what arrives is printed raw). ascii-ack is a dialogue (each
    length waits for the peer's acknowledgement), so it has no stream codec: relay.dialogue runs it.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, header: HeaderFormat = DEFAULT_HEADER,
                 mode: str = "length", direction: str = "both", ack: bytes = b"ok"):
        if mode not in FRAME_MODES or direction not in FRAME_DIRECTIONS:
            raise ValueError(f"unknown frame mode or direction: {mode!r}, {direction!r}")
        self.max_frame, self.header, self.mode, self.direction, self.ack = max_frame, header, mode, direction, ack

    @property
    def sends_frames(self) -> bool:
        return self.direction in ("both", "out")

    @property
    def reads_frames(self) -> bool:
        return self.direction in ("both", "in")

    @property
    def is_dialogue(self) -> bool:
        return self.mode == "ascii-ack"

    def encode(self, payload: bytes) -> bytes:
        """One outgoing message, framed (length or json mode)."""
        if self.mode == "json":
            return encode_json(payload, self.max_frame, self.header)
        return encode(payload, self.max_frame, self.header)

    def decoder(self):
        """A decoder for incoming messages: its frames() items go through printable()."""
        if self.mode == "json":
            return JsonFrameDecoder(self.max_frame, self.header)
        return FrameDecoder(self.max_frame, self.header)

    def printable(self, item) -> tuple[bytes, dict | None]:
        """(what to write to stdout, the JSON header or None) for one decoded item. A length
        frame is printed as one line; a json-mode body as it is (it carries its own newlines)."""
        if self.mode == "json":
            meta, body = item
            return body, meta
        return item + b"\n", None
