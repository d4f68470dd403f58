"""ping: TCP connect latency and UDP reply times against real loopback sockets, ping's summary,
ping's exit rule (Ctrl-C included). No timing assertions: only shapes and consistency."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading

import pytest

from sockdiag import platform
from sockdiag.core.errors import Terminated
from sockdiag.core.status import ExitStatus
from sockdiag.ping import command
from sockdiag.ping.stats import Tally, summary_lines, summary_record
from tests.conftest import ROOT, has_ipv6_loopback, run_main, wait_until

LINUX = platform.SYSTEM == platform.LINUX
OK_LINE = re.compile(r"^connected to (?P<peer>\S+): seq=(?P<seq>\d+) time=(?P<ms>\d+\.\d{3}) ms$")
UDP_LINE = re.compile(r"^(?P<size>\d+) bytes from (?P<peer>\S+): seq=(?P<seq>\d+) time=(?P<ms>\d+\.\d{3}) ms$")
COUNTS = re.compile(r"^(?P<n>\d+) probes, (?P<m>\d+) (connected|replied), (?P<loss>[\d.]+)% loss, time (?P<t>\d+)ms$")
RTT = re.compile(r"^rtt min/avg/max/mdev = (\d+\.\d{3})/(\d+\.\d{3})/(\d+\.\d{3})/(\d+\.\d{3}) ms$")


# --- peers on loopback ---------------------------------------------------------------------------

@contextlib.contextmanager
def tcp_listener(host: str = "127.0.0.1", family: int = socket.AF_INET):
    """A listener on port 0 and a thread that accepts every connection and closes it after the
    client's FIN or RST (so TIME_WAIT, if any, is on the client's side)."""
    with socket.socket(family, socket.SOCK_STREAM) as lsock:
        lsock.bind((host, 0))
        lsock.listen(128)
        stop = threading.Event()

        def serve():
            lsock.settimeout(0.05)
            while not stop.is_set():
                try:
                    conn, _ = lsock.accept()
                except OSError:  # the poll timeout (TimeoutError) included
                    continue
                with conn:  # close only after the client did: its close decides FIN or RST
                    conn.settimeout(5)
                    with contextlib.suppress(OSError):
                        while conn.recv(4096):
                            pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield lsock.getsockname()[1]
        finally:
            stop.set()
            thread.join(5)


@contextlib.contextmanager
def udp_echo(host: str = "127.0.0.1"):
    """A UDP echo server thread; yields (port, datagrams seen)."""
    seen: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.settimeout(0.05)
        stop = threading.Event()

        def serve():
            while not stop.is_set():
                try:
                    data, peer = sock.recvfrom(65535)
                except OSError:  # the poll timeout (TimeoutError) included
                    continue
                seen.append(data)
                sock.sendto(data, peer)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield sock.getsockname()[1], seen
        finally:
            stop.set()
            thread.join(5)


def closed_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port nothing listens on (bound to port 0, read back, closed)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ping(*argv: str):
    return run_main(["ping", *argv])


def summary_of(text: str):
    """The statistics block of text output: (header, counts match, rtt numbers or None)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("--- "))
    assert lines[start - 1] == ""  # ping's blank line before the block
    counts = COUNTS.match(lines[start + 1])
    assert counts, lines[start + 1]
    rtt = None
    if len(lines) > start + 2:
        match = RTT.match(lines[start + 2])
        assert match, lines[start + 2]
        rtt = [float(x) for x in match.groups()]
    assert len(lines) == start + 2 + (rtt is not None)
    return lines[start], counts, rtt


# --- TCP -----------------------------------------------------------------------------------------

def test_three_connects_print_three_lines_and_a_consistent_summary():
    with tcp_listener() as port:
        r = ping("-c", "3", "-i", "0.01", "127.0.0.1", str(port))
    assert r.status == ExitStatus.OK, r.err
    assert r.err == ""
    lines = r.text.splitlines()
    assert lines[0] == f"PING 127.0.0.1:{port} (127.0.0.1) over tcp"
    matches = [OK_LINE.match(line) for line in lines[1:4]]
    assert all(matches), lines
    assert [int(m["seq"]) for m in matches] == [1, 2, 3]
    assert {m["peer"] for m in matches} == {f"127.0.0.1:{port}"}
    header, counts, rtt = summary_of(r.text)
    assert header == f"--- 127.0.0.1:{port} tcp ping statistics ---"
    assert (counts["n"], counts["m"], counts["loss"]) == ("3", "3", "0")
    times = [float(m["ms"]) for m in matches]
    lo, avg, hi, mdev = rtt
    assert lo == min(times) and hi == max(times)
    assert lo <= avg <= hi
    assert math.isclose(avg, statistics.mean(times), abs_tol=0.002)  # the lines are rounded to 1 us
    assert math.isclose(mdev, statistics.pstdev(times), abs_tol=0.002)


