"""One TCP connection <-> stdin/stdout, full duplex with half-close (connect; listen without -k).

Each direction is a small state machine over one poll loop: stdin -> socket waits either for
input (stdin readable) or for output room (socket writable), never both, so the loop never
spins. On Linux the bytes move with sendfile(2) (stdin a regular file) or splice(2) (stdin a
pipe; socket -> stdout directly into a pipe, or through a private pipe into a file or
/dev/null) and never enter user space; elsewhere, and for --frame, a recv_into/os.write loop
on reused 64 KiB buffers. Any zero-copy call the kernel refuses (EINVAL: an O_APPEND file, a
tty) drops that direction to the copy loop; nothing has moved when that happens.
"""

from __future__ import annotations

import os
import selectors
import socket

from sockdiag import platform
from sockdiag.core import framing
from sockdiag.core.errors import SockdiagError, TimeoutFailure
from sockdiag.platform.errnos import from_oserror
from sockdiag.relay.stdio import CHUNK, StdinSource, StdoutSink, open_stdin, wait_writable

ZERO_COPY_CHUNK = platform.RELAY_PIPE_SIZE  # one splice/sendfile call moves at most this much
_UNSUPPORTED = frozenset({"EINVAL", "ENOSYS", "EOPNOTSUPP", "ENOTSUP", "EBADF", "ESPIPE", "EXDEV"})
_WAIT_INPUT, _WAIT_OUTPUT = "input", "output"
_BURST = 16  # copy-loop transfers per poll wake-up while data keeps coming in whole buffers


class StreamOptions:
    """How a relay behaves: half-close on stdin EOF, idle limit, frame mode, tty exit."""

    def __init__(self, *, shutdown: bool = True, idle: float | None = None, max_frame: int | None = None,
                 exit_on_peer_eof: bool = False):
        self.shutdown = shutdown
        self.idle = idle
        self.max_frame = max_frame  # None: byte stream; a number: --frame with this maximum
        self.exit_on_peer_eof = exit_on_peer_eof  # stdin is a terminal: do not wait for a keystroke


class Stats:
    """Bytes received from (in) and sent to (out) the peer."""

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0

    def summary(self) -> str:
        return f"{self.bytes_in} bytes in, {self.bytes_out} bytes out"


def relay(sock: socket.socket, env, peer: str, options: StreamOptions) -> Stats:
    """Relay until both directions are finished; raise SockdiagError on reset or idle timeout."""
    sock.setblocking(False)
    stdin = open_stdin(env)
    engine = _Relay(sock, env, peer, options, stdin, StdoutSink(env))
    try:
        engine.run()
    finally:
        engine.close()
        stdin.close()
    return engine.stats


def _errno_name(exc: OSError) -> str:
    return platform.errno_name(exc.errno) if exc.errno is not None else ""


