"""--banner's pure side: what to send a service that does not speak first, when a banner read
is complete, and how the bytes are shown (text: one escaped, cut line; JSON: exact).

SSH, SMTP, FTP and POP3 greet the client as soon as it connects: the scanner only reads. HTTP
and redis wait for a request, so on their ports the request goes out as soon as the handshake
completes (no NULL-probe silence first, as nmap waits for): a server that does greet first
still has its greeting first in the stream, and a scan of many web ports does not spend a
silence per port before asking.
"""

from __future__ import annotations

HTTP_PROBE = b"HEAD / HTTP/1.0\r\n\r\n"  # HTTP/1.0: the server closes after its header
REDIS_PROBE = b"PING\r\n"  # an inline command (redis protocol spec); the answer is +PONG
HTTP_PORTS = frozenset({80, 8000, 8008, 8080, 8888})
REDIS_PORTS = frozenset({6379})
TEXT_WIDTH = 60  # characters of banner in the text table


def probe_for(port: int, service: str | None = None) -> bytes:
    """The bytes to send once connected to `port` (its TCP service name, if known), or b''
    to only listen. https* ports speak TLS: a plain HEAD would only earn an alert."""
    service = service or ""
    if port == 443 or service.startswith("https"):
        return b""
    if port in HTTP_PORTS or service.startswith("http"):
        return HTTP_PROBE
    if port in REDIS_PORTS or service == "redis":
        return REDIS_PROBE
    return b""


def complete(data: bytes, probe: bytes = b"") -> bool:
    """Whether a banner read may stop before EOF, the byte limit or --banner-wait: after the
    first line, or for an HTTP answer after its whole header (it ends with an empty line)."""
    if probe == HTTP_PROBE:
        return b"\r\n\r\n" in data or b"\n\n" in data
    return b"\n" in data


def _units(data: bytes) -> list[str]:
    """Each byte as printable ASCII: itself, or \\\\ \\r \\n \\t \\xNN."""
    units = []
    for byte in data:
        if byte == 0x5C:
            units.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            units.append(chr(byte))
        elif byte in _NAMED:
            units.append(_NAMED[byte])
        else:
            units.append(f"\\x{byte:02x}")
    return units


_NAMED = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


def escape(data: bytes) -> str:
    """Bytes as one line of printable ASCII (escapes as in _units)."""
    return "".join(_units(data))


def _server_header(data: bytes) -> bytes | None:
    for line in data.split(b"\n")[1:]:
        name, sep, value = line.partition(b":")
        if not line.strip():
            return None
        if sep and name.strip().lower() == b"server":
            return value.strip()
    return None


def text(data: bytes | None, width: int = TEXT_WIDTH) -> str | None:
    """The banner as the text table shows it: its first line (an HTTP answer: the status line
    and its Server header), escaped, cut to `width` characters ending in '...'. None when
    nothing came."""
    if not data:
        return None
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    if first.startswith(b"HTTP/"):
        server = _server_header(data)
        if server:
            first += b" | Server: " + server
    units = _units(first)
    if sum(map(len, units)) <= width:
        return "".join(units)
    shown, used = [], 0
    for unit in units:
        if used + len(unit) > width - 3:
            break
        shown.append(unit)
        used += len(unit)
    return "".join(shown) + "..."


def fields(data: bytes | None) -> tuple[str | None, str | None]:
    """(banner, banner_b64) for JSON and CSV. The rule: bytes that are valid UTF-8 are the
    banner, whole and exact, and banner_b64 is null; other bytes give banner null and the exact
    bytes in base64. Both null when the service sent nothing."""
    if not data:
        return None, None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        import base64  # lazily: start-up time, for the rare binary banner

        return None, base64.b64encode(data).decode("ascii")
