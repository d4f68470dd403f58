"""--host-timeout's window for hosts not heard from yet (probe.quiet): few attempts in flight to
a silent host, its other jobs parked until it answers, ends in silence, or is given up."""

from __future__ import annotations

import socket
from collections import deque

from sockdiag.probe.quiet import QUIET_WINDOW, QuietHosts
from sockdiag.probe.results import HOST_TIMEOUT, STATES, Tally
from tests.conftest import run_main
from tests.test_probe_timing import unanswered_ports


def quiet_hosts(window: int = 2):
    retry: deque = deque()
    tally = Tally(frozenset(STATES))
    return QuietHosts(retry, tally, window), retry, tally


def fill(quiet: QuietHosts, host: int, n: int) -> None:
    for _ in range(n):
        assert not quiet.full(host)
        quiet.launched(host)


def test_a_full_window_parks_jobs_as_started():
    quiet, retry, tally = quiet_hosts(window=2)
    fill(quiet, 7, 2)
    assert quiet.full(7) and not quiet.full(8)
    quiet.park(7, 70, 0, "10.0.0.7", 22)
    assert 70 in tally.live  # the shard's watermark waits for it
    assert not retry


def test_silence_hands_back_one_job_so_the_window_stays_full():
    quiet, retry, _tally = quiet_hosts(window=2)
    fill(quiet, 1, 2)
    quiet.park(1, 10, 0, "h", 1)
    quiet.park(1, 11, 1, "h", 2)
    quiet.ended(1, given_up=False)
    assert list(retry) == [(10, 0)] and not quiet.full(1)
    quiet.launched(1)
    quiet.ended(1, given_up=False)
    assert list(retry) == [(10, 0), (11, 1)] and not quiet.parked


def test_an_answer_opens_the_host_for_good():
    quiet, retry, _tally = quiet_hosts(window=1)
    fill(quiet, 3, 1)
    for index in (30, 31, 32):
        quiet.park(3, index, 0, "h", index)
    quiet.answered(3)
    assert list(retry) == [(30, 0), (31, 0), (32, 0)]
    assert 3 in quiet.heard and not quiet.inflight and not quiet.parked
    quiet.ended(3, given_up=False)  # an attempt of a heard host: nothing to count
    assert not quiet.inflight


def test_a_host_given_up_ends_its_parked_jobs_as_host_timeout():
    quiet, retry, tally = quiet_hosts(window=1)
    fill(quiet, 5, 1)
    quiet.park(5, 50, 0, "10.0.0.5", 80)
    quiet.park(5, 51, 0, "10.0.0.5", 81)
    quiet.ended(5, given_up=True)
    assert not retry and not quiet.parked and not quiet.inflight
    assert [(r[0], r[3]) for r in tally.out] == [(50, HOST_TIMEOUT), (51, HOST_TIMEOUT)]
    assert tally.counts[HOST_TIMEOUT] == 2 and not tally.live


def test_release_all_when_nothing_in_flight_would():
    quiet, retry, _tally = quiet_hosts(window=1)
    fill(quiet, 2, 1)
    quiet.park(2, 20, 0, "h", 1)
    quiet.release_all()
    assert list(retry) == [(20, 0)] and not quiet.parked and not quiet.inflight


def test_tally_reports_a_once_state_only_for_a_hosts_first_job():
    tally = Tally(frozenset({"open", HOST_TIMEOUT}), once=frozenset({HOST_TIMEOUT}))
    for index in range(3):
        tally.finish(index, "10.0.0.1", index, HOST_TIMEOUT, None, None, None)
    tally.finish(3, "10.0.0.2", 1, HOST_TIMEOUT, None, None, None)
    tally.finish(4, "10.0.0.1", 9, "open", 0.001, None, None)
    tally.finish(5, "10.0.0.1", 10, "open", 0.001, None, None)
    assert [(r[0], r[3]) for r in tally.out] == [(0, HOST_TIMEOUT), (3, HOST_TIMEOUT), (4, "open"), (5, "open")]
    assert tally.counts[HOST_TIMEOUT] == 4  # counted all the same


# --- through the scanner ------------------------------------------------------------------------------

def test_a_silent_host_never_has_more_than_the_window_in_flight(scanner_sockets):
    """20 unanswered ports, room for 100 in flight: only QUIET_WINDOW connect before the host
    timeout gives the host up; the others end as host-timeout without a socket."""
    count = QUIET_WINDOW + 12
    with unanswered_ports(count) as silent:
        r = run_main(["probe", "-a", "--workers", "1", "-c", "100", "-w", "30", "--host-timeout", "0.3",
                      "127.0.0.1", ",".join(map(str, silent))])
    assert [line.split()[3] for line in r.text.splitlines()] == ["host-timeout"] * count
    assert len(scanner_sockets) == QUIET_WINDOW
    assert r.status == 1


def test_parked_ports_are_scanned_once_the_window_moves():
    """In order: QUIET_WINDOW + 2 silent ports, then a closed one. The first QUIET_WINDOW wait
    out -w; each silence lets a parked port start, and the closed port's refusal is decided
    as well: the window delays a silent host's ports, it does not drop them."""
    with unanswered_ports(QUIET_WINDOW + 2) as silent, socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        closed = spare.getsockname()[1]
        spare.close()
        ports = sorted(silent) + [closed]
        r = run_main(["probe", "-a", "-o", "json", "--no-randomize", "--workers", "1", "-c", "100", "-w", "0.2",
                      "--host-timeout", "30", "127.0.0.1", ",".join(map(str, ports))])
    import json

    states = {row["port"]: row["state"] for row in map(json.loads, r.text.splitlines())}
    assert states == {**dict.fromkeys(silent, "filtered"), closed: "closed"}


def test_udp_scans_have_no_window_and_a_refusal_counts_as_an_answer():
    """UDP silence is the usual answer (open|filtered): --host-timeout puts no window on a UDP
    host, and an ICMP port unreachable at once (a closed port) is the host's answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spare:
        spare.bind(("127.0.0.1", 0))
        closed = spare.getsockname()[1]
    r = run_main(["probe", "-u", "-a", "-o", "json", "--host-timeout", "5", "127.0.0.1", str(closed)])
    import json

    rows = [json.loads(line) for line in r.text.splitlines()]
    assert [(row["port"], row["state"]) for row in rows] == [(closed, "closed")]
    assert "Traceback" not in r.err and r.status == 1


def test_a_udp_host_that_stays_silent_is_not_windowed():
    """20 UDP ports that never reply, -w 1 and --host-timeout 1.5: all are sent at once and end
    open|filtered after 1 s (with a window of 8, the last 4 would be cut as host-timeout)."""
    socks = []
    try:
        for _ in range(QUIET_WINDOW + 12):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        ports = sorted(s.getsockname()[1] for s in socks)
        r = run_main(["probe", "-u", "-a", "--workers", "1", "-w", "1", "--host-timeout", "1.5", "127.0.0.1",
                      ",".join(map(str, ports))])
    finally:
        for s in socks:
            s.close()
    assert [line.split()[3] for line in r.text.splitlines()] == ["open|filtered"] * len(ports)
