"""What to scan: the scan settings, the resolved hosts, and the numbering of (host, port) jobs."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from sockdiag.probe.results import OPEN


class ScanConfig:
    """How to scan: per-shard concurrency, per-attempt timeout, retries for silent ports, and how
    an open probe is closed (close: "rst", SO_LINGER 0 as nmap -sT, or "fin", a normal close).

    Plain classes here, not dataclasses: dataclasses imports inspect, ~10 ms of start-up in a
    command whose whole loopback scan of 1024 ports takes about as long.
    """

    def __init__(self, *, udp: bool = False, timeout: float = 1.0, retries: int = 0, concurrency: int = 1024,
                 rate: float | None = None, banner: bool = False, banner_wait: float = 1.0,
                 banner_bytes: int = 512, udp_payload: bytes = b"", report: frozenset = frozenset({OPEN}),
                 close: str = "rst"):
        if close not in ("rst", "fin"):
            raise ValueError(f"close must be 'rst' or 'fin', not {close!r}")
        self.udp, self.timeout, self.retries, self.concurrency = udp, timeout, retries, concurrency
        self.rate, self.banner, self.banner_wait, self.banner_bytes = rate, banner, banner_wait, banner_bytes
        self.udp_payload, self.close = udp_payload, close
        self.report = report  # results of these states are handed back; the others only counted

    def replace(self, **changes) -> "ScanConfig":
        return ScanConfig(**{**self.__dict__, **changes})


class Host:
    """A resolved target: `count` addresses (a network is indexed lazily, never listed)."""

    def __init__(self, family: int, addresses: Sequence, scope_id: int = 0, count: int = 0,
                 label: str | None = None):
        self.family = family
        self.addresses = addresses  # an ipaddress network, or a one-element list of address text
        self.scope_id = scope_id  # IPv6 zone (interface index) for link-local addresses
        self.count = count or len(addresses)
        self.label = label  # how a single address is printed: with its %zone

    def address(self, i: int) -> str:
        return str(self.addresses[i])

    def width(self) -> int:
        """Characters of the longest printed address (text column width). In a block the last
        address has every host bit set, so it is the longest; IPv6 may compress the first less."""
        if self.label is not None:
            return len(self.label)
        return max(len(self.address(0)), len(self.address(self.count - 1)))


class Jobs:
    """hosts x ports, numbered host-major: job i is host i // len(ports), port i % len(ports)."""

    def __init__(self, hosts: Sequence[Host], ports: Sequence[int]):
        self.hosts, self.ports = hosts, ports
        self._starts: list[int] = []
        total = 0
        for host in hosts:
            self._starts.append(total)
            total += host.count
        self.host_count = total
        self.total = total * len(ports)

    def target(self, host_index: int) -> tuple[int, str, int, str]:
        """(family, ip text, scope id, printed label) of the host_index-th address of all hosts."""
        k = bisect.bisect_right(self._starts, host_index) - 1
        host = self.hosts[k]
        ip = host.address(host_index - self._starts[k])
        return host.family, ip, host.scope_id, host.label or ip

