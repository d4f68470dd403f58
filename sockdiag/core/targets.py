"""PURE: probe targets ("host", "10.0.0.1,::1", "127.0.0.0/29", "127.0.1.1-254") -> TargetSpec
values. No sockets.

Names stay names here (probe.py resolves them); address literals, CIDR blocks and ranges are
checked with the ipaddress module, which does no I/O. A range is held as a core.spans
AddressRange, which answers like a network (version, num_addresses, indexing).
"""

from __future__ import annotations

import ipaddress

from sockdiag.core.errors import UsageError
from sockdiag.core.portspec import unbracket
from sockdiag.core.spans import AddressRange

MAX_BLOCK = 1 << 16  # a /16 of IPv4 (or a /112 of IPv6): the largest block without --force
MAX_FORCED_BLOCK = 1 << 24  # even with --force: a /8; beyond that a scan never ends
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TargetError(UsageError):
    """A target list that cannot be parsed (exit 2)."""


class TargetSpec:
    """One item of the target list: exactly one of name, address, network is set (network: an
    ipaddress network or, for a range, an AddressRange).
    (A plain class: dataclasses would import inspect, a visible share of probe's start-up.)"""

    __slots__ = ("text", "name", "address", "network")

    def __init__(self, text: str, name: str | None = None, address: IPAddress | None = None,
                 network: IPNetwork | None = None):
        self.text, self.name, self.address, self.network = text, name, address, network

    def __len__(self) -> int:
        return self.network.num_addresses if self.network is not None else 1

    def __repr__(self) -> str:
        return f"TargetSpec({self.text!r})"


def parse_targets(text: str, family: int | None = None, force: bool = False, limit: bool = True) -> list[TargetSpec]:
    """Parse a comma list of names, IPv4/IPv6 literals, CIDR blocks and ranges (127.0.1.1-254,
    127.0.1.1-127.0.1.9, as nmap writes them).

    `family` is 4, 6 or None (-4/-6): a literal of the other family is a usage error. Blocks
    larger than MAX_BLOCK addresses need `force`; limit=False (exclusions: nothing is scanned)
    lifts both size limits. Duplicates are dropped, order kept.
    """
    if not isinstance(text, str) or not text.strip():
        raise TargetError("empty target")
    specs: list[TargetSpec] = []
    seen: set[str] = set()
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise TargetError(f"empty item in target list {text!r}")
        spec = _parse_one(item, family, force, limit)
        key = str(spec.network or spec.address or spec.name.lower())
        if key not in seen:
            seen.add(key)
            specs.append(spec)
    return specs


def split_target_text(text: str) -> list[str]:
    """The items of a target file (-iL, --excludefile): separated by whitespace, newlines or
    commas, as nmap reads them; '#' starts a comment that runs to the end of the line."""
    items = []
    for line in text.splitlines():
        items.extend(word for word in line.partition("#")[0].replace(",", " ").split())
    return items


def _parse_one(item: str, family: int | None, force: bool, limit: bool = True) -> TargetSpec:
    if "/" in item:
        return _parse_block(item, family, force, limit)
    if "-" in item and (first := _range_start(item)) is not None:
        return _parse_range(item, first, family, force, limit)
    bare = unbracket(item)
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        address = None
    if address is not None:
        _check_family(item, address.version, family)
        return TargetSpec(item, address=address)
    if ":" in bare or bare != item:
        raise TargetError(f"bad address {item!r}: not an IPv6 address")
    if _looks_numeric(item):
        raise TargetError(f"bad address {item!r}: not an IPv4 address")
    if len(item) > 253 or not set(item) <= _NAME_CHARS or any(not label for label in item.rstrip(".").split(".")):
        raise TargetError(f"bad host name {item!r}")
    return TargetSpec(item, name=item)


def _looks_numeric(item: str) -> bool:
    """'10.0.0.300' or '1.2.3' is a mistyped address, not a host name (as nmap and ping judge)."""
    parts = item.split(".")
    return len(parts) > 1 and all(part.isdigit() for part in parts)


def _range_start(item: str) -> IPAddress | None:
    """The address before the '-' of a range, or None: then the item is a name (db-1.example)."""
    try:
        return ipaddress.ip_address(item.partition("-")[0])
    except ValueError:
        return None


def _parse_range(item: str, first: IPAddress, family: int | None, force: bool, limit: bool) -> TargetSpec:
    """'127.0.1.1-254' (the last octet, as nmap) or '127.0.1.1-127.0.1.9' (two addresses);
    `first` is the address before the '-' (_range_start)."""
    end_text = item.partition("-")[2]
    if first.version == 4 and end_text.isascii() and end_text.isdigit():
        if len(end_text) > 3 or int(end_text) > 255:
            raise TargetError(f"bad range {item!r}: the last octet runs to 255 at most")
        last = ipaddress.ip_address(int(first) - int(first) % 256 + int(end_text))
    else:
        try:
            last = ipaddress.ip_address(end_text)
        except ValueError:
            raise TargetError(f"bad range {item!r}: give 127.0.1.1-254 or 127.0.1.1-127.0.1.9") from None
    if last.version != first.version:
        raise TargetError(f"bad range {item!r}: both ends must be of one address family")
    if int(last) < int(first):
        raise TargetError(f"bad range {item!r}: it is reversed (start > end)")
    _check_family(item, first.version, family)
    span = AddressRange(first, last)
    if limit:
        _check_size(item, span.num_addresses, first.version, force)
    return TargetSpec(item, network=span)


def _check_size(item: str, size: int, version: int, force: bool) -> None:
    if size > MAX_FORCED_BLOCK:
        raise TargetError(f"network {item!r} has {size} addresses; at most {MAX_FORCED_BLOCK} even with --force")
    if size > MAX_BLOCK and not force:
        smallest = 32 - 16 if version == 4 else 128 - 16
        raise TargetError(f"network {item!r} has {size} addresses; the limit is /{smallest} ({MAX_BLOCK}) "
                          f"without --force")


def _parse_block(item: str, family: int | None, force: bool, limit: bool = True) -> TargetSpec:
    address_text, _, prefix = item.partition("/")
    if not (prefix.isascii() and prefix.isdigit()):
        raise TargetError(f"bad network {item!r}: the prefix length must be a number")
    try:
        network = ipaddress.ip_network(item, strict=False)
    except ValueError as exc:
        raise TargetError(f"bad network {item!r}: {exc}") from None
    _check_family(item, network.version, family)
    if limit:
        _check_size(item, network.num_addresses, network.version, force)
    return TargetSpec(item, network=network)


def _check_family(item: str, version: int, family: int | None) -> None:
    if family is not None and version != family:
        raise TargetError(f"{item!r} is an IPv{version} target but -{family} was given")


def block_address(spec: TargetSpec, index: int) -> IPAddress:
    """The index-th address of a target (0 for a single address); O(1) for blocks."""
    if spec.network is not None:
        return spec.network[index]
    if spec.address is not None and index == 0:
        return spec.address
    raise IndexError(index)

