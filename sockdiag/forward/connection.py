"""A forwarded TCP connection: the client's socket, the upstream socket (connecting, then
connected), the two directions between them, and what the selector is asked to watch for each
socket. The loop (forward.server) owns the table of connections and the selector."""

from __future__ import annotations

import selectors
import socket

from sockdiag import platform
from sockdiag.forward.dump import TO_CLIENT, TO_UPSTREAM
from sockdiag.forward.streams import Direction, PipePool

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
CLIENT, UPSTREAM = 0, 1


class Connection:
    """One client and its upstream."""

    __slots__ = ("attempt", "c_mask", "client", "client_key", "client_name", "closed", "deadline", "down", "ident",
                 "last_active", "started", "u_mask", "up", "upstream", "upstream_key", "upstream_name")

    def __init__(self, ident: int, client: socket.socket, client_name: str, upstream_name: str, now: float):
        self.ident, self.client, self.client_name = ident, client, client_name
        self.upstream: socket.socket | None = None
        self.upstream_name = upstream_name  # the target until connected, then the address it reached
        self.started = self.last_active = now
        self.attempt = 0  # index into the resolved upstream addresses
        self.deadline: float | None = None  # -w: when the upstream connect attempt gives up
        self.up: Direction | None = None  # client -> upstream, once connected
        self.down: Direction | None = None  # upstream -> client
        self.c_mask = self.u_mask = 0  # the events registered for each socket (0: not registered)
        self.client_key, self.upstream_key = (self, CLIENT), (self, UPSTREAM)
        self.closed = False

    @property
    def to_upstream(self) -> int:
        return self.up.total if self.up is not None else 0

    @property
    def to_client(self) -> int:
        return self.down.total if self.down is not None else 0

    def start(self, pool: PipePool | None, dump) -> None:
        """The upstream answered: set up both directions."""
        self.up = Direction(self.client, self.upstream, pool, dump, self.ident, TO_UPSTREAM)
        self.down = Direction(self.upstream, self.client, pool, dump, self.ident, TO_CLIENT)

    def masks(self) -> tuple[int, int]:
        """The events each socket should be watched for now: (client's, upstream's)."""
        up, down = self.up, self.down
        client = (READ if up.want_read else 0) | (WRITE if down.want_write else 0)
        upstream = (READ if down.want_read else 0) | (WRITE if up.want_write else 0)
        return client, upstream

    def close(self, reset: socket.socket | None = None) -> None:
        """Close both sockets (the selector must have let go of them). `reset`: close that one
        with RST (SO_LINGER 0), passing on the other side's reset."""
        self.closed = True
        for direction in (self.up, self.down):
            if direction is not None:
                direction.release()
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            if sock is reset:
                _set_rst(sock)
            sock.close()


def _set_rst(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, platform.linger_rst_value())
    except OSError:
        pass
