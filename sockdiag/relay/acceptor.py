"""Accepting listen's clients: --allow/--deny, --max-clients, errors of accept() that concern one
connection or a passing shortage, and closing the port after the one client of a listen without -k.
accept_one() serves the plain one-client listen (blocking); Acceptor serves the poll loop."""

from __future__ import annotations

import selectors
import socket
from collections.abc import Callable

from sockdiag import platform
from sockdiag.core.errors import TimeoutFailure
from sockdiag.net.listeners import accept_out_of_resources
from sockdiag.platform.errnos import from_oserror
from sockdiag.relay.access import AccessList, format_peer, peer_parts
from sockdiag.relay.report import ServerReport

_ACCEPT_BURST = 64  # at most this many accepts per wakeup; then the clients get their turn
_RESOURCE_PAUSE = 0.5  # seconds without accepting after one of those, unless a client leaves first


def accept_one(listener: socket.socket, env, acl: AccessList,
               timeout: float | None = None) -> tuple[socket.socket, str]:
    """Block until one permitted client connects (others are closed, logged with -v); with
    `timeout` (listen -w), give up after that many seconds: TimeoutFailure, exit 3."""
    report = ServerReport(env)
    listener.settimeout(timeout)
    deadline = None if timeout is None else env.clock() + timeout
    while True:
        if deadline is not None:
            listener.settimeout(max(0.0, deadline - env.clock()))
        try:
            conn, addr = listener.accept()
        except TimeoutError:
            raise TimeoutFailure(f"no connection within {timeout:g} s (-w)") from None
        except OSError as exc:
            if exc.errno is not None and platform.errno_name(exc.errno) in platform.ACCEPT_TRANSIENT:
                report.accept_failed(exc.errno)
                continue
            raise from_oserror("accept", exc) from None
        host, _ = peer_parts(addr)
        if acl.permits(host):
            return conn, format_peer(addr)
        report.refused(format_peer(addr))
        conn.close()


class Acceptor:
    """The listening socket in the poll loop (registered as "listener" while accepting). Each
    admitted connection goes to `admit`; `active` counts the clients and children being served."""

    def __init__(self, listener: socket.socket, selector: selectors.BaseSelector, report: ServerReport,
                 clock: Callable[[], float], *, acl: AccessList, keep_open: bool, max_clients: int | None,
                 active: Callable[[], int], admit: Callable[[socket.socket, object], None]):
        self._listener, self._selector, self._report, self._clock = listener, selector, report, clock
        self._acl, self._keep_open, self._max_clients = acl, keep_open, max_clients
        self._active, self._admit = active, admit
        self.served = 0
        self.paused_until: float | None = None  # when to accept again after running out of resources
        self._accepting = True
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ, "listener")

    def accept(self) -> None:
        """The listener is readable: accept what is queued, up to a burst."""
        for _ in range(_ACCEPT_BURST):
            try:
                conn, addr = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if accept_out_of_resources(exc):
                    # The queued client stays readable: pause instead of spinning on the error.
                    self._report.accept_paused(exc.errno)
                    self._pause(self._clock() + _RESOURCE_PAUSE)
                    return
                self._report.accept_failed(exc.errno)
                continue
            self._take(conn, addr)
            if not self._accepting:
                return

    def client_left(self) -> None:
        """A client or child is gone, which freed a descriptor: end a resource pause early."""
        if not self._accepting and self._keep_open and self.paused_until is not None:
            self._resume()

    def tick(self, now: float) -> None:
        """End a resource pause whose time has come."""
        if self.paused_until is not None and now >= self.paused_until:
            self._resume()

    def _take(self, conn: socket.socket, addr) -> None:
        peer = format_peer(addr)
        host, _ = peer_parts(addr)
        if not self._acl.permits(host):
            self._report.refused(peer)
            conn.close()
            return
        limit = self._max_clients
        if limit is not None and self._active() >= limit:
            self._report.too_many(peer, limit)
            conn.close()
            return
        self._report.connected(peer)
        self.served += 1
        if not self._keep_open:  # like nc -l: one client, then the port is free again
            self._pause(None)
            self._listener.close()
        self._admit(conn, addr)

    def _pause(self, until: float | None) -> None:
        if self._accepting:
            self._selector.unregister(self._listener)
            self._accepting = False
        self.paused_until = until

    def _resume(self) -> None:
        if not self._accepting:
            self._selector.register(self._listener, selectors.EVENT_READ, "listener")
            self._accepting = True
        self.paused_until = None
