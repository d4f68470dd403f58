"""forward -u: UDP. Each client address gets an upstream socket of its own (connected to the
target, so only the target's replies arrive on it), and the replies go back to that client from
the port it wrote to. A session ends after -i seconds without a datagram either way (default
60 s: a DNS or syslog client is long done by then, a game or VoIP flow sends more often).
Datagrams are never merged or split; one that cannot be sent now (a full buffer) is dropped,
as the network would drop it."""

from __future__ import annotations

import selectors
import socket

from sockdiag import platform
from sockdiag.forward.config import ForwardConfig
from sockdiag.forward.dump import TO_CLIENT, TO_UPSTREAM
from sockdiag.forward.report import ForwardReport
from sockdiag.net.access import format_peer, peer_parts

DEFAULT_IDLE = 60.0  # seconds a UDP session lives without traffic (-i changes it)
MAX_DATAGRAM = 65535
_BURST = 64  # datagrams per wake-up per socket
_NONBLOCK = platform.probe_socket_type_flags()
_READ = selectors.EVENT_READ


class Session:
    """One client address and its upstream socket."""

    __slots__ = ("client_addr", "client_name", "ident", "last_active", "listener", "started", "to_client",
                 "to_upstream", "upstream", "upstream_name")

    def __init__(self, ident: int, listener: socket.socket, client_addr, upstream: socket.socket,
                 upstream_name: str, now: float):
        self.ident, self.listener, self.client_addr = ident, listener, client_addr
        self.client_name = format_peer(client_addr)
        self.upstream, self.upstream_name = upstream, upstream_name
        self.started = self.last_active = now
        self.to_upstream = self.to_client = 0


class UdpForwarder:
    """Serve until interrupted; close() lets go of every socket."""

    def __init__(self, listeners: list[socket.socket], env, config: ForwardConfig):
        self.env, self.config, self.clock = env, config, env.clock
        self.idle = config.idle or DEFAULT_IDLE
        self.report = ForwardReport(env, udp=True)
        self.selector = selectors.DefaultSelector()
        self.sessions: dict[tuple, Session] = {}  # (listener fd, client address) -> session
        self.next_ident = 1
        self.buffer = memoryview(bytearray(MAX_DATAGRAM))
        for sock in listeners:
            sock.setblocking(False)
            self.selector.register(sock, _READ, None)
        self.tick = min(1.0, self.idle / 4)

    def run(self) -> int:
        next_sweep = self.clock() + self.tick
        dump = self.config.dump
        while True:
            events = self.selector.select(max(0.0, next_sweep - self.clock()))
            now = self.clock()
            for key, _mask in events:
                if key.data is None:
                    self._from_client(key.fileobj, now)
                else:
                    self._from_upstream(key.data, now)
            if dump is not None:
                dump.flush()
            if now >= next_sweep:
                self._expire(now)
                next_sweep = now + self.tick

    def _from_client(self, listener: socket.socket, now: float) -> None:
        for _ in range(_BURST):
            try:
                size, addr = listener.recvfrom_into(self.buffer)
            except BlockingIOError:
                return
            except OSError as exc:  # an ICMP error for an earlier reply: that client is gone
                self.env.info(f"receive: {_why(exc)}")
                continue
            session = self.sessions.get((listener.fileno(), addr))
            if session is None:
                session = self._open(listener, addr, now)
                if session is None:
                    continue
            data = self.buffer[:size]
            if self.config.dump is not None:
                self.config.dump.chunk(TO_UPSTREAM, session.ident, session.to_upstream, data)
            try:
                session.upstream.send(data)
            except BlockingIOError:
                continue  # a full send buffer: dropped, as the network would
            except OSError as exc:  # ECONNREFUSED: the target's port said no to an earlier datagram
                self.env.info(f"udp session {session.ident}: send to {session.upstream_name}: {_why(exc)}")
                continue
            session.to_upstream += size
            session.last_active = now

    def _from_upstream(self, session: Session, now: float) -> None:
        for _ in range(_BURST):
            try:
                size = session.upstream.recv_into(self.buffer)
            except BlockingIOError:
                return
            except OSError as exc:
                self.env.info(f"udp session {session.ident}: receive from {session.upstream_name}: {_why(exc)}")
                continue
            data = self.buffer[:size]
            if self.config.dump is not None:
                self.config.dump.chunk(TO_CLIENT, session.ident, session.to_client, data)
            try:
                session.listener.sendto(data, session.client_addr)
            except BlockingIOError:
                continue
            except OSError as exc:
                self.env.info(f"udp session {session.ident}: send to {session.client_name}: {_why(exc)}")
                continue
            session.to_client += size
            session.last_active = now

    def _open(self, listener: socket.socket, addr, now: float) -> Session | None:
        config = self.config
        name = format_peer(addr)
        if not config.acl.permits(peer_parts(addr)[0]):
            self.report.refused(name)
            return None
        if config.max_clients is not None and len(self.sessions) >= config.max_clients:
            self.report.too_many(name, config.max_clients)
            return None
        af, sockaddr = config.targets[0]  # UDP cannot tell an answering address from a silent one
        upstream = socket.socket(af, socket.SOCK_DGRAM | _NONBLOCK)
        try:
            if not _NONBLOCK:
                upstream.setblocking(False)
            upstream.connect(sockaddr)
        except OSError as exc:
            upstream.close()
            self.report.connect_failed(self.next_ident, name, f"connect {format_peer(sockaddr)}: {_why(exc)}")
            self.next_ident += 1
            return None
        session = Session(self.next_ident, listener, addr, upstream, format_peer(sockaddr), now)
        self.next_ident += 1
        self.sessions[(listener.fileno(), addr)] = session
        self.selector.register(upstream, _READ, session)
        self.report.opened(session)
        return session

    def _expire(self, now: float) -> None:
        for key, session in list(self.sessions.items()):
            if now - session.last_active >= self.idle:
                self._close(key, session, now, f"idle for {self.idle:g} s (-i)")

    def _close(self, key: tuple, session: Session, now: float, reason: str) -> None:
        del self.sessions[key]
        self.selector.unregister(session.upstream)
        session.upstream.close()
        self.report.closed(session, now, reason)

    def close(self) -> None:
        for session in self.sessions.values():
            session.upstream.close()
        self.sessions.clear()
        self.selector.close()


def _why(exc: OSError) -> str:
    """A failed send or receive in one line: the errno's description, else the exception's text."""
    return platform.describe(exc.errno) if exc.errno else str(exc)
