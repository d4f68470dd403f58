"""-k relay: the server's stdin goes to every connected client (with --frame, each line as one
frame). Stdin is read only while every client is owed less than --max-backlog (default 4 MiB), so
a slow reader holds stdin back (backpressure) instead of growing a buffer without bound; a client
that takes nothing at all for BACKLOG_GRACE seconds while over its backlog is dropped by the
server, so it cannot stall the others for longer than that."""

from __future__ import annotations

import selectors

from sockdiag.core import framing
from sockdiag.relay.clients import CLIENT_CHUNK, ClientTable
from sockdiag.relay.stdio import open_stdin

STDIN_HIGH_WATER = 4 * 1024 * 1024  # --max-backlog's default: stop reading stdin while a client is owed this
BACKLOG_GRACE = 5.0  # seconds a client may sit over its backlog without reading a byte before it is dropped


class StdinBroadcast:
    """Stdin, registered with the selector (as "stdin") only while it should be read."""

    def __init__(self, env, selector: selectors.BaseSelector, clients: ClientTable, frames):
        self._selector, self._clients = selector, clients
        self._stdin = open_stdin(env)
        self._open = True
        self._registered = False
        self._frames = frames if frames is not None and frames.sends_frames else None
        self._splitter = framing.LineSplitter(frames.max_frame, what="stdin line") if self._frames else None

    def update_interest(self) -> None:
        """Read stdin only while it is open, someone listens, and nobody is owed too much."""
        wanted = self._open and bool(self._clients) and self._clients.owed_below()
        if wanted and not self._registered:
            self._selector.register(self._stdin.fd, selectors.EVENT_READ, "stdin")
        elif self._registered and not wanted:
            self._selector.unregister(self._stdin.fd)
        self._registered = wanted

    def read(self) -> None:
        """Stdin is readable: queue what it has for every client that has not sent EOF."""
        data = self._stdin.read(CLIENT_CHUNK)
        if not data:
            self._open = False  # clients stay: a server's stdin ending does not end their sessions
            last = self._splitter.finish() if self._splitter is not None else None
            data = self._frames.encode(last) if last is not None else b""
        elif self._splitter is not None:
            data = b"".join(self._frames.encode(line) for line in self._splitter.feed(data))
        if not data:
            return
        for client in self._clients:
            if not client.eof:
                self._clients.queue(client, data)

    def close(self) -> None:
        self._stdin.close()
