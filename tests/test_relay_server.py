"""listen's servers: -k with many concurrent clients, --echo, --exec, --max-clients, --allow/--deny."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading

import pytest

from sockdiag.relay import access as relay_access, servers
from sockdiag.core.status import ExitStatus
from tests.conftest import wait_until
from tests.test_relay_support import TIMEOUT, Proc, ThreadedMain, recv_all


def _echo_client(port: int, payload: bytes) -> bytes:
    """Send payload and read the echo at the same time (an echo server stops reading from a
    client that does not read), then half-close and read to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sender = threading.Thread(target=lambda: (sock.sendall(payload), sock.shutdown(socket.SHUT_WR)))
        sender.start()
        got = recv_all(sock)
        sender.join(TIMEOUT)
    return got


def _reset_midway(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(os.urandom(100_000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST


# --- -k --echo --------------------------------------------------------------------------------------

def test_keep_open_echo_serves_concurrent_clients_byte_exact_despite_a_reset():
    payloads = [os.urandom(200_000 + i) for i in range(24)]
    results: dict[int, bytes] = {}
    with Proc(["listen", "-k", "--echo", "-v", "-b", "127.0.0.1", "0"]) as server:
        port = server.port()
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, _echo_client(port, payloads[i])))
                   for i in range(len(payloads))]
        resetter = threading.Thread(target=_reset_midway, args=(port,))
        for thread in threads[:12] + [resetter] + threads[12:]:
            thread.start()
        for thread in threads + [resetter]:
            thread.join(TIMEOUT)
        # the server is still there after the reset
        assert _echo_client(port, b"still alive\n") == b"still alive\n"
        assert server.interrupt() == ExitStatus.INTERRUPTED
    assert [results.get(i) == payloads[i] for i in range(len(payloads))] == [True] * len(payloads)
    assert "connection reset by peer (ECONNRESET)" in server.stderr
    assert server.stderr.count("connection from 127.0.0.1:") == len(payloads) + 2
    assert "Traceback" not in server.stderr


def test_echo_without_keep_open_serves_one_client():
    run = ThreadedMain(["listen", "--echo", "-v", "-b", "127.0.0.1", "0"])
    port = run.port()
    assert _echo_client(port, b"ping\n") == b"ping\n"
    assert run.result() == 0, run.err
    assert run.out == b""  # echo data goes back to the client, not to stdout
    assert "closed 127.0.0.1:" in run.err and "5 bytes in, 5 bytes out" in run.err


# --- -k relay -----------------------------------------------------------------------------------

def test_keep_open_relay_collects_every_client_on_stdout():
    with Proc(["listen", "-k", "-v", "-b", "127.0.0.1", "0"]) as server:
        port = server.port()
        socks = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(5)]
        for i, sock in enumerate(socks):  # all five connected at once
            sock.sendall(f"client {i}\n".encode())
        for sock in socks:
            sock.close()
        wait_until(lambda: server.stderr.count("closed 127.0.0.1:") == 5)
        assert server.interrupt() == ExitStatus.INTERRUPTED
        out = server.popen.stdout.read()
    assert sorted(out.splitlines()) == [f"client {i}".encode() for i in range(5)]


def test_keep_open_relay_broadcasts_stdin_to_clients():
    with Proc(["listen", "-k", "-v", "-b", "127.0.0.1", "0"], stdin=subprocess.PIPE) as server:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as one, \
                socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as two:
            wait_until(lambda: server.stderr.count("connection from") == 2)
            server.popen.stdin.write(b"to everyone\n")
            server.popen.stdin.flush()
            assert one.recv(100) == b"to everyone\n"
            assert two.recv(100) == b"to everyone\n"
        server.interrupt()


def test_keep_open_frame_mode_prints_one_line_per_frame_and_drops_a_hostile_client():
    with Proc(["listen", "-k", "--frame", "-v", "-b", "127.0.0.1", "0"]) as server:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as hostile:
            hostile.sendall(b"\x7f\xff\xff\xff")
            assert recv_all(hostile) == b""  # closed by the server
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as good:
            good.sendall(b"\x00\x00\x00\x02hi\x00\x00\x00\x03you")
        wait_until(lambda: server.stderr.count("closed 127.0.0.1:") == 2)
        server.interrupt()
        out = server.popen.stdout.read()
    assert out == b"hi\nyou\n"
    assert "announces 2147483647 bytes, more than the maximum of 16777216; connection closed" in server.stderr


def test_max_clients_closes_the_excess_with_a_message():
    with Proc(["listen", "-k", "--echo", "--max-clients", "1", "-b", "127.0.0.1", "0", "-v"]) as server:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as first:
            first.sendall(b"a")
            assert first.recv(1) == b"a"  # admitted and served
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as second:
                assert recv_all(second) == b""  # closed at once
            wait_until(lambda: "too many clients" in server.stderr)
        wait_until(lambda: "closed 127.0.0.1:" in server.stderr)
        assert _echo_client(port, b"b") == b"b"  # a place is free again
        server.interrupt()
    assert "sockdiag: warning: too many clients (--max-clients 1): closed connection from 127.0.0.1:" in server.stderr


# --- access lists -------------------------------------------------------------------------------

