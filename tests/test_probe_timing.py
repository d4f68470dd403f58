"""probe's timing: adaptive per-host timeouts (core.rtt in the engine), --host-timeout, and
--rate's pacing (simulated with an injected clock: no timed assertions)."""

from __future__ import annotations

import contextlib
import math
import random
import socket

import pytest

from sockdiag import platform
from sockdiag.core.rtt import RttTable
from sockdiag.probe.inflight import Attempt, InFlight
from sockdiag.probe.launch import TokenBucket
from sockdiag.probe.results import Tally
from tests.conftest import run_main

LINUX = platform.SYSTEM == platform.LINUX


@contextlib.contextmanager
def inflight(**kwargs):
    flight = InFlight(1.0, None, b"", Tally(frozenset()), **kwargs)
    flight.open(platform.probe_poller_kind())
    socks = []

    def watch(index: int, start: float) -> float:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        socks.append(sock)
        flight.watch(sock, Attempt(sock, index, "127.0.0.1", 9, 0, start), flight.poller.IN)
        return max(flight.deadlines)[0] if flight.heap else flight.deadlines[-1][0]

    try:
        yield flight, watch
    finally:
        flight.table.clear()
        for sock in socks:
            sock.close()
        flight.poller.close()


# --- adaptive timeouts ------------------------------------------------------------------------------

def test_fixed_timeout_keeps_the_fifo():
    with inflight() as (flight, watch):
        assert not flight.heap
        assert watch(0, 100.0) == 101.0


def test_adaptive_deadline_follows_the_hosts_round_trips():
    rtt = RttTable()
    with inflight(rtt=rtt, nports=10) as (flight, watch):
        assert watch(0, 100.0) == 101.0  # no sample yet: the initial 1 s
        for _ in range(10):
            rtt.sample(0, 0.0002)  # host 0 answers in 0.2 ms: the 100 ms floor
        assert watch(1, 200.0) == pytest.approx(200.1)
        assert watch(15, 300.0) == pytest.approx(300.1)  # host 1, not heard from: the estimate over all
        for _ in range(10):
            rtt.sample(2, 2.0)  # a slow host gets more
        assert watch(25, 400.0) > 402.0
        assert [d for d, _, _ in sorted(flight.deadlines)] == sorted(d for d, _, _ in flight.deadlines)


def test_host_timeout_caps_an_attempts_deadline():
    with inflight(host_timeout=0.5, nports=10) as (flight, watch):
        flight.host_deadlines[0] = 100.3
        assert watch(3, 100.0) == pytest.approx(100.3)
        assert watch(13, 100.0) == 101.0  # host 1 has no host deadline yet


def test_without_w_the_scan_is_adaptive_and_still_exact():
    with socket.socket() as listener, socket.socket() as gone:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        gone.bind(("127.0.0.1", 0))
        closed = gone.getsockname()[1]
        gone.close()
        r = run_main(["probe", "-a", "-vv", "127.0.0.1", f"{listener.getsockname()[1]},{closed}"])
    states = sorted(line.split()[3] for line in r.text.splitlines())
    assert states == ["closed", "open"]
    assert "adaptive timeouts" in r.err


# --- --host-timeout --------------------------------------------------------------------------------

@contextlib.contextmanager
def unanswered_ports(count: int):
    """Ports whose SYNs get no answer, without root: listeners with backlog 0 whose one queue
    slot is taken (Linux then drops further SYNs, as a firewall DROP rule would)."""
    if not LINUX:
        pytest.skip("a full accept queue drops SYNs on Linux only")
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            lsock = stack.enter_context(socket.socket())
            lsock.bind(("127.0.0.1", 0))
            lsock.listen(0)
            filler = stack.enter_context(socket.socket())
            filler.connect(lsock.getsockname())
            ports.append(lsock.getsockname()[1])
        yield ports


def test_host_timeout_gives_up_silent_ports_and_keeps_the_answers():
    with unanswered_ports(3) as silent, socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        spec = ",".join(map(str, sorted(silent + [port])))
        r = run_main(["probe", "-a", "-o", "json", "-w", "30", "--host-timeout", "0.3", "127.0.0.1", spec])
        quiet = run_main(["probe", "-w", "30", "--host-timeout", "0.3", "127.0.0.1", spec])
    import json

    states = {row["port"]: row["state"] for row in map(json.loads, r.text.splitlines())}
    assert states == {port: "open", **dict.fromkeys(silent, "host-timeout")}
    warnings = [line for line in r.err.splitlines() if "host timeout" in line]
    assert len(warnings) == 1 and "127.0.0.1" in warnings[0]
    assert [line.split()[1] for line in quiet.text.splitlines()] == [str(port)]  # without -a: open only
    assert "127.0.0.1: host timeout" in quiet.err and quiet.status == 0


