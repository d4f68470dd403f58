"""--dump FILE: a timestamped hex dump of both directions, as `socat -x` and `ncat -x` write one.

Per chunk a header line, then hexdump -C style lines:

    > 2026-11-30T11:20:00.123456Z conn=3 length=17 from=0 to=16
    00000000  68 65 6c 6c 6f 20 77 6f  72 6c 64 0a 00 01 02 03  |hello world.....|
    00000010  04                                                |.|

`>` is client -> upstream, `<` upstream -> client; from/to are the chunk's first and last byte
offsets in that direction's stream (as socat's), so the offsets on the left run on across chunks.
"""

from __future__ import annotations

import time
from collections.abc import Callable

TO_UPSTREAM, TO_CLIENT = ">", "<"
_WIDTH = 16
_PRINTABLE = bytes(b if 0x20 <= b < 0x7F else 0x2E for b in range(256))  # others show as "."


def header(mark: str, when: float, conn: int, offset: int, length: int) -> str:
    """The line before a chunk: direction, UTC time with microseconds, connection id, length, offsets."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{int(when % 1 * 1_000_000):06d}Z"
    return f"{mark} {stamp} conn={conn} length={length} from={offset} to={offset + length - 1}\n"


def hex_lines(data: bytes, offset: int = 0) -> str:
    """hexdump -C lines for `data`, the offsets starting at `offset`."""
    out = []
    for start in range(0, len(data), _WIDTH):
        row = data[start:start + _WIDTH]
        left, right = row[:8].hex(" "), row[8:].hex(" ")
        text = row.translate(_PRINTABLE).decode("ascii")
        out.append(f"{offset + start:08x}  {left:<23}  {right:<23}  |{text}|\n")
    return "".join(out)


def chunk_text(mark: str, when: float, conn: int, offset: int, data: bytes) -> str:
    """A whole chunk as it appears in the dump: the header line and its hex lines."""
    return header(mark, when, conn, offset, len(data)) + hex_lines(data, offset)


class Dump:
    """The open dump file. Writes are buffered and flushed once per loop turn (flush())."""

    def __init__(self, stream, wall: Callable[[], float] = time.time):
        self._stream, self._wall = stream, wall
        self._dirty = False

    def chunk(self, mark: str, conn: int, offset: int, data) -> None:
        self._stream.write(chunk_text(mark, self._wall(), conn, offset, bytes(data)).encode("ascii"))
        self._dirty = True

    def flush(self) -> None:
        if self._dirty:
            self._stream.flush()
            self._dirty = False

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._stream.close()
