"""`sockdiag wait` on real loopback and unix sockets: ready at once, a listener that appears while
the wait runs, --any, -w expiring, --closed, -U, --bindable (a holder that goes away, TIME_WAIT),
-o json / csv, bad input, names that do not resolve (a fake getaddrinfo: never real DNS).

Tests that start something "later" synchronise on the wait's own -v lines (its first refused
attempt), never on sleeps.
"""

from __future__ import annotations

import csv
import json
import re
import socket
import threading

import pytest

from sockdiag import platform
from sockdiag.core.errors import PermissionFailure, UsageError
from sockdiag.core.status import ExitStatus
from sockdiag.net import binds
from sockdiag.wait import targets as wait_targets
from sockdiag.wait.options import JSON_KEYS
from tests.conftest import make_env, run_main, wait_until
from tests.test_relay_support import TIMEOUT, Proc, ThreadedMain

HAS_UNIX = hasattr(socket, "AF_UNIX")
needs_unix = pytest.mark.skipif(not HAS_UNIX, reason="no unix sockets on this system")
FAST = ["--interval", "0.02"]  # attempts close together: the tests stay short


def listener(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a rare self-connect's TIME_WAIT
    sock.bind((host, port))
    sock.listen(socket.SOMAXCONN)  # never accepted: every attempt of a --closed wait stays queued
    return sock


def refused_port() -> int:
    """A port nothing listens on (bound to port 0 and read back, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unix_listener(path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(8)
    return sock


def json_rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def until_attempted(run: ThreadedMain, needle: str) -> None:
    """Until the wait's -v output shows `needle` (its first failed attempt), or it ended."""
    wait_until(lambda: needle in run.err or not run.thread.is_alive(), timeout=TIMEOUT)
    assert needle in run.err, run.err


# --- TCP ----------------------------------------------------------------------------------------

def test_ready_at_once_is_quiet():
    with listener() as server:
        port = server.getsockname()[1]
        r = run_main(["wait", "-w", "5", f"127.0.0.1:{port}"])
    assert r.status == ExitStatus.OK, r.err
    assert r.out == b"" and r.err == ""


def test_listener_that_appears_later():
    port = refused_port()
    run = ThreadedMain(["wait", "-v", "-w", str(TIMEOUT), *FAST, f"127.0.0.1:{port}"])
    until_attempted(run, f"127.0.0.1:{port} not ready: connect 127.0.0.1:{port}: connection refused (ECONNREFUSED)")
    with listener(port=port):
        assert run.result() == ExitStatus.OK, run.err
    assert re.search(rf"sockdiag: 127\.0\.0\.1:{port} ready after \d+\.\d s\n", run.err), run.err
    assert run.out == b""


def test_all_targets_are_awaited():
    port = refused_port()
    with listener() as server:
        ready = server.getsockname()[1]
        run = ThreadedMain(["wait", "-v", "-w", str(TIMEOUT), *FAST, "-o", "json",
                            f"127.0.0.1:{ready}", f"127.0.0.1:{port}"])
        until_attempted(run, f"127.0.0.1:{port} not ready")
        assert f"127.0.0.1:{ready} ready after" in run.err
        assert run.thread.is_alive()  # one of two is not enough without --any
        with listener(port=port):
            assert run.result() == ExitStatus.OK, run.err
    rows = json_rows(run.out.decode())
    assert [row["target"] for row in rows] == [f"127.0.0.1:{ready}", f"127.0.0.1:{port}"]
    assert all(row["ready"] for row in rows) and rows[0]["attempts"] == 1 and rows[1]["attempts"] >= 2


def test_any_ends_with_the_first_ready_target():
    refused = refused_port()
    with listener() as server:
        port = server.getsockname()[1]
        r = run_main(["wait", "--any", "-w", "5", "-o", "json", f"127.0.0.1:{refused}", f"127.0.0.1:{port}"])
    assert r.status == ExitStatus.OK, r.err
    first, second = json_rows(r.text)
    assert first["ready"] is False and first["error"] == "ECONNREFUSED" and first["attempts"] == 1
    assert second["ready"] is True and second["error"] is None


def test_timeout_exits_3_with_one_line_naming_the_target():
    port = refused_port()
    r = run_main(["wait", "-w", "0.3", *FAST, f"127.0.0.1:{port}"])
    assert r.status == ExitStatus.TIMEOUT
    assert r.err.splitlines() == [(
        f"sockdiag wait: error: timed out after 0.3 s waiting for 127.0.0.1:{port} to be ready "
        f"(connect 127.0.0.1:{port}: connection refused (ECONNREFUSED))")]
    assert r.out == b""


def test_any_timeout_names_every_target():
    a, b = refused_port(), refused_port()
    r = run_main(["wait", "--any", "-w", "0.2", *FAST, f"127.0.0.1:{a}", f"127.0.0.1:{b}"])
    assert r.status == ExitStatus.TIMEOUT
    (line,) = r.err.splitlines()
    assert "waiting for any of" in line and f"127.0.0.1:{a}" in line and f"127.0.0.1:{b}" in line


def test_json_rows_have_the_documented_keys():
    refused = refused_port()
    with listener() as server:
        port = server.getsockname()[1]
        r = run_main(["wait", "-w", "0.2", *FAST, "-o", "json", f"127.0.0.1:{port}", f"127.0.0.1:{refused}"])
    assert r.status == ExitStatus.TIMEOUT
    ready, missing = json_rows(r.text)
    assert list(ready) == list(JSON_KEYS) == ["target", "kind", "ready", "seconds", "attempts", "error"]
    assert ready == {"target": f"127.0.0.1:{port}", "kind": "tcp", "ready": True, "seconds": ready["seconds"],
                     "attempts": 1, "error": None}
    assert isinstance(ready["seconds"], float) and 0 <= ready["seconds"] < 0.2
    assert missing["ready"] is False and missing["error"] == "ECONNREFUSED" and missing["attempts"] >= 2
    assert missing["seconds"] >= 0.2


def test_csv_output():
    with listener() as server:
        port = server.getsockname()[1]
        r = run_main(["wait", "-w", "5", "-o", "csv", f"127.0.0.1:{port}"])
    assert r.status == ExitStatus.OK, r.err
    header, row = csv.reader(r.text.splitlines())
    assert header == list(JSON_KEYS)
    assert row[:3] == [f"127.0.0.1:{port}", "tcp", "True"] and row[-1] == ""


@pytest.mark.skipif(not platform.dualstack_supported(), reason="no IPv6 loopback here")
def test_ipv6_target_in_brackets():
    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"cannot listen on ::1: {exc}")
    with server:
        port = server.getsockname()[1]
        r = run_main(["wait", "-w", "5", "-o", "json", f"[::1]:{port}"])
    assert r.status == ExitStatus.OK, r.err
    assert json_rows(r.text)[0]["target"] == f"[::1]:{port}"


