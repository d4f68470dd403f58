"""Loopback test peers for the proxy tests (no tests here): a SOCKS5 / SOCKS4a / HTTP CONNECT proxy
that records what each client asked for, and a target that greets and echoes. Threads, loopback
only: the proxy connects to loopback literals and to the names its `names` table maps, nothing else.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import threading
from dataclasses import dataclass, field

TIMEOUT = 20  # seconds: a peer still blocked after this is a failed test


@dataclass
class Request:
    """What a client asked the proxy for."""

    kind: str  # "socks5", "socks4", "socks4a", "http"
    host: str = ""
    port: int = 0
    atyp: int | None = None  # SOCKS5 address type: 1 IPv4, 3 name, 4 IPv6
    methods: bytes = b""  # SOCKS5 methods offered
    user: str | None = None
    password: str | None = None
    request_line: str = ""
    headers: dict[str, str] = field(default_factory=dict)


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError("client closed")
        data += chunk
    return data


def _recv_until(conn: socket.socket, terminator: bytes) -> bytes:
    data = b""
    while not data.endswith(terminator):
        chunk = conn.recv(1)
        if not chunk:
            raise EOFError("client closed")
        data += chunk
    return data


class _Threads:
    """A loopback listener served by one thread per client; everything closed by close()."""

    def __init__(self, family: int = socket.AF_INET) -> None:
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.clients: list[tuple] = []  # the address of each client accepted
        self._closed = False
        self._spawn(self._accept_loop)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, peer = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.clients.append(peer)
            conn.settimeout(TIMEOUT)
            self._track(conn)
            self._spawn(self._guarded, conn)

    def _guarded(self, conn: socket.socket) -> None:
        try:
            self.handle(conn)
        except (OSError, EOFError, ValueError):
            pass
        finally:
            conn.close()

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True
        try:  # wake accept()
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in threads:
            thread.join(TIMEOUT)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Target(_Threads):
    """Sends `banner` at once on each connection, then echoes until the client's EOF (or until
    `echo_limit` bytes, for peers that do not pass a half-close on), then closes."""

    def __init__(self, banner: bytes = b"", family: int = socket.AF_INET, echo_limit: int | None = None) -> None:
        self.banner, self.echo_limit = banner, echo_limit
        super().__init__(family)

    def handle(self, conn: socket.socket) -> None:
        if self.banner:
            conn.sendall(self.banner)
        echoed = 0
        while (self.echo_limit is None or echoed < self.echo_limit) and (data := conn.recv(65536)):
            conn.sendall(data)
            echoed += len(data)
        conn.shutdown(socket.SHUT_WR)


class Proxy(_Threads):
    """A SOCKS5 + SOCKS4/4a server (by the first byte), or an HTTP CONNECT proxy (kind="http").

    auth=(user, password): required (SOCKS5 method 2; HTTP Basic, else 407). refuse=N: answer every
    request with SOCKS5 REP N / SOCKS4 CD N / HTTP status N. reply=bytes: send these raw bytes as
    the answer to the first message and close. silent: read, never answer. glue: wait for the
    target's first bytes and send them in the same segment as the success reply.
    `names` maps target names to loopback addresses; other names are "host unreachable"."""

    def __init__(self, kind: str = "socks", *, auth: tuple[str, str] | None = None, refuse: int | None = None,
                 reply: bytes | None = None, silent: bool = False, glue: bool = False,
                 names: dict[str, str] | None = None, family: int = socket.AF_INET) -> None:
        self.kind, self.auth, self.refuse, self.reply = kind, auth, refuse, reply
        self.silent, self.glue, self.names = silent, glue, dict(names or {})
        self.requests: list[Request] = []
        super().__init__(family)

    # --- dispatch ---

    def handle(self, conn: socket.socket) -> None:
        if self.silent:
            while conn.recv(65536):
                pass
            return
        if self.kind == "http":
            self._http(conn)
            return
        first = _recv_exact(conn, 1)
        if self.reply is not None:
            _recv_exact(conn, _recv_exact(conn, 1)[0])  # the rest of the greeting: no RST on close
            self._answer_and_close(conn)
            return
        if first == b"\x05":
            self._socks5(conn)
        elif first == b"\x04":
            self._socks4(conn)

    def _answer_and_close(self, conn: socket.socket) -> None:
        """Send the raw `reply`, then FIN, and wait for the client to close first."""
        conn.sendall(self.reply)
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(65536):
            pass

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _target(self, host: str, port: int) -> socket.socket | None:
        """A connection to the target: loopback literals and mapped names only."""
        address = self.names.get(host, host)
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        if not ip.is_loopback:
            return None
        try:
            return self._track(socket.create_connection((str(ip), port), timeout=TIMEOUT))
        except OSError:
            return None

    # --- SOCKS5 ---

    def _socks5(self, conn: socket.socket) -> None:
        count = _recv_exact(conn, 1)[0]
        request = Request("socks5", methods=_recv_exact(conn, count))
        if self.auth is not None:
            if 2 not in request.methods:
                conn.sendall(b"\x05\xff")
                self._record(request)
                return
            conn.sendall(b"\x05\x02")
            _version, ulen = _recv_exact(conn, 2)
            request.user = _recv_exact(conn, ulen).decode()
            request.password = _recv_exact(conn, _recv_exact(conn, 1)[0]).decode()
            if (request.user, request.password) != self.auth:
                conn.sendall(b"\x01\x01")
                self._record(request)
                return
            conn.sendall(b"\x01\x00")
        else:
            conn.sendall(b"\x05\x00")
        _ver, _cmd, _rsv, atyp = _recv_exact(conn, 4)
        request.atyp = atyp
        if atyp == 1:
            request.host = str(ipaddress.IPv4Address(_recv_exact(conn, 4)))
        elif atyp == 4:
            request.host = str(ipaddress.IPv6Address(_recv_exact(conn, 16)))
        else:
            request.host = _recv_exact(conn, _recv_exact(conn, 1)[0]).decode()
        request.port = int.from_bytes(_recv_exact(conn, 2), "big")
        self._record(request)
        if self.refuse is not None:
            conn.sendall(bytes([5, self.refuse, 0, 1, 0, 0, 0, 0, 0, 0]))
            return
        upstream = self._target(request.host, request.port)
        if upstream is None:
            conn.sendall(bytes([5, 4, 0, 1, 0, 0, 0, 0, 0, 0]))
            return
        local = upstream.getsockname()
        bound = ipaddress.ip_address(local[0])
        atyp = b"\x01" if bound.version == 4 else b"\x04"
        self._tunnel(conn, upstream, b"\x05\x00\x00" + atyp + bound.packed + local[1].to_bytes(2, "big"))

    # --- SOCKS4 / 4a ---

    def _socks4(self, conn: socket.socket) -> None:
        _cmd = _recv_exact(conn, 1)
        port = int.from_bytes(_recv_exact(conn, 2), "big")
        ip = ipaddress.IPv4Address(_recv_exact(conn, 4))
        userid = _recv_until(conn, b"\x00")[:-1].decode()
        request = Request("socks4", port=port, user=userid, host=str(ip))
        if str(ip).startswith("0.0.0.") and str(ip) != "0.0.0.0":
            request.kind, request.host = "socks4a", _recv_until(conn, b"\x00")[:-1].decode()
        self._record(request)
        if self.refuse is not None:
            conn.sendall(bytes([0, self.refuse, 0, 0, 0, 0, 0, 0]))
            return
        upstream = self._target(request.host, request.port)
        if upstream is None:
            conn.sendall(bytes([0, 91, 0, 0, 0, 0, 0, 0]))
            return
        self._tunnel(conn, upstream, bytes([0, 90, 0, 0, 0, 0, 0, 0]))

    # --- HTTP CONNECT ---

    def _http(self, conn: socket.socket) -> None:
        head = _recv_until(conn, b"\r\n\r\n").decode("latin-1")
        if self.reply is not None:
            self._answer_and_close(conn)
            return
        line, *header_lines = head[:-4].split("\r\n")
        request = Request("http", request_line=line)
        for header in header_lines:
            name, _, value = header.partition(":")
            request.headers[name.strip().lower()] = value.strip()
        method, authority, _version = line.split(" ")
        host, _, port = authority.rpartition(":")
        request.host, request.port = host.strip("[]"), int(port)
        credentials = request.headers.get("proxy-authorization", "")
        if credentials.startswith("Basic "):
            request.user, _, request.password = base64.b64decode(credentials[6:]).decode().partition(":")
        self._record(request)
        if self.auth is not None and (request.user, request.password) != self.auth:
            conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                         b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
            return
        if self.refuse is not None:
            conn.sendall(f"HTTP/1.1 {self.refuse} Refused Here\r\nContent-Length: 0\r\n\r\n".encode())
            return
        upstream = self._target(request.host, request.port) if method == "CONNECT" else None
        if upstream is None:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self._tunnel(conn, upstream, b"HTTP/1.1 200 Connection established\r\nVia: test-proxy\r\n\r\n")

    # --- the tunnel ---

    def _tunnel(self, conn: socket.socket, upstream: socket.socket, success: bytes) -> None:
        upstream.settimeout(TIMEOUT)
        if self.glue:
            success += upstream.recv(65536)  # the target's greeting, in the reply's segment
        conn.sendall(success)
        back = threading.Thread(target=_pump, args=(upstream, conn), daemon=True)
        back.start()
        _pump(conn, upstream)
        back.join(TIMEOUT)  # the target's last bytes reach the client before conn closes
        upstream.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy until EOF, then half-close the sink (so the other direction still flows)."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass
