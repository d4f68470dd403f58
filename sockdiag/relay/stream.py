"""One TCP connection <-> stdin/stdout, full duplex with half-close (connect; listen without -k).

Each direction is a small state machine over one poll loop: stdin -> socket waits either for
input (stdin readable) or for output room (socket writable), never both, so the loop never
spins. The directions, and how they move bytes (splice/sendfile on Linux, a copy loop elsewhere
and for --frame), are in relay.directions; this module holds the loop (what to wait for, the
idle timer), the options and the byte counts reported at the end.
"""

from __future__ import annotations

import json
import selectors
import socket

from sockdiag import platform
from sockdiag.core.errors import TimeoutFailure
from sockdiag.relay.directions import WAIT_INPUT, WAIT_OUTPUT, SocketToStdout, StdinToSocket
from sockdiag.relay.stdio import StdinSource, StdoutSink, open_stdin


class StreamOptions:
    """How a relay behaves: half-close on stdin EOF, idle limit, frame mode, tty exit."""

    def __init__(self, *, shutdown: bool = True, idle: float | None = None, frames=None,
                 exit_on_peer_eof: bool = False, quit_after: float | None = None, read_stdin: bool = True):
        self.shutdown = shutdown
        self.idle = idle
        self.frames = frames  # None: byte stream; a core.framing.FrameSpec: --frame mode
        self.quit_after = quit_after  # -q SEC: end SEC seconds after stdin EOF, as nc -q
        self.read_stdin = read_stdin  # False with -d: stdin is never read (and the socket not half-closed)
        self.exit_on_peer_eof = exit_on_peer_eof  # stdin is a terminal: do not wait for a keystroke


class Stats:
    """Bytes received from (in) and sent to (out) the peer."""

    def __init__(self, bytes_in: int = 0, bytes_out: int = 0) -> None:
        self.bytes_in = bytes_in
        self.bytes_out = bytes_out

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


class _Relay:
    """The poll loop over both directions: registers what each one waits for, hands it its
    events, and ends the connection after `idle` seconds without traffic either way."""

    def __init__(self, sock: socket.socket, env, peer: str, options: StreamOptions, stdin: StdinSource,
                 sink: StdoutSink):
        self.env, self.peer, self.idle = env, peer, options.idle
        self.exit_on_peer_eof = options.exit_on_peer_eof
        self.stdin_fd, self.sockfd = stdin.fd, sock.fileno()
        zero_copy = platform.zero_copy_supported()
        self.up = StdinToSocket(sock, peer, env.clock, stdin, zero_copy=zero_copy, frames=options.frames,
                                shutdown=options.shutdown)
        self.quit_after, self.eof_at = options.quit_after, None
        if not options.read_stdin:
            self.up.open = False  # -d: nothing to send, and no half-close either (nc -d)
        self.down = SocketToStdout(sock, peer, env.clock, sink, zero_copy=zero_copy, frames=options.frames,
                                   on_peer_eof=self._peer_eof,
                                   on_header=lambda meta: env.info(f"frame header from {peer}: {json.dumps(meta)}"))

    @property
    def stats(self) -> Stats:
        return Stats(bytes_in=self.down.total, bytes_out=self.up.total)

    def close(self) -> None:
        self.down.close()

    def run(self) -> None:
        up, down = self.up, self.down
        with platform.relay_selector() as selector:
            registered: dict[int, int] = {}
            while up.open or down.open:
                self._update_interest(selector, registered)
                if self.quit_after is not None and not up.open and self.eof_at is None:
                    self.eof_at = self.env.clock()  # -q: the countdown starts at stdin EOF
                if self._quit_due():
                    return
                events = selector.select(self._timeout())
                if not events:
                    self._check_idle()
                    continue
                for key, mask in events:
                    if key.fd == self.stdin_fd:
                        if up.open and up.wait == WAIT_INPUT:
                            up.transfer()
                        continue
                    if mask & selectors.EVENT_READ and down.open:
                        down.transfer()
                    if mask & selectors.EVENT_WRITE and up.open and up.wait == WAIT_OUTPUT:
                        up.transfer()

    def _peer_eof(self) -> None:
        if self.up.open and self.exit_on_peer_eof:
            self.up.open = False  # a terminal on stdin: the user would wait for nothing

    def _update_interest(self, selector, registered: dict[int, int]) -> None:
        up = self.up
        wanted = {self.stdin_fd: 0, self.sockfd: 0}
        if up.open and up.wait == WAIT_INPUT:
            wanted[self.stdin_fd] |= selectors.EVENT_READ
        if up.open and up.wait == WAIT_OUTPUT:
            wanted[self.sockfd] |= selectors.EVENT_WRITE
        if self.down.open:
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

    # --- the idle timer (-i): traffic either way restarts it -----------------------------------

    def _timeout(self) -> float | None:
        deadlines = []
        if self.idle is not None:
            deadlines.append(self._last_active() + self.idle)
        if self.eof_at is not None:
            deadlines.append(self.eof_at + self.quit_after)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - self.env.clock())

    def _quit_due(self) -> bool:
        return self.eof_at is not None and self.env.clock() - self.eof_at >= self.quit_after

    def _check_idle(self) -> None:
        if self._quit_due():
            return  # the loop ends on its next turn
        if self.idle is not None and self.env.clock() - self._last_active() >= self.idle:
            raise TimeoutFailure(f"connection with {self.peer} idle for {self.idle:g} s (-i): closed")

    def _last_active(self) -> float:
        return max(self.up.last_active, self.down.last_active)