# --- --closed -----------------------------------------------------------------------------------

def test_closed_when_nothing_listens():
    r = run_main(["wait", "--closed", "-w", "5", f"127.0.0.1:{refused_port()}"])
    assert r.status == ExitStatus.OK, r.err


def test_closed_waits_until_the_listener_goes():
    server = listener()
    port = server.getsockname()[1]
    try:
        run = ThreadedMain(["wait", "--closed", "-v", "-w", str(TIMEOUT), *FAST, f"127.0.0.1:{port}"])
        until_attempted(run, f"127.0.0.1:{port} not closed: connect 127.0.0.1:{port}: accepts connections")
    finally:
        server.close()
    assert run.result() == ExitStatus.OK, run.err
    assert f"127.0.0.1:{port} closed after" in run.err


def test_closed_timeout_says_it_still_accepts():
    with listener() as server:
        port = server.getsockname()[1]
        r = run_main(["wait", "--closed", "-w", "0.2", "--interval", "0.05", "-o", "json", f"127.0.0.1:{port}"])
    assert r.status == ExitStatus.TIMEOUT
    assert "to be closed" in r.err and "accepts connections" in r.err
    assert json_rows(r.text)[0]["error"] == "accepting"


def test_closed_needs_every_address_to_refuse():
    """A name with two addresses: one accepting keeps it open, whichever comes first."""
    with listener() as server:
        port = server.getsockname()[1]
        refused = ("127.0.0.1", refused_port())

        def two(host, port_, family, socktype):
            return [(socket.AF_INET, refused), (socket.AF_INET, ("127.0.0.1", port))]

        target = wait_targets.TcpTarget("db", port, resolver=two)
        assert target.attempt(lambda: 1.0, closed=False).ready
        closed = target.attempt(lambda: 1.0, closed=True)
        assert not closed.ready and closed.error == "accepting"


