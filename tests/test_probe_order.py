"""probe's attempt order: randomised by default (host groups, shuffled hosts and ports), sequential
with --no-randomize; the same open set and the same sorted output either way; flat memory."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import itertools
import random
import socket
import tracemalloc

import pytest

from sockdiag import platform
from sockdiag.core.spans import AddressRange
from sockdiag.probe.jobs import HOST_TIMEOUT_GROUP_JOBS
from sockdiag.probe.pool import Scanner
from sockdiag.probe.scanner import Host, Jobs, ScanConfig
from tests.conftest import run_main

LINUX = platform.SYSTEM == platform.LINUX
BASE = f"127.{random.randrange(100, 250)}.{random.randrange(1, 254)}."


def block(first: int, last: int) -> Host:
    a, b = ipaddress.ip_address(BASE + str(first)), ipaddress.ip_address(BASE + str(last))
    return Host(socket.AF_INET, AddressRange(a, b), count=last - first + 1)


def attempt_order(jobs: Jobs) -> list[int]:
    return [jobs.index(p) if jobs.randomize else p for p in range(jobs.total)]


# --- the mapping (pure arithmetic, no sockets) -------------------------------------------------------

@pytest.mark.parametrize("hosts, ports, group_jobs", [
    pytest.param(1, 1000, 1 << 16, id="one-host"),
    pytest.param(20, 7, 30, id="small-groups"),
    pytest.param(254, 10, 1 << 16, id="one-group"),
    pytest.param(13, 5, 1, id="one-host-groups"),
])
def test_random_order_is_a_permutation_that_differs(hosts, ports, group_jobs):
    jobs = Jobs([block(1, hosts)], list(range(1, ports + 1)), randomize=True, seed=1, group_jobs=group_jobs)
    order = attempt_order(jobs)
    assert sorted(order) == list(range(jobs.total))
    assert order != list(range(jobs.total))


def test_no_randomize_is_sequential():
    jobs = Jobs([block(1, 20)], [22, 80], randomize=False)
    assert not jobs.randomize and attempt_order(jobs) == list(range(40))
    assert [jobs.floor(p) for p in (0, 7, 40)] == [0, 7, 40]


def test_groups_are_worked_through_in_order():
    """Each group's attempts start only that group's jobs, and floor() is the group's first job:
    what the scanner's watermark (and so the streaming of output per host) relies on."""
    jobs = Jobs([block(1, 20)], list(range(1, 11)), randomize=True, seed=3, group_jobs=50)
    assert jobs.group_hosts == 5 and jobs.group_size == 50
    order = attempt_order(jobs)
    for g in range(4):
        chunk = order[g * 50:(g + 1) * 50]
        assert sorted(chunk) == list(range(g * 50, (g + 1) * 50))
        assert all(jobs.floor(p) == g * 50 for p in range(g * 50, (g + 1) * 50))


