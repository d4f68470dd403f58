"""What to scan: the scan settings, the resolved hosts, and the numbering of (host, port) jobs."""

from __future__ import annotations

import array
import bisect
import random
from collections.abc import Sequence
from socket import AF_INET

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
                 close: str = "rst", adaptive: bool = False, host_timeout: float | None = None,
                 udp_payloads: dict | None = None, report_once: frozenset = frozenset()):
        if close not in ("rst", "fin"):
            raise ValueError(f"close must be 'rst' or 'fin', not {close!r}")
        self.udp, self.timeout, self.retries, self.concurrency = udp, timeout, retries, concurrency
        self.rate, self.banner, self.banner_wait, self.banner_bytes = rate, banner, banner_wait, banner_bytes
        self.udp_payload, self.close = udp_payload, close
        # adaptive: timeout is only the initial value; each host's comes from its round trips
        # (core.rtt). host_timeout: seconds after a host's first attempt when its ports left are
        # given up. udp_payloads: port -> datagram (core.udppayloads), else udp_payload.
        self.adaptive, self.host_timeout, self.udp_payloads = adaptive, host_timeout, udp_payloads or {}
        self.report = report  # results of these states are handed back; the others only counted
        self.report_once = report_once  # of those, only each host's first (results.Tally)

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


GROUP_JOBS = 1 << 14  # jobs per host group in random order (see Jobs): its results wait for the whole group
# With --host-timeout: every host of a group starts at once, so that a silent one's clock runs
# from the scan's start, not from a late group's (as in an nmap hostgroup); 254 hosts x 1000
# ports is one group. Not the default: small groups keep the kernel's and the scanner's working
# set small (a 234-host loopback scan took ~8% longer in 262,144-job groups) and print sooner.
HOST_TIMEOUT_GROUP_JOBS = 1 << 18