# --- names --------------------------------------------------------------------------------------

def _no_such_name(*args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_unresolvable_name_is_not_ready_and_times_out(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _no_such_name)
    r = run_main(["wait", "-v", "-w", "0.3", *FAST, "-o", "json", "db.example:5432"])
    assert r.status == ExitStatus.TIMEOUT
    assert "db.example:5432 not ready: resolve db.example: name or service not known (EAI_NONAME)" in r.err
    assert r.err.count("not ready") == 1  # -v says each reason once
    assert r.err.splitlines()[-1].startswith("sockdiag wait: error: timed out after 0.3 s waiting for db.example:5432")
    (row,) = json_rows(r.text)
    assert row["ready"] is False and row["error"] == "EAI_NONAME" and row["attempts"] >= 2


def test_name_that_appears_later_is_resolved_again(monkeypatch):
    """As in docker compose: the service's name exists only once its container runs."""
    real = socket.getaddrinfo
    registered = threading.Event()

    def dns(host, *args, **kwargs):
        if host == "db" and not registered.is_set():
            return _no_such_name()
        return real("127.0.0.1" if host == "db" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", dns)
    with listener() as server:
        port = server.getsockname()[1]
        run = ThreadedMain(["wait", "-v", "-w", str(TIMEOUT), *FAST, f"db:{port}"])
        until_attempted(run, "(EAI_NONAME)")
        registered.set()
        assert run.result() == ExitStatus.OK, run.err
    assert f"db:{port} ready after" in run.err


def test_a_hanging_resolver_does_not_outlast_the_timeout(monkeypatch):
    release = threading.Event()
    calls = []

    def hang(*args, **kwargs):
        calls.append(args[0])
        release.wait(TIMEOUT)
        return _no_such_name()

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    try:
        r = run_main(["wait", "-w", "0.3", *FAST, "-o", "json", "slow.example:80"])
    finally:
        release.set()
    assert r.status == ExitStatus.TIMEOUT
    assert "still resolving" in r.err
    assert json_rows(r.text)[0]["error"] == "resolving"
    assert calls == ["slow.example"]  # waited for again, never started twice


# --- unix sockets -------------------------------------------------------------------------------

@needs_unix
def test_unix_socket_ready(tmp_path):
    path = tmp_path / "app.sock"
    with unix_listener(path):
        r = run_main(["wait", "-w", "5", "-o", "json", "-U", str(path)])
    assert r.status == ExitStatus.OK, r.err
    (row,) = json_rows(r.text)
    assert row["target"] == str(path) and row["kind"] == "unix" and row["ready"] is True


@needs_unix
def test_unix_socket_that_appears_later_mixed_with_tcp(tmp_path):
    path = tmp_path / "app.sock"
    with listener() as server:
        port = server.getsockname()[1]
        run = ThreadedMain(["wait", "-v", "-w", str(TIMEOUT), *FAST, f"127.0.0.1:{port}", "-U", str(path)])
        until_attempted(run, f"{path} not ready: connect {path}: no such file or directory (ENOENT)")
        with unix_listener(path):
            assert run.result() == ExitStatus.OK, run.err
    assert f"{path} ready after" in run.err and f"127.0.0.1:{port} ready after" in run.err


@needs_unix
def test_unix_socket_closed(tmp_path):
    stale = tmp_path / "stale.sock"
    unix_listener(stale).close()  # the file stays, nothing listens: refused
    r = run_main(["wait", "--closed", "-w", "5", "-U", str(stale), "-U", str(tmp_path / "gone.sock")])
    assert r.status == ExitStatus.OK, r.err


@needs_unix
def test_unix_path_too_long_is_a_usage_error(tmp_path):
    r = run_main(["wait", "-w", "5", "-U", str(tmp_path / ("x" * 200))])
    assert r.status == ExitStatus.USAGE, r.err
    assert r.err.startswith("sockdiag wait: error: -U ") and "Traceback" not in r.err


# --- --bindable ---------------------------------------------------------------------------------

def test_bindable_when_the_holder_closes():
    holder = listener()
    port = holder.getsockname()[1]
    try:
        run = ThreadedMain(["wait", "-v", "-w", str(TIMEOUT), *FAST, "-o", "json", "--bindable", str(port),
                            "-b", "127.0.0.1"])
        until_attempted(run, f"127.0.0.1:{port} not bindable: bind 127.0.0.1:{port}: address already in use "
                             "(EADDRINUSE)")
    finally:
        holder.close()
    assert run.result() == ExitStatus.OK, run.err
    assert f"127.0.0.1:{port} bindable after" in run.err
    (row,) = json_rows(run.out.decode())
    assert row["kind"] == "bind" and row["ready"] is True and row["attempts"] >= 2
    with socket.socket() as s:  # the wait's throw-away sockets left nothing bound
        s.bind(("127.0.0.1", port))


@pytest.mark.skipif(not platform.dualstack_supported(), reason="no dual-stack wildcard here")
def test_bindable_default_is_the_dual_stack_wildcard():
    """A holder on 127.0.0.1 is in the way of '::' with IPv4 included, as 'sockdiag listen' binds."""
    with listener() as holder:
        port = holder.getsockname()[1]
        r = run_main(["wait", "-w", "0.2", *FAST, "-o", "json", "--bindable", str(port)])
    assert r.status == ExitStatus.TIMEOUT
    (row,) = json_rows(r.text)
    assert row["target"] == f"[::]:{port}" and row["error"] == "EADDRINUSE"


@pytest.mark.skipif(platform.SYSTEM == platform.WINDOWS, reason="Windows: TIME_WAIT does not block a bind")
def test_time_wait_blocks_a_plain_bind():
    """The restart problem: the server closed first, its side of the connection holds the port."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            conn, _ = server.accept()
            conn.close()  # server side first: FIN_WAIT -> TIME_WAIT on the server port
            assert client.recv(1) == b""
    r = run_main(["wait", "-w", "0.2", *FAST, "--bindable", str(port), "-b", "127.0.0.1"])
    assert r.status == ExitStatus.TIMEOUT
    assert "address already in use (EADDRINUSE)" in r.err


def test_bindable_permission_denied_ends_at_once():
    """Waiting does not make a privileged port bindable: exit 4 at the first attempt."""

    def refuse(target, port, sock_type, option):
        assert option == binds.PLAIN and sock_type == socket.SOCK_STREAM
        return {"option": option, "ok": False, "errno": "EACCES"}

    target = wait_targets.BindTarget(binds.resolve_target("127.0.0.1"), 80, bind=refuse)
    with pytest.raises(PermissionFailure, match=r"bind 127\.0\.0\.1:80: permission denied \(EACCES\)"):
        target.attempt(lambda: 1.0, closed=False)


def test_binds_module_serves_bindcheck_shape():
    """net.binds answers as bindcheck's attempts do: {option, ok, errno} with errno names."""
    where = binds.resolve_target("127.0.0.1")
    assert (where.address, where.family, where.dualstack) == ("127.0.0.1", socket.AF_INET, False)
    with listener() as holder:
        port = holder.getsockname()[1]
        held = binds.run_attempts(where, port, False, ("plain", "SO_REUSEADDR"))
    assert held == [{"option": "plain", "ok": False, "errno": "EADDRINUSE"},
                    {"option": "SO_REUSEADDR", "ok": False, "errno": "EADDRINUSE"}]
    assert binds.try_bind(where, port, socket.SOCK_STREAM) == {"option": "plain", "ok": True, "errno": None}
    with pytest.raises(UsageError):
        binds.resolve_target("[]")


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    pytest.param(["localhost"], "expected HOST:PORT", id="no-port"),
    pytest.param([":80"], "expected HOST:PORT", id="no-host"),
    pytest.param(["db:"], "empty port", id="empty-port"),
    pytest.param(["db:70000"], "out of range", id="port-out-of-range"),
    pytest.param(["db:nosuchservice"], "unknown port or service", id="bad-service"),
    pytest.param(["::1:80"], "[ADDR]:PORT", id="bare-ipv6"),
    pytest.param(["[::1]80"], "expected [IPv6]:PORT", id="bracket-no-colon"),
    pytest.param(["[::zz]:80"], "not a valid IPv6 address", id="bad-ipv6"),
    pytest.param(["999.1.1.1:80"], "not a valid IPv4 address", id="bad-ipv4"),
    pytest.param(["-U", ""], "empty unix socket path", id="empty-unix-path"),
    pytest.param(["--bindable", "0"], "out of range", id="bindable-port-0"),
    pytest.param(["db:1", "-w", "0"], "more than 0", id="zero-timeout"),
    pytest.param(["db:1", "--interval", "nan"], "argument --interval", id="nan-interval"),
    pytest.param([], "nothing to wait for", id="no-target"),
    pytest.param(["db:1", "-b", "127.0.0.1"], "--bindable", id="bind-without-bindable"),
])
def test_bad_input_exits_2_with_one_line(argv, needle):
    r = run_main(["wait", *argv])
    assert r.status == ExitStatus.USAGE, r.err
    error, hint = r.err.splitlines()
    assert error.startswith("sockdiag wait: error: ") and needle in error
    assert hint == "Try 'sockdiag wait --help'."
    assert r.out == b""


