"""PURE: the client side of SOCKS5 (RFC 1928, username/password RFC 1929), SOCKS4a and HTTP
CONNECT (RFC 9110 9.3.6). Requests are encoded, replies parsed incrementally; no sockets here.

A handshake is a small state machine (h11's "bring your own I/O"): `start()` gives the first
bytes to send, `receive(data)` takes reply bytes and gives what to send next, until `done`.
`wants(available)` says how many of the bytes waiting on the socket belong to the handshake, so
net.proxy can read them with MSG_PEEK and then consume exactly those: nothing of the tunnelled
stream that follows (an HTTP proxy's 200 and the target's first bytes in one segment) is read.

Errors: ProxyRequestError (the request cannot be encoded: a name over 255 bytes, IPv6 on SOCKS4),
ProxyReplyError (a malformed reply) and ProxyRefused (a well-formed refusal, with its reason).
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass

from sockdiag.core.portspec import unbracket

KINDS = ("5", "4", "connect")
DEFAULT_PORTS = {"5": 1080, "4": 1080, "connect": 3128}  # as OpenBSD nc
LABELS = {"5": "socks5", "4": "socks4", "connect": "http"}

MAX_HEAD = 64 * 1024  # an HTTP response head longer than this is no CONNECT reply

SOCKS5_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused by destination host",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}
SOCKS4_REPLIES = {
    91: "request rejected or failed",
    92: "request rejected: the SOCKS server cannot reach the client's identd",
    93: "request rejected: identd reports a different user id",
}
_HTTP_PHRASES = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
                 407: "Proxy Authentication Required", 500: "Internal Server Error", 502: "Bad Gateway",
                 503: "Service Unavailable", 504: "Gateway Timeout"}


class ProxyError(Exception):
    """Base of this module's errors: a one-line `message`."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ProxyRequestError(ProxyError):
    """The request cannot be expressed in this protocol (a usage problem, not the proxy's)."""


class ProxyReplyError(ProxyError):
    """The proxy's reply is malformed or not of this protocol."""


class ProxyRefused(ProxyError):
    """The proxy answered in form and said no; `message` is its reason."""


# --- requests -----------------------------------------------------------------------------------

def target_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP literal `host` is ([v6] brackets and a %scope allowed), or None for a name."""
    body = unbracket(host)
    try:
        return ipaddress.ip_address(body.split("%", 1)[0])
    except ValueError:
        return None


def _name_bytes(host: str) -> bytes:
    """A host name as the proxy will resolve it: ASCII, or IDNA for an internationalised name."""
    try:
        data = host.encode("ascii") if host.isascii() else host.encode("idna")
    except UnicodeError:
        raise ProxyRequestError(f"not a valid host name: {host!r}") from None
    if not data or len(data) > 255 or any(b <= 32 or b == 127 for b in data):
        raise ProxyRequestError(f"not a host name a proxy can take: {host!r}")
    return data


def _port_bytes(port: int) -> bytes:
    if not 0 < port < 65536:
        raise ProxyRequestError(f"port {port} is out of range 1-65535")
    return port.to_bytes(2, "big")


def socks5_greeting(with_auth: bool) -> bytes:
    """VER 5 and the methods offered: no authentication, plus username/password (2) with auth."""
    return b"\x05\x02\x00\x02" if with_auth else b"\x05\x01\x00"


def socks5_userpass(user: str, password: str) -> bytes:
    """RFC 1929: VER 1, ULEN, UNAME, PLEN, PASSWD (UTF-8; a user of 1-255 and a password of at most
    255 bytes; an empty password is sent as PLEN 0, which servers accept)."""
    name, secret = user.encode("utf-8"), password.encode("utf-8")
    if not 1 <= len(name) <= 255 or len(secret) > 255:
        raise ProxyRequestError("SOCKS5 user and password are 1-255 and 0-255 bytes long")
    return bytes([1, len(name)]) + name + bytes([len(secret)]) + secret


def socks5_connect(host: str, port: int) -> bytes:
    """CONNECT: an IP literal as ATYP 1/4, anything else as a domain name (ATYP 3) that the
    proxy resolves: no local lookup of the target."""
    address = target_address(host)
    if address is None:
        name = _name_bytes(host)
        where = b"\x03" + bytes([len(name)]) + name
    elif address.version == 4:
        where = b"\x01" + address.packed
    else:
        where = b"\x04" + address.packed
    return b"\x05\x01\x00" + where + _port_bytes(port)


def socks4a_connect(host: str, port: int, userid: str = "") -> bytes:
    """SOCKS4 CONNECT with an IPv4 literal; SOCKS4a (DSTIP 0.0.0.1 + the name) for a name."""
    ident = userid.encode("utf-8")
    if b"\x00" in ident or len(ident) > 255:
        raise ProxyRequestError("a SOCKS4 user id has no NUL and at most 255 bytes")
    address = target_address(host)
    if address is not None and address.version == 6:
        raise ProxyRequestError(f"SOCKS4 cannot carry the IPv6 address {host} (use -X 5 or -X connect)")
    head = b"\x04\x01" + _port_bytes(port)
    if address is not None:
        return head + address.packed + ident + b"\x00"
    return head + b"\x00\x00\x00\x01" + ident + b"\x00" + _name_bytes(host) + b"\x00"


def http_authority(host: str, port: int) -> str:
    """host:port as a CONNECT request target: [v6]:port for an IPv6 literal."""
    address = target_address(host)
    if address is not None:
        text = str(address)
        return f"[{text}]:{port}" if address.version == 6 else f"{text}:{port}"
    return f"{_name_bytes(host).decode('ascii')}:{port}"


def http_connect(host: str, port: int, auth: tuple[str, str] | None = None) -> bytes:
    """CONNECT authority HTTP/1.1, Host, and Proxy-Authorization: Basic with `auth`."""
    _port_bytes(port)
    authority = http_authority(host, port)
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if auth is not None:
        user, password = auth
        if any(ch in "\r\n\x00" for ch in user + password):
            raise ProxyRequestError("proxy credentials cannot hold CR, LF or NUL")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        lines.append(f"Proxy-Authorization: Basic {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


# --- replies: incremental readers ---------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    """A parsed reply. `ok` False is a refusal with `reason`; `bound` is the SOCKS BND address,
    `status` and `headers` the HTTP response's."""

    ok: bool
    code: int
    reason: str = ""
    bound: tuple[str, int] | None = None
    headers: tuple[tuple[str, str], ...] = ()