def test_closed_port_is_refused_every_time_100_percent_loss_exit_1():
    port = closed_port()
    r = ping("-c", "2", "-i", "0.01", "127.0.0.1", str(port))
    assert r.status == ExitStatus.FAILURE
    lines = r.text.splitlines()
    assert lines[1:3] == [f"127.0.0.1:{port}: seq={seq} connection refused (ECONNREFUSED)" for seq in (1, 2)]
    _, counts, rtt = summary_of(r.text)
    assert (counts["n"], counts["m"], counts["loss"]) == ("2", "0", "100")
    assert rtt is None  # like ping: no rtt line when nothing answered
    assert r.err == ""


@pytest.mark.skipif(not LINUX, reason="a full accept queue drops SYNs on Linux only")
def test_unanswered_syn_times_out():
    with socket.socket() as lsock, socket.socket() as filler:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        filler.connect(lsock.getsockname())  # the one queue slot taken: further SYNs are dropped
        port = lsock.getsockname()[1]
        r = ping("-c", "1", "-w", "0.2", "-o", "json", "127.0.0.1", str(port))
    assert r.status == ExitStatus.FAILURE
    first = json.loads(r.text.splitlines()[0])
    assert first["connected"] is False and first["error"] == "ETIMEDOUT" and first["rtt_ms"] is None


def test_json_keys_per_attempt_and_summary():
    with tcp_listener() as port:
        r = ping("-o", "json", "-c", "2", "-i", "0", "127.0.0.1", str(port))
    assert r.status == ExitStatus.OK, r.err
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert len(rows) == 3  # no header line in JSON mode
    for seq, row in enumerate(rows[:2], 1):
        assert list(row) == ["seq", "address", "port", "connected", "rtt_ms", "error"]
        assert row["seq"] == seq and row["address"] == "127.0.0.1" and row["port"] == port
        assert row["connected"] is True and row["error"] is None and isinstance(row["rtt_ms"], float)
    summary = rows[2]
    assert list(summary) == ["summary", "probes", "connected", "loss_pct", "time_ms",
                             "rtt_min_ms", "rtt_avg_ms", "rtt_max_ms", "rtt_mdev_ms"]
    assert summary["summary"] is True and summary["probes"] == 2 and summary["connected"] == 2
    assert summary["loss_pct"] == 0
    assert summary["rtt_min_ms"] == min(row["rtt_ms"] for row in rows[:2])
    assert summary["rtt_max_ms"] == max(row["rtt_ms"] for row in rows[:2])


def test_json_refused_has_errno_name_and_null_rtts():
    port = closed_port()
    r = ping("-o", "json", "-c", "1", "127.0.0.1", str(port))
    assert r.status == ExitStatus.FAILURE
    row, summary = (json.loads(line) for line in r.text.splitlines())
    assert row == {"seq": 1, "address": "127.0.0.1", "port": port, "connected": False, "rtt_ms": None,
                   "error": "ECONNREFUSED"}
    assert summary["loss_pct"] == 100 and summary["rtt_avg_ms"] is None and summary["rtt_mdev_ms"] is None


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_address_is_bracketed():
    with tcp_listener("::1", socket.AF_INET6) as port:
        r = ping("-6", "-c", "1", "::1", str(port))
    assert r.status == ExitStatus.OK, r.err
    lines = r.text.splitlines()
    assert lines[0] == f"PING [::1]:{port} (::1) over tcp"
    assert OK_LINE.match(lines[1])["peer"] == f"[::1]:{port}"


def test_name_is_resolved_once_and_shown_with_its_address():
    with tcp_listener() as port:
        r = ping("-4", "-v", "-c", "1", "localhost", str(port))
    assert r.status == ExitStatus.OK, r.err
    assert r.text.splitlines()[0] == f"PING localhost:{port} (127.0.0.1) over tcp"
    assert "localhost is 127.0.0.1" in r.err


