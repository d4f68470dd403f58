"""connect --tls and listen --tls: the TLS layer between a TCP (or unix) connection and the relay
engines. Each connection's handshake is done here, then net.tlsbridge hands the engines a plain
socket, so they (splice, -k, --echo, --exec, --frame) never see TLS. Nothing here is imported,
and no ssl is loaded, without --tls."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sockdiag import platform
from sockdiag.core.errors import SockdiagError, UsageError

CLOSE_GRACE = 2.0  # seconds the bridge may take to pass on what the engine wrote before it closed


def tls_wanted(args) -> bool:
    """--tls, or any TLS option (each implies --tls, as --frame-header implies --frame)."""
    return bool(getattr(args, "tls", False) or any(getattr(args, name, None) for name in
                                                    ("cert", "key", "ca", "alpn", "insecure", "sni")))


def check_options(args, side: str) -> None:
    """TLS needs a stream: no -u."""
    if not tls_wanted(args):
        return
    args.tls = True
    if not platform.poll_supported():  # net.tlsbridge waits with poll() (its HUP tells a closed end)
        raise SockdiagError("--tls is not supported on this system yet (no poll())")
    if args.udp:
        raise UsageError("--tls needs a stream connection (DTLS over -u is not supported)")
    if getattr(args, "insecure", False) and getattr(args, "ca", None):
        raise UsageError("--insecure and --ca exclude each other (--insecure verifies nothing)")


def _client_context(args):
    from sockdiag.net import tls

    return tls.client_context(args.ca, args.insecure, args.cert, args.key, args.alpn)


@contextmanager
def client(sock: socket.socket, args, env, peer: str) -> Iterator[socket.socket]:
    """connect: `sock` itself without --tls; else the handshake (verified unless --insecure), the
    -v description, and the plain end of a bridge (the TLS connection's failure is raised after)."""
    if not getattr(args, "tls", False):
        yield sock
        return
    from sockdiag.net import tls
    from sockdiag.net.tlsbridge import TlsBridge

    ctx = _client_context(args)
    # The name to verify (and send as SNI): --sni, else HOST. For an address the ssl module sends
    # no SNI and checks the certificate's IP entries instead.
    name = args.sni or (args.host.strip("[]") if args.host is not None else None)
    if name is None:
        ctx.check_hostname = False  # -U without --sni: the chain is still verified
    reread = None
    try:
        family, sockaddr = sock.family, sock.getpeername()
        # only straight to the server: through -x the peer address is the proxy's
        if family in (socket.AF_INET, socket.AF_INET6) and not getattr(args, "proxy", None):
            def reread():
                return tls.fetch_certificate(family, sockaddr, name, args.timeout)
    except OSError:
        pass
    session = tls.client_handshake(sock, ctx, name, peer, args.timeout, reread)
    _describe(session, env, "server")
    bridge = TlsBridge(session)
    yield from _relayed(bridge, peer)


def handshake_only(sock: socket.socket, args, env, peer: str) -> None:
    """connect -z --tls: the port accepts AND completes a (verified) handshake."""
    with client(sock, args, env, peer):
        pass


def server_context(args, env):
    """listen --tls: the context made once (a throwaway certificate's fingerprint printed with -v),
    or None without --tls."""
    if not getattr(args, "tls", False):
        return None
    from sockdiag.net import tls
    from sockdiag.net.selfsigned import names_for

    return tls.server_context(args.cert, args.key, args.ca, args.alpn, names_for(args.bind), env)


@contextmanager
def server(conn: socket.socket, args, env, peer: str) -> Iterator[socket.socket]:
    """listen (one client): `conn` itself without --tls; else its handshake (within -w, or
    HANDSHAKE_LIMIT) and the plain end of a bridge."""
    ctx = getattr(args, "tls_context", None)
    if ctx is None:
        yield conn
        return
    from sockdiag.net import tls
    from sockdiag.net.tlsbridge import HANDSHAKE_LIMIT, TlsBridge

    session = tls.server_handshake(conn, ctx, peer, args.timeout or HANDSHAKE_LIMIT)
    _describe(session, env, "client")
    bridge = TlsBridge(session)
    yield from _relayed(bridge, peer)


def server_tls(args, env) -> ServerTls | None:
    """The TLS layer for listen's servers (ServerConfig.tls), or None without --tls."""
    ctx = getattr(args, "tls_context", None)
    return None if ctx is None else ServerTls(ctx, env, args.keep_open)


class ServerTls:
    """The TLS layer of listen's servers (-k, --echo, --exec): `wrap(conn, addr)` returns the socket
    to serve. Without -k the handshake is done at once (a failure ends the listen, exit 1); with -k
    it runs in the client's bridge thread, so a slow client never holds up the others, and a
    failure is a -v note."""

    def __init__(self, ctx, env, keep_open: bool):
        self.ctx, self.env, self.keep_open = ctx, env, keep_open
        self._bridges: list = []
        self._lock = threading.Lock()

    def wrap(self, conn: socket.socket, addr) -> socket.socket:
        from sockdiag.net import tls
        from sockdiag.net.tlsbridge import HANDSHAKE_LIMIT, SERVER_CHUNK, TlsBridge
        from sockdiag.relay.access import format_peer

        peer = format_peer(addr)
        conn.setblocking(True)
        if not self.keep_open:
            try:
                session = tls.server_handshake(conn, self.ctx, peer, HANDSHAKE_LIMIT)
            except BaseException:
                conn.close()
                raise
            _describe(session, self.env, "client")
            bridge = TlsBridge(session, owns_socket=True, chunk=SERVER_CHUNK)
        else:
            def handshake(session) -> None:
                try:
                    session.handshake(HANDSHAKE_LIMIT)
                except Exception as exc:  # noqa: BLE001 - reported, the server goes on
                    error = tls.handshake_error(exc, peer)
                    self.env.info(error.message)
                    raise error from None
                _describe(session, self.env, "client")

            bridge = TlsBridge(tls.TlsSession(conn, self.ctx, True), handshake=handshake, owns_socket=True,
                               chunk=SERVER_CHUNK)
        with self._lock:
            self._bridges = [b for b in self._bridges if b.thread.is_alive()] + [bridge]
        return bridge.plain

    def close(self) -> None:
        """The server stopped (its clients' sockets are closed): let every bridge finish."""
        with self._lock:
            bridges, self._bridges = self._bridges, []
        for bridge in bridges:
            _close(bridge)


def _describe(session, env, peer_role: str) -> None:
    """-v: the established session (version, cipher, ALPN) and the peer's certificate."""
    from sockdiag.net import tls

    for line in tls.describe(session.obj, peer_role):
        env.info(line)


def _relayed(bridge, peer: str) -> Iterator[socket.socket]:
    """Yield the plain end; afterwards, a failure of the TLS side (a reset, a bad record, the
    server refusing our certificate) is the error, also when it made the engine fail first."""
    try:
        with bridge.plain:
            yield bridge.plain
    except SockdiagError:
        _close(bridge)
        _raise_lost(bridge, peer)
        raise
    finally:
        _close(bridge)
    _raise_lost(bridge, peer)


def _close(bridge) -> None:
    bridge.close(CLOSE_GRACE)


def _raise_lost(bridge, peer: str) -> None:
    """A TLS failure after the handshake (a reset, a bad record) ends the relay with exit 1."""
    import ssl

    error = bridge.error
    if error is None:
        return
    if isinstance(error, SockdiagError):
        raise error
    if isinstance(error, ssl.SSLError):
        from sockdiag.net.tls import ssl_words

        raise SockdiagError(f"TLS {peer}: {ssl_words(error)}")
    if isinstance(error, OSError):
        raise platform.from_oserror(f"TLS {peer}", error)
    raise error  # a bug: cli reports it as an internal error rather than a short, silent success
