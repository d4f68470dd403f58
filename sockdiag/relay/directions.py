"""The two directions of a TCP relay (relay.stream): stdin -> socket and socket -> stdout.

Each owns its buffer, its transfer mode and its end-of-stream state, counts the bytes it moved
and when it last moved any (the loop's idle timer), and tells the loop what it waits for: `open`,
and for stdin -> socket `wait`. On Linux the bytes move with sendfile(2) (stdin a regular file)
or splice(2) (stdin a pipe; socket -> stdout directly into a pipe, or through a private pipe into
a file or /dev/null) and never enter user space; elsewhere, and for --frame, a recv_into/os.write
loop on reused 64 KiB buffers. Any zero-copy call the kernel refuses (EINVAL: an O_APPEND file, a
tty) drops that direction to the copy loop; nothing has moved when that happens.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from sockdiag import platform
from sockdiag.core import framing
from sockdiag.core.errors import SockdiagError
from sockdiag.platform.errnos import from_connection_error
from sockdiag.relay.stdio import CHUNK, StdinSource, StdoutSink, wait_writable

ZERO_COPY_CHUNK = platform.RELAY_PIPE_SIZE  # one splice/sendfile call moves at most this much
_UNSUPPORTED = frozenset({"EINVAL", "ENOSYS", "EOPNOTSUPP", "ENOTSUP", "EBADF", "ESPIPE", "EXDEV"})
WAIT_INPUT, WAIT_OUTPUT = "input", "output"
_BURST = 16  # copy-loop transfers per poll wake-up while data keeps coming in whole buffers


def _errno_name(exc: OSError) -> str:
    return platform.errno_name(exc.errno) if exc.errno is not None else ""


class _Direction:
    """What both directions share: the socket, the peer's name for messages, and the count and
    time of the bytes moved."""

    def __init__(self, sock: socket.socket, peer: str, clock: Callable[[], float]):
        self.sock, self.sockfd, self.peer, self.clock = sock, sock.fileno(), peer, clock
        self.open = True  # False once this direction is finished: the loop stops waiting for it
        self.total = 0  # bytes moved
        self.last_active = clock()

    def _lost(self, action: str, exc: OSError) -> SockdiagError:
        """The socket failed: name what the kernel did (a send's EPIPE is the peer's reset)."""
        return from_connection_error(f"{action} {self.peer}", exc, self.sock)


class StdinToSocket(_Direction):
    """stdin -> socket. Waits either for input (stdin readable) or for output room (socket
    writable), never both, so the loop never spins; at end of input it half-closes the socket
    (unless shutdown is off) once everything read has been sent."""

    def __init__(self, sock: socket.socket, peer: str, clock: Callable[[], float], stdin: StdinSource, *,
                 zero_copy: bool, frames: framing.FrameSpec | None, shutdown: bool):
        super().__init__(sock, peer, clock)
        self.stdin, self.shutdown = stdin, shutdown
        self.frames = frames
        self.wait = WAIT_INPUT
        self.stdin_done = False
        self.buffer = memoryview(bytearray(CHUNK))
        self.pending = memoryview(b"")  # read from stdin, not yet sent (copy and frame modes)
        self.splitter = None
        if frames is not None and frames.sends_frames:
            self.mode = "frame"
            self.splitter = framing.LineSplitter(frames.max_frame, what="stdin line")
        elif zero_copy:
            self.mode = {"file": "sendfile", "pipe": "splice"}.get(stdin.kind, "copy")
        else:
            self.mode = "copy"

    def transfer(self) -> None:
        """Move what the event the loop saw allows (stdin readable or socket writable)."""
        if self.mode in ("sendfile", "splice"):
            self._zero_copy()
        else:
            # A regular file is always readable: keep going while the socket takes whole chunks.
            for _ in range(_BURST if self.stdin.kind == "file" else 1):
                self._copy()
                if self.wait != WAIT_INPUT or not self.open:
                    break

    def _zero_copy(self) -> None:
        try:
            if self.mode == "sendfile":
                moved = os.sendfile(self.sockfd, self.stdin.fd, None, ZERO_COPY_CHUNK)
            else:
                moved = os.splice(self.stdin.fd, self.sockfd, ZERO_COPY_CHUNK,
                                  flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK)
        except BlockingIOError:
            # Waiting for input, the input was ready, so the socket is full; and the other way round.
            self.wait = WAIT_OUTPUT if self.wait == WAIT_INPUT else WAIT_INPUT
            return
        except OSError as exc:
            if _errno_name(exc) in _UNSUPPORTED:
                self.mode, self.wait = "copy", WAIT_INPUT
                return
            raise self._lost("send to", exc) from None
        if moved == 0:
            self._stdin_eof()
            self._finish()
            return
        self.total += moved
        self.last_active = self.clock()
        self.wait = WAIT_INPUT

    def _copy(self) -> None:
        if not self.pending and not self.stdin_done:
            count = self.stdin.readinto(self.buffer)
            if count == 0:
                self._stdin_eof()
            elif self.splitter is None:
                self.pending = self.buffer[:count]
            else:
                lines = self.splitter.feed(self.buffer[:count].tobytes())
                self.pending = memoryview(b"".join(self.frames.encode(line) for line in lines))
        if self.pending:
            try:
                sent = self.sock.send(self.pending)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise self._lost("send to", exc) from None
            self.pending = self.pending[sent:]
            if sent:
                self.total += sent
                self.last_active = self.clock()
        if not self.pending and self.stdin_done:
            self._finish()
        self.wait = WAIT_OUTPUT if self.pending else WAIT_INPUT

    def _stdin_eof(self) -> None:
        self.stdin_done = True
        if self.splitter is not None and (last := self.splitter.finish()) is not None:
            self.pending = memoryview(self.frames.encode(last))  # a last line without newline

    def _finish(self) -> None:
        self.open = False
        if self.shutdown:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the peer is gone already; the read side reports it


class SocketToStdout(_Direction):
    """socket -> stdout, until the peer's end of stream; then `on_peer_eof()` (the loop decides
    what that means for the other direction)."""

    def __init__(self, sock: socket.socket, peer: str, clock: Callable[[], float], sink: StdoutSink, *,
                 zero_copy: bool, frames: framing.FrameSpec | None, on_peer_eof: Callable[[], None],
                 on_header: Callable[[dict], None] | None = None):
        super().__init__(sock, peer, clock)
        self.sink, self.on_peer_eof, self.on_header = sink, on_peer_eof, on_header
        self.frames = frames
        self.buffer = memoryview(bytearray(CHUNK))
        self.pipe: tuple[int, int] | None = None  # splice-pipe mode: made on first use, closed by close()
        self.decoder = None
        if frames is not None and frames.reads_frames:
            self.mode = "frame"
            self.decoder = frames.decoder()
        elif zero_copy:
            self.mode = {"pipe": "splice", "file": "splice-pipe", "char": "splice-pipe"}.get(sink.kind, "copy")
        else:
            self.mode = "copy"

    def close(self) -> None:
        if self.pipe is not None:
            for fd in self.pipe:
                os.close(fd)
            self.pipe = None

    def transfer(self) -> None:
        """Move what the socket has (the loop saw it readable)."""
        if self.mode == "splice":
            self._splice_direct()
        elif self.mode == "splice-pipe":
            self._splice_pipe()
        else:
            # A full buffer means more is probably waiting: read again before the next poll.
            for _ in range(_BURST):
                if self._copy() < len(self.buffer) or not self.open:
                    break

    def _copy(self) -> int:
        try:
            count = self.sock.recv_into(self.buffer)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise self._lost("receive from", exc) from None
        if count == 0:
            self._peer_eof()
            return 0
        self.total += count
        self.last_active = self.clock()
        if self.decoder is None:
            self.sink.write(self.buffer[:count])
            return count
        try:
            frames = self.decoder.frames(self.buffer[:count].tobytes())
        except framing.FrameError as exc:
            raise framing.FrameError(f"receive from {self.peer}: {exc.message}") from None
        for item in frames:
            data, meta = self.frames.printable(item)
            if meta is not None and self.on_header is not None:
                self.on_header(meta)
            self.sink.write(data)
        return count

    def _splice_direct(self) -> None:
        try:
            moved = os.splice(self.sockfd, self.sink.fd, ZERO_COPY_CHUNK, flags=os.SPLICE_F_MOVE)
        except BlockingIOError:  # the socket was readable, so an O_NONBLOCK stdout pipe is full
            wait_writable(self.sink.fd)
            return
        except BrokenPipeError:
            raise  # EPIPE here is stdout's (a socket read cannot raise it): cli.main ends quietly
        except OSError as exc:
            if _errno_name(exc) in _UNSUPPORTED:
                self.mode = "copy"
                return
            raise self._lost("receive from", exc) from None
        self._spliced(moved)

    def _splice_pipe(self) -> None:
        if self.pipe is None:
            self.pipe = os.pipe()
            platform.enlarge_pipe(self.pipe[1])
        try:
            moved = os.splice(self.sockfd, self.pipe[1], ZERO_COPY_CHUNK,
                              flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK)
        except BlockingIOError:
            return
        except OSError as exc:
            if _errno_name(exc) in _UNSUPPORTED:
                self.mode = "copy"
                return
            raise self._lost("receive from", exc) from None
        left = moved
        while left:
            try:
                left -= os.splice(self.pipe[0], self.sink.fd, left, flags=os.SPLICE_F_MOVE)
            except OSError as exc:
                if _errno_name(exc) not in _UNSUPPORTED:
                    raise  # stdout's own error (EPIPE, ENOSPC): cli.main reports it
                self.mode = "copy"  # e.g. stdout opened with O_APPEND: copy what the pipe holds
                while left:
                    data = os.read(self.pipe[0], left)
                    self.sink.write(data)
                    left -= len(data)
        self._spliced(moved)

    def _spliced(self, moved: int) -> None:
        if moved == 0:
            self._peer_eof()
            return
        self.total += moved
        self.last_active = self.clock()

    def _peer_eof(self) -> None:
        self.open = False
        if self.decoder is not None:
            try:
                self.decoder.close()
            except framing.FrameError as exc:
                raise framing.FrameError(f"receive from {self.peer}: {exc.message}") from None
        self.on_peer_eof()
