"""Address sets for --allow/--deny: one meaning in every address form.

A dual-stack listener sees an IPv4 client as ::ffff:a.b.c.d; an IPv4 listener sees it as
a.b.c.d. Comparing the raw forms let `--deny ::ffff:127.0.0.2/128` miss 127.0.0.2 (and the
reverse). So both the rules and the peer are canonicalised before comparing:

- an IPv4-mapped address (::ffff:a.b.c.d) is its IPv4 address;
- an IPv6 network inside the mapped range ::ffff:0:0/96 is its IPv4 network
  (::ffff:10.0.0.0/104 is 10.0.0.0/8; ::ffff:0:0/96 is 0.0.0.0/0);
- any other IPv6 network names IPv6 clients only, as in ncat, whose IPv4 clients never arrive
  in IPv6 form: `::/0` is every IPv6 client, `0.0.0.0/0` every IPv4 client.

Entries are addresses, CIDR blocks or host names (resolved once, through the `resolve` function
the caller passes: this module does no I/O), comma-separated as ncat takes them. A scope
(`fe80::1%eth0`) is ignored for matching.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from sockdiag.core.errors import SockdiagError, UsageError
from sockdiag.core.portspec import host_syntax_error, unbracket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def canonical_address(text: str) -> IPAddress | None:
    """The address a peer string stands for (mapped -> IPv4, scope dropped), or None if not one."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def canonical_network(network: IPNetwork) -> IPNetwork:
    """An IPv6 network inside ::ffff:0:0/96 as the IPv4 network it stands for; others unchanged."""
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        first = network.network_address.ipv4_mapped
        assert first is not None
        return ipaddress.IPv4Network((first, network.prefixlen - 96))
    return network


def _literal(text: str) -> IPNetwork | None:
    body = unbracket(text)
    if "/" in body:
        address, _, prefix = body.partition("/")
        body = address.split("%", 1)[0] + "/" + prefix
    else:
        body = body.split("%", 1)[0]
    try:
        return ipaddress.ip_network(body, strict=False)
    except ValueError:
        return None


def split_entries(values: Iterable[str]) -> list[str]:
    """Option values and file lines -> entries: comma lists split, `#` comments and blanks dropped."""
    out = []
    for value in values:
        for line in value.splitlines() or [value]:
            line = line.split("#", 1)[0]
            out += [part.strip() for part in line.split(",") if part.strip()]
    return out


class AddressSet:
    """Canonical IPv4 and IPv6 networks; `host in aset` for a peer address string."""

    def __init__(self, networks: Iterable[IPNetwork] = ()):
        canon = [canonical_network(net) for net in networks]
        self.v4 = [net for net in canon if net.version == 4]
        self.v6 = [net for net in canon if net.version == 6]

    def __bool__(self) -> bool:
        return bool(self.v4 or self.v6)

    def __contains__(self, host: object) -> bool:
        address = canonical_address(host) if isinstance(host, str) else None
        if address is None:
            return False
        nets = self.v4 if address.version == 4 else self.v6
        return any(address in net for net in nets)

    @classmethod
    def parse(cls, option: str, entries: Iterable[str],
              resolve: Callable[[str], list[str]] | None = None) -> "AddressSet":
        """Entries -> a set. A name goes through `resolve(name) -> [address, ...]` (every address
        it has, both families); without `resolve`, or when it finds nothing, that is an error."""
        networks: list[IPNetwork] = []
        for text in entries:
            literal = _literal(text)
            if literal is not None:
                networks.append(literal)
                continue
            problem = host_syntax_error(text)
            if problem is not None or "/" in text or resolve is None:
                raise UsageError(f"{option} {text!r}: not an address, CIDR block or host name "
                                 "(e.g. 10.0.0.0/8, ::1, db.internal)")
            addresses = resolve(text)
            if not addresses:
                raise SockdiagError(f"{option} {text!r}: the name has no IPv4 or IPv6 address")
            for address in addresses:
                networks.append(ipaddress.ip_network(address.split("%", 1)[0]))
        return cls(networks)