@pytest.mark.parametrize("rules, host, allowed", [
    pytest.param(([], []), "127.0.0.1", True, id="no-rules"),
    pytest.param((["127.0.0.0/8"], []), "127.0.0.5", True, id="allowed-net"),
    pytest.param((["10.0.0.0/8"], []), "127.0.0.1", False, id="not-in-allow"),
    pytest.param(([], ["127.0.0.1"]), "127.0.0.1", False, id="denied-host"),
    pytest.param((["127.0.0.0/8"], ["127.0.0.2/32"]), "127.0.0.2", False, id="deny-wins"),
    pytest.param((["127.0.0.0/8"], []), "::ffff:127.0.0.1", True, id="v4-mapped"),
    pytest.param((["::1"], []), "127.0.0.1", False, id="v6-rule-v4-client"),
])
def test_access_list(rules, host, allowed):
    assert relay_access.AccessList.parse(*rules).permits(host) is allowed


def test_bad_cidr_is_a_usage_error(cli):
    r = cli(["listen", "--allow", "10.0.0.0/33", "0"])
    assert r.status == ExitStatus.USAGE
    assert r.err == ("sockdiag listen: error: --allow '10.0.0.0/33': not an address, CIDR block or host name "
                     "(e.g. 10.0.0.0/8, ::1, db.internal)\nTry 'sockdiag listen --help'.\n")


def test_denied_client_is_closed_and_logged():
    with Proc(["listen", "-k", "--echo", "-v", "--deny", "127.0.0.0/8", "-b", "127.0.0.1", "0"]) as server:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            assert recv_all(sock) == b""
        wait_until(lambda: "refused connection from 127.0.0.1:" in server.stderr)
        server.interrupt()


# --- exec ---------------------------------------------------------------------------------------

def test_exec_runs_the_command_per_connection_without_a_shell():
    run = ThreadedMain(["listen", "-v", "-b", "127.0.0.1", "--exec", "tr a-z A-Z", "0"])
    port = run.port()
    assert _echo_client(port, b"hello $HOME\n") == b"HELLO $HOME\n"
    assert run.result() == 0, run.err
    assert "command exited with status 0" in run.err


def test_sh_exec_uses_the_shell_and_names_the_client():
    run = ThreadedMain(["listen", "-b", "127.0.0.1", "--sh-exec", 'echo "$SOCKDIAG_REMOTE_ADDR" | cat', "0", "-v"])
    port = run.port()
    assert _echo_client(port, b"") == b"127.0.0.1\n"
    assert run.result() == 0, run.err


def test_keep_open_exec_serves_several_clients():
    with Proc(["listen", "-k", "-b", "127.0.0.1", "--exec", "cat", "0", "-v"]) as server:
        port = server.port()
        for i in range(3):
            assert _echo_client(port, f"round {i}\n".encode()) == f"round {i}\n".encode()
        server.interrupt()


@pytest.mark.parametrize("argv", [
    pytest.param(["listen", "--exec", "cat", "0"], id="all-interfaces"),
    pytest.param(["listen", "-b", "0.0.0.0", "--sh-exec", "cat", "0"], id="any-v4"),
])
def test_exec_refused_unless_loopback_or_allow(cli, argv):
    r = cli(argv)
    assert r.status == ExitStatus.USAGE
    assert "would give a command to anyone who can connect" in r.err


def test_exec_on_all_interfaces_with_allow_is_accepted():
    run = ThreadedMain(["listen", "-v", "--allow", "127.0.0.1", "--exec", "cat", "0"])
    port = run.port()
    assert _echo_client(port, b"ok\n") == b"ok\n"
    assert run.result() == 0, run.err


@pytest.mark.parametrize("argv, message", [
    pytest.param(["--exec", "no-such-command-xyz"], "command not found: no-such-command-xyz", id="not-found"),
    pytest.param(["--exec", "cat 'open"], "No closing quotation", id="bad-quoting"),
    pytest.param(["--exec", "cat", "--sh-exec", "cat"], "exclude each other", id="exec-and-sh-exec"),
    pytest.param(["--exec", "cat", "--echo"], "exclude each other", id="exec-and-echo"),
    pytest.param(["--exec", "cat", "-u"], "needs a plain TCP connection", id="exec-udp"),
    pytest.param(["--echo", "--frame"], "--frame does not apply to --echo", id="echo-frame"),
    pytest.param(["--max-clients", "3"], "--max-clients needs -k", id="max-clients-without-k"),
])
def test_listen_usage_errors(cli, argv, message):
    r = cli(["listen", "-b", "127.0.0.1", *argv, "0"])
    assert r.status == ExitStatus.USAGE
    assert message in r.err


def test_exec_bridge_where_sockets_cannot_be_stdio(monkeypatch):
    """Windows: the child gets pipes and two threads copy to and from the socket."""
    monkeypatch.setattr(servers.platform, "socket_as_stdio", lambda system=None: False)
    run = ThreadedMain(["listen", "-v", "-b", "127.0.0.1", "--exec", "tr a-z A-Z", "0"])
    port = run.port()
    assert _echo_client(port, b"bridged\n") == b"BRIDGED\n"
    assert run.result() == 0, run.err


def test_keep_open_with_closed_stdout_ends_quietly():
    """A closed stdout is the reader's choice (`listen -k | head -c 10`), not a client's failure."""
    with Proc(["listen", "-k", "-b", "127.0.0.1", "-v", "0"]) as server:
        port = server.port()
        server.popen.stdout.close()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            try:
                sock.sendall(b"x" * 100_000)
            except OSError:
                pass  # the server may already be gone
        assert server.wait() == 0
    assert "Traceback" not in server.stderr