class _Reader:
    """Bytes in, one Reply out. `_scan(buf)` returns (Reply, length) once `buf` holds a whole
    reply, else (None, the smallest total length that could complete it); it raises
    ProxyReplyError as soon as a prefix of `buf` is malformed, so any split gives the same result."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._reply: Reply | None = None
        self._total = 1
        self.leftover = b""  # bytes fed past the end of the reply (they belong to the stream)

    @property
    def done(self) -> bool:
        return self._reply is not None

    @property
    def reply(self) -> Reply:
        if self._reply is None:
            raise ProxyReplyError("reply incomplete")
        return self._reply

    def needed(self) -> int:
        """How many more bytes at least before the reply can be complete (0: it is)."""
        return 0 if self.done else max(1, self._total - len(self._buf))

    def wants(self, available: bytes) -> int:
        """How many of `available` (bytes waiting on the socket) to consume: never past the end."""
        return min(len(available), self.needed())

    def feed(self, data: bytes) -> None:
        if self.done:
            self.leftover += bytes(data)
            return
        self._buf += data
        reply, size = self._scan(bytes(self._buf))
        if reply is None:
            self._total = size
            return
        self._reply = reply
        self.leftover = bytes(self._buf[size:])
        del self._buf[size:]

    def _scan(self, buf: bytes) -> tuple[Reply | None, int]:
        raise NotImplementedError


class Socks5MethodReader(_Reader):
    """The server's choice of method: VER 5, METHOD (0xFF: none acceptable)."""

    def _scan(self, buf):
        if buf[:1] and buf[0] != 5:
            raise ProxyReplyError(f"not a SOCKS5 reply (version {buf[0]})")
        if len(buf) < 2:
            return None, 2
        if buf[1] == 0xFF:
            return Reply(False, 0xFF, "no acceptable authentication method (SOCKS5 method 0xff)"), 2
        return Reply(True, buf[1]), 2


class Socks5AuthReader(_Reader):
    """RFC 1929 status: VER 1, STATUS (0 success). Some servers answer VER 5: accepted."""

    def _scan(self, buf):
        if buf[:1] and buf[0] not in (1, 5):
            raise ProxyReplyError(f"not a SOCKS5 authentication reply (version {buf[0]})")
        if len(buf) < 2:
            return None, 2
        if buf[1] != 0:
            return Reply(False, buf[1], f"authentication failed (SOCKS5 status {buf[1]})"), 2
        return Reply(True, 0), 2


