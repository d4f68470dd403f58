"""probe: the connect scanner against real loopback listeners (the ground truth)."""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading

import pytest

from sockdiag import platform
from sockdiag.probe import scanner
from sockdiag.probe.command import Output
from sockdiag.probe.scanner import Host, Jobs, ScanConfig
from sockdiag.probe.pool import Scanner
from tests.conftest import ROOT, make_env, run_main

LINUX = platform.SYSTEM == platform.LINUX


# --- ground truth: listeners on loopback ------------------------------------------------------------

def loopback_address() -> str:
    """A 127.x.y.z of this test's own (Linux routes all of 127/8 to lo); 127.0.0.1 elsewhere."""
    address = f"127.83.{random.randrange(1, 255)}.{random.randrange(1, 254)}"
    try:
        with socket.socket() as s:
            s.bind((address, 0))
    except OSError:
        return "127.0.0.1"
    return address


@contextlib.contextmanager
def listeners(count: int, host: str = "127.0.0.1", family: int = socket.AF_INET):
    """`count` listening sockets on port 0; yields their ports (sorted)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(family, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, 0))
            s.listen(128)
        yield sorted(s.getsockname()[1] for s in socks)
    finally:
        for s in socks:
            s.close()


@contextlib.contextmanager
def unanswered_port(host: str = "127.0.0.1"):
    """A port whose SYNs get no answer, without root: a listener with backlog 0 whose one queue
    slot is taken by a connection nobody accepts. Linux drops further SYNs (tcp_conn_request:
    accept queue full) instead of refusing them, exactly as a firewall DROP rule would."""
    if not LINUX:
        pytest.skip("a full accept queue drops SYNs on Linux only (other stacks refuse or queue)")
    with socket.socket() as lsock, socket.socket() as filler:
        lsock.bind((host, 0))
        lsock.listen(0)
        filler.connect(lsock.getsockname())
        yield lsock.getsockname()[1]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports nothing listens on (bound to port 0, read back, closed)."""
    ports = []
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind((host, 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def probe(*argv: str, **flags):
    return run_main(["probe", *argv], **flags)


def json_rows(result) -> list[dict]:
    return [json.loads(line) for line in result.text.splitlines()]


def spec(ports) -> str:
    return ",".join(str(p) for p in ports)


# --- exactness ----------------------------------------------------------------------------------------

def wildcard_listen_ports() -> set[int]:
    """Ports of listeners on 0.0.0.0 / :: (they answer on every loopback address too)."""
    import psutil

    return {c.laddr.port for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.ip in ("0.0.0.0", "::")}


def test_full_range_matches_the_listeners_exactly():
    """`-` on a loopback address of our own: every listener found, nothing else, twice over.
    Other processes' listeners on 0.0.0.0/:: answer there too; only those may add ports."""
    address = loopback_address()
    with listeners(12, address) as ours:
        for _ in range(2):
            before = wildcard_listen_ports()
            r = probe(address, "-")
            after = wildcard_listen_ports()
            assert r.status == 0, r.err
            found = {int(line.split()[1]) for line in r.text.splitlines()}
            assert set(ours) <= found
            assert found - set(ours) <= before | after
            assert all(line.split()[0] == address and line.split()[3] == "open" for line in r.text.splitlines())


NETNS_SCRIPT = r"""
import json, random, socket, subprocess, sys
from tests.conftest import run_main
rng = random.Random(int(sys.argv[1]))
ports = sorted(rng.sample(range(1, 65536), 30))
socks = []
for port in ports:
    s = socket.socket(); s.bind(("127.0.0.1", port)); s.listen(64); socks.append(s)
ss = subprocess.run(["ss", "-tlnH"], capture_output=True, text=True).stdout.split()
scans = []
for _ in range(2):
    r = run_main(["probe", "-o", "json", "127.0.0.1", "-"])
    scans.append(sorted(json.loads(line)["port"] for line in r.text.splitlines()))
print(json.dumps({"ports": ports, "scans": scans, "ss": ss}))
"""


@pytest.mark.skipif(not LINUX or not shutil.which("unshare") or not shutil.which("ip"),
                    reason="needs Linux network namespaces (unshare, ip)")
def test_full_range_in_a_private_namespace_equals_ss():
    """In a network namespace of its own, 127.0.0.1 has exactly our listeners: two full scans
    must both report exactly them, the set `ss -tln` lists (self-connects must not leak in)."""
    prefix = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = f"ip link set lo up && exec {sys.executable} -c '{NETNS_SCRIPT}' {random.randrange(10**6)}"
    try:
        r = subprocess.run(prefix + ["sh", "-c", command], capture_output=True, text=True, env=env, timeout=60,
                           cwd=ROOT)
    except OSError as exc:
        pytest.skip(f"unshare failed: {exc}")
    if r.returncode != 0 and ("Operation not permitted" in r.stderr or "unshare failed" in r.stderr):
        pytest.skip(f"no network namespaces here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    listed = sorted(int(field.rpartition(":")[2]) for field in data["ss"] if field.startswith("127.0.0.1:"))
    assert listed == data["ports"]
    assert data["scans"] == [data["ports"], data["ports"]]


def test_open_closed_filtered_in_one_scan_json_parsed_back():
    with listeners(2) as open_ports, unanswered_port() as silent:
        closed = free_ports(2)
        r = probe("--all", "-o", "json", "-w", "0.3", "--retries", "0", "127.0.0.1",
                  spec(open_ports + closed + [silent]))
    assert r.status == 0, r.err
    rows = json_rows(r)
    assert [row["port"] for row in rows] == sorted(open_ports + closed + [silent])
    states = {row["port"]: row["state"] for row in rows}
    assert states == {**dict.fromkeys(open_ports, "open"), **dict.fromkeys(closed, "closed"), silent: "filtered"}
    for row in rows:
        assert list(row) == ["host", "port", "proto", "state", "service", "rtt_ms", "errno"]
        assert row["host"] == "127.0.0.1" and row["proto"] == "tcp"
        assert (row["rtt_ms"] is None) == (row["state"] == "filtered")
        assert row["errno"] == ("ECONNREFUSED" if row["state"] == "closed" else None)


def test_csv_parsed_back():
    with listeners(1) as (port,):
        closed = free_ports(1)
        r = probe("--all", "-o", "csv", "127.0.0.1", spec([port] + closed))
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == ["host", "port", "proto", "state", "service", "rtt_ms", "errno"]
    assert {(int(row["port"]), row["state"]) for row in rows} == {(port, "open"), (closed[0], "closed")}
    assert float(rows[0]["rtt_ms"]) >= 0


def test_text_is_one_line_per_open_port_for_awk(monkeypatch):
    monkeypatch.setattr(platform, "service_name", lambda port, proto="tcp": "myservice")
    with listeners(3) as ports:
        r = probe("127.0.0.1", spec(ports + free_ports(3)))
    assert r.status == 0
    fields = [line.split() for line in r.text.splitlines()]
    assert [int(f[1]) for f in fields] == ports  # awk '{print $2}'
    assert all(f == ["127.0.0.1", f[1], "tcp", "open", "myservice"] for f in fields)
    assert r.err == ""


def test_nothing_open_exits_1_and_verbose_summary():
    r = probe("-v", "127.0.0.1", spec(free_ports(3)))
    assert r.status == 1
    assert r.out == b""
    assert "3 tcp ports on 1 host" in r.err and "3 closed" in r.err


def test_service_column_and_dash_when_unknown(monkeypatch):
    monkeypatch.setattr(platform, "service_name", lambda port, proto="tcp": None)
    with listeners(1) as (port,):
        r = probe("127.0.0.1", str(port))
    assert r.text.split()[4] == "-"


def test_block_scan_is_host_major_and_exact():
    base = loopback_address().rsplit(".", 1)[0]
    if base == "127.0":
        pytest.skip("needs all of 127/8 on loopback (Linux)")
    target = f"{base}.2"
    with listeners(1, target) as (port,):
        r = probe("--all", "-o", "json", f"{base}.0/30", str(port))
    rows = json_rows(r)
    assert [(row["host"], row["state"]) for row in rows] == [
        (f"{base}.0", "closed"), (f"{base}.1", "closed"), (target, "open"), (f"{base}.3", "closed")]


def test_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        ctx = listeners(1, "::1", socket.AF_INET6)
        port = ctx.__enter__()[0]
    except OSError:
        pytest.skip("::1 not available")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            closed = s.getsockname()[1]
        r = probe("--all", "::1,[::1]", f"{port},{closed}")
    finally:
        ctx.__exit__(None, None, None)
    lines = [line.split() for line in r.text.splitlines()]
    assert {f[1]: (f[0], f[3]) for f in lines} == {str(port): ("::1", "open"), str(closed): ("::1", "closed")}
    assert len(lines) == 2  # the duplicate target is scanned once


# --- filtered, retries, unreachable, errors --------------------------------------------------------

class CountingSocket(socket.socket):
    """A real socket that records itself and counts close() calls and connect attempts. On
    Linux a refused socket is reused for the next attempt, and a connect() right after
    EINPROGRESS asks how the handshake went: neither that call nor one that only resets a
    refused socket (answered ECONNABORTED) is an attempt."""

    made: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.closes = 0
        self.attempts = 0
        self._connecting = False
        CountingSocket.made.append(self)

    def connect_ex(self, address):
        err = super().connect_ex(address)
        if not self._connecting and err != errno.ECONNABORTED:
            self.attempts += 1
            self.attempted()
        self._connecting = err in (errno.EINPROGRESS, errno.EALREADY)
        return err

    def attempted(self) -> None:
        """Called once per attempt (subclasses record more)."""

    def close(self):
        self.closes += 1
        super().close()


@pytest.fixture
def counting(monkeypatch):
    CountingSocket.made = []
    monkeypatch.setattr(scanner, "_raw_socket", CountingSocket)
    return CountingSocket.made


def test_retries_use_a_new_socket_each_and_every_socket_closed_once(counting):
    with unanswered_port() as silent:
        r = probe("--all", "-w", "0.2", "--retries", "2", "127.0.0.1", str(silent))
    assert r.text.split()[3] == "filtered"
    assert len(counting) == 3
    assert [s.closes for s in counting] == [1, 1, 1]


@pytest.mark.skipif(not platform.probe_reuses_refused_sockets(), reason="refused sockets are reused on Linux only")
def test_refused_sockets_connect_again_and_open_ports_are_still_found(counting):
    """A refused socket serves the next attempt (half the kernel work per closed port); a port
    that listens between closed ones is still open, and every socket is closed once."""
    with listeners(2) as ports:
        closed = free_ports(40)
        r = probe("-o", "json", "--all", "--workers", "1", "--no-randomize", "127.0.0.1", spec(sorted(ports + closed)))
    states = {row["port"]: row["state"] for row in json_rows(r)}
    assert states == {**dict.fromkeys(closed, "closed"), **dict.fromkeys(ports, "open")}
    assert sum(s.attempts for s in counting) == 42 and len(counting) < 20
    assert all(s.closes == 1 for s in counting)


def test_answered_ports_are_not_retried(counting):
    with listeners(2) as ports:
        r = probe("--all", "--retries", "3", "127.0.0.1", spec(ports + free_ports(2)))
    assert r.status == 0
    assert sum(s.attempts for s in counting) == 4 and all(s.closes == 1 for s in counting)


def fake_failing(name: str):
    """A socket class whose connect_ex fails with errno `name` (as the OS numbers it)."""
    code = platform.errno_code(name)

    class Failing(CountingSocket):
        def connect_ex(self, address):
            return code

    return Failing


@pytest.mark.parametrize("name, state", [("EHOSTUNREACH", "unreachable"), ("ENETUNREACH", "unreachable"),
                                         ("EACCES", "error"), ("ECONNREFUSED", "closed")])
def test_failed_connects_map_to_states(monkeypatch, name, state):
    CountingSocket.made = []
    monkeypatch.setattr(scanner, "_raw_socket", fake_failing(name))
    r = probe("--all", "-o", "json", "127.0.0.1", "1-3")
    rows = json_rows(r)
    assert [row["state"] for row in rows] == [state] * 3
    assert all(row["errno"] == name for row in rows)
    assert r.status == 1
    assert all(s.closes == 1 for s in CountingSocket.made)


def test_error_detail_in_text_output(monkeypatch):
    monkeypatch.setattr(scanner, "_raw_socket", fake_failing("EHOSTUNREACH"))
    r = probe("--all", "127.0.0.1", "7")
    assert r.text.split()[3:] == ["unreachable", platform.service_name(7) or "-", "EHOSTUNREACH"]


@pytest.mark.skipif(not LINUX or not shutil.which("unshare"), reason="needs Linux network namespaces")
def test_unreachable_for_real_in_a_namespace_with_lo_down():
    """In a fresh network namespace lo is down: connect() fails with ENETUNREACH."""
    prefix = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run(prefix + [sys.executable, "-m", "sockdiag", "probe", "--all", "-o", "json", "127.0.0.1", "80"],
                       capture_output=True, text=True, env=env, timeout=30)
    if "unshare failed" in r.stderr or "Operation not permitted" in r.stderr:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 1, r.stderr
    row = json.loads(r.stdout)
    assert row["state"] == "unreachable" and row["errno"] == "ENETUNREACH"


def test_out_of_descriptors_with_nothing_in_flight_is_one_line_error(monkeypatch):
    def no_fds(*args):
        raise OSError(platform.errno_code("EMFILE"), "Too many open files")

    monkeypatch.setattr(scanner, "_raw_socket", no_fds)
    r = probe("127.0.0.1", "1-5")
    assert r.status == 1
    assert "EMFILE" in r.err and "Traceback" not in r.err and len(r.err.splitlines()) == 1


def test_shortage_while_sockets_in_flight_backs_off_and_retries(monkeypatch):
    """EMFILE with sockets in flight: fewer in flight, the port tried again, the answer exact."""
    calls = []

    def flaky(*args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(platform.errno_code("EMFILE"), "Too many open files")
        return CountingSocket(*args)

    CountingSocket.made = []
    with unanswered_port() as silent, listeners(1) as (port,):
        # the silent port first, so that it is in flight when the second socket fails (a
        # loopback open port may be decided within its launch and leave nothing in flight)
        jobs = Jobs([Host(socket.AF_INET, ["127.0.0.1"])], [silent, port])
        sc = Scanner(jobs, ScanConfig(timeout=0.3, retries=0, report=frozenset(scanner.STATES)),
                     socket_factory=flaky)
        results = run_scanner(sc)
    assert {r[2]: r[3] for r in results} == {silent: "filtered", port: "open"}
    assert sc.shards[0].backoffs == 1
    assert all(s.closes == 1 for s in CountingSocket.made)


def run_scanner(sc: Scanner) -> list:
    sc.start()
    results = []
    while not sc.wait(0.05):
        results += sc.ready()
    results += sc.ready() + sc.stop()
    sc.check()
    return results


@pytest.mark.skipif(not LINUX, reason="TCP simultaneous open to oneself is a Linux loopback behaviour")
def test_self_connect_is_closed_not_open():
    """A socket bound to port P connecting to 127.0.0.1:P with nothing listening meets its own
    SYN and 'connects' to itself. That is what a scan hits when the kernel picks the scanned
    port as the ephemeral source port; it must count as closed."""
    (port,) = free_ports(1)
    made = []

    def bound_to_target(family, kind):
        s = CountingSocket(family, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        made.append(s)
        return s

    jobs = Jobs([Host(socket.AF_INET, ["127.0.0.1"])], [port])
    sc = Scanner(jobs, ScanConfig(timeout=1.0, report=frozenset(scanner.STATES)), socket_factory=bound_to_target)
    results = run_scanner(sc)
    assert [r[3] for r in results] == ["closed"]
    assert sc.self_connects == 1
    assert made[0].closes == 1


def test_rate_limits_attempts_per_second(monkeypatch):
    stamps = []

    class Stamped(CountingSocket):
        def attempted(self):
            stamps.append(clock())

    import time

    clock = time.monotonic
    monkeypatch.setattr(scanner, "_raw_socket", Stamped)
    r = probe("--rate", "100", "127.0.0.1", spec(free_ports(30)))
    assert r.status == 1 and len(stamps) == 30
    for i, start in enumerate(stamps):  # any 0.1 s window: at most 100 * 0.1 + a 10 ms burst (1)
        assert sum(1 for t in stamps[i:] if t < start + 0.1) <= 11


def test_poll_and_select_pollers_give_the_same_answer(monkeypatch):
    with listeners(2) as ports, unanswered_port() as silent:
        closed = free_ports(2)
        expected = {**dict.fromkeys(ports, "open"), **dict.fromkeys(closed, "closed"), silent: "filtered"}
        for kind in ("poll", "select"):
            monkeypatch.setattr(platform, "probe_poller_kind", lambda system=None, kind=kind: kind)
            r = probe("--all", "-o", "json", "-w", "0.3", "--retries", "0", "127.0.0.1",
                      spec(ports + closed + [silent]))
            assert {row["port"]: row["state"] for row in json_rows(r)} == expected, kind


def test_several_threads_and_small_concurrency_give_the_same_answer():
    address = loopback_address()
    with listeners(5, address) as ports:
        before = wildcard_listen_ports()
        r = probe("--workers", "3", "-c", "7", address, "1-3000," + spec(ports))
        after = wildcard_listen_ports()
    found = [int(line.split()[1]) for line in r.text.splitlines()]
    assert found == sorted(found)
    assert set(ports) <= set(found) and set(found) - set(ports) <= before | after


def test_thread_shards_give_the_same_answer_as_process_shards():
    address = loopback_address()
    with listeners(4, address) as ports:
        jobs = Jobs([Host(socket.AF_INET, [address])], sorted(set(range(1, 2001)) | set(ports)))
        by_kind = {}
        for processes in (False, True):
            sc = Scanner(jobs, ScanConfig(concurrency=64), shards=3, processes=processes)
            by_kind[processes] = [r[2] for r in run_scanner(sc)]
    assert by_kind[False] == by_kind[True]
    assert set(ports) <= set(by_kind[True])


def test_rate_and_concurrency_are_split_between_shards():
    jobs = Jobs([Host(socket.AF_INET, ["127.0.0.1"])], range(1, 101))
    sc = Scanner(jobs, ScanConfig(concurrency=100, rate=100), shards=4)
    assert [(s.config.rate, s.concurrency) for s in sc.shards] == [(25, 25)] * 4


def ctrl_c_once_a_port_is_open(monkeypatch) -> None:
    """Make Scanner.wait raise KeyboardInterrupt (a Ctrl-C) as soon as one port is known open."""
    original = Scanner.wait

    def interrupted_once_open_found(self, timeout):
        finished = original(self, timeout)
        if self.counts()["open"]:
            raise KeyboardInterrupt
        return finished

    monkeypatch.setattr(Scanner, "wait", interrupted_once_open_found)


needs_fork = pytest.mark.skipif(not platform.probe_forks(), reason="process shards need fork (Linux)")


@needs_fork
def test_process_shards_stop_on_ctrl_c_and_report_what_they_found(monkeypatch):
    ctrl_c_once_a_port_is_open(monkeypatch)
    with listeners(1) as (port,), unanswered_port() as silent:
        r = probe("--workers", "2", "-w", "30", "127.0.0.1", spec(sorted([port, silent])))
    assert r.status == 130
    assert r.text.split()[:4] == ["127.0.0.1", str(port), "tcp", "open"]


@needs_fork
def test_process_shard_errors_reach_the_parent(monkeypatch):
    def no_fds(*args):
        raise OSError(platform.errno_code("EMFILE"), "Too many open files")

    monkeypatch.setattr(scanner, "_raw_socket", no_fds)
    r = probe("--workers", "2", "127.0.0.1", "1-10")
    assert r.status == 1 and "EMFILE" in r.err and len(r.err.splitlines()) == 1


@needs_fork
def test_a_process_shard_that_dies_is_an_error_not_a_hang(monkeypatch):
    def die(*args):
        os._exit(3)

    monkeypatch.setattr(scanner, "_raw_socket", die)
    r = probe("--workers", "2", "127.0.0.1", "1-10")
    assert r.status == 1 and "scanner process ended without reporting" in r.err


@needs_fork
def test_ctrl_c_at_the_terminal_stops_parent_and_process_shards():
    """A terminal's Ctrl-C signals the whole process group: parent and shard processes."""
    with unanswered_port() as silent, listeners(1) as (port,):
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, "-m", "sockdiag", "probe", "-vv", "--workers", "2", "-w", "30",
                                 "127.0.0.1", spec(sorted([port, silent]))], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, start_new_session=True)
        try:
            assert b"in flight" in proc.stderr.readline()
            os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=20)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert b"interrupted" in err and b"Traceback" not in err
    assert set(out.split()[1::5]) <= {str(port).encode()}


# --- banners and UDP -------------------------------------------------------------------------------

@contextlib.contextmanager
def banner_server(payload: bytes):
    """A listener that sends `payload` to each client, then waits for the client to go."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    lsock.settimeout(10)
    done = threading.Event()

    def serve():
        with contextlib.suppress(OSError):
            conn, _ = lsock.accept()
            with conn:
                conn.sendall(payload)
                conn.settimeout(10)
                with contextlib.suppress(OSError):
                    while conn.recv(100):
                        pass
        done.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield lsock.getsockname()[1]
    finally:
        lsock.close()
        thread.join(10)


def test_banner_read_escaped_and_bounded():
    with banner_server(b"SSH-2.0-Test\x01\r\n") as port, listeners(1) as (mute,):
        r = probe("--banner", "-o", "json", "-w", "0.3", "127.0.0.1", spec(sorted([port, mute])))
    rows = {row["port"]: row for row in json_rows(r)}
    # JSON keeps the banner whole (the text output escapes it); bytes that are not UTF-8 go to banner_b64
    assert rows[port]["banner"] == "SSH-2.0-Test\x01\r\n" and rows[port]["banner_b64"] is None
    assert rows[mute]["banner"] is None and rows[mute]["state"] == "open"
    assert list(rows[port])[-2:] == ["banner", "banner_b64"]


def test_banner_in_text_output_after_the_service():
    with banner_server(b"220 hello there\r\n") as port:
        r = probe("--banner", "127.0.0.1", str(port))
    fields = r.text.split()
    assert fields[3] == "open" and r.text.rstrip().endswith("220 hello there")


def test_long_banner_is_cut():
    with banner_server(b"x" * 5000) as port:
        r = probe("--banner", "-o", "json", "127.0.0.1", str(port))
    assert json_rows(r)[0]["banner"] == "x" * 512


@contextlib.contextmanager
def udp_ports():
    """(replying port, silent port, closed port) on 127.0.0.1."""
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (echo, silent, closed):
        s.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    echo.settimeout(30)

    def serve():
        while True:
            with contextlib.suppress(OSError):
                data, peer = echo.recvfrom(100)
                if data == STOP:
                    return
                echo.sendto(b"pong" + data, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield echo.getsockname()[1], silent.getsockname()[1], closed_port
    finally:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(STOP, echo.getsockname())
        thread.join(10)
        echo.close()
        silent.close()


STOP = b"\0stop"


def test_udp_open_closed_and_silent():
    with udp_ports() as (echo, silent, closed):
        r = probe("-u", "--all", "-o", "json", "-w", "0.3", "--retries", "0", "127.0.0.1", spec([echo, silent, closed]))
        default = probe("-u", "-w", "0.3", "--retries", "0", "127.0.0.1", spec([echo, silent, closed]))
    states = {row["port"]: row["state"] for row in json_rows(r)}
    assert states == {echo: "open", silent: "open|filtered", closed: "closed"}
    assert {row["proto"] for row in json_rows(r)} == {"udp"}
    assert r.status == 0
    # default output: what may be open (open and open|filtered), never the closed port
    assert sorted(int(line.split()[1]) for line in default.text.splitlines()) == sorted([echo, silent])


def test_udp_only_silence_is_not_success():
    with udp_ports() as (_, silent, _closed):
        r = probe("-u", "-w", "0.2", "--retries", "0", "127.0.0.1", str(silent))
    assert r.status == 1 and r.text.split()[3] == "open|filtered"


# --- targets, names and usage errors -----------------------------------------------------------------

def fake_getaddrinfo(table):
    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(fam, socket.SOCK_STREAM, 6, "", sa) for fam, sa in table[host]
                if family in (0, socket.AF_UNSPEC, fam)]
    return getaddrinfo


def test_names_resolve_ipv4_first_unless_minus_6(monkeypatch):
    table = {"both.test": [(socket.AF_INET6, ("::1", 0, 0, 0)), (socket.AF_INET, ("127.0.0.1", 0))]}
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo(table))
    with listeners(1) as (port,):
        r = probe("-v", "--all", "both.test", str(port))
        r6 = probe("--all", "-6", "both.test", str(port))
    assert r.text.split()[:4] == ["127.0.0.1", str(port), "tcp", "open"]
    assert "both.test is 127.0.0.1 (not scanned: ::1)" in r.err
    assert r6.text.split()[0] == "::1"


def test_unknown_host_exits_1_with_one_line(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo({}))
    r = probe("no-such-host.test", "80")
    assert r.status == 1 and r.out == b""
    assert "no-such-host.test" in r.err and len(r.err.splitlines()) == 1 and "Traceback" not in r.err


def test_unknown_host_among_others_is_a_warning(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo({}))
    with listeners(1) as (port,):
        r = probe("no-such-host.test,127.0.0.1", str(port))
    assert r.status == 0 and r.text.split()[0] == "127.0.0.1"
    assert "warning: not scanned: no-such-host.test" in r.err


@pytest.mark.parametrize(
    "argv, needle",
    [
        pytest.param(["127.0.0.1", "0"], "out of range", id="port-0"),
        pytest.param(["127.0.0.1", "70000"], "70000", id="port-70000"),
        pytest.param(["127.0.0.1", "10-5"], "reversed", id="reversed"),
        pytest.param(["127.0.0.1", "abc"], "'abc'", id="unknown-service"),
        pytest.param(["127.0.0.1", ""], "empty", id="empty-ports"),
        pytest.param(["10.0.0.0/8", "80"], "--force", id="block-too-big"),
        pytest.param(["127.0.0.300", "80"], "127.0.0.300", id="bad-address"),
        pytest.param(["-6", "127.0.0.1", "80"], "-6", id="family-mismatch"),
        pytest.param(["127.0.0.1", "80", "--rate", "0"], "allowed: 1 to", id="rate-0"),
        pytest.param(["127.0.0.1", "80", "--timeout=-1"], "more than 0", id="negative-timeout"),
        pytest.param(["127.0.0.1", "80", "--retries=-1"], "allowed: 0 to 100", id="negative-retries"),
    ],
)
def test_usage_errors_exit_2(argv, needle):
    r = probe(*argv)
    assert r.status == 2, r.err
    assert needle in r.err and "Traceback" not in r.err
    assert r.out == b""


def test_concurrency_follows_the_open_file_limit(monkeypatch):
    monkeypatch.setattr(platform, "raise_open_file_limit", lambda wanted: (300, 300))
    r = probe("-vv", "127.0.0.1", "1-400")
    assert "236 in flight at most" in r.err
    r = probe("-c", "1000", "127.0.0.1", "1-5")
    assert "warning: -c 1000 exceeds the open-file limit (300); using 236" in r.err


# --- streams, progress, interruption ----------------------------------------------------------------

def test_progress_only_on_a_terminal():
    with unanswered_port() as silent:
        tty = probe("-w", "0.3", "--retries", "0", "127.0.0.1", str(silent), stderr_isatty=True)
        pipe = probe("-w", "0.3", "--retries", "0", "127.0.0.1", str(silent))
    assert "probe: 0/1" in tty.err and "\r\x1b[K" in tty.err
    assert pipe.err == ""
    assert tty.out == pipe.out == b""


def test_closed_stdout_ends_quietly_and_closes_sockets(counting):
    class ClosedPipe(io.BytesIO):
        def write(self, data):
            raise BrokenPipeError(32, "Broken pipe")

    from sockdiag.cli import main

    env = make_env()
    env.stdout = ClosedPipe()
    with listeners(3) as ports:
        status = main(["probe", "127.0.0.1", spec(ports)], env)
    assert status == 0 and env.stderr.getvalue() == b""
    assert counting and all(s.closes == 1 for s in counting)


def test_ctrl_c_prints_what_was_found_and_exits_130(monkeypatch, counting):
    ctrl_c_once_a_port_is_open(monkeypatch)
    with listeners(1) as (port,), unanswered_port() as silent:
        r = probe("-w", "30", "127.0.0.1", spec(sorted([port, silent])))
    assert r.status == 130
    assert r.text.split()[:4] == ["127.0.0.1", str(port), "tcp", "open"]
    assert r.err.strip().endswith("sockdiag probe: interrupted")
    assert all(s.closes == 1 for s in counting)


@pytest.mark.skipif(platform.SYSTEM == platform.WINDOWS, reason="SIGINT to a child needs POSIX signals")
def test_sigint_to_the_process_exits_130():
    with unanswered_port() as silent:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, "-m", "sockdiag", "probe", "-vv", "-w", "30", "127.0.0.1",
                                 str(silent)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            first = proc.stderr.readline()  # the -vv plan line: the scan has started
            assert b"in flight" in first
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert b"interrupted" in err and b"Traceback" not in err


def test_output_widths_line_up():
    class Args:
        output, banner, all, udp = "text", False, True, False

    env = make_env()
    out = Output(Args, env, "tcp", [Host(socket.AF_INET, ["127.0.0.1"]), Host(socket.AF_INET, ["10.0.0.100"])])
    out.rows([(0, "127.0.0.1", 22, "closed", 0.001, "ECONNREFUSED", None),
              (1, "10.0.0.100", 8080, "unreachable", 0.001, "EHOSTUNREACH", None)])
    lines = env.stdout.getvalue().decode().splitlines()
    assert [line.index("tcp") for line in lines] == [len("10.0.0.100") + 2 + 5 + 2] * 2
    assert lines[1].endswith("EHOSTUNREACH") and "ECONNREFUSED" not in lines[0]


def test_plan_waits_for_sockets_in_flight_without_spinning(counting):
    """With all sockets in flight on silent ports, the scanner sleeps in poll() until the
    deadline: the attempts made equal the ports, whatever the poll wake-ups."""
    with unanswered_port() as silent:
        r = probe("--all", "-c", "1", "-w", "0.3", "--retries", "0", "127.0.0.1", f"{silent},{free_ports(1)[0]}")
    assert [line.split()[3] for line in r.text.splitlines()] in (["filtered", "closed"], ["closed", "filtered"])
    assert sum(s.attempts for s in counting) == 2
