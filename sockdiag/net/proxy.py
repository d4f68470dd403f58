"""Reaching HOST PORT through a SOCKS5, SOCKS4a or HTTP CONNECT proxy (nc -x/-X), for connect and
forward: connect to the proxy, run core.proxyproto's handshake, return the plain connected socket.

The target name goes to the proxy as a name (no local getaddrinfo for it); only the proxy host is
resolved here. The handshake reads with MSG_PEEK and then consumes exactly the reply's bytes, so
what the proxy sends after its reply (an HTTP 200 and the target's first bytes in one segment)
stays in the socket for the relay: no leftover buffer to carry around.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from sockdiag.core.errors import SockdiagError, TimeoutFailure, UsageError
from sockdiag.core.portspec import format_hostport, unbracket
from sockdiag.core.proxyproto import (
    DEFAULT_PORTS,
    KINDS,
    LABELS,
    ProxyRefused,
    ProxyReplyError,
    ProxyRequestError,
    handshake,
)
from sockdiag.net.resolve import resolve
from sockdiag.platform.errnos import from_oserror

__all__ = ["Proxy", "open_via_proxy", "proxy_from_args"]

_PEEK = 4096  # the most of the proxy's reply looked at in one recv(MSG_PEEK)


@dataclass(frozen=True)
class Proxy:
    """-x HOST[:PORT], -X KIND, --proxy-auth USER:PASS, checked and with the default port filled."""

    host: str
    port: int
    kind: str = "5"
    auth: tuple[str, str] | None = None

    @property
    def address(self) -> str:
        return format_hostport(_unbracket(self.host), self.port)

    @property
    def label(self) -> str:
        """`socks5 proxy 127.0.0.1:1080`, as -v names it."""
        return f"{LABELS[self.kind]} proxy {self.address}"

    def open(self, target_host: str, target_port: int, timeout: float | None, *, family: int | None = None,
             bind: Callable[[socket.socket], None] | None = None) -> socket.socket:
        return open_via_proxy(self.host, self.port, self.kind, target_host, target_port, self.auth, timeout,
                              family=family, bind=bind)


def proxy_from_args(args) -> Proxy | None:
    """The proxy the options ask for (cmdline.proxy_options: args.proxy, proxy_type, proxy_auth),
    or None without -x. --proxy-auth without -x, or a password with -X 4, is a usage error."""
    where = getattr(args, "proxy", None)
    kind = getattr(args, "proxy_type", None) or "5"
    auth = getattr(args, "proxy_auth", None)
    if where is None:
        if auth is not None:
            raise UsageError("--proxy-auth needs a proxy: give -x HOST[:PORT]")
        return None
    _check_kind(kind, auth)
    host, port = where
    return Proxy(host, port if port is not None else DEFAULT_PORTS[kind], kind, auth)


def open_via_proxy(proxy_host: str, proxy_port: int | None, kind: str, target_host: str, target_port: int,
                   auth: tuple[str, str] | None, timeout: float | None, *, family: int | None = None,
                   bind: Callable[[socket.socket], None] | None = None) -> socket.socket:
    """A blocking socket connected to target_host:target_port through the proxy, positioned at the
    first byte of the tunnelled stream. `kind`: "5", "4" or "connect"; `proxy_port` None: 1080 for
    SOCKS, 3128 for CONNECT. `timeout` bounds the connect to the proxy and the whole handshake.
    `family` (4, 6 or None) limits the proxy's addresses; `bind(sock)` runs before each connect
    (-s/-p). Failures are one-line SockdiagErrors: refused by the proxy 1, timeout 3."""
    _check_kind(kind, auth)
    if proxy_port is None:
        proxy_port = DEFAULT_PORTS[kind]
    proxy = format_hostport(_unbracket(proxy_host), proxy_port)
    try:
        exchange = handshake(kind, target_host, target_port, auth)
    except ProxyRequestError as exc:
        raise UsageError(f"proxy {proxy}: {exc.message}") from None
    deadline = None if timeout is None else time.monotonic() + timeout
    sock = _connect(proxy_host, proxy_port, family, deadline, timeout, bind)
    try:
        _run(sock, exchange, proxy, deadline, timeout)
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return sock


def _check_kind(kind: str, auth) -> None:
    if kind not in KINDS:
        raise UsageError(f"unknown proxy type {kind!r} (choose from 5, 4, connect)")
    if kind == "4" and auth is not None and auth[1]:
        raise UsageError("-X 4: SOCKS4 sends a user id and no password: give --proxy-auth USER")


def _unbracket(host: str) -> str:
    return unbracket(host)


def _remaining(deadline: float | None, timeout: float | None, proxy: str) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutFailure(f"proxy {proxy}: no complete answer within {timeout:g} s")
    return left


def _connect(host: str, port: int, family: int | None, deadline: float | None, timeout: float | None,
             bind) -> socket.socket:
    """Connect to each of the proxy's addresses in turn (the resolver's order); the last failure
    is the message, as for a direct connect."""
    failure: SockdiagError | None = None
    for af, sockaddr in resolve(host, port, family, socket.SOCK_STREAM):
        peer = format_hostport(sockaddr[0], sockaddr[1])
        sock = socket.socket(af, socket.SOCK_STREAM)
        try:
            if bind is not None:
                bind(sock)
            sock.settimeout(_remaining(deadline, timeout, peer))
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            failure = from_oserror(f"connect {peer} (proxy)", exc)
            if isinstance(failure, TimeoutFailure):
                raise failure from None  # the deadline is the whole -w: no next address
            continue
        except SockdiagError as exc:
            sock.close()
            if isinstance(exc, (TimeoutFailure, UsageError)):
                raise
            failure = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    assert failure is not None  # resolve() returns at least one address or raises
    raise failure


def _run(sock: socket.socket, exchange, proxy: str, deadline: float | None, timeout: float | None) -> None:
    """The handshake on a connected socket: send, peek at the reply, consume exactly its bytes."""
    out = exchange.start()
    received = 0
    try:
        while True:
            if out:
                sock.settimeout(_remaining(deadline, timeout, proxy))
                sock.sendall(out)
            if exchange.done:
                return
            sock.settimeout(_remaining(deadline, timeout, proxy))
            available = sock.recv(_PEEK, socket.MSG_PEEK)
            if not available:
                raise SockdiagError(f"proxy {proxy} closed the connection "
                                    f"{'before answering' if not received else f'after {received} bytes of its reply'}"
                                    f" (short reply)")
            data = sock.recv(exchange.wants(available))
            received += len(data)
            out = exchange.receive(data)
    except ProxyRefused as exc:
        raise SockdiagError(f"proxy {proxy} refused: {exc.message}") from None
    except ProxyReplyError as exc:
        raise SockdiagError(f"proxy {proxy}: bad reply: {exc.message}") from None
    except TimeoutError:
        raise TimeoutFailure(f"proxy {proxy}: no complete answer within {timeout:g} s") from None
    except OSError as exc:
        raise from_oserror(f"proxy {proxy}", exc) from None