# --- terminal, signals --------------------------------------------------------------------------

def test_progress_line_only_on_a_terminal_with_v():
    port = refused_port()
    argv = ["wait", "-w", "0.2", *FAST, f"127.0.0.1:{port}"]
    assert "\r" not in run_main(["-v", *argv], stderr_isatty=False).err
    assert "\r" not in run_main(argv, stderr_isatty=True).err
    tty = run_main(["-v", *argv], stderr_isatty=True).err
    assert "\r\x1b[Kwaiting " in tty and "ECONNREFUSED" in tty
    assert "\r\x1b[Ksockdiag wait: error: timed out" in tty  # the progress line is erased first


def test_help_documents_keys_and_no_limit():
    r = run_main(["wait", "--help"])
    assert r.status == 0
    for key in JSON_KEYS:
        assert f"  {key} " in r.text
    assert "Without -w the wait has no end" in r.text


@pytest.mark.skipif(platform.SYSTEM == platform.WINDOWS, reason="SIGINT/SIGTERM to a child process")
@pytest.mark.parametrize("signame, status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_signals_end_an_endless_wait(signame, status):
    import signal

    port = refused_port()
    with Proc(["wait", "-v", *FAST, f"127.0.0.1:{port}"]) as proc:
        wait_until(lambda: "not ready" in proc.stderr, timeout=TIMEOUT)
        proc.popen.send_signal(getattr(signal, signame))
        assert proc.wait() == status, proc.stderr
    assert "Traceback" not in proc.stderr


def test_waiter_with_an_injected_clock_and_sleep():
    """The loop itself: rounds, pauses of --interval, the deadline, on a fake clock."""
    from sockdiag.wait.command import Waiter

    now = [100.0]
    pauses = []

    class Never:
        kind, label = "tcp", "x:1"

        def verb(self, closed):
            return "ready"

        def attempt(self, budget, closed):
            assert 0 < budget() <= 1.0
            return wait_targets.Outcome(False, "connect x:1: connection refused (ECONNREFUSED)", "ECONNREFUSED")

    def sleep(seconds):
        pauses.append(seconds)
        now[0] += seconds

    env = make_env(clock=lambda: now[0])
    states, elapsed = Waiter([Never()], env, total=1.0, interval=0.4, sleep=sleep).run()
    assert pauses == [0.4, 0.4, pytest.approx(0.2)]
    assert states[0].attempts == 3 and not states[0].ready and elapsed == pytest.approx(1.0)
