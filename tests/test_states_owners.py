"""states and bindcheck on real loopback sockets: every owner of a shared socket (a prefork server),
one state vocabulary, the ss-like filters, and the queue and timer columns."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from sockdiag.platform import socktable
from tests.conftest import run_main, wait_until

ME = os.getpid()
FAST_PATH = socktable.socket_table_source() == "procfs"
linux_only = pytest.mark.skipif(not FAST_PATH, reason="the /proc reader (queues, timers, unix states) is Linux only")


def json_rows(argv: list[str]) -> list[dict]:
    r = run_main(["states", "-o", "json", *argv])
    assert r.status == 0, r.err
    return [json.loads(line) for line in r.text.splitlines()]


@pytest.fixture
def prefork():
    """A listener made by this process (the master) and inherited by two worker processes, as a
    prefork server (nginx, gunicorn) shares its listening socket: (port, [worker pids])."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        workers = [subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                                    pass_fds=(listener.fileno(),)) for _ in range(2)]
        try:
            yield listener.getsockname()[1], [w.pid for w in workers]
        finally:
            for w in workers:
                w.stdin.close()
                w.wait(timeout=30)


def _listener(port: int) -> dict:
    [row] = json_rows(["-t", "-l", "--sport", str(port)])
    return row


def test_states_lists_every_owner(prefork):
    port, workers = prefork
    wait_until(lambda: len(_listener(port)["owners"]) == 3)  # the workers' fd tables are there once they run
    row = _listener(port)
    assert {o["pid"] for o in row["owners"]} == {ME, *workers}
    assert row["pid"] == row["owners"][0]["pid"] and row["process"] == row["owners"][0]["process"]
    assert all(isinstance(o["fd"], int) for o in row["owners"])


def test_text_shows_first_owner_plus_the_others(prefork):
    port, workers = prefork
    wait_until(lambda: len(_listener(port)["owners"]) == 3)
    line = run_main(["states", "-t", "-l", "--sport", str(port)]).text.splitlines()[1]
    assert line.split()[6].endswith("+2")
    wide = run_main(["states", "-t", "-l", "--sport", str(port), "--owners"]).text.splitlines()[1]
    assert all(f"pid={pid}," in wide for pid in (ME, *workers)) and "users:((" in wide


def test_pid_filter_finds_a_worker_socket(prefork):
    port, workers = prefork
    wait_until(lambda: [r["local_port"] for r in json_rows(["-t", "-l", "--pid", str(workers[1])])] == [port])


def test_psutil_path_lists_the_shared_listener_once(prefork, monkeypatch):
    # psutil's Linux backend reports a shared socket once, under one owner; macOS and Windows list
    # it once per process, which merge_owners folds (test below).
    pytest.importorskip("psutil")
    port, workers = prefork
    monkeypatch.setattr(socktable, "socket_table_source", lambda system=None: "psutil")
    owners = _listener(port)["owners"]
    assert owners and {o["pid"] for o in owners} <= {ME, *workers}


def test_psutil_entries_per_process_merge_into_one_row(monkeypatch):
    psutil = pytest.importorskip("psutil")
    import collections

    sconn = collections.namedtuple("sconn", "fd family type laddr raddr status pid")
    addr = collections.namedtuple("addr", "ip port")
    listen = [sconn(6, socket.AF_INET, socket.SOCK_STREAM, addr("0.0.0.0", 80), (), psutil.CONN_LISTEN, pid)
              for pid in (100, 101, 102)]
    unnamed = [sconn(3, socket.AF_UNIX, socket.SOCK_STREAM, "", "", psutil.CONN_NONE, pid) for pid in (100, 101)]
    monkeypatch.setattr(psutil, "net_connections", lambda kind="inet": listen + unnamed)
    monkeypatch.setattr(socktable, "ProcessNames", lambda: (lambda pid: "nginx"))
    rows = socktable._collect_psutil({"tcp", "unix"}, True).rows
    tcp = [r for r in rows if r[0] == "tcp"]
    assert len(tcp) == 1 and tcp[0][7] == 100 and [o[0] for o in tcp[0][9]] == [100, 101, 102]
    assert len([r for r in rows if r[0] == "unix"]) == 2  # no address: never merged


def test_bindcheck_names_every_holder_and_stops_the_master(prefork):
    port, workers = prefork
    wait_until(lambda: len(_listener(port)["owners"]) == 3)
    r = run_main(["bindcheck", "-o", "json", "-b", "127.0.0.1", str(port)])
    report = json.loads(r.text)
    assert report["verdict"] == "in use"
    [holder] = report["holders"]
    assert {o["pid"] for o in holder["owners"]} == {ME, *workers}
    assert report["advice"].startswith(f"stop PID {ME} (")  # the parent, not a worker
    assert all(str(pid) in report["advice"] for pid in workers)
    text = " ".join(run_main(["bindcheck", "-b", "127.0.0.1", str(port)]).text.split())
    assert all(f"{pid} (" in text for pid in (ME, *workers))


# --- one state vocabulary ---------------------------------------------------------------------------