_ADDRESS_SIZES = {1: 4, 4: 16}


class Socks5ReplyReader(_Reader):
    """VER 5, REP, RSV, ATYP, BND.ADDR, BND.PORT. A refusal is complete at REP: the rest is not
    needed (and some servers close after it)."""

    def _scan(self, buf):
        if buf[:1] and buf[0] != 5:
            raise ProxyReplyError(f"not a SOCKS5 reply (version {buf[0]})")
        if len(buf) < 2:
            return None, 2
        code = buf[1]
        if code != 0:
            reason = SOCKS5_REPLIES.get(code, "unknown failure")
            return Reply(False, code, f"{reason} (SOCKS5 reply {code})"), 2
        if len(buf) < 4:
            return None, 4
        atyp = buf[3]
        if atyp in _ADDRESS_SIZES:
            size = 4 + _ADDRESS_SIZES[atyp] + 2
            if len(buf) < size:
                return None, size
            host = str(ipaddress.ip_address(buf[4:size - 2]))
        elif atyp == 3:
            if len(buf) < 5:
                return None, 5
            size = 5 + buf[4] + 2
            if len(buf) < size:
                return None, size
            host = buf[5:size - 2].decode("ascii", "replace")
        else:
            raise ProxyReplyError(f"SOCKS5 reply with unknown address type {atyp}")
        return Reply(True, 0, bound=(host, int.from_bytes(buf[size - 2:size], "big"))), size


class Socks4ReplyReader(_Reader):
    """VN 0, CD (90 granted), DSTPORT, DSTIP: 8 bytes. A refusal is complete at CD. Some servers
    answer VN 4: accepted, as curl and nc do."""

    def _scan(self, buf):
        if buf[:1] and buf[0] not in (0, 4):
            raise ProxyReplyError(f"not a SOCKS4 reply (version {buf[0]})")
        if len(buf) < 2:
            return None, 2
        code = buf[1]
        if code != 90:
            reason = SOCKS4_REPLIES.get(code, "unknown reply")
            return Reply(False, code, f"{reason} (SOCKS4 {code})"), 2
        if len(buf) < 8:
            return None, 8
        host = str(ipaddress.IPv4Address(buf[4:8]))
        return Reply(True, 90, bound=(host, int.from_bytes(buf[2:4], "big"))), 8


_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) +(\d{3})(?: (.*))?")


def _printable(data: bytes, limit: int = 80) -> str:
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in data.decode("latin-1")).strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _head_end(buf: bytes, start: int = 0) -> int | None:
    """The end of the first empty line (CRLF CRLF, or bare LF LF as lenient parsers take it)."""
    at = buf.find(b"\n", start)
    while at != -1:
        if buf[at + 1:at + 2] == b"\n":
            return at + 2
        if buf[at + 1:at + 3] == b"\r\n":
            return at + 3
        at = buf.find(b"\n", at + 1)
    return None


class HttpConnectReader(_Reader):
    """The response to CONNECT: a status line and headers up to the empty line. A 2xx is the
    tunnel; anything else is the refusal `HTTP 407 Proxy Authentication Required`."""

    def wants(self, available: bytes) -> int:
        if self.done:
            return 0
        tail = bytes(self._buf[-2:])
        end = _head_end(tail + bytes(available))
        taken = len(available) if end is None else end - len(tail)
        return max(1, min(taken, len(available))) if available else 0

    def needed(self) -> int:
        if self.done:
            return 0
        buf = bytes(self._buf)
        if buf.endswith((b"\n\r", b"\n")):
            return 1
        return 2

    def _scan(self, buf):
        for index, byte in enumerate(buf[:5]):
            if byte != b"HTTP/"[index]:  # reported by the prefix only: the same for any split
                raise ProxyReplyError(f"not an HTTP response (it starts {_printable(buf[:index + 1])!r})")
        end = _head_end(buf)
        if (len(buf) if end is None else end) > MAX_HEAD:
            raise ProxyReplyError(f"HTTP response head longer than {MAX_HEAD} bytes")
        if end is None:
            return None, len(buf) + 1
        lines = buf[:end].split(b"\n")
        status = _STATUS_LINE.fullmatch(lines[0].rstrip(b"\r"))
        if status is None:
            raise ProxyReplyError(f"bad HTTP status line: {_printable(lines[0])!r}")
        headers = []
        for raw in lines[1:]:
            line = raw.rstrip(b"\r")
            if not line:
                continue
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise ProxyReplyError(f"bad HTTP header line: {_printable(line)!r}")
            headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        code = int(status.group(3))
        phrase = _printable(status.group(4) or b"") or _HTTP_PHRASES.get(code, "")
        reason = f"HTTP {code} {phrase}".rstrip()
        return Reply(200 <= code < 300, code, reason, headers=tuple(headers)), end