def test_hosts_and_ports_are_both_shuffled():
    """No sweep: consecutive attempts go to different hosts, and one host's ports come out of order."""
    nports = 100
    jobs = Jobs([block(1, 10)], list(range(1, nports + 1)), randomize=True, seed=5)
    order = attempt_order(jobs)
    hosts = [i // nports for i in order]
    assert all(a != b for a, b in itertools.pairwise(hosts))
    first_host = [i % nports for i in order if i // nports == 0]
    assert sorted(first_host) == list(range(nports)) and first_host != sorted(first_host)


def test_every_shard_computes_the_same_order():
    """Forked shards hold copies of Jobs: the order depends only on the seed."""
    one = Jobs([block(1, 30)], list(range(1, 50)), randomize=True, seed=11, group_jobs=200)
    two = Jobs([block(1, 30)], list(range(1, 50)), randomize=True, seed=11, group_jobs=200)
    positions = list(range(one.total))
    random.Random(0).shuffle(positions)  # asked in any order, as shards at different places do
    assert [one.index(p) for p in positions] == [two.index(p) for p in positions]


def test_host_timeout_groups_stay_flat_too():
    """--host-timeout's groups (every host of a 254 x 1000 scan at once): one table of 8 bytes a
    job, built without a second copy."""
    tracemalloc.start()
    try:
        jobs = Jobs([block(1, 254)], list(range(1, 1001)), randomize=True, seed=2,
                    group_jobs=HOST_TIMEOUT_GROUP_JOBS)
        seen = {jobs.index(p) for p in range(0, jobs.total, 97)}
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert jobs.group_hosts == 254 and len(seen) == len(range(0, jobs.total, 97))
    assert peak < (1 << 20) + 8 * jobs.total + len(seen) * 100


def test_memory_stays_flat_for_254_hosts_by_1000_ports():
    tracemalloc.start()
    try:
        jobs = Jobs([block(1, 254)], list(range(1, 1001)), randomize=True, seed=2)
        seen = {jobs.index(p) for p in range(0, jobs.total, 97)}  # every group, under tracemalloc's cost
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert jobs.total == 254_000 and len(seen) == len(range(0, jobs.total, 97))
    # a port permutation and one group's table (8 bytes a job): never a list of jobs
    assert peak < (1 << 20) + len(seen) * 100


# --- the scanner: attempt order observed, results compared -------------------------------------------

class Recorder:
    """A socket factory whose sockets log where they connect (the attempt order)."""

    def __init__(self):
        self.log: list[tuple[str, int]] = []
        log = self.log

        class LoggingSocket(socket.socket):
            connecting = False

            def connect_ex(self, address):
                err = super().connect_ex(address)
                # not a call that resets a reused refused socket, nor one that asks how a
                # pending connect went (Linux, see platform.probe_reuses_refused_sockets)
                if not self.connecting and err != errno.ECONNABORTED:
                    log.append(address[:2])
                self.connecting = err in (errno.EINPROGRESS, errno.EALREADY)
                return err

        self.factory = LoggingSocket


@contextlib.contextmanager
def listeners_on(hosts: list[str]):
    socks = []
    try:
        for host in hosts:
            s = socket.socket()
            socks.append(s)
            s.bind((host, 0))
            s.listen(16)
        yield [(host, s.getsockname()[1]) for host, s in zip(hosts, socks)]
    finally:
        for s in socks:
            s.close()


def scan(jobs: Jobs, factory, shards: int = 1) -> list[tuple]:
    scanner = Scanner(jobs, ScanConfig(timeout=2.0, concurrency=64), shards, socket_factory=factory, processes=False)
    scanner.start()
    while not scanner.wait(0.05):
        pass
    results = scanner.ready() + scanner.stop()
    scanner.check()
    return [(ip, port, state) for _, ip, port, state, *_ in results]


@pytest.mark.skipif(not LINUX, reason="listeners on 127.x.y.z other than 127.0.0.1 need Linux")
@pytest.mark.parametrize("shards", [1, 3])
def test_random_attempt_order_differs_and_finds_the_same_ports(shards):
    hosts = [BASE + str(n) for n in (2, 5, 6, 11)]
    with listeners_on(hosts) as opened:
        ports = sorted({port for _, port in opened} | set(range(1, 31)))
        recorded = {}
        results = {}
        for randomize in (False, True):
            recorder = Recorder()
            jobs = Jobs([block(1, 12)], ports, randomize=randomize, seed=9)
            results[randomize] = scan(jobs, recorder.factory, shards)
            recorded[randomize] = recorder.log
    expected = sorted(((ip, port, "open") for ip, port in opened), key=lambda r: (ipaddress.ip_address(r[0]), r[1]))
    assert results[True] == results[False] == expected  # the same open set, sorted the same way
    sequential = [(BASE + str(h), p) for h in range(1, 13) for p in ports]
    if shards == 1:
        assert recorded[False] == sequential
    assert sorted(recorded[True]) == sorted(sequential) and recorded[True] != recorded[False]


@pytest.mark.skipif(not LINUX, reason="listeners on 127.x.y.z other than 127.0.0.1 need Linux")
def test_cli_default_and_no_randomize_print_the_same():
    hosts = [BASE + str(n) for n in (1, 9, 20)]
    with listeners_on(hosts) as opened:
        spec = ",".join(str(port) for _, port in opened) + ",1-50"
        r = run_main(["probe", "-a", f"{BASE}1-20", spec])
        s = run_main(["probe", "-a", "--no-randomize", f"{BASE}1-20", spec])
    assert r.status == s.status == 0
    assert [line.split()[:4] for line in r.text.splitlines()] == [line.split()[:4] for line in s.text.splitlines()]
    assert sum(" open " in line for line in r.text.splitlines()) == 3


def test_the_most_common_ports_come_first_on_every_host():
    """As nmap moves commonly open ports near the beginning: each host's first attempts are its
    `first` ports (in a shuffled order of its own), then the rest; still a permutation."""
    first = [80, 443, 22, 3389, 99999]  # 3389 and 99999 are not scanned here
    jobs = Jobs([block(1, 6)], list(range(1, 1001)), randomize=True, seed=7, first=first)
    order = [jobs.index(p) for p in range(jobs.total)]
    assert sorted(order) == list(range(jobs.total))
    walks = {}
    for job in order:
        walks.setdefault(job // 1000, []).append(jobs.ports[job % 1000])
    assert len(walks) == 6
    for walk in walks.values():
        assert sorted(walk[:3]) == [22, 80, 443] and len(set(walk)) == 1000
    assert len({tuple(walk[:3]) for walk in walks.values()}) > 1  # not the same sweep on every host


def test_common_ports_reads_the_head_of_the_shipped_list():
    from sockdiag.probe.topports import common_ports, read_top_ports

    assert common_ports("tcp", 10) == read_top_ports("tcp")[:10]
    assert common_ports("udp", 5) == read_top_ports("udp")[:5]
