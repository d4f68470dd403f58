"""`sockdiag bindcheck` on real loopback sockets: free, held by this test, TIME_WAIT (with and
without SO_REUSEADDR on the old server), a SO_REUSEPORT group, UDP, a privileged port, bad input.

Each test binds its own 127.66.x.y address so that nobody else's sockets are ever in the way.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys

import psutil
import pytest

from sockdiag import platform
from sockdiag.bindcheck import command as bindcheck
from sockdiag.core import bindverdict
from sockdiag.platform import socktable
from sockdiag.core.status import ExitStatus
from tests.conftest import ROOT, run_main, run_module, wait_until

_counter = itertools.count(1)
LINUX = platform.SYSTEM == platform.LINUX
WINDOWS = platform.SYSTEM == platform.WINDOWS


def _table_readable() -> bool:
    try:
        socktable.socket_rows("tcp")
    except psutil.AccessDenied:
        return False
    return True


# macOS lists other processes' sockets only to root: tests that assert on holders need the table.
needs_table = pytest.mark.skipif(not _table_readable(), reason="the socket table is not readable here "
                                                               "(psutil AccessDenied: macOS without root)")


@pytest.fixture
def addr() -> str:
    """A loopback address of this test alone (Linux routes all of 127/8 to lo)."""
    n = next(_counter)
    candidate = f"127.66.{os.getpid() % 250 + 1}.{n % 250 + 1}"
    try:
        with socket.socket() as s:
            s.bind((candidate, 0))
    except OSError:
        return "127.0.0.1"  # macOS only has 127.0.0.1 unless aliased
    return candidate


def free_port(addr: str, kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def check(*argv: str):
    """bindcheck -o json ARGV: (status, report, stderr)."""
    r = run_main(["bindcheck", "-o", "json", *argv])
    assert r.text.count("\n") == 1, r.text
    return r.status, json.loads(r.text), r.err


def rows_on(addr: str, port: int) -> list[dict]:
    return [row for row in socktable.socket_rows("tcp")
            if row["local_port"] == port and bindverdict._ip_key(row["local_address"]) == bindverdict._ip_key(addr)]


def make_time_wait(addr: str, server_reuse: bool) -> int:
    """The classic restart problem: the server closes first, so ITS side of the connection sits in
    TIME_WAIT on the server port. Returns the port once TIME_WAIT is all that is left on it."""
    with socket.socket() as server:
        if server_reuse:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((addr, 0))
        server.listen(1)
        port = server.getsockname()[1]
        with socket.create_connection((addr, port), timeout=5) as client:
            conn, _ = server.accept()
            conn.close()  # server side closes first: FIN_WAIT -> TIME_WAIT
            assert client.recv(1) == b""  # EOF; the client's close answers the FIN
    wait_until(lambda: [r["state"] for r in rows_on(addr, port)] == ["TIME_WAIT"])
    return port


def flat(text: str) -> str:
    """The text report with its wrapped lines joined: for phrases that may span a line break."""
    return " ".join(text.split())


def attempts_by_option(report) -> dict:
    return {a["option"]: (a["ok"], a["errno"]) for a in report["attempts"]}


# --- free ---------------------------------------------------------------------------------------

def test_free_port_on_an_address(addr):
    port = free_port(addr)
    status, report, err = check("-b", addr, str(port))
    assert status == ExitStatus.OK, err
    assert report["verdict"] == "free" and report["holders"] == [] and report["time_wait"] == 0
    assert list(report) == list(bindverdict.JSON_KEYS)
    assert report["address"] == addr and report["proto"] == "tcp" and report["port"] == port
    assert all(a["ok"] for a in report["attempts"])
    assert [a["option"] for a in report["attempts"]] == list(platform.bind_attempt_options())
    # nothing was left bound: a plain bind (no reuse option) still works
    with socket.socket() as s:
        s.bind((addr, port))


def test_free_port_default_address_is_dual_stack():
    if platform.dualstack_supported():
        with socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True) as s:
            port = s.getsockname()[1]
    else:
        port = free_port("0.0.0.0")
    r = run_main(["bindcheck", str(port)])
    assert r.status == ExitStatus.OK, r.text + r.err
    assert "verdict  FREE" in r.text
    expected = "dual-stack, as 'sockdiag listen' binds" if platform.dualstack_supported() else "all IPv4"
    assert expected in r.text.splitlines()[1]


def test_text_report_layout(addr):
    port = free_port(addr)
    r = run_main(["bindcheck", "-b", addr, str(port)])
    lines = r.text.splitlines()
    assert [line.split()[0] for line in lines[:5]] == ["port", "address", "verdict", "reason", "advice"]
    assert lines[0].split() == ["port", f"{port}/tcp"]
    assert "  OPTION        RESULT  ERRNO" in lines
    assert "holders: none" in lines
    if LINUX:
        assert any(line.startswith("  tcp_fin_timeout  ") for line in lines)
    assert r.err == ""


# --- held by a live socket of this test ---------------------------------------------------------

@needs_table
def test_port_held_by_our_listener_names_pid_and_process(addr):
    with socket.socket() as listener:
        listener.bind((addr, 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        status, report, _ = check("-b", addr, str(port))
        text = run_main(["bindcheck", "-b", addr, str(port)]).text
        # the inspected socket is undisturbed: it still accepts
        with socket.create_connection((addr, port), timeout=5):
            conn, _ = listener.accept()
            conn.close()
    assert status == ExitStatus.FAILURE
    assert report["verdict"] == "in use"
    name = psutil.Process().name()
    (holder,) = [h for h in report["holders"] if h["state"] == "LISTEN"]
    assert list(holder) == list(socktable.ROW_KEYS)
    assert holder["pid"] == os.getpid() and holder["process"] == name
    assert attempts_by_option(report)["plain"] == (False, "EADDRINUSE")
    assert f"LISTEN socket of PID {os.getpid()} ({name})" in flat(text)
    assert "verdict  IN USE" in text and "pick another port" in flat(text)


@needs_table
@pytest.mark.skipif(WINDOWS, reason="Windows has its own rules for a wildcard bind beside a specific one")
def test_default_address_sees_a_holder_on_one_loopback_address(addr):
    with socket.socket() as listener:
        listener.bind((addr, 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        status, report, _ = check(str(port))
    assert status == ExitStatus.FAILURE and report["verdict"] == "in use"
    assert any(h["pid"] == os.getpid() for h in report["holders"])


@needs_table
def test_holder_on_another_address_is_not_in_the_way(addr):
    if addr == "127.0.0.1":
        pytest.skip("needs a second loopback address")
    with socket.socket() as listener:
        listener.bind((addr, 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        r = run_main(["bindcheck", "-b", "127.0.0.1", str(port)])
    if r.status != ExitStatus.OK:
        pytest.skip("someone else uses this port on 127.0.0.1 right now")
    assert "verdict  FREE" in r.text and "1 other socket uses port" in r.text


@pytest.mark.skipif(not LINUX, reason="the Linux rule for SO_REUSEADDR beside connections")
@needs_table
def test_connection_left_by_a_stopped_listener(addr):
    """The old server's listener is gone but one of its connections lives on (a worker still
    serving): a plain bind fails, a SO_REUSEADDR one succeeds, and the verdict says so."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((addr, 0))
        server.listen(1)
        port = server.getsockname()[1]
        client = socket.create_connection((addr, port), timeout=5)
        conn, _ = server.accept()
    with client, conn:
        status, report, _ = check("-b", addr, str(port))
    assert status == ExitStatus.FAILURE and report["verdict"] == "in use"
    assert attempts_by_option(report)["SO_REUSEADDR"] == (True, None)
    assert "can start beside that connection" in report["advice"]
    assert [h["state"] for h in report["holders"]] == ["ESTABLISHED"]