def test_udp_states_connected_and_not():
    with socket.socket(type=socket.SOCK_DGRAM) as a, socket.socket(type=socket.SOCK_DGRAM) as b, \
            socket.socket(type=socket.SOCK_DGRAM) as lone:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        lone.bind(("127.0.0.1", 0))
        a.connect(b.getsockname())
        b.connect(a.getsockname())
        ports = {s.getsockname()[1] for s in (a, b)}
        rows = json_rows(["-u", "--pid", str(ME)])
        assert {r["local_port"] for r in rows if r["state"] == "ESTABLISHED"} >= ports
        assert all(r["state"] is not None for r in rows)
        lone_port = lone.getsockname()[1]
        for name in ("unconn", "bound", "none"):  # bindcheck's word and ss's select the same sockets
            assert [r["local_port"] for r in json_rows(["-u", "--state", name, "--sport", str(lone_port)])] == [
                lone_port]
        report = json.loads(run_main(["bindcheck", "-u", "-o", "json", "-b", "127.0.0.1", str(lone_port)]).text)
        [holder] = report["holders"]
        assert holder["state"] == "UNCONN"
        assert json_rows(["-u", "--state", holder["state"], "--sport", str(lone_port)])


@linux_only
def test_unix_socketpair_and_connected_stream_are_established(tmp_path):
    path = str(tmp_path / "s.sock")
    a, b = socket.socketpair()
    with a, b, socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            conn, _ = server.accept()
            with conn:
                rows = json_rows(["-x", "--pid", str(ME)])
                by_fd = {o["fd"]: r["state"] for r in rows for o in r["owners"] if o["pid"] == ME}
                assert [by_fd[s.fileno()] for s in (a, b, client, conn, server)] == [
                    "ESTABLISHED", "ESTABLISHED", "ESTABLISHED", "ESTABLISHED", "LISTEN"]
                assert all(r["state"] for r in json_rows(["-x"]))


# --- ss filters -------------------------------------------------------------------------------------

@pytest.fixture
def pair():
    """A listener on 127.0.0.1 and one connection to it from 127.0.0.1: (server port, client port)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            conn, _ = listener.accept()
            with conn:
                yield port, client.getsockname()[1], client, conn, listener


def _ends(rows):
    return {(r["local_port"], r["remote_port"]) for r in rows}


def test_sport_dport_src_dst_uid_combine(pair):
    port, cport, *_ = pair
    assert _ends(json_rows(["-t", "--sport", str(port)])) >= {(port, None), (port, cport)}
    assert _ends(json_rows(["-t", "--dport", str(port)])) == {(cport, port)}
    assert _ends(json_rows(["-t", "--sport", f"{port},{cport}", "--dport", f"{port}-{port}"])) == {(cport, port)}
    assert _ends(json_rows(["-t", "--sport", str(port), "--src", "127.0.0.0/8"])) >= {(port, None), (port, cport)}
    assert json_rows(["-t", "--sport", str(port), "--src", "10.0.0.0/8"]) == []
    assert json_rows(["-t", "--sport", str(port), "--src", "::ffff:127.0.0.0/104"])  # IPv4-mapped is IPv4
    assert _ends(json_rows(["-t", "--dport", str(port), "--dst", "127.0.0.1"])) == {(cport, port)}
    assert json_rows(["-t", "--dport", str(port), "--dst", "::1"]) == []
    mine = json_rows(["-t", "--sport", str(port), "--uid", str(os.getuid())])
    assert _ends(mine) >= {(port, None), (port, cport)}
    assert json_rows(["-t", "--sport", str(port), "--uid", str(os.getuid() + 1)]) == []


@pytest.mark.parametrize("argv, message", [
    (["--sport", "1-x"], "sport"), (["--dport", ""], "dport"), (["--src", "10.0.0.0/33"], "not an address"),
    (["--dst", "nope"], "not an address"), (["--uid", "-1"], "uid")])
def test_bad_filter_values_are_usage_errors(argv, message):
    r = run_main(["states", *argv])
    assert r.status == 2 and message in r.err


# --- queues and timers --------------------------------------------------------------------------------

@linux_only
def test_recv_q_and_accept_queue(pair):
    port, cport, client, conn, listener = pair
    client.sendall(b"x" * 100)
    wait_until(lambda: [r["recv_q"] for r in json_rows(["-t", "--sport", str(port), "--dport", str(cport)])] == [100])
    with socket.create_connection(("127.0.0.1", port)):  # not accepted: waits in the accept queue
        wait_until(lambda: _listener(port)["recv_q"] == 1)
        assert _listener(port)["send_q"] is None  # /proc does not show the backlog
        line = run_main(["states", "-t", "--sport", str(port), "--dport", str(cport)]).text.splitlines()[1]
        assert line.split()[1:3] == ["100", "0"]


@linux_only
def test_keepalive_timer(pair):
    port, cport, client, *_ = pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
    [row] = json_rows(["-t", "--sport", str(cport), "--dport", str(port)])
    assert row["timer"]["name"] == "keepalive" and 0 < row["timer"]["expires_s"] <= 30
    lines = run_main(["states", "-t", "--sport", str(cport), "--dport", str(port), "--timers"]).text.splitlines()
    assert lines[0].split()[-2:] == ["Timer", "Process"] and "keepalive," in lines[1]


def test_psutil_path_has_no_queues_or_timers(pair, monkeypatch):
    pytest.importorskip("psutil")
    port, cport, *_ = pair
    monkeypatch.setattr(socktable, "socket_table_source", lambda system=None: "psutil")
    [row] = json_rows(["-t", "--sport", str(cport), "--dport", str(port)])
    assert (row["recv_q"], row["send_q"], row["timer"], row["state"]) == (None, None, None, "ESTABLISHED")
    text = run_main(["states", "-t", "--sport", str(cport), "--dport", str(port)]).text
    assert text.splitlines()[1].split()[1:3] == ["-", "-"]
    assert [r["local_port"] for r in json_rows(["-t", "--sport", str(cport), "--dport", str(port),
                                                "--uid", str(os.getuid())])] == [cport]