def tcp_states_to(port: int, state: str) -> int:
    """Sockets in `state` (hex, /proc/net/tcp) whose remote port is `port`."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return sum(1 for row in rows if int(row[2].rsplit(":", 1)[1], 16) == port and row[3] == state)


@pytest.mark.skipif(not LINUX, reason="reads /proc/net/tcp")
@pytest.mark.parametrize("close, left", [("rst", 0), ("fin", 3)], ids=["rst-leaves-no-time-wait", "fin-does"])
def test_close_mode_decides_time_wait(close, left):
    with tcp_listener() as port:
        r = ping("-c", "3", "-i", "0", "--close", close, "127.0.0.1", str(port))
        assert r.status == ExitStatus.OK, r.err
        if left:  # the client's TIME_WAIT follows the server's FIN (the accepting thread closes)
            wait_until(lambda: tcp_states_to(port, "06") >= left)
    assert tcp_states_to(port, "06") == left


# --- Ctrl-C ---------------------------------------------------------------------------------------

def ctrl_c_on_sleep(monkeypatch, after: int) -> list:
    """The interval sleep raises KeyboardInterrupt at its `after`th call (after that many attempts)."""
    calls = []

    def sleep(seconds):
        calls.append(seconds)
        if len(calls) >= after:
            raise KeyboardInterrupt

    monkeypatch.setattr(command, "_sleep", sleep)
    return calls


def test_ctrl_c_prints_summary_and_exits_by_result(monkeypatch):
    calls = ctrl_c_on_sleep(monkeypatch, after=2)
    with tcp_listener() as port:
        r = ping("127.0.0.1", str(port))  # no -c: until Ctrl-C
    assert r.status == ExitStatus.OK  # as ping(8): by result, not 130
    assert len(calls) == 2 and all(0 < s <= 1 for s in calls)
    lines = r.text.splitlines()
    assert [OK_LINE.match(line)["seq"] for line in lines[1:3]] == ["1", "2"]
    _, counts, rtt = summary_of(r.text)
    assert (counts["n"], counts["m"]) == ("2", "2") and rtt is not None
    assert "interrupted" not in r.err and "Traceback" not in r.err


def test_ctrl_c_with_nothing_connected_exits_1(monkeypatch):
    ctrl_c_on_sleep(monkeypatch, after=2)
    r = ping("-o", "json", "127.0.0.1", str(closed_port()))
    assert r.status == ExitStatus.FAILURE
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert [row.get("seq") for row in rows[:2]] == [1, 2]
    assert rows[2]["summary"] is True and rows[2]["probes"] == 2 and rows[2]["connected"] == 0


def test_sigterm_prints_summary_then_exits_143(monkeypatch):
    def sleep(seconds):
        raise Terminated(signal.SIGTERM, "SIGTERM")

    monkeypatch.setattr(command, "_sleep", sleep)
    with tcp_listener() as port:
        r = ping("127.0.0.1", str(port))
    assert r.status == 143
    _, counts, _ = summary_of(r.text)
    assert (counts["n"], counts["m"]) == ("1", "1")
    assert r.err == "sockdiag ping: terminated (SIGTERM)\n"


def test_ctrl_c_during_an_attempt_leaves_it_uncounted(monkeypatch):
    real = command.TcpAttempt.__call__
    calls = []

    def interrupted_second(self):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(command.TcpAttempt, "__call__", interrupted_second)
    with tcp_listener() as port:
        r = ping("-i", "0", "127.0.0.1", str(port))
    assert r.status == ExitStatus.OK
    _, counts, _ = summary_of(r.text)
    assert (counts["n"], counts["m"]) == ("1", "1")


@pytest.mark.skipif(platform.SYSTEM == platform.WINDOWS, reason="SIGINT to a child needs POSIX signals")
def test_real_sigint_prints_summary_and_exits_0():
    with tcp_listener() as port:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, "-m", "sockdiag", "ping", "-i", "0.05", "127.0.0.1", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            assert proc.stdout.readline().startswith(b"PING ")
            assert OK_LINE.match(proc.stdout.readline().decode().rstrip("\n"))
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert b"tcp ping statistics" in out and b"Traceback" not in err


# --- UDP ------------------------------------------------------------------------------------------

def test_udp_echo_replies_are_timed():
    with udp_echo() as (port, seen):
        r = ping("-u", "-c", "3", "-i", "0.01", "--payload", "hello", "127.0.0.1", str(port))
    assert r.status == ExitStatus.OK, r.err
    lines = r.text.splitlines()
    assert lines[0] == f"PING 127.0.0.1:{port} (127.0.0.1) over udp, 5-byte payload"
    matches = [UDP_LINE.match(line) for line in lines[1:4]]
    assert all(matches), lines
    assert [(m["size"], m["seq"]) for m in matches] == [("5", "1"), ("5", "2"), ("5", "3")]
    assert seen == [b"hello"] * 3
    header, counts, rtt = summary_of(r.text)
    assert header == f"--- 127.0.0.1:{port} udp ping statistics ---"
    assert (counts["n"], counts["m"]) == ("3", "3") and rtt is not None


def test_udp_default_payload_and_json():
    with udp_echo() as (port, seen):
        r = ping("-u", "-o", "json", "-c", "1", "127.0.0.1", str(port))
    assert r.status == ExitStatus.OK, r.err
    row = json.loads(r.text.splitlines()[0])
    assert row["connected"] is True and row["error"] is None
    assert seen == [b"ping"]


def test_udp_closed_port_is_refused():
    port = closed_port(socket.SOCK_DGRAM)
    r = ping("-u", "-c", "2", "-i", "0.01", "127.0.0.1", str(port))
    assert r.status == ExitStatus.FAILURE
    assert r.text.splitlines()[1:3] == [f"127.0.0.1:{port}: seq={seq} connection refused (ECONNREFUSED)"
                                        for seq in (1, 2)]
    _, counts, rtt = summary_of(r.text)
    assert (counts["n"], counts["m"], counts["loss"]) == ("2", "0", "100") and rtt is None


def test_udp_silent_peer_times_out():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        r = ping("-u", "-c", "1", "-w", "0.1", "127.0.0.1", str(port))
    assert r.status == ExitStatus.FAILURE
    assert r.text.splitlines()[1] == f"127.0.0.1:{port}: seq=1 timed out"


# --- usage errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    pytest.param(["127.0.0.1"], "required", id="no-port"),
    pytest.param(["127.0.0.1", "0"], "out of range", id="port-0"),
    pytest.param(["127.0.0.1", "80", "-c", "0"], "out of range", id="count-0"),
    pytest.param(["127.0.0.1", "80", "-c", "x"], "whole number", id="count-x"),
    pytest.param(["127.0.0.1", "80", "-i", "nan"], "0 or more", id="interval-nan"),
    pytest.param(["127.0.0.1", "80", "-i=-1"], "out of range", id="interval-negative"),
    pytest.param(["127.0.0.1", "80", "-w", "0"], "more than 0", id="timeout-0"),
    pytest.param(["127.0.0.1", "80", "-4", "-6"], "not allowed with", id="both-families"),
    pytest.param(["127.0.0.1", "80", "--close", "hard"], "invalid choice", id="bad-close"),
    pytest.param(["127.0.0.1", "80", "-o", "csv"], "invalid choice", id="no-csv"),
    pytest.param(["127.0.0.1", "80", "--payload", "x"], "--payload goes with -u", id="payload-without-u"),
    pytest.param(["127.0.0.1", "80", "-u", "--close", "fin"], "--close is for TCP", id="close-with-u"),
    pytest.param(["127.0.0.1", "80", "-u", "--payload", "x" * 70000], "too long", id="payload-too-long"),
    pytest.param(["999.1.1.1", "80"], "", id="bad-address"),
])
def test_bad_arguments_exit_2(argv, needle):
    r = ping(*argv)
    assert r.status == ExitStatus.USAGE
    assert needle in r.err
    assert r.err.startswith("sockdiag ping: error: ") and r.out == b""


def test_interval_zero_is_allowed():
    with tcp_listener() as port:
        r = ping("-c", "3", "-i", "0", "127.0.0.1", str(port))
    assert r.status == ExitStatus.OK, r.err


def test_unknown_host_is_one_line_exit_1():
    r = ping("-c", "1", "no-such-host.invalid", "80")
    assert r.status == ExitStatus.FAILURE
    assert r.err.startswith("sockdiag ping: error: resolve no-such-host.invalid: ")
    assert len(r.err.splitlines()) == 1 and r.out == b""


# --- the pure tally ---------------------------------------------------------------------------------

@pytest.mark.parametrize("times_ns", [
    pytest.param([123_000], id="one"),
    pytest.param([100_000, 200_000, 300_000], id="spread"),
    pytest.param([5_000_000] * 4, id="equal"),
    pytest.param([1, 10**12], id="extremes"),
])
def test_mdev_is_pings_population_deviation(times_ns):
    tally = Tally()
    for ns in times_ns:
        tally.add(ns)
    tally.add(None)
    lo, avg, hi, mdev = tally.rtt_ms()
    ms = [ns / 1e6 for ns in times_ns]
    assert (lo, hi) == (min(ms), max(ms))
    assert math.isclose(avg, statistics.mean(ms))
    assert math.isclose(mdev, statistics.pstdev(ms), abs_tol=1e-9)
    assert tally.loss_pct == pytest.approx(100 / (len(times_ns) + 1))


def test_summary_before_any_attempt_has_no_loss_or_rtt():
    tally = Tally()
    assert summary_lines(tally, "h:1", "tcp", 0) == ["--- h:1 tcp ping statistics ---", "0 probes, 0 connected"]
    record = summary_record(tally, 0)
    assert record["probes"] == 0 and record["loss_pct"] is None and record["rtt_min_ms"] is None
    assert not tally.succeeded()


def test_summary_loss_formatted_as_ping():
    tally = Tally()
    for value in (1_000_000, None, None):
        tally.add(value)
    assert summary_lines(tally, "h:1", "udp", 2003) == [
        "--- h:1 udp ping statistics ---",
        "3 probes, 1 replied, 66.6667% loss, time 2003ms",
        "rtt min/avg/max/mdev = 1.000/1.000/1.000/0.000 ms",
    ]
