"""Endpoints shared by the TCP and UDP relays: name resolution, -s/-p source binding, connecting
to each resolved address in turn, and opening a (dual-stack) listener."""

from __future__ import annotations

import socket

from sockdiag import platform
from sockdiag.core.errors import SockdiagError
from sockdiag.core.portspec import format_hostport
from sockdiag.platform.errnos import from_oserror
from sockdiag.net.listeners import open_listener
from sockdiag.net.proxy import proxy_from_args
from sockdiag.net.resolve import resolve
from sockdiag.relay.access import format_peer

__all__ = ["bind_source", "connect_tcp", "listen_candidates", "open_listener", "resolve", "source_addresses"]



def source_addresses(args, socktype: int) -> dict[int, tuple]:
    """-s/-p: the local address to bind per family (empty: let the OS choose)."""
    if not args.source and not args.source_port:
        return {}
    port = args.source_port or 0
    if not args.source:
        return {socket.AF_INET: ("0.0.0.0", port), socket.AF_INET6: ("::", port)}
    out: dict[int, tuple] = {}
    for af, sockaddr in resolve(args.source, port, args.family, socktype, passive=True):
        out.setdefault(af, sockaddr)
    return out


def bind_source(sock: socket.socket, sockaddr, reuse: bool) -> None:
    """Bind a client socket to its -s/-p address; EACCES (privileged port) -> exit 4."""
    try:
        if reuse:  # a repeated `-p PORT` must not be blocked by the last run's TIME_WAIT
            platform.set_server_reuse(sock)
        sock.bind(sockaddr)
    except OSError as exc:
        raise from_oserror(f"bind {format_hostport(*sockaddr[:2])}", exc) from None


def connect_tcp(args, env) -> tuple[socket.socket, str]:
    """Connect to each resolved address in turn; the first that answers wins. When all fail,
    the last failure is the message (-v shows each one)."""
    if getattr(args, "proxy", None) is not None:
        return _connect_via_proxy(args, env)
    targets = resolve(args.host, args.port, args.family, socket.SOCK_STREAM)
    sources = source_addresses(args, socket.SOCK_STREAM)
    failure: SockdiagError | None = None
    for af, sockaddr in targets:
        peer = format_peer(sockaddr)
        if sources and af not in sources:
            env.info(f"connect {peer}: skipped, no source address in its family")
            continue
        sock = socket.socket(af, socket.SOCK_STREAM)
        try:
            if sources:
                bind_source(sock, sources[af], reuse=bool(args.source_port))
            sock.settimeout(args.timeout)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            failure = from_oserror(f"connect {peer}", exc)
            if len(targets) > 1:
                env.info(failure.message)
            continue
        except BaseException:
            sock.close()
            raise
        env.info(f"connected to {peer} from {format_peer(sock.getsockname())}")
        return sock, peer
    if failure is None:
        raise SockdiagError(f"connect {args.host}: no address in the family of source {args.source}")
    raise failure


def _connect_via_proxy(args, env) -> tuple[socket.socket, str]:
    """-x: through the proxy (net.proxy); HOST is resolved by the proxy, -s/-p and -4/-6 apply to
    the connection to the proxy, as nc does."""
    proxy = proxy_from_args(args)
    sources = source_addresses(args, socket.SOCK_STREAM)

    def bind(sock: socket.socket) -> None:
        if sock.family not in sources:
            raise SockdiagError(f"connect {proxy.label}: no address in the family of source {args.source}")
        bind_source(sock, sources[sock.family], reuse=bool(args.source_port))

    sock = proxy.open(args.host, args.port, args.timeout, family=args.family, bind=bind if sources else None)
    peer = format_hostport(args.host[1:-1] if args.host.startswith("[") else args.host, args.port)
    env.info(f"connected to {peer} via {proxy.label}")
    return sock, peer


def listen_candidates(args, socktype: int) -> list[tuple]:
    """(family, sockaddr, v6only) to try in order. Default: dual-stack :: (one socket for IPv4
    and IPv6), falling back to 0.0.0.0 where the OS has no IPv6 or no dual stack."""
    port = args.port
    if args.bind:
        af, sockaddr = resolve(args.bind, port, args.family, socktype, passive=True)[0]
        return [(af, sockaddr, args.family == 6)]
    if args.family == 4:
        return [(socket.AF_INET, ("0.0.0.0", port), False)]
    if args.family == 6:
        return [(socket.AF_INET6, ("::", port), True)]
    if platform.dualstack_supported():
        return [(socket.AF_INET6, ("::", port), False), (socket.AF_INET, ("0.0.0.0", port), False)]
    return [(socket.AF_INET, ("0.0.0.0", port), False)]
