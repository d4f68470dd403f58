"""probe --tls: the second phase over the open ports, in the text table, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import socket
import ssl
import threading
from contextlib import contextmanager

import pytest

trustme = pytest.importorskip("trustme")

from sockdiag.core.status import ExitStatus
from tests.conftest import run_main


@contextmanager
def listeners():
    """A TLS listener (trustme certificate for localhost and 127.0.0.1) and a plain one that
    greets like SSH; both accept until the test ends. Yields (tls_port, plain_port)."""
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    stop = threading.Event()
    servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]

    def serve(listener, tls: bool):
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(5)
                try:
                    if tls:
                        with ctx.wrap_socket(conn, server_side=True) as session:
                            session.recv(1)
                    else:
                        conn.sendall(b"SSH-2.0-test\r\n")
                        conn.recv(1)
                except (OSError, ssl.SSLError):
                    pass

    threads = [threading.Thread(target=serve, args=(srv, i == 0), daemon=True) for i, srv in enumerate(servers)]
    for thread in threads:
        thread.start()
    try:
        yield servers[0].getsockname()[1], servers[1].getsockname()[1]
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        for srv in servers:
            srv.close()


def test_json_reports_tls_on_the_tls_port_and_not_on_the_plain_one():
    with listeners() as (tls_port, plain_port):
        result = run_main(["probe", "127.0.0.1", f"{tls_port},{plain_port}", "--tls", "-w", "5", "-o", "json"])
    assert result.status == ExitStatus.OK, result.err
    rows = {row["port"]: row for row in map(json.loads, result.text.splitlines())}
    good = rows[tls_port]["tls"]
    assert good["ok"] is True and good["version"] in ("TLSv1.2", "TLSv1.3") and good["error"] is None
    assert good["subject"].startswith("OU=Testing cert") and good["days_left"] > 1000
    assert good["name_match"] is True  # 127.0.0.1 is in the certificate's IP entries
    plain = rows[plain_port]["tls"]
    assert plain["ok"] is False and "does not speak TLS" in plain["error"]
    assert plain["version"] is None and plain["name_match"] is None


def test_text_table_detail_and_name_mismatch_for_a_name_not_in_the_certificate(monkeypatch):
    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):  # a name the certificate does not have, resolved to loopback
        return real("127.0.0.1" if host == "elsewhere.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with listeners() as (tls_port, plain_port):
        result = run_main(["probe", "elsewhere.test", f"{tls_port},{plain_port}", "--tls", "-w", "5"])
    assert result.status == ExitStatus.OK, result.err
    lines = {int(line.split()[1]): line for line in result.text.splitlines()}
    assert "TLSv1." in lines[tls_port] and "name mismatch" in lines[tls_port]
    assert "no TLS: the peer does not speak TLS" in lines[plain_port]


def test_csv_has_flat_tls_columns():
    with listeners() as (tls_port, _plain):
        result = run_main(["probe", "127.0.0.1", str(tls_port), "--tls", "-w", "5", "-o", "csv"])
    rows = list(csv.DictReader(io.StringIO(result.text)))
    assert rows[0]["tls_ok"] == "True" and rows[0]["tls_name_match"] == "True"
    assert rows[0]["tls_version"].startswith("TLSv1.")


@pytest.mark.parametrize("argv", [["-u"], ["-o", "grep"]], ids=["udp", "grep"])
def test_tls_usage_errors(argv):
    assert run_main(["probe", "127.0.0.1", "9", "--tls", *argv]).status == ExitStatus.USAGE
