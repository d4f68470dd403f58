"""PURE: the length-prefixed message codec (4-byte big-endian length, then the payload). No I/O.

The cure for "sticky packets": TCP is a byte stream, so a protocol that needs messages prefixes
each one with its length. FrameDecoder is fed whatever the socket returned, in any split, and
hands back whole frames. A header is checked against the maximum as soon as its 4 bytes are in,
BEFORE anything is buffered for the payload: a hostile `ff ff ff ff` costs nothing.
LineSplitter is the other half of --frame mode: stdin lines in, with a bound on their length.
"""

from __future__ import annotations

from sockdiag.core.errors import SockdiagError

HEADER_SIZE = 4
LENGTH_LIMIT = 2**32 - 1  # the largest length a 4-byte header can express
DEFAULT_MAX_FRAME = 16 * 1024 * 1024


class FrameError(SockdiagError):
    """A frame stream that cannot be decoded (oversized or truncated), or a frame too big to send."""


def encode(payload: bytes, max_frame: int = LENGTH_LIMIT) -> bytes:
    """One frame: the payload's length as 4 big-endian bytes, then the payload."""
    size = len(payload)
    if size > min(max_frame, LENGTH_LIMIT):
        raise FrameError(f"frame of {size} bytes is larger than the maximum of {min(max_frame, LENGTH_LIMIT)}")
    return size.to_bytes(HEADER_SIZE, "big") + bytes(payload)


class FrameDecoder:
    """Incremental decoder: feed(bytes) any number of times, take frames with next_frame().

    Buffered data never exceeds one maximal frame plus what the caller fed in one go, because a
    header announcing more than `max_frame` raises FrameError as soon as its 4 bytes arrive.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME):
        if max_frame < 0:
            raise ValueError("max_frame must not be negative")
        self.max_frame = min(max_frame, LENGTH_LIMIT)
        self._buffer = bytearray()
        self._length: int | None = None  # payload length of the frame being assembled, once known

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Add received bytes. Raises FrameError at once if the next header is oversized."""
        self._buffer += data
        self._read_header()

    def next_frame(self) -> bytes | None:
        """The next complete frame's payload, or None until more data is fed."""
        self._read_header()
        if self._length is None or len(self._buffer) < HEADER_SIZE + self._length:
            return None
        end = HEADER_SIZE + self._length
        payload = bytes(self._buffer[HEADER_SIZE:end])
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
        if have < HEADER_SIZE:
            raise FrameError(f"stream ended inside a frame header ({have} of {HEADER_SIZE} bytes)")
        raise FrameError(f"stream ended inside a frame ({have - HEADER_SIZE} of {self._length} payload bytes)")

    def _read_header(self) -> None:
        if self._length is not None or len(self._buffer) < HEADER_SIZE:
            return
        length = int.from_bytes(self._buffer[:HEADER_SIZE], "big")
        if length > self.max_frame:
            header = self._buffer[:HEADER_SIZE].hex(" ")
            raise FrameError(f"frame header ({header}) announces {length} bytes, "
                             f"more than the maximum of {self.max_frame}")
        self._length = length


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
