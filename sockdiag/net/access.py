"""Who may connect and how peers are named, for every command that accepts clients (listen,
forward): --allow/--deny (the rules are core.addrset; names and rule files are read here, once,
at start), and IPv4-mapped addresses shown as IPv4."""

from __future__ import annotations

import socket

from sockdiag import platform
from sockdiag.core.addrset import AddressSet, canonical_address, split_entries
from sockdiag.core.errors import SockdiagError, UsageError
from sockdiag.core.portspec import format_hostport
from sockdiag.platform.errnos import from_oserror


def unix_display(addr) -> str:
    """A unix socket address for people: the path, @name for an abstract name, or `unix-client`
    for an unnamed socket (a client that did not bind)."""
    if isinstance(addr, bytes):
        if addr.startswith(b"\0"):
            return "@" + addr[1:].decode("utf-8", "backslashreplace")
        addr = addr.decode("utf-8", "surrogateescape")
    if not addr:
        return "unix-client"
    if addr.startswith("\0"):
        return "@" + addr[1:]
    return addr


def peer_parts(sockaddr) -> tuple[str, int]:
    """(host, port) of a socket address; an IPv4-mapped IPv6 address is shown as IPv4; a unix
    socket address is (its path or @name, 0)."""
    if isinstance(sockaddr, (str, bytes)):
        return unix_display(sockaddr), 0
    host, port = sockaddr[0], sockaddr[1]
    if host.lower().startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, port


def format_peer(sockaddr) -> str:
    """127.0.0.1:51234, [::1]:51234, or a unix socket's path (@name, unix-client)."""
    if isinstance(sockaddr, (str, bytes)):
        return peer_parts(sockaddr)[0]
    return format_hostport(*peer_parts(sockaddr))


def is_loopback(host: str) -> bool:
    """Whether `host` (an address literal) is a loopback address: 127.0.0.0/8, ::1, ::ffff:127.x."""
    address = canonical_address(host)
    return address is not None and address.is_loopback


def resolve_all(name: str) -> list[str]:
    """Every address of a host name in an --allow/--deny rule, both families, resolved once."""
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SockdiagError(f"resolve {name}: {platform.describe_gaierror(exc)}") from None
    except (UnicodeError, ValueError):
        raise UsageError(f"not a valid host name: {name!r}") from None
    return sorted({info[4][0] for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)})


def _read_rules(option: str, path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [f.read()]
    except OSError as exc:
        raise from_oserror(f"{option} {path}", exc) from None


class AccessList:
    """--allow/--allowfile and --deny/--denyfile, as ncat has them: deny wins; once any allow rule
    is given (even an empty file), only the hosts it names pass. Rules and peers are compared in
    canonical form (core.addrset), so an IPv4 client matches the same rules whether it arrives
    as 127.0.0.2 or as ::ffff:127.0.0.2."""

    def __init__(self, allow: AddressSet, deny: AddressSet, allow_given: bool | None = None):
        self.allow, self.deny = allow, deny
        self.allow_given = bool(allow) if allow_given is None else allow_given

    @classmethod
    def parse(cls, allow: list[str], deny: list[str], allowfiles: list[str] = (), denyfiles: list[str] = (),
              resolve=resolve_all) -> AccessList:
        for option, values in (("--allow", allow), ("--deny", deny)):
            for value in values:
                if not split_entries([value]):
                    raise UsageError(f"{option}: empty value (give an address, CIDR block or host name)")
        allow_texts = split_entries(allow) + [e for path in allowfiles for e in split_entries(
            _read_rules("--allowfile", path))]
        deny_texts = split_entries(deny) + [e for path in denyfiles for e in split_entries(
            _read_rules("--denyfile", path))]
        return cls(AddressSet.parse("--allow", allow_texts, resolve),
                   AddressSet.parse("--deny", deny_texts, resolve),
                   allow_given=bool(allow or allowfiles))

    def permits(self, host: str) -> bool:
        if canonical_address(host) is None:  # not an IP peer (a unix socket): only rule-free
            return not self.allow_given
        if host in self.deny:
            return False
        return not self.allow_given or host in self.allow
