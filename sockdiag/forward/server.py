"""forward's TCP loop: one selector (epoll on Linux) for the listeners, every client, every
upstream; no thread per client. Accepting (--allow/--deny, --max-clients), the non-blocking
upstream connects (each resolved address in turn, -w), the transfers (forward.streams), -i and
closing. A proxy connect (-x) blocks, so it runs in a thread of its own and reports back through
a socketpair; a slow proxy never stalls the other clients."""

from __future__ import annotations

import selectors
import socket
import threading
from collections import deque

from sockdiag import platform
from sockdiag.forward.config import ForwardConfig
from sockdiag.forward.connection import CLIENT, READ, WRITE, Connection
from sockdiag.forward.report import ForwardReport
from sockdiag.forward.streams import PipePool, SideError
from sockdiag.net.access import format_peer, peer_parts
from sockdiag.net.listeners import accept_out_of_resources
from sockdiag.platform.errnos import describe_connection_error, from_oserror

_ACCEPT_BURST = 64  # accepts per wake-up; then the connections get their turn
_RESOURCE_PAUSE = 0.5  # seconds without accepting after running out of descriptors
_NONBLOCK = platform.probe_socket_type_flags()
# A proxy that accepts but never answers would hold its thread and the client forever; without -w
# the handshake gets this long (the kernel's own connect timeout is about two minutes on Linux).
_PROXY_DEFAULT_TIMEOUT = 60.0


class _Listening:
    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket):
        self.sock = sock