def test_ports_not_started_by_the_host_timeout_are_skipped_without_a_connect(scanner_sockets):
    made = scanner_sockets
    with unanswered_ports(3) as silent:
        r = run_main(["probe", "-a", "-c", "1", "-w", "30", "--host-timeout", "0.2", "127.0.0.1",
                      ",".join(map(str, silent))])
    assert [line.split()[3] for line in r.text.splitlines()] == ["host-timeout"] * 3
    assert len(made) == 1  # one in flight, cut at the host timeout; the other two never connected
    assert r.status == 1


# --- --rate -----------------------------------------------------------------------------------------

def simulate(rate: float, attempts: int, shards: int = 1, seed: int = 1) -> tuple[float, int]:
    """Run `shards` token buckets of rate/shards, each polled as the scanner's loop does: start
    what the bucket allows, then sleep until its next slot, rounded up to whole milliseconds as
    epoll does, plus a random wake-up latency. (elapsed simulated seconds, most attempts in any
    one-second window)."""
    rng = random.Random(seed)
    buckets = [TokenBucket(rate / shards) for _ in range(shards)]
    wake = [0.0] * shards
    left = [attempts // shards + (k < attempts % shards) for k in range(shards)]
    stamps = []
    while any(left):
        k = min((k for k in range(shards) if left[k]), key=wake.__getitem__)
        now = wake[k]
        for _ in range(512):  # launch.py's _BATCH
            if not left[k] or not buckets[k].take(now):
                break
            stamps.append(now)
            left[k] -= 1
            now += 2e-6  # the cost of one attempt
        sleep = max(0.0, buckets[k].next_slot - now)
        wake[k] = now + math.ceil(sleep * 1000) / 1000 + rng.uniform(0, 0.0003)
    stamps.sort()
    busiest, j = 0, 0
    for i, t in enumerate(stamps):
        while stamps[j] < t - 1.0:
            j += 1
        busiest = max(busiest, i - j + 1)
    return stamps[-1] - stamps[0], busiest


@pytest.mark.parametrize("rate, shards", [
    pytest.param(100, 1, id="100-per-s"), pytest.param(2000, 1, id="2000-per-s"),
    pytest.param(5000, 1, id="5000-per-s"), pytest.param(4000, 4, id="4000-per-s-4-shards"),
    pytest.param(300, 3, id="300-per-s-3-shards"),
])
def test_rate_holds_within_ten_percent_over_20000_attempts(rate, shards):
    elapsed, busiest = simulate(rate, 20_000, shards)
    assert 0.9 * rate <= 20_000 / elapsed <= 1.1 * rate
    assert busiest <= 1.1 * rate


def test_rate_is_split_between_shards_so_the_sum_is_global():
    from sockdiag.probe.pool import Scanner
    from sockdiag.probe.scanner import Host, Jobs, ScanConfig

    jobs = Jobs([Host(socket.AF_INET, ["127.0.0.1"])], range(1, 20_001))
    sc = Scanner(jobs, ScanConfig(concurrency=100, rate=3000), shards=3)
    assert sum(shard.config.rate for shard in sc.shards) == pytest.approx(3000)
    counts = [sum(1 for _ in range(k, jobs.total, 3)) for k in range(3)]
    assert max(counts) - min(counts) <= 1  # interleaved: every shard ends within a slot of the others


def test_a_host_that_keeps_answering_is_not_given_up():
    """An injected clock that moves 0.1 s per reading: 30 refused ports take 3 "seconds", far
    past --host-timeout 0.5, yet every refusal is an answer that starts the host's timer again."""
    import itertools

    from sockdiag.probe.pool import Scanner
    from sockdiag.probe.scanner import STATES, Host, Jobs, ScanConfig

    socks = [socket.socket() for _ in range(30)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = sorted(s.getsockname()[1] for s in socks)
    for s in socks:
        s.close()
    ticks = itertools.count()
    jobs = Jobs([Host(socket.AF_INET, ["127.0.0.1"])], ports)
    sc = Scanner(jobs, ScanConfig(host_timeout=0.5, concurrency=1, report=frozenset(STATES)),
                 clock=lambda: next(ticks) * 0.1)
    sc.start()
    while not sc.wait(0.05):
        pass
    results = sc.ready() + sc.stop()
    sc.check()
    assert [state for _, _, _, state, *_ in results] == ["closed"] * 30
