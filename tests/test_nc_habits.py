"""The forms nc users type: listen -p PORT / ADDR PORT / -l, -q, -N, -d, -z, -n, -t, listen -w."""

from __future__ import annotations

import socket
import subprocess
import threading

import pytest

from sockdiag.core.status import ExitStatus
from tests.conftest import run_main, wait_until
from tests.test_relay_support import TIMEOUT, Proc, ThreadedMain, one_connection_server, recv_all


@pytest.mark.parametrize("argv", [
    pytest.param(["listen", "-v", "-b", "127.0.0.1", "0"], id="PORT"),
    pytest.param(["listen", "-v", "127.0.0.1", "0"], id="ADDR-PORT"),
    pytest.param(["listen", "-v", "-p", "0", "-b", "127.0.0.1"], id="p-PORT"),
    pytest.param(["listen", "-v", "-l", "-p", "0", "127.0.0.1"], id="l-p-PORT-ADDR"),
    pytest.param(["listen", "-l", "-v", "-s", "127.0.0.1", "0"], id="l-s-ADDR-PORT"),
])
def test_listen_forms_are_equivalent(argv):
    run = ThreadedMain(argv, stdin=b"hello from the server\n")
    port = run.port()
    assert "listening on 127.0.0.1:" in run.err
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
        client.sendall(b"hi\n")
        client.shutdown(socket.SHUT_WR)
        assert recv_all(client) == b"hello from the server\n"
    assert run.result() == 0, run.err


@pytest.mark.parametrize("argv, message", [
    pytest.param(["listen"], "give the port", id="no-port"),
    pytest.param(["listen", "127.0.0.1", "0", "1"], "give the port", id="three"),
    pytest.param(["listen", "-p", "0", "a", "b"], "at most an address", id="p-and-two"),
    pytest.param(["listen", "-b", "::1", "127.0.0.1", "0"], "given twice", id="addr-twice"),
    pytest.param(["listen", "127.0.0.1", "70000"], "out of range", id="bad-port"),
    pytest.param(["listen", "999.1.1.1", "0"], "not a valid IPv4 address", id="bad-addr"),
    pytest.param(["connect", "-t", "-u", "127.0.0.1", "9"], "exclude each other", id="t-and-u"),
    pytest.param(["connect", "-n", "localhost", "9"], "not a numeric address", id="n-with-name"),
    pytest.param(["listen", "-n", "-b", "localhost", "0"], "not a numeric address", id="listen-n-with-name"),
])
def test_usage_errors(cli, argv, message):
    r = cli(argv)
    assert r.status == ExitStatus.USAGE and message in r.err
    assert r.err.endswith(f"Try 'sockdiag {argv[0]} --help'.\n")


def test_numeric_addresses_pass_n(free_tcp_port):
    r = run_main(["connect", "-n", "-w", "2", "127.0.0.1", str(free_tcp_port)])
    assert r.status == ExitStatus.FAILURE and "ECONNREFUSED" in r.err  # got as far as connecting


def test_z_reports_open_and_closed(free_tcp_port):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        r = run_main(["connect", "-z", "-v", "127.0.0.1", str(port)], stdin=b"never sent")
        assert r.status == 0 and r.out == b"" and f"127.0.0.1:{port}: open" in r.err
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            assert conn.recv(100) == b""  # zero I/O: nothing was sent
    r = run_main(["connect", "-z", "127.0.0.1", str(free_tcp_port)])
    assert r.status == ExitStatus.FAILURE and r.out == b""


def test_z_udp_refused_and_silent():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        r = run_main(["connect", "-z", "-u", "--wait", "0.3", "127.0.0.1", str(port)])
        assert r.status == 0  # silence: open|filtered, as nc -zu
        assert silent.recv(10) == b""  # one empty datagram
    r = run_main(["connect", "-z", "-u", "--wait", "2", "127.0.0.1", str(port)])
    assert r.status == ExitStatus.FAILURE and "ECONNREFUSED" in r.err


def test_q_quits_after_stdin_eof_while_the_peer_keeps_talking():
    stop = threading.Event()

    def chatty(conn):
        conn.settimeout(0.05)
        while not stop.is_set():
            try:
                conn.sendall(b"more\n")
                conn.recv(100)
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                return "client gone"

    with one_connection_server(chatty) as (port, _):
        r = run_main(["connect", "-q", "0.3", "127.0.0.1", str(port)], stdin=b"bye\n")
        stop.set()
    assert r.status == 0, r.err
    assert r.out.startswith(b"more\n")


def test_q_zero_quits_at_stdin_eof():
    def silent(conn):
        conn.settimeout(TIMEOUT)
        return conn.recv(100)  # never answers

    with one_connection_server(silent) as (port, box):
        r = run_main(["connect", "-q", "0", "127.0.0.1", str(port)], stdin=b"x")
    assert r.status == 0 and box["result"] == b"x"


def test_d_does_not_read_stdin_nor_half_close():
    def server(conn):
        conn.sendall(b"greeting\n")
        conn.settimeout(0.5)
        try:
            return conn.recv(100)  # nothing comes, and no EOF either (no half-close with -d)
        except TimeoutError:
            return "no eof"
        finally:
            conn.shutdown(socket.SHUT_WR)

    with one_connection_server(server) as (port, box):
        r = run_main(["connect", "-d", "127.0.0.1", str(port)], stdin=b"must not be sent")
    assert r.status == 0 and r.out == b"greeting\n"
    assert box["result"] == "no eof"


def test_N_is_accepted():
    def echo(conn):
        conn.sendall(recv_all(conn))

    with one_connection_server(echo) as (port, _):
        r = run_main(["connect", "-N", "127.0.0.1", str(port)], stdin=b"abc")
    assert r.status == 0 and r.out == b"abc"


@pytest.mark.parametrize("extra", [[], ["-k", "--echo"]], ids=["one-client", "server"])
def test_listen_w_waits_for_the_first_client_only_so_long(extra):
    r = run_main(["listen", "-w", "0.3", "-b", "127.0.0.1", *extra, "0"])
    assert r.status == ExitStatus.TIMEOUT
    assert r.err == "sockdiag listen: error: no connection within 0.3 s (-w)\n"


def test_listen_w_does_not_cut_a_client_that_came():
    with Proc(["listen", "-v", "-w", "5", "-b", "127.0.0.1", "0"], stdin=subprocess.PIPE) as server:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
            wait_until(lambda: "connection from" in server.stderr)
            server.popen.stdin.write(b"late\n")
            server.popen.stdin.close()
            client.shutdown(socket.SHUT_WR)
            assert recv_all(client) == b"late\n"
        assert server.wait() == 0


def test_udp_d_only_listens_for_replies():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(0.3)
        port = peer.getsockname()[1]
        r = run_main(["connect", "-u", "-d", "--wait", "0.3", "127.0.0.1", str(port)], stdin=b"not sent\n")
        assert r.status == 0
        with pytest.raises(TimeoutError):
            peer.recv(100)


@pytest.mark.parametrize("flags", ["-tlnp", "-tunap", "-ltn", "-xl", "-a", "-t", "-n", "-p"])
def test_ss_habits_are_accepted_by_states(flags):
    r = run_main(["states", flags])
    assert r.status == 0, r.err
    assert r.text.startswith("Proto ")