class TcpForwarder:
    """Serve until interrupted; close() lets go of everything."""

    def __init__(self, listeners: list[socket.socket], env, config: ForwardConfig):
        self.env, self.config, self.clock = env, config, env.clock
        self.report = ForwardReport(env)
        self.selector = selectors.DefaultSelector()
        self.pool = PipePool() if config.zero_copy else None
        self.conns: dict[int, Connection] = {}
        self.next_ident = 1
        self.listeners = [_Listening(sock) for sock in listeners]
        self.paused_until: float | None = None
        self.done_proxies: deque = deque()  # (connection, socket or exception) from proxy threads
        self.lock = threading.Lock()  # guards done_proxies and closing
        self.closing = False
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.selector.register(self.wake_r, READ, None)
        for item in self.listeners:
            item.sock.setblocking(False)
            self.selector.register(item.sock, READ, item)
        timers = [t for t in (config.idle, config.connect_timeout) if t]
        self.tick = min(1.0, min(timers) / 4) if timers else None

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> int:
        next_sweep = self.clock() + self.tick if self.tick else None
        dump = self.config.dump
        while True:
            timeout = None if next_sweep is None else max(0.0, next_sweep - self.clock())
            if self.paused_until is not None:
                timeout = min(timeout if timeout is not None else _RESOURCE_PAUSE, _RESOURCE_PAUSE)
            events = self.selector.select(timeout)
            now = self.clock()
            for key, mask in events:
                data = key.data
                if data.__class__ is tuple:
                    self._ready(data[0], data[1], mask, now)
                elif data is None:
                    self._proxies_done(now)
                else:
                    self._accept(data.sock, now)
            if dump is not None:
                dump.flush()
            if next_sweep is not None and now >= next_sweep:
                self._sweep(now)
                next_sweep = now + self.tick
            if self.paused_until is not None and now >= self.paused_until:
                self._resume()

    def _ready(self, conn: Connection, side: int, mask: int, now: float) -> None:
        if conn.closed:
            return
        if conn.up is None:  # only the upstream is watched while connecting
            self._connect_done(conn, now)
            return
        try:
            if side == CLIENT:
                if mask & READ:
                    conn.up.pump()
                if mask & WRITE:
                    conn.down.pump()
            else:
                if mask & READ:
                    conn.down.pump()
                if mask & WRITE:
                    conn.up.pump()
        except SideError as failure:
            self._lost(conn, failure, now)
            return
        conn.last_active = now
        if conn.up.done and conn.down.done:
            self._close(conn, now)
        else:
            self._watch(conn)

    def _watch(self, conn: Connection) -> None:
        client, upstream = conn.masks()
        if client != conn.c_mask:
            self._set_mask(conn.client, conn.c_mask, client, conn.client_key)
            conn.c_mask = client
        if upstream != conn.u_mask:
            self._set_mask(conn.upstream, conn.u_mask, upstream, conn.upstream_key)
            conn.u_mask = upstream

    def _set_mask(self, sock: socket.socket, old: int, new: int, data) -> None:
        if not old:
            self.selector.register(sock, new, data)
        elif not new:
            self.selector.unregister(sock)
        else:
            self.selector.modify(sock, new, data)

    # --- accepting ------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket, now: float) -> None:
        for _ in range(_ACCEPT_BURST):
            try:
                sock, addr = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if accept_out_of_resources(exc):  # the queued client stays readable: pause, not spin
                    self.report.accept_paused(platform.describe(exc.errno))
                    self._pause(now + _RESOURCE_PAUSE)
                    return
                self.report.accept_failed(platform.describe(exc.errno))
                continue
            self._admit(sock, addr, now)
            if self.paused_until is not None:
                return

    def _admit(self, sock: socket.socket, addr, now: float) -> None:
        config = self.config
        peer = format_peer(addr)
        if not config.acl.permits(peer_parts(addr)[0]):
            self.report.refused(peer)
            sock.close()
            return
        if config.max_clients is not None and len(self.conns) >= config.max_clients:
            self.report.too_many(peer, config.max_clients)
            sock.close()
            return
        conn = Connection(self.next_ident, sock, peer, config.target_name, now)
        self.next_ident += 1
        self.conns[conn.ident] = conn
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # the client is gone already: its first read says so
        if config.proxy is not None:
            self._proxy_connect(conn, now)
        else:
            self._connect(conn, now)

    def _pause(self, until: float) -> None:
        if self.paused_until is None:
            for item in self.listeners:
                self.selector.unregister(item.sock)
        self.paused_until = until

    def _resume(self) -> None:
        if self.paused_until is not None:
            for item in self.listeners:
                self.selector.register(item.sock, READ, item)
            self.paused_until = None

    # --- the upstream ---------------------------------------------------------------------------

    def _connect(self, conn: Connection, now: float) -> None:
        """Start a non-blocking connect to the next resolved address."""
        af, sockaddr = self.config.targets[conn.attempt]
        conn.upstream_name = format_peer(sockaddr)
        try:
            sock = socket.socket(af, socket.SOCK_STREAM | _NONBLOCK)
        except OSError as exc:  # out of descriptors (EMFILE): this client goes, the others stay
            self.report.connect_failed(conn.ident, conn.client_name, from_oserror("socket", exc).message)
            self._drop(conn)
            return
        conn.upstream = sock
        try:
            if not _NONBLOCK:
                sock.setblocking(False)
            code = sock.connect_ex(sockaddr)
        except OSError as exc:
            code = exc.errno or 0
        if code == 0:
            self._connected(conn, now)
        elif platform.connect_in_progress(code):
            self.selector.register(sock, WRITE, conn.upstream_key)
            conn.u_mask = WRITE
            timeout = self.config.connect_timeout
            conn.deadline = now + timeout if timeout else None
        else:
            self._connect_failed(conn, platform.describe(code), now)

    def _connect_done(self, conn: Connection, now: float) -> None:
        code = conn.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._connect_failed(conn, platform.describe(code), now)
        else:
            self._connected(conn, now)

    def _connected(self, conn: Connection, now: float) -> None:
        conn.deadline = None
        try:
            conn.upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        conn.start(self.pool, self.config.dump)
        conn.last_active = now
        self.report.opened(conn)
        self._watch(conn)

    def _connect_failed(self, conn: Connection, why: str, now: float) -> None:
        """This address failed: try the next one, or give up on this client (others go on)."""
        self._forget(conn.upstream, conn.u_mask)
        conn.u_mask = 0
        conn.upstream.close()
        conn.upstream = None
        conn.attempt += 1
        if conn.attempt < len(self.config.targets):
            self.env.info(f"connection {conn.ident}: connect {conn.upstream_name}: {why}; trying the next address")
            self._connect(conn, now)
            return
        self.report.connect_failed(conn.ident, conn.client_name, f"connect {conn.upstream_name}: {why}")
        self._drop(conn)

    def _proxy_connect(self, conn: Connection, now: float) -> None:
        timeout = self.config.connect_timeout
        conn.deadline = now + timeout if timeout else None
        thread = threading.Thread(target=self._proxy_thread, args=(conn,), daemon=True,
                                  name=f"sockdiag-forward-proxy-{conn.ident}")
        thread.start()

    def _proxy_thread(self, conn: Connection) -> None:
        try:
            result = self.config.proxy(self.config.connect_timeout or _PROXY_DEFAULT_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - the loop reports it: a SockdiagError's line, an OSError
            result = exc
        with self.lock:
            if self.closing:  # the loop is gone: nobody else will close this socket
                if not isinstance(result, Exception):
                    result.close()
                return
            self.done_proxies.append((conn, result))
        try:
            self.wake_w.send(b"\0")
        except OSError:
            pass  # a wake-up byte is already waiting

    def _proxies_done(self, now: float) -> None:
        try:
            self.wake_r.recv(4096)
        except BlockingIOError:
            pass
        while True:
            with self.lock:
                if not self.done_proxies:
                    return
                conn, result = self.done_proxies.popleft()
            if isinstance(result, Exception):
                if not conn.closed:
                    self.report.connect_failed(conn.ident, conn.client_name, _proxy_failure(result))
                    self._drop(conn)
            elif conn.closed:
                result.close()
            else:
                result.setblocking(False)
                conn.upstream = result
                conn.upstream_name = self.config.target_name
                self._connected(conn, now)

    # --- timers and endings ---------------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        idle = self.config.idle
        for conn in list(self.conns.values()):
            if conn.deadline is not None and now >= conn.deadline and conn.up is None:
                why = f"timed out after {self.config.connect_timeout:g} s (-w)"
                if conn.upstream is None:  # a proxy connect: its thread closes what it gets
                    self.report.connect_failed(conn.ident, conn.client_name, f"proxy: {why}")
                    self._drop(conn)
                else:
                    self._connect_failed(conn, why, now)
            elif idle is not None and conn.up is not None and now - conn.last_active >= idle:
                self._close(conn, now, f"idle for {idle:g} s (-i)")

    def _lost(self, conn: Connection, failure: SideError, now: float) -> None:
        """A reset or error on one side: the other side gets a reset too (as if the forwarder
        were not there), and the connection ends."""
        side = "client" if failure.sock is conn.client else "upstream"
        exc = failure.exc
        why = describe_connection_error(exc.errno, failure.sock) if exc.errno is not None else str(exc)
        other = conn.upstream if failure.sock is conn.client else conn.client
        self._close(conn, now, f"{side}: {why}", reset=other)

    def _close(self, conn: Connection, now: float, reason: str | None = None, reset=None) -> None:
        self.report.closed(conn, now, reason)  # first: the line is out before the client sees the end
        self._unwatch(conn)
        conn.close(reset)
        del self.conns[conn.ident]

    def _drop(self, conn: Connection) -> None:
        """A client whose upstream never answered: closed without a closing line."""
        self._unwatch(conn)
        conn.close()
        self.conns.pop(conn.ident, None)

    def _unwatch(self, conn: Connection) -> None:
        self._forget(conn.client, conn.c_mask)
        if conn.upstream is not None:
            self._forget(conn.upstream, conn.u_mask)
        conn.c_mask = conn.u_mask = 0

    def _forget(self, sock, mask: int) -> None:
        if mask:
            self.selector.unregister(sock)

    def close(self) -> None:
        """Every socket, pipe and the selector; proxy threads close what they still bring."""
        for conn in list(self.conns.values()):
            try:
                self._unwatch(conn)
            except (KeyError, ValueError, OSError):
                pass
            conn.close()
        self.conns.clear()
        with self.lock:
            self.closing = True
            for _conn, result in self.done_proxies:
                if not isinstance(result, Exception):
                    result.close()
            self.done_proxies.clear()
        if self.pool is not None:
            self.pool.close()
        self.selector.close()
        self.wake_r.close()
        self.wake_w.close()


def _proxy_failure(exc: Exception) -> str:
    """The one line for a failed proxy connect: a SockdiagError's message, an OSError's errno name."""
    message = getattr(exc, "message", None)
    if message:
        return message
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"proxy: {platform.describe(exc.errno)}"
    return f"proxy: {exc}"