class Jobs:
    """hosts x ports, numbered host-major: job i is host i // len(ports), port i % len(ports).
    That numbering is the output order (per host, ports ascending).

    The attempt order is a second numbering: attempt `position` starts job index(position).
    Sequential: the same number. Randomised (probe's default, --no-randomize turns it off):
    the hosts are taken in groups of about GROUP_JOBS jobs, in order, as nmap's host groups;
    inside a group every round visits each host once, in a shuffled host order, and each host
    walks a shuffled port order from a starting point of its own: first its `first` ports (the
    most common ones, which nmap also moves near the beginning, so that a host that drops most
    ports answers early), then the others. So no host or port is swept in sequence, yet a
    group's hosts finish together and their output streams group by group.
    The mapping is arithmetic over a port permutation (len(ports)) and one group's host
    permutation: memory stays flat however many jobs there are.
    """

    def __init__(self, hosts: Sequence[Host], ports: Sequence[int], randomize: bool = False,
                 seed: int | None = None, group_jobs: int = GROUP_JOBS, first: Sequence[int] = ()):
        self.hosts, self.ports = hosts, ports
        self._starts: list[int] = []
        total = 0
        for host in hosts:
            self._starts.append(total)
            total += host.count
        self.host_count = total
        self.total = total * len(ports)
        nports = max(1, len(ports))
        self.randomize = randomize and self.total > 1
        # hosts per group: whole groups of about group_jobs jobs (at least one host)
        self.group_hosts = max(1, min(total, group_jobs // nports)) if self.randomize else max(1, total)
        self.group_size = self.group_hosts * nports  # jobs (and attempt positions) per full group
        if self.randomize:
            self.seed = random.getrandbits(64) if seed is None else seed
            # `first` (the most common ports, as nmap moves them near the beginning): each host
            # walks those of its ports first, then the rest, each part in a shuffled order
            rng = random.Random(self.seed)
            common = sorted(_indexes_of(ports, first))
            order = list(range(nports))
            for i in reversed(common):  # a few deletions (memmove in C), not a pass in Python
                del order[i]
            rng.shuffle(order)
            rng.shuffle(common)
            self._common, self._common2 = common, common + common
            self._port_order = order + order  # twice: index() looks up round + shift without a modulo
            self._group: tuple = (-1, -1, array.array("q"))
            self._groups: dict[int, tuple] = {}
        # target()'s answers for a group or two of hosts. In random order the host changes at every
        # attempt, so the launcher reads this dict itself and calls target() only when it misses;
        # it is cleared, never replaced, so that the launcher's reference stays good.
        self.targets: dict[int, tuple] = {}
        self._targets_limit = 2 * self.group_hosts + 16 if self.randomize else 16

    def target(self, host_index: int) -> tuple[int, str, int, str, bool]:
        """(family, ip text, scope id, printed label, is IPv4) of the host_index-th address of all hosts."""
        found = self.targets.get(host_index)
        if found is None:
            if len(self.targets) >= self._targets_limit:
                self.targets.clear()
            k = bisect.bisect_right(self._starts, host_index) - 1
            host = self.hosts[k]
            ip = host.address(host_index - self._starts[k])
            found = self.targets[host_index] = (host.family, ip, host.scope_id, host.label or ip,
                                                host.family == AF_INET)
        return found

    def index(self, position: int) -> int:
        """The job the position-th attempt starts (when randomised)."""
        start, _end, table = self.group_table(position)
        return table[position - start]

    def group_table(self, position: int) -> tuple[int, int, array.array]:
        """(first position, end, the job of every position in between) of the group holding
        `position`. The launcher indexes the table itself: a lookup per attempt instead of a
        method call and its arithmetic, which had cost random order 8-15% of a scan's wall time."""
        start, end, table = self._group
        if not start <= position < end:  # a new group, or a thread shard in a neighbouring one
            group = position // self.group_size
            found = self._groups.get(group)
            if found is None:
                if len(self._groups) >= 4:  # shards stay within a group or two of each other
                    self._groups = {}
                found = self._groups[group] = self._make_table(group)
            self._group = found
            return found
        return self._group

    def _make_table(self, group: int) -> tuple[int, int, array.array]:
        start, end, count, offsets, shifts = self._make_group(group)
        order = self._port_order
        table = array.array("q", [0]) * (end - start)  # filled in place: no list of ints, no bytes copy
        slots = len(offsets)
        common, ncommon = self._common2, len(self._common)
        nrest = len(self.ports) - ncommon
        for slot, (offset, shift) in enumerate(zip(offsets, shifts)):
            walk = order[shift % nrest:shift % nrest + nrest] if nrest else []
            if ncommon:
                walk = common[shift % ncommon:shift % ncommon + ncommon] + walk
            table[slot::slots] = array.array("q", [offset + job for job in walk])
        return start, end, table

    def floor(self, position: int) -> int:
        """The lowest job index that attempt `position` or a later one can start: every job
        below it was started by an earlier attempt (the scanner's watermark rests on this)."""
        if not self.randomize or position >= self.total:
            return min(position, self.total)
        return position - position % self.group_size

    def _make_group(self, group: int) -> tuple:
        """(first position, end, hosts, job offset per slot, port start per slot) of a group:
        the same in every shard (thread or forked process), from the seed and the group number."""
        nports = len(self.ports)
        first_host = group * self.group_hosts
        count = min(self.group_hosts, self.host_count - first_host)
        rng = random.Random(self.seed + group + 1)
        hosts = list(range(first_host, first_host + count))
        rng.shuffle(hosts)
        offsets = tuple(host * nports for host in hosts)
        shifts = tuple(rng.randrange(nports) for _ in range(count))
        start = first_host * nports
        return start, start + count * nports, count, offsets, shifts


def _indexes_of(ports: Sequence[int], wanted: Sequence[int]) -> set[int]:
    """The indexes in `ports` (sorted, as probe's port lists are) of the port numbers in `wanted`."""
    found = set()
    for port in wanted:
        i = bisect.bisect_left(ports, port)
        if i < len(ports) and ports[i] == port:
            found.add(i)
    return found
