"""states --summary names CLOSE_WAIT leaks and outbound port use; -o prometheus for node_exporter."""

from __future__ import annotations

import os
import socket

import pytest

from sockdiag.core.status import ExitStatus
from tests.conftest import run_main

linux_only = pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads /proc")


@pytest.fixture
def close_wait_sockets():
    """Three connections whose peer closed while this process keeps its end open: CLOSE_WAIT."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []
    for _ in range(3):
        client = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
        client.close()
        held.append(conn)
    yield listener.getsockname()[1]
    for conn in held:
        conn.close()
    listener.close()


@linux_only
def test_summary_names_the_process_that_never_closes(close_wait_sockets):
    r = run_main(["states", "-t", "--summary", "--close-wait-threshold", "3"])
    assert r.status == 0, r.err
    text = r.text
    assert "CLOSE_WAIT sockets by process (3 or more):" in text
    assert f"{os.getpid()} " in text.split("CLOSE_WAIT sockets by process")[1].splitlines()[2]
    assert "the application never closes these" in text
    assert "Outgoing connections by destination (ephemeral ports" in text
    assert text.count("TIME_WAIT sockets by port") <= 1


@linux_only
def test_summary_json_carries_the_diagnosis_rows(close_wait_sockets):
    import json

    r = run_main(["states", "-t", "--summary", "-o", "json", "--close-wait-threshold", "3"])
    rows = [json.loads(line) for line in r.text.splitlines()]
    leaks = [row for row in rows if row.get("section") == "close_wait"]
    assert any(row["pid"] == os.getpid() and row["count"] >= 3 for row in leaks)


@linux_only
def test_prometheus_output_parses(close_wait_sockets):
    parser = pytest.importorskip("prometheus_client.parser")
    r = run_main(["states", "--summary", "-o", "prometheus", "--close-wait-threshold", "3"])
    assert r.status == 0, r.err
    families = {f.name: f for f in parser.text_string_to_metric_families(r.text)}
    assert "sockdiag_sockets" in families and "sockdiag_close_wait_sockets" in families
    samples = families["sockdiag_close_wait_sockets"].samples
    assert any(s.labels["pid"] == str(os.getpid()) and s.value >= 3 for s in samples)
    states = {(s.labels["proto"], s.labels["state"]) for s in families["sockdiag_sockets"].samples}
    assert ("tcp", "CLOSE_WAIT") in states


def test_prometheus_needs_summary():
    r = run_main(["states", "-o", "prometheus"])
    assert r.status == ExitStatus.USAGE and "goes with --summary" in r.err


@linux_only
def test_bindcheck_connect_counts_the_ports_toward_a_destination():
    import json

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    try:
        r = run_main(["bindcheck", "--connect", f"127.0.0.1:{port}", "-o", "json"])
        assert r.status == 0, r.err
        report = json.loads(r.text)
        assert report["destination"] == f"127.0.0.1:{port}" and report["used"] >= 4
        assert report["verdict"] == "ports left" and report["left"] == report["range_size"] - report["used"] \
            - report["bound"]
        text = run_main(["bindcheck", "--connect", f"127.0.0.1:{port}"]).text
        assert "ephemeral ports" in text and "tcp_tw_reuse" in text
    finally:
        for c in clients:
            c.close()
        listener.close()


@pytest.mark.parametrize("argv", [["bindcheck"], ["bindcheck", "80", "--connect", "127.0.0.1:80"],
                                  ["bindcheck", "--connect", "nohost"]])
def test_bindcheck_connect_usage(argv):
    r = run_main(argv)
    assert r.status == ExitStatus.USAGE, r.err
