"""PURE: port specs ("22,80-90,https", "-") and host:port parsing/formatting. No sockets here.

Service names are resolved through an injected `service_port(name) -> int | None` callable
(the CLI passes platform.service_port), so this module stays free of I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from sockdiag.core.errors import UsageError

MIN_PORT, MAX_PORT = 1, 65535
ServiceLookup = Callable[[str], "int | None"]


class PortSpecError(UsageError):
    """A port, port list or host:port that cannot be parsed (exit 2)."""


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '¹' and '٣', which int() rejects or misreads."""
    return text.isascii() and text.isdigit()


def parse_port(text: str, service_port: ServiceLookup | None = None, *, allow_zero: bool = False) -> int:
    """One port: a number 1-65535 (0 too with allow_zero) or a service name."""
    item = text.strip()
    if not item:
        raise PortSpecError("empty port")
    if _digits(item):
        port = int(item)
        low = 0 if allow_zero else MIN_PORT
        if not low <= port <= MAX_PORT:
            raise PortSpecError(f"port {item} is out of range {low}-{MAX_PORT}")
        return port
    if not item.isascii() or not item.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise PortSpecError(f"bad port {item!r}: not a number or service name")
    port = service_port(item) if service_port is not None else None
    if port is None:
        raise PortSpecError(f"unknown port or service name {item!r}")
    return port


def _parse_bound(text: str, default: int, item: str) -> int:
    text = text.strip()
    if text == "":
        return default
    if not _digits(text):
        raise PortSpecError(f"bad port range {item!r}: {text!r} is not a number")
    port = int(text)
    if not MIN_PORT <= port <= MAX_PORT:
        raise PortSpecError(f"port {text} in {item!r} is out of range {MIN_PORT}-{MAX_PORT}")
    return port


def parse_ports(spec: str, service_port: ServiceLookup | None = None) -> list[int]:
    """A port list: '22,80-90,https', '-' (all), '-1024' / '60000-' (open ranges, as nmap).

    Returns the ports sorted and without duplicates; raises PortSpecError naming the bad part.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise PortSpecError("empty port list")
    ports: set[int] = set()
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            raise PortSpecError(f"empty item in port list {spec!r}")
        if _digits(item[0]) or item[0] == "-":
            if "-" in item:
                low_text, _, high_text = item.partition("-")
                low = _parse_bound(low_text, MIN_PORT, item)
                high = _parse_bound(high_text, MAX_PORT, item)
                if low > high:
                    raise PortSpecError(f"port range {item!r} is reversed (start > end)")
                ports.update(range(low, high + 1))
                continue
        ports.add(parse_port(item, service_port))
    return sorted(ports)


def parse_services(text: str, proto: str = "tcp") -> dict[int, str]:
    """The text of a services(5) file -> {port: first service name} for `proto`, as
    getservbyport() answers (the first line naming a port wins)."""
    names: dict[int, str] = {}
    for line in text.splitlines():
        fields = line.partition("#")[0].split()
        if len(fields) < 2:
            continue
        port_text, _, line_proto = fields[1].partition("/")
        if line_proto == proto and _digits(port_text):
            names.setdefault(int(port_text), fields[0])
    return names


def format_ranges(ports: Iterable[int]) -> str:
    """The compact form of a port collection: [1,2,3,5] -> '1-3,5'."""
    out: list[str] = []
    run_start = prev = None
    for port in sorted(set(ports)):
        if prev is not None and port == prev + 1:
            prev = port
            continue
        if run_start is not None:
            out.append(str(run_start) if run_start == prev else f"{run_start}-{prev}")
        run_start = prev = port
    if run_start is not None:
        out.append(str(run_start) if run_start == prev else f"{run_start}-{prev}")
    return ",".join(out)


def format_hostport(host: str | None, port: int | None) -> str:
    """'127.0.0.1:80', '[::1]:80' (brackets for IPv6), '-' parts for missing values."""
    host_text = host if host else "-"
    if host and ":" in host:
        host_text = f"[{host}]"
    if port is None:
        return host_text if host else "-"
    return f"{host_text}:{port}"


def unbracket(host: str) -> str:
    """'[::1]' -> '::1': the address inside an IPv6 literal's brackets; anything else as it is."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def parse_hostport(text: str, service_port: ServiceLookup | None = None) -> tuple[str, int]:
    """'host:port', '1.2.3.4:80' or '[::1]:80' -> (host, port). A bare IPv6 needs brackets."""
    item = text.strip()
    if item.startswith("["):
        host, sep, rest = item[1:].partition("]")
        if not sep or not rest.startswith(":") or not host:
            raise PortSpecError(f"bad address {item!r}: expected [IPv6]:PORT")
        return host, parse_port(rest[1:], service_port)
    host, sep, port_text = item.rpartition(":")
    if not sep or not host:
        raise PortSpecError(f"bad address {item!r}: expected HOST:PORT")
    if ":" in host:
        raise PortSpecError(f"bad address {item!r}: write an IPv6 address as [ADDR]:PORT")
    return host, parse_port(port_text, service_port)


def host_syntax_error(text: str) -> str | None:
    """Why `text` cannot be a host at all (a usage error), or None. Empty, blank, or dotted
    numbers that are no IPv4 address (999.1.1.1, 10.0.0): resolvers would take those for names."""
    if not text or not text.strip():
        return "empty host"
    if any(ch.isspace() or ord(ch) < 32 for ch in text):
        return f"not a host name or address: {text!r}"
    if ":" in text:  # only an IPv6 literal has colons: a name cannot
        try:
            ipaddress.IPv6Address(unbracket(text).split("%", 1)[0])
        except ValueError:
            return f"not a valid IPv6 address: {text!r}"
        return None
    labels = text.rstrip(".").split(".")
    if len(labels) > 1 and all(label.isascii() and label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            return f"not a valid IPv4 address: {text!r}"
    return None