@pytest.mark.skipif(not platform.has_reuseport(), reason="no SO_REUSEPORT on this OS")
@needs_table
def test_reuseport_group(addr):
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((addr, 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        status, report, _ = check("-b", addr, str(port))
    assert status == ExitStatus.FAILURE
    assert report["verdict"] == "reuseport group"
    assert attempts_by_option(report)["SO_REUSEPORT"] == (True, None)
    assert attempts_by_option(report)["plain"] == (False, "EADDRINUSE")
    assert "same user" in report["advice"]


@pytest.mark.skipif(not LINUX, reason="Linux lists a bound, non-listening TCP socket nowhere")
@needs_table
def test_bound_but_not_listening_socket_is_invisible(addr):
    with socket.socket() as bound:
        bound.bind((addr, 0))
        port = bound.getsockname()[1]
        status, report, _ = check("-b", addr, str(port))
        text = run_main(["bindcheck", "-b", addr, str(port)]).text
    assert status == ExitStatus.FAILURE and report["verdict"] == "in use" and report["holders"] == []
    assert "bound without listening" in flat(text) and "holders: none" in text


@needs_table
def test_udp_holder_in_use_and_reuse_binds_not_tried(addr):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind((addr, 0))
        port = holder.getsockname()[1]
        status, report, _ = check("-u", "-b", addr, str(port))
        # undisturbed: it still receives
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"ping", (addr, port))
        holder.settimeout(5)
        assert holder.recv(16) == b"ping"
    assert status == ExitStatus.FAILURE
    assert report["proto"] == "udp" and report["verdict"] == "in use"
    assert [a["ok"] for a in report["attempts"]][1:] == [None] * (len(report["attempts"]) - 1)
    assert report["holders"][0]["pid"] == os.getpid() and report["holders"][0]["proto"] == "udp"
    assert report["time_wait_expires_s"] is None


def test_free_udp_port(addr):
    port = free_port(addr, socket.SOCK_DGRAM)
    status, report, _ = check("-u", "-b", addr, str(port))
    assert status == ExitStatus.OK and report["verdict"] == "free"


# --- TIME_WAIT only: the restart problem --------------------------------------------------------

@needs_table
@pytest.mark.skipif(WINDOWS, reason="Windows: TIME_WAIT does not block a bind the POSIX way")
def test_time_wait_from_server_with_reuseaddr(addr):
    port = make_time_wait(addr, server_reuse=True)
    status, report, _ = check("-b", addr, str(port))
    assert status == ExitStatus.FAILURE
    assert report["verdict"] == "time-wait only"
    assert report["time_wait"] == 1 and report["holders"][0]["state"] == "TIME_WAIT"
    assert attempts_by_option(report)["plain"] == (False, "EADDRINUSE")
    if LINUX:
        assert attempts_by_option(report)["SO_REUSEADDR"] == (True, None)
        assert 0 < report["time_wait_expires_s"] <= 60
        assert "set SO_REUSEADDR" in report["advice"] and "can bind now" in report["advice"]
    text = run_main(["bindcheck", "-b", addr, str(port)]).text
    assert "verdict  TIME-WAIT ONLY" in text


@pytest.mark.skipif(not LINUX, reason="Linux rule: SO_REUSEADDR passes only TIME_WAIT sockets that had it too")
@needs_table
def test_time_wait_from_server_without_reuseaddr(addr):
    port = make_time_wait(addr, server_reuse=False)
    status, report, _ = check("-b", addr, str(port))
    assert status == ExitStatus.FAILURE
    assert report["verdict"] == "time-wait only"
    assert attempts_by_option(report)["SO_REUSEADDR"] == (False, "EADDRINUSE")
    seconds = report["time_wait_expires_s"]
    assert 0 < seconds <= 60
    assert report["advice"].startswith("wait ~")
    assert "make the server set SO_REUSEADDR so the next restart does not hit this" in report["advice"]
    text = run_main(["bindcheck", "-b", addr, str(port)]).text
    assert "not even a SO_REUSEADDR bind passes them" in flat(text)
    assert "old server had not set SO_REUSEADDR" in flat(text)
    tw_line = next(line for line in text.splitlines() if "TIME_WAIT  " in line)
    assert 0 < float(tw_line.split()[-1]) <= 60  # the EXPIRES_S column


@pytest.mark.skipif(not LINUX, reason="/proc/net/tcp is Linux's")
def test_proc_parser_reads_the_live_kernel_table(addr):
    with socket.socket() as listener:
        listener.bind((addr, 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        texts = platform.proc_net_tcp_texts()
    entries = [e for text in texts for e in bindverdict.parse_proc_net_tcp(text, platform.host_byteorder())]
    assert [(e.local_address, e.state) for e in entries if e.local_port == port] == [(addr, "LISTEN")]
    assert platform.clock_ticks_per_second() > 0


# --- permission, address, errors ----------------------------------------------------------------

def _privileged_port(addr: str, start: int) -> int | None:
    for port in range(min(start, 1024) - 1, 0, -1):
        try:
            with socket.socket() as s:
                s.bind((addr, port))
            return port
        except OSError:
            continue
    return None


def _drop_bind_capability():
    """In the child, before exec: remove CAP_NET_BIND_SERVICE from the capability bounding set, so
    the program runs as root without the right to bind privileged ports, as an ordinary user.
    (Switching to uid 65534 would not do here: the interpreter lives under /root.)"""
    import ctypes

    pr_capbset_drop, cap_net_bind_service = 24, 10  # <linux/prctl.h>, <linux/capability.h>
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_capbset_drop, cap_net_bind_service, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.skipif(not LINUX, reason="needs Linux's ip_unprivileged_port_start and capabilities")
def test_privileged_port_as_non_root(addr):
    start = platform.unprivileged_port_start()
    if start is None or start <= 1:
        pytest.skip(f"net.ipv4.ip_unprivileged_port_start = {start}: no privileged ports here")
    argv = ["bindcheck", "-o", "json", "-b", addr]
    if os.geteuid() != 0:
        port = start - 1
        r = run_main([*argv, str(port)])
        status, out = r.status, r.text
    else:
        port = _privileged_port(addr, start)
        if port is None:
            pytest.skip("no free privileged port to try")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        try:
            proc = subprocess.run([sys.executable, "-m", "sockdiag", *argv, str(port)], capture_output=True,
                                  text=True, timeout=60, cwd=str(ROOT), env=env, preexec_fn=_drop_bind_capability)
        except subprocess.SubprocessError as exc:
            pytest.skip(f"cannot drop CAP_NET_BIND_SERVICE here: {exc}")
        status, out = proc.returncode, proc.stdout
    report = json.loads(out)
    assert status == ExitStatus.FAILURE  # the check ran; its answer is "not bindable" (issue 6)
    assert report["verdict"] == "permission"
    assert report["attempts"][0]["errno"] in ("EACCES", "EPERM")
    assert f"lower net.ipv4.ip_unprivileged_port_start, or use a port of {start} or above" in report["advice"]


def test_address_not_available():
    if platform.read_sysctl("net/ipv4/ip_nonlocal_bind") == "1":
        pytest.skip("ip_nonlocal_bind=1: any address binds")
    # TEST-NET-1 (RFC 5737): never an address of this host; a bind sends no traffic
    status, report, _ = check("-b", "192.0.2.1", "8080")
    assert status == ExitStatus.FAILURE
    assert report["verdict"] == "address not available"
    assert report["attempts"][0]["errno"] == "EADDRNOTAVAIL"


def test_ipv6_loopback_with_brackets():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
    except OSError:
        pytest.skip("no ::1")
    status, report, _ = check("-b", "[::1]", str(port))
    assert status == ExitStatus.OK and report["address"] == "::1"


@pytest.mark.parametrize("port", ["0", "70000", "10-5", "nosuchservice", "-1", "80,81"])
def test_bad_port_is_usage_error(port):
    r = run_main(["bindcheck", port] if port != "-1" else ["bindcheck", "--", port])
    assert r.status == ExitStatus.USAGE
    assert r.err.startswith("sockdiag bindcheck: error: ") and "Traceback" not in r.err
    assert r.err.splitlines()[-1] == "Try 'sockdiag bindcheck --help'."


def test_empty_address_is_usage_error():
    r = run_main(["bindcheck", "-b", "", "8080"])
    assert r.status == ExitStatus.USAGE and r.err.startswith("sockdiag bindcheck: error: ")


def test_unknown_host_name_is_one_line(monkeypatch):
    def no_such_name(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    r = run_main(["bindcheck", "-b", "no-such-host.invalid", "8080"])
    assert r.status == ExitStatus.FAILURE
    assert r.err == "sockdiag bindcheck: error: resolve no-such-host.invalid: name or service not known (EAI_NONAME)\n"


def test_socket_creation_denied_exits_4(monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(bindcheck.socket, "socket", denied)
    r = run_main(["bindcheck", "-b", "127.0.0.1", "8080"])
    assert r.status == ExitStatus.PERMISSION
    assert r.err == "sockdiag bindcheck: error: not permitted to create a socket: permission denied (EACCES)\n"
    assert r.out == b""


def test_unreadable_socket_table_warns_and_still_answers(monkeypatch, addr):
    def access_denied(kind="inet"):
        raise psutil.AccessDenied()

    monkeypatch.setattr(socktable, "socket_rows", access_denied)
    port = free_port(addr)
    status, report, err = check("-b", addr, str(port))
    assert status == ExitStatus.OK and report["verdict"] == "free"
    assert report["holders"] is None and report["time_wait"] is None
    assert err.startswith("sockdiag: warning: the socket table is not readable")
    with socket.socket() as listener:
        listener.bind((addr, 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        status, report, _ = check("-b", addr, str(port))
        text = run_main(["bindcheck", "-b", addr, str(port)]).text
    assert status == ExitStatus.FAILURE and report["verdict"] == "in use"
    assert "holder is unknown" in flat(text)
    assert "holders: unknown" in text


def test_csv_output_one_row(addr):
    port = free_port(addr)
    r = run_main(["bindcheck", "-o", "csv", "-b", addr, str(port)])
    header, row = r.text.splitlines()
    assert header == ",".join(bindverdict.JSON_KEYS)
    assert row.startswith(f"{port},{addr},tcp,free,plain=ok ")


def test_verbose_reports_each_attempt(addr):
    port = free_port(addr)
    r = run_main(["bindcheck", "-v", "-o", "json", "-b", addr, str(port)])
    assert r.err.count(f"sockdiag: bind {addr}:{port} ") == len(platform.bind_attempt_options())


def test_as_a_user_runs_it(addr):
    port = free_port(addr)
    proc = run_module(["bindcheck", "-b", addr, str(port)])
    assert proc.returncode == 0, proc.stderr
    assert b"verdict  FREE" in proc.stdout and proc.stderr == b""