class _Relay:
    def __init__(self, sock: socket.socket, env, peer: str, options: StreamOptions, stdin: StdinSource,
                 sink: StdoutSink):
        self.sock, self.sockfd, self.env, self.peer, self.options = sock, sock.fileno(), env, peer, options
        self.stdin, self.sink = stdin, sink
        self.stats = Stats()
        self.up_open = self.down_open = True
        self.stdin_done = False
        self.up_wait = _WAIT_INPUT
        self.up_buffer = memoryview(bytearray(CHUNK))
        self.down_buffer = memoryview(bytearray(CHUNK))
        self.pending = memoryview(b"")  # read from stdin, not yet sent (copy and frame modes)
        self.pipe: tuple[int, int] | None = None
        self.splitter = self.decoder = None
        zero_copy = platform.zero_copy_supported()
        if options.max_frame is not None:
            self.up_mode = self.down_mode = "frame"
            self.splitter = framing.LineSplitter(options.max_frame, what="stdin line")
            self.decoder = framing.FrameDecoder(options.max_frame)
        else:
            self.up_mode = {"file": "sendfile", "pipe": "splice"}.get(stdin.kind, "copy") if zero_copy else "copy"
            self.down_mode = {"pipe": "splice", "file": "splice-pipe", "char": "splice-pipe"}.get(
                sink.kind, "copy") if zero_copy else "copy"
        self.last_active = env.clock()

    def close(self) -> None:
        if self.pipe is not None:
            for fd in self.pipe:
                os.close(fd)
            self.pipe = None

    # --- the loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        with platform.relay_selector() as selector:
            registered: dict[int, int] = {}
            while self.up_open or self.down_open:
                self._update_interest(selector, registered)
                events = selector.select(self._timeout())
                if not events:
                    self._check_idle()
                    continue
                for key, mask in events:
                    if key.fd == self.stdin.fd:
                        if self.up_open and self.up_wait == _WAIT_INPUT:
                            self._up()
                        continue
                    if mask & selectors.EVENT_READ and self.down_open:
                        self._down()
                    if mask & selectors.EVENT_WRITE and self.up_open and self.up_wait == _WAIT_OUTPUT:
                        self._up()

    def _update_interest(self, selector, registered: dict[int, int]) -> None:
        wanted = {self.stdin.fd: 0, self.sockfd: 0}
        if self.up_open and self.up_wait == _WAIT_INPUT:
            wanted[self.stdin.fd] |= selectors.EVENT_READ
        if self.up_open and self.up_wait == _WAIT_OUTPUT:
            wanted[self.sockfd] |= selectors.EVENT_WRITE
        if self.down_open:
            wanted[self.sockfd] |= selectors.EVENT_READ
        for fd, mask in wanted.items():
            current = registered.get(fd, 0)
            if mask == current:
                continue
            if not mask:
                selector.unregister(fd)
                del registered[fd]
            elif current:
                selector.modify(fd, mask)
                registered[fd] = mask
            else:
                selector.register(fd, mask)
                registered[fd] = mask

    def _timeout(self) -> float | None:
        if self.options.idle is None:
            return None
        return max(0.0, self.last_active + self.options.idle - self.env.clock())

    def _check_idle(self) -> None:
        if self.options.idle is not None and self.env.clock() - self.last_active >= self.options.idle:
            raise TimeoutFailure(f"connection with {self.peer} idle for {self.options.idle:g} s (-i): closed")

    def _lost(self, action: str, exc: OSError) -> SockdiagError:
        return from_oserror(f"{action} {self.peer}", exc)

    # --- stdin -> socket --------------------------------------------------------------------------

    def _up(self) -> None:
        if self.up_mode in ("sendfile", "splice"):
            self._up_zero_copy()
        else:
            # A regular file is always readable: keep going while the socket takes whole chunks.
            for _ in range(_BURST if self.stdin.kind == "file" else 1):
                self._up_copy()
                if self.up_wait != _WAIT_INPUT or not self.up_open:
                    break

    def _up_zero_copy(self) -> None:
        try:
            if self.up_mode == "sendfile":
                moved = os.sendfile(self.sockfd, self.stdin.fd, None, ZERO_COPY_CHUNK)
            else:
                moved = os.splice(self.stdin.fd, self.sockfd, ZERO_COPY_CHUNK,
                                  flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK)
        except BlockingIOError:
            # Waiting for input, the input was ready, so the socket is full; and the other way round.
            self.up_wait = _WAIT_OUTPUT if self.up_wait == _WAIT_INPUT else _WAIT_INPUT
            return
        except OSError as exc:
            if _errno_name(exc) in _UNSUPPORTED:
                self.up_mode, self.up_wait = "copy", _WAIT_INPUT
                return
            raise self._lost("send to", exc) from None
        if moved == 0:
            self._stdin_eof()
            self._finish_up()
            return
        self.stats.bytes_out += moved
        self.last_active = self.env.clock()
        self.up_wait = _WAIT_INPUT

    def _up_copy(self) -> None:
        if not self.pending and not self.stdin_done:
            count = self.stdin.readinto(self.up_buffer)
            if count == 0:
                self._stdin_eof()
            elif self.splitter is None:
                self.pending = self.up_buffer[:count]
            else:
                lines = self.splitter.feed(self.up_buffer[:count].tobytes())
                self.pending = memoryview(b"".join(framing.encode(line) for line in lines))
        if self.pending:
            try:
                sent = self.sock.send(self.pending)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise self._lost("send to", exc) from None
            self.pending = self.pending[sent:]
            if sent:
                self.stats.bytes_out += sent
                self.last_active = self.env.clock()
        if not self.pending and self.stdin_done:
            self._finish_up()
        self.up_wait = _WAIT_OUTPUT if self.pending else _WAIT_INPUT

    def _stdin_eof(self) -> None:
        self.stdin_done = True
        if self.splitter is not None and (last := self.splitter.finish()) is not None:
            self.pending = memoryview(framing.encode(last))  # a last line without newline

    def _finish_up(self) -> None:
        self.up_open = False
        if self.options.shutdown:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the peer is gone already; the read side reports it

    # --- socket -> stdout -------------------------------------------------------------------------

    def _down(self) -> None:
        if self.down_mode == "splice":
            self._down_splice_direct()
        elif self.down_mode == "splice-pipe":
            self._down_splice_pipe()
        else:
            # A full buffer means more is probably waiting: read again before the next poll.
            for _ in range(_BURST):
                if self._down_copy() < len(self.down_buffer) or not self.down_open:
                    break

    def _down_copy(self) -> int:
        try:
            count = self.sock.recv_into(self.down_buffer)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise self._lost("receive from", exc) from None
        if count == 0:
            self._peer_eof()
            return 0
        self.stats.bytes_in += count
        self.last_active = self.env.clock()
        if self.decoder is None:
            self.sink.write(self.down_buffer[:count])
            return count
        try:
            frames = self.decoder.frames(self.down_buffer[:count].tobytes())
        except framing.FrameError as exc:
            raise framing.FrameError(f"receive from {self.peer}: {exc.message}") from None
        for frame in frames:
            self.sink.write(frame + b"\n")
        return count

    def _down_splice_direct(self) -> None:
        try:
            moved = os.splice(self.sockfd, self.sink.fd, ZERO_COPY_CHUNK, flags=os.SPLICE_F_MOVE)
        except BlockingIOError:  # the socket was readable, so an O_NONBLOCK stdout pipe is full
            wait_writable(self.sink.fd)
            return
        except BrokenPipeError:
            raise  # EPIPE here is stdout's (a socket read cannot raise it): cli.main ends quietly
        except OSError as exc:
            if _errno_name(exc) in _UNSUPPORTED:
                self.down_mode = "copy"
                return
            raise self._lost("receive from", exc) from None
        self._moved_down(moved)

    def _down_splice_pipe(self) -> None:
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
                self.down_mode = "copy"
                return
            raise self._lost("receive from", exc) from None
        left = moved
        while left:
            try:
                left -= os.splice(self.pipe[0], self.sink.fd, left, flags=os.SPLICE_F_MOVE)
            except OSError as exc:
                if _errno_name(exc) not in _UNSUPPORTED:
                    raise  # stdout's own error (EPIPE, ENOSPC): cli.main reports it
                self.down_mode = "copy"  # e.g. stdout opened with O_APPEND: copy what the pipe holds
                while left:
                    data = os.read(self.pipe[0], left)
                    self.sink.write(data)
                    left -= len(data)
        self._moved_down(moved)

    def _moved_down(self, moved: int) -> None:
        if moved == 0:
            self._peer_eof()
            return
        self.stats.bytes_in += moved
        self.last_active = self.env.clock()

    def _peer_eof(self) -> None:
        self.down_open = False
        if self.decoder is not None:
            try:
                self.decoder.close()
            except framing.FrameError as exc:
                raise framing.FrameError(f"receive from {self.peer}: {exc.message}") from None
        if self.up_open and self.options.exit_on_peer_eof:
            self.up_open = False  # a terminal on stdin: the user would wait for nothing
