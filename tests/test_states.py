"""`sockdiag states` on real loopback sockets: rows, every filter, formats, summary, watch,
the AccessDenied fallback and a closed stdout."""

from __future__ import annotations

import collections
import contextlib
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import psutil
import pytest

from sockdiag.core import sockview
from sockdiag.platform import procnet, socktable
from sockdiag.states import command as states
from sockdiag.core.sockview import ROW_KEYS
from tests.conftest import ROOT, has_ipv6_loopback, make_env, run_main, wait_until

ME = os.getpid()
MY_NAME = psutil.Process().name()
FAST_PATH = socktable.socket_table_source() == "procfs"



class Held:
    """Ports of the sockets loopback_sockets() holds open."""

    tcp = client = tw_client = udp = v6 = 0
    unix_path = ""


def _tcp_rows(port: int, state: str) -> list[tuple]:
    rows = socktable.collect({"tcp"}, with_pids=False).rows
    return [r for r in rows if r[3] == port and r[6] == state]


@contextlib.contextmanager
def loopback_sockets(tmp_path):
    """A TCP listener with one connected pair and one server-side TIME_WAIT socket, a bound UDP
    socket, an IPv6 listener (if the host has IPv6) and a unix listener, all in this process."""
    held = Held()
    with contextlib.ExitStack() as stack:
        def keep(sock):
            return stack.enter_context(sock)

        listener = keep(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        held.tcp = listener.getsockname()[1]
        client = keep(socket.create_connection(("127.0.0.1", held.tcp)))
        keep(listener.accept()[0])
        held.client = client.getsockname()[1]
        # TIME_WAIT: the side that closes first gets it; here the server side (local port = held.tcp).
        closer = socket.create_connection(("127.0.0.1", held.tcp))
        with closer:
            served, _ = listener.accept()
            held.tw_client = closer.getsockname()[1]
            served.close()
            assert closer.recv(1) == b""
        wait_until(lambda: any(r[5] == held.tw_client for r in _tcp_rows(held.tcp, "TIME_WAIT")))
        udp = keep(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        udp.bind(("127.0.0.1", 0))
        held.udp = udp.getsockname()[1]
        if has_ipv6_loopback():
            v6 = keep(socket.socket(socket.AF_INET6))
            v6.bind(("::1", 0))
            v6.listen(1)
            held.v6 = v6.getsockname()[1]
        if hasattr(socket, "AF_UNIX"):
            held.unix_path = str(tmp_path / "states.sock")
            unix = keep(socket.socket(socket.AF_UNIX))
            unix.bind(held.unix_path)
            unix.listen(1)
        yield held


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    with loopback_sockets(tmp_path_factory.mktemp("states")) as ports:
        yield ports


def json_rows(argv: list[str]) -> list[dict]:
    r = run_main(["states", *argv, "-o", "json"])
    assert r.status == 0, r.err
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert all(list(row) == list(ROW_KEYS) for row in rows)
    return rows


BASE_KEYS = ROW_KEYS[:9]  # the keys before owners, queues, timer and uid


def base(rows: list[dict]) -> list[dict]:
    return [{k: r[k] for k in BASE_KEYS} for r in rows]


def endpoint_pairs(rows: list[dict]) -> set[tuple]:
    return {(r["local_port"], r["remote_port"], r["state"]) for r in rows}


# --- rows -----------------------------------------------------------------------------------------

def test_listener_row(held):
    rows = json_rows(["-t", "-l", "--port", str(held.tcp)])
    assert base(rows) == [{
        "proto": "tcp", "family": "inet", "local_address": "127.0.0.1", "local_port": held.tcp,
        "remote_address": None, "remote_port": None, "state": "LISTEN", "pid": ME, "process": MY_NAME}]
    [owner] = rows[0]["owners"]
    assert owner["pid"] == ME and owner["process"] == MY_NAME and isinstance(owner["fd"], int)
    assert rows[0]["timer"] is None
    if FAST_PATH:  # the accept queue is empty (the one connection was accepted); /proc has no backlog
        assert (rows[0]["recv_q"], rows[0]["send_q"], rows[0]["uid"]) == (0, None, os.getuid())


def test_connected_pair_rows(held):
    rows = json_rows(["-t", "--port", str(held.client), "--state", "established"])
    assert endpoint_pairs(rows) == {(held.tcp, held.client, "ESTABLISHED"), (held.client, held.tcp, "ESTABLISHED")}
    assert all(r["pid"] == ME and r["process"] == MY_NAME and r["remote_address"] == "127.0.0.1" for r in rows)


@pytest.mark.parametrize("spelling", ["time-wait", "time_wait", "TIME_WAIT", "Time-Wait"])
def test_time_wait_row_has_no_owner(held, spelling):
    rows = json_rows(["--state", spelling, "--port", str(held.tw_client)])
    assert [r["owners"] for r in rows] == [[]]
    if FAST_PATH:  # ss -o's timewait timer, at most 60 s
        assert rows[0]["timer"]["name"] == "timewait" and 0 <= rows[0]["timer"]["expires_s"] <= 60
    assert base(rows) == [{"proto": "tcp", "family": "inet", "local_address": "127.0.0.1", "local_port": held.tcp,
                     "remote_address": "127.0.0.1", "remote_port": held.tw_client, "state": "TIME_WAIT",
                     "pid": None, "process": None}]


HEADER = ["Proto", "Recv-Q", "Send-Q", "Local", "Address", "Remote", "Address", "State", "PID", "Process"]


def test_text_table(held):
    r = run_main(["states", "-t", "--port", str(held.tcp), "--sort", "remote"])
    assert r.status == 0 and r.err == ""
    lines = r.text.splitlines()
    assert lines[0].split() == HEADER
    cells = [line.split()[:1] + line.split()[3:] for line in lines[1:]]  # without the queues
    assert ["tcp", f"127.0.0.1:{held.tcp}", "-", "LISTEN", str(ME), MY_NAME] in cells
    assert ["tcp", f"127.0.0.1:{held.tcp}", f"127.0.0.1:{held.tw_client}", "TIME_WAIT", "-", "-"] in cells
    assert len({line.index("127.0.0.1") for line in lines[1:]}) == 1  # aligned


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 on this host")
def test_ipv6_in_brackets(held):
    r = run_main(["states", "-6", "-l", "--port", str(held.v6)])
    assert r.status == 0
    cells = r.text.splitlines()[1].split()
    assert cells[:1] + cells[3:6] == ["tcp6", f"[::1]:{held.v6}", "-", "LISTEN"]
    assert json_rows(["-6", "--port", str(held.v6)])[0]["local_address"] == "::1"
    assert json_rows(["-6", "--port", str(held.v6)])[0]["family"] == "inet6"
    assert json_rows(["-4", "--port", str(held.v6), "--pid", str(ME)]) == []


# --- filters --------------------------------------------------------------------------------------

def test_protocol_filters(held):
    assert {r["proto"] for r in json_rows(["-u", "--port", str(held.udp), "--pid", str(ME)])} == {"udp"}
    udp = json_rows(["-u", "--port", str(held.udp), "--pid", str(ME)])[0]
    assert (udp["local_port"], udp["state"], udp["remote_address"]) == (held.udp, "UNCONN", None)
    assert not [r for r in json_rows(["-t", "--pid", str(ME)]) if r["proto"] not in ("tcp", "tcp6")]
    assert {r["proto"] for r in json_rows(["--pid", str(ME)])} >= {"tcp", "udp", "unix"}
    assert {r["proto"] for r in json_rows(["-4", "--pid", str(ME)])} == {"tcp", "udp"}


def test_unix_filter(held):
    rows = [r for r in json_rows(["-x", "--pid", str(ME)]) if r["local_address"] == held.unix_path]
    assert len(rows) == 1 and rows[0]["proto"] == "unix" and rows[0]["family"] == "unix"
    if FAST_PATH:  # psutil has no state for unix sockets
        assert rows[0]["state"] == "LISTEN"
        assert held.unix_path in {r["local_address"] for r in json_rows(["-x", "-l"])}


def test_listening_filter(held):
    mine = json_rows(["-l", "--pid", str(ME)])
    assert all(r["state"] == "LISTEN" or r["proto"].startswith("udp") for r in mine)
    assert (held.tcp, "LISTEN") in {(r["local_port"], r["state"]) for r in mine}
    assert (held.udp, "UNCONN") in {(r["local_port"], r["state"]) for r in mine}
    assert not [r for r in mine if r["state"] == "ESTABLISHED"]


def test_repeated_state_filter(held):
    rows = json_rows(["--port", str(held.tcp), "--state", "LISTEN", "--state", "established"])
    assert endpoint_pairs(rows) == {(held.tcp, None, "LISTEN"), (held.tcp, held.client, "ESTABLISHED"),
                                    (held.client, held.tcp, "ESTABLISHED")}


def test_port_matches_local_or_remote(held):
    rows = json_rows(["-t", "--port", str(held.tcp)])
    assert (held.client, held.tcp, "ESTABLISHED") in endpoint_pairs(rows)  # remote port
    assert (held.tcp, None, "LISTEN") in endpoint_pairs(rows)  # local port


def test_pid_filter(held):
    rows = json_rows(["--pid", str(ME)])
    assert rows and all(r["pid"] == ME for r in rows)
    r = run_main(["states", "--pid", str(2 ** 22 + 7)])  # above Linux's pid_max: nobody
    assert r.status == 0 and r.text.splitlines() == ["Proto  Recv-Q  Send-Q  Local Address  Remote Address  State  PID  Process"]


@pytest.mark.parametrize("pattern", [MY_NAME, MY_NAME.upper(), MY_NAME[:2] + "*", "[" + MY_NAME[0] + "]" + MY_NAME[1:]])
def test_process_filter(held, pattern):
    rows = json_rows(["-t", "-l", "--port", str(held.tcp), "--process", pattern])
    assert [r["pid"] for r in rows] == [ME]


def test_process_filter_no_match(held):
    assert json_rows(["--port", str(held.tcp), "--process", MY_NAME + "-not"]) == []


@pytest.mark.parametrize("key", sockview.SORT_KEYS)
def test_sort(held, key):
    rows = json_rows(["--sort", key, "--pid", str(ME)] if key != "pid" else ["--sort", "pid", "-t"])
    tuples = [tuple(r[k] for k in ROW_KEYS) for r in rows]
    assert tuples == sockview.sort_rows(tuples, key)
    if key == "pid":
        pids = [r["pid"] for r in rows]
        assert pids.index(None) > max(i for i, pid in enumerate(pids) if pid is not None) if None in pids else True


@pytest.mark.parametrize(
    "argv, message",
    [
        pytest.param(["--state", "bogus"], "unknown state 'bogus' (valid: ESTABLISHED, SYN_SENT", id="state"),
        pytest.param(["--port", "70000"], "out of range", id="port"),
        pytest.param(["--pid", "0"], "allowed: 1 to", id="pid"),
        pytest.param(["--sort", "size"], "invalid choice", id="sort"),
        pytest.param(["--watch", "0"], "more than 0", id="watch"),
        pytest.param(["-o", "xml"], "invalid choice", id="output"),
    ],
)
def test_bad_options_are_usage_errors(argv, message):
    r = run_main(["states", *argv])
    assert r.status == 2 and message in r.err and "Traceback" not in r.err


# --- formats --------------------------------------------------------------------------------------

def test_csv_parses_back_like_json(held):
    r = run_main(["states", "--port", str(held.tcp), "-o", "csv", "--sort", "local"])
    assert r.status == 0
    reader = csv.DictReader(io.StringIO(r.text))
    assert tuple(reader.fieldnames) == ROW_KEYS
    rows = list(reader)
    expected = json_rows(["--port", str(held.tcp), "--sort", "local"])
    assert len(rows) == len(expected) >= 4
    for got, want in zip(rows, expected):
        assert {k: got[k] for k in BASE_KEYS} == {k: "" if v is None else str(v) for k, v in base([want])[0].items()}
        assert got["owners"] == " ".join(f"{o['process']},pid={o['pid']},fd={o['fd']}" for o in want["owners"])


def test_empty_machine_output(held):
    r = run_main(["states", "--pid", str(2 ** 22 + 7), "-o", "csv"])
    assert r.text.splitlines() == [",".join(ROW_KEYS)]
    assert run_main(["states", "--pid", str(2 ** 22 + 7), "-o", "json"]).out == b""


# --- --summary ------------------------------------------------------------------------------------

def test_summary_json(held):
    r = run_main(["states", "-t", "--summary", "--port", str(held.tcp), "-o", "json"])
    assert r.status == 0
    rows = [json.loads(line) for line in r.text.splitlines()]
    summary = [s for s in rows if s["section"] in ("total", "state", "port")]
    assert all(tuple(s) == sockview.SUMMARY_KEYS for s in summary)
    assert {s["section"] for s in rows} <= {"total", "state", "port", "close_wait", "outbound"}
    counts = {(s["section"], s["state"], s["port"]): s["count"] for s in summary}
    assert counts[("state", "LISTEN", None)] == 1 and counts[("state", "ESTABLISHED", None)] == 2
    assert counts[("state", "TIME_WAIT", None)] >= 1
    assert counts[("port", "ESTABLISHED", held.tcp)] == 2  # both ends, under the server's port
    assert counts[("port", "TIME_WAIT", held.tcp)] >= 1
    assert counts[("total", None, None)] == sum(s["count"] for s in summary if s["section"] == "state")


def test_summary_text_filtered_by_pid(held):
    r = run_main(["states", "--summary", "--pid", str(ME)])
    assert r.status == 0
    lines = r.text.splitlines()
    assert lines[0].startswith("Total: ") and "TIME_WAIT sockets by port: none" in lines  # TIME_WAIT has no pid
    assert ["tcp", "ESTABLISHED", "2"] in [line.split() for line in lines]


# --- --watch --------------------------------------------------------------------------------------

A = ("tcp", "inet", "127.0.0.1", 1000, None, None, "LISTEN", 10, "a", ((10, "a", 3),), 0, None, None, 0)
B = ("tcp", "inet", "127.0.0.1", 1000, "127.0.0.1", 2000, "ESTABLISHED", 10, "a", ((10, "a", 4),), 0, 0, None, 0)
C = ("tcp", "inet", "127.0.0.1", 1000, "127.0.0.1", 2000, "TIME_WAIT", None, None, (), 0, 0, ("timewait", 59.5), 0)


class FakeClock:
    def __init__(self):
        self.now, self.slept = 100.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(round(seconds, 6))
        self.now += seconds


def fake_collect(frames):
    frames = iter(frames)

    def collect_rows(protos, with_pids, **owners_of):
        return socktable.Snapshot(list(next(frames)), ["something is hidden"])
    return collect_rows


def watch(argv, frames, clock=None, **flags):
    clock = clock or FakeClock()
    env = make_env(clock=clock, **flags)
    args = states_args(["--watch", "2", *argv])
    status = states.watch(states._Query(args), env, args.watch, collect_rows=fake_collect(frames),
                          sleep=clock.sleep, frames=len(frames))
    return status, env.stdout.getvalue().decode(), env.stderr.getvalue().decode(), clock


def states_args(argv):
    from sockdiag.cli import build_parser

    return build_parser().parse_args(["states", *argv])


def test_watch_text_marks_changes():
    status, out, err, clock = watch([], [[A, B], [A, C], [A, C]])
    assert status == 0
    assert err.count("something is hidden") == 1  # a warning once, not once per frame
    frames = out.split("\n\n")
    assert len(frames) == 3 and frames[0].startswith("[0.0s] 2 sockets")
    assert frames[1].startswith("[2.0s] 2 sockets, 1 appeared (+), 1 disappeared (-)")
    marks = [line[:2] for line in frames[1].splitlines()[2:]]
    assert marks == ["  ", "+ ", "- "]
    assert "TIME_WAIT" in frames[1].splitlines()[3] and "ESTABLISHED" in frames[1].splitlines()[4]
    assert frames[2].startswith("[4.0s] 2 sockets, 0 appeared (+), 0 disappeared (-)")
    assert clock.slept == [2.0, 2.0]


def test_watch_clears_a_terminal_between_frames():
    _, out, _, _ = watch([], [[A], [A]], stdout_isatty=True)
    assert out.count("\x1b[H\x1b[2J") == 2 and "\n\n" not in out


def test_watch_keeps_the_cadence_when_a_frame_is_slow():
    clock = FakeClock()

    def slow_sleep(seconds):
        clock.slept.append(seconds)
        clock.now += seconds + 3.0  # the next frame took 3 s to collect

    env = make_env(clock=clock)
    args = states_args(["--watch", "2"])
    states.watch(states._Query(args), env, 2.0, collect_rows=fake_collect([[A]] * 3), sleep=slow_sleep, frames=3)
    assert clock.slept == [2.0, 0.0]


def test_watch_json_streams_changes():
    status, out, _, _ = watch(["-o", "json"], [[A, B], [A, C]])
    events = [json.loads(line) for line in out.splitlines()]
    assert [tuple(e) for e in events] == [states.WATCH_KEYS] * 4
    assert [(e["change"], e["state"]) for e in events] == [(None, "LISTEN"), (None, "ESTABLISHED"),
                                                          ("+", "TIME_WAIT"), ("-", "ESTABLISHED")]


def test_watch_csv_has_one_header():
    _, out, _, _ = watch(["-o", "csv"], [[A], [A, B]])
    assert out.splitlines()[0] == ",".join(states.WATCH_KEYS) and out.count("change,proto") == 1
    assert out.splitlines()[2].startswith("+,tcp,")


def test_watch_summary_redraws():
    _, out, _, _ = watch(["--summary"], [[A, B], [A]])
    assert out.count("Total: ") == 2 and "[2.0s] 1 sockets" in out


def test_watch_ctrl_c_ends_with_status_0(held, monkeypatch):
    def interrupt(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", interrupt)
    # A clock that stands still: the title's elapsed time must not depend on how busy the machine is.
    r = run_main(["states", "--watch", "5", "-t", "--port", str(held.tcp)], clock=lambda: 100.0)
    assert r.status == 0 and r.err == ""
    assert r.text.startswith("[0.0s] ") and f"127.0.0.1:{held.tcp}" in r.text


# --- permissions --------------------------------------------------------------------------------

@pytest.fixture
def psutil_source(monkeypatch):
    monkeypatch.setattr(socktable, "socket_table_source", lambda system=None: "psutil")


def test_psutil_path_lists_the_same_rows(held, psutil_source):
    rows = json_rows(["-t", "--port", str(held.tcp)])
    assert endpoint_pairs(rows) >= {(held.tcp, None, "LISTEN"), (held.tcp, held.client, "ESTABLISHED"),
                                    (held.tcp, held.tw_client, "TIME_WAIT")}


def test_access_denied_falls_back_to_own_processes(held, psutil_source, monkeypatch):
    def refuse(kind="inet"):
        raise psutil.AccessDenied()

    monkeypatch.setattr(psutil, "net_connections", refuse)
    r = run_main(["states", "-t", "--port", str(held.tcp), "-o", "json"])
    assert r.status == 0
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert endpoint_pairs(rows) >= {(held.tcp, None, "LISTEN"), (held.client, held.tcp, "ESTABLISHED")}
    assert all(r["pid"] is not None for r in rows)  # TIME_WAIT has no owner: it cannot be listed
    assert "warning: the system socket table is not readable (access denied)" in r.err
    assert len(r.err.splitlines()) == 1


def test_nothing_listable_is_exit_4(psutil_source, monkeypatch):
    class Refusing:
        pid = 1

        def net_connections(self, kind="inet"):
            raise psutil.AccessDenied(pid=1)

    def refuse(kind="inet"):
        raise psutil.AccessDenied()

    monkeypatch.setattr(psutil, "net_connections", refuse)
    monkeypatch.setattr(psutil, "process_iter", lambda *a, **k: iter([Refusing(), Refusing()]))
    r = run_main(["states"])
    assert r.status == 4 and r.out == b""
    assert r.err.startswith("sockdiag states: error: cannot list sockets: the system socket table is not readable")


def test_fallback_with_old_psutil_connections_method(psutil_source, monkeypatch):
    pconn = collections.namedtuple("pconn", "fd family type laddr raddr status")
    addr = collections.namedtuple("addr", "ip port")

    class OldProcess:  # psutil < 6 calls it connections()
        pid = 4321

        def connections(self, kind="inet"):
            return [pconn(3, socket.AF_INET, socket.SOCK_STREAM, addr("127.0.0.1", 9), (), psutil.CONN_LISTEN)]

    def refuse(kind="inet"):
        raise psutil.AccessDenied()

    monkeypatch.setattr(psutil, "net_connections", refuse)
    monkeypatch.setattr(psutil, "process_iter", lambda *a, **k: iter([OldProcess()]))
    rows = json_rows(["-t"])
    assert [(r["local_port"], r["state"], r["pid"]) for r in rows] == [(9, "LISTEN", 4321)]


def test_unreadable_table_is_exit_4(monkeypatch):
    def refuse(protos, with_pids=True, **kwargs):
        raise PermissionError(13, "Permission denied", "/proc/net/tcp")

    monkeypatch.setattr(socktable, "socket_table_source", lambda system=None: "procfs")
    monkeypatch.setattr(procnet, "read_rows", refuse)
    r = run_main(["states", "-t"])
    assert r.status == 4 and r.err == "sockdiag states: error: read /proc/net/tcp: permission denied (EACCES)\n"


def test_unattributed_sockets_warn_like_netstat(monkeypatch):
    rows = [A, C, A[:7] + (None, None, (), None, None, None, None)]
    monkeypatch.setattr(socktable, "socket_table_source", lambda system=None: "procfs")
    monkeypatch.setattr(procnet, "read_rows", lambda protos, with_pids=True, **kw: (list(rows), 7))
    r = run_main(["states", "-t"])
    assert r.status == 0 and "warning: 7 processes could not be inspected" in r.err and "PID '-'" in r.err
    assert run_main(["states", "-t", "--state", "time-wait"]).err == ""  # TIME_WAIT never has a PID


def _unprivileged_python() -> str | None:
    """An interpreter that uid 65534 may run (the venv's may sit under /root), or None."""
    if not FAST_PATH or os.geteuid() != 0:
        return None
    for python in (sys.executable, "/usr/bin/python3"):
        try:
            ok = subprocess.run([python, "-c", "import sys; assert sys.version_info >= (3, 11)"], user=65534,
                                group=65534, extra_groups=[], capture_output=True, timeout=30, cwd="/")
        except (OSError, subprocess.SubprocessError):
            continue
        if ok.returncode == 0:
            return python
    return None


def test_linux_without_root_shows_no_pid_for_others(held):
    python = _unprivileged_python()
    if python is None:
        pytest.skip("needs root on Linux and a Python 3.11+ that uid 65534 may run")
    # The fast path needs no psutil, so the system interpreter runs it from the source tree.
    r = subprocess.run([python, "-m", "sockdiag", "states", "-t", "-l", "--port", str(held.tcp), "-o", "json"],
                       user=65534, group=65534, extra_groups=[], capture_output=True, text=True, timeout=60,
                       cwd="/", env={"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert r.returncode == 0, r.stderr
    assert [(row["local_port"], row["pid"], row["process"]) for row in map(json.loads, r.stdout.splitlines())] == [
        (held.tcp, None, None)]
    assert "processes could not be inspected" in r.stderr and "run as root" in r.stderr


# --- closed stdout --------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("head") is None, reason="needs bash and head")
def test_head_1_ends_quietly():
    """`sockdiag states | head -1` with more output than a pipe holds: exit 0, nothing on stderr."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 4096 and (hard == resource.RLIM_INFINITY or hard >= 4096):
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    pairs = []
    try:
        pairs += [socket.socketpair() for _ in range(1000)]  # ~2,000 unix rows, > 64 KiB of text
        script = f'"{sys.executable}" -m sockdiag states -x | head -1; echo "status=${{PIPESTATUS[0]}}" >&2'
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, env=env)
    finally:
        for a, b in pairs:
            a.close()
            b.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert r.stdout.split() == HEADER
    assert r.stderr == "status=0\n"


def test_stdout_closed_before_writing():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "sockdiag", "states"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # no reader left: the first write fails with EPIPE
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0 and err == b""