# --- handshakes: the whole client exchange ------------------------------------------------------

class Handshake:
    """One proxy exchange: start() -> bytes to send; then, until `done`, receive(bytes) -> bytes
    to send next (may be empty). Raises ProxyRefused / ProxyReplyError (/ ProxyRequestError from
    the constructor). `reply`: the final reply once done; `leftover`: bytes received past it.
    The single-message protocols (SOCKS4, CONNECT) need only their request and reader."""

    def __init__(self, request: bytes, reader: type[_Reader]) -> None:
        self.done = False
        self.reply: Reply | None = None
        self.leftover = b""
        self._request, self._reader_type = request, reader
        self._reader = reader()

    def start(self) -> bytes:
        self._reader = self._reader_type()
        return self._request

    def wants(self, available: bytes) -> int:
        return 0 if self.done else self._reader.wants(available)

    def needed(self) -> int:
        return 0 if self.done else self._reader.needed()

    def receive(self, data: bytes) -> bytes:
        if self.done:
            self.leftover += bytes(data)
            return b""
        self._reader.feed(data)
        if not self._reader.done:
            return b""
        reply, rest = self._reader.reply, self._reader.leftover
        if not reply.ok:
            raise ProxyRefused(reply.reason)
        out = self._next(reply)
        if self.done:
            self.leftover = rest
        elif rest:
            out += self.receive(rest)
        return out

    def _next(self, reply: Reply) -> bytes:
        self.done, self.reply = True, reply
        return b""


class Socks5Handshake(Handshake):
    """Greeting -> method choice -> (RFC 1929 user/password) -> CONNECT -> reply."""

    def __init__(self, host: str, port: int, auth: tuple[str, str] | None = None):
        super().__init__(socks5_connect(host, port), Socks5MethodReader)  # encoding errors: before sending
        self._auth = auth
        self._login = socks5_userpass(*auth) if auth is not None else b""
        self._stage = "method"

    def start(self) -> bytes:
        self._stage, self._reader = "method", Socks5MethodReader()
        return socks5_greeting(self._auth is not None)

    def _next(self, reply: Reply) -> bytes:
        if self._stage == "method":
            if reply.code == 0:
                return self._send_request()
            if reply.code == 2 and self._auth is not None:
                self._stage, self._reader = "auth", Socks5AuthReader()
                return self._login
            raise ProxyReplyError(f"SOCKS5 server chose method {reply.code:#04x}, which was not offered")
        if self._stage == "auth":
            return self._send_request()
        return super()._next(reply)

    def _send_request(self) -> bytes:
        self._stage, self._reader = "connect", Socks5ReplyReader()
        return self._request


class Socks4Handshake(Handshake):
    """SOCKS4 (IPv4 literal) or SOCKS4a (a name): one request, one 8-byte reply."""

    def __init__(self, host: str, port: int, userid: str = ""):
        super().__init__(socks4a_connect(host, port, userid), Socks4ReplyReader)


class HttpConnectHandshake(Handshake):
    """CONNECT host:port HTTP/1.1 -> a 2xx head; the tunnel starts right after the empty line."""

    def __init__(self, host: str, port: int, auth: tuple[str, str] | None = None):
        super().__init__(http_connect(host, port, auth), HttpConnectReader)


def handshake(kind: str, host: str, port: int, auth: tuple[str, str] | None = None) -> Handshake:
    """The handshake for -X `kind` ("5", "4", "connect"). SOCKS4 sends auth's user as its user id
    and has no password: a non-empty one is a ProxyRequestError."""
    if kind == "5":
        return Socks5Handshake(host, port, auth)
    if kind == "4":
        if auth is not None and auth[1]:
            raise ProxyRequestError("SOCKS4 sends a user id and no password: give --proxy-auth USER")
        return Socks4Handshake(host, port, auth[0] if auth is not None else "")
    if kind == "connect":
        return HttpConnectHandshake(host, port, auth)
    raise ProxyRequestError(f"unknown proxy type {kind!r} (5, 4 or connect)")
