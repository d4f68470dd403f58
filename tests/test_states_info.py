"""states -i: TCP internals per socket from sock_diag (rtt, cwnd, retransmits, bytes), as ss -i."""

from __future__ import annotations

import json
import os
import socket

import pytest

from sockdiag.platform import netlink
from tests.conftest import run_main

linux_only = pytest.mark.skipif(not netlink.available(), reason="tcp_info comes from Linux sock_diag")


@pytest.fixture
def busy_pair():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    client.sendall(b"x" * 50_000)
    got = 0
    while got < 50_000:
        got += len(server.recv(65536))
    yield client, server
    for s in (client, server, listener):
        s.close()


@linux_only
def test_json_has_tcp_info_for_established_sockets(busy_pair):
    client, _ = busy_pair
    r = run_main(["states", "-ti", "--pid", str(os.getpid()), "-o", "json"])
    assert r.status == 0, r.err
    rows = [json.loads(line) for line in r.text.splitlines()]
    mine = next(row for row in rows if row["local_port"] == client.getsockname()[1])
    info = mine["tcp_info"]
    assert info["rtt_ms"] > 0 and info["cwnd"] > 0 and info["retrans"] == 0
    assert info["bytes_acked"] is None or info["bytes_acked"] >= 50_000
    assert list(rows[0])[-1] == "tcp_info"


@linux_only
def test_text_has_an_info_line_under_each_connection(busy_pair):
    r = run_main(["states", "-ti", "--pid", str(os.getpid())])
    lines = r.text.splitlines()
    info_lines = [line for line in lines if line.strip().startswith("rtt:")]
    assert len(info_lines) == 2  # the two ends; none under the listener
    assert all("cwnd:" in line and "retrans:" in line for line in info_lines)


def test_not_available_is_a_warning_not_an_error(monkeypatch):
    def unavailable(*args, **kwargs):
        raise netlink.NetlinkUnavailable("no sock_diag here")

    monkeypatch.setattr(netlink, "tcp_sockets", unavailable)
    monkeypatch.setattr(netlink, "tcp_rows", unavailable)  # the rows then come from /proc, without tcp_info
    r = run_main(["states", "-ti", "-o", "json"])
    assert r.status == 0 and "not available" in r.err
    assert all(json.loads(line)["tcp_info"] is None for line in r.text.splitlines())


def _rows(*states):
    return [("tcp", "inet", "127.0.0.1", 1000 + n, "127.0.0.1", 80, state, None, None, (), 0, 0, None, 0, "stream",
             0 if state == "TIME_WAIT" else 500 + n) for n, state in enumerate(states)]


@pytest.mark.parametrize("states, read", [
    pytest.param(("TIME_WAIT", "SYN_RECV"), {}, id="only-sockets-without-info: keeps the empty map"),
    pytest.param(("TIME_WAIT", "ESTABLISHED"), None, id="an-established-row-without-info: the proc path"),
])
def test_an_empty_info_map_means_the_proc_path_only_when_a_row_could_have_info(monkeypatch, states, read):
    """states -i asks netlink for tcp_info a second time only when the rows came from /proc: a
    table of TIME_WAIT and request sockets has none in a netlink dump either."""
    from sockdiag.platform import procnet, socktable

    monkeypatch.setattr(procnet, "read_rows", lambda *args, **kwargs: (_rows(*states), 0))
    snap = socktable._collect_procfs(("tcp",), False, with_info=True)
    assert snap.tcp_info == read
