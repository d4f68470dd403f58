"""Request/response dialogues: --frame-mode ascii-ack and listen --exec-each (relay/dialogue.py)."""

from __future__ import annotations

import json
import signal
import socket
import struct
import sys
import threading

import psutil
import pytest

from sockdiag.core.status import ExitStatus
from tests.conftest import run_main, wait_until
from tests.test_relay_support import TIMEOUT, Proc, one_connection_server

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="uses sh and cat")


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AssertionError(f"EOF after {len(data)} of {size} bytes")
        data += chunk
    return data


# --- ascii-ack: sockdiag as the client -----------------------------------------------------------

def _ack_server(replies: dict[bytes, bytes], log: list):
    """A tutorial "simple SSH" server: recv a command, send its reply's length in decimal, wait
    for the ack, send the reply; until the client's EOF."""

    def handler(conn: socket.socket):
        while True:
            command = conn.recv(1024)
            if not command:
                return "eof"
            log.append(command)
            reply = replies.get(command, b"?\n")
            conn.sendall(str(len(reply)).encode())
            log.append(conn.recv(1024))
            conn.sendall(reply)

    return handler


def test_ascii_ack_client_sends_lines_and_prints_each_reply():
    log: list = []
    big = bytes(range(256)) * 400
    with one_connection_server(_ack_server({b"one": b"1\n", b"big": big, b"empty": b""}, log)) as (port, box):
        r = run_main(["connect", "--frame-mode", "ascii-ack", "--frame-dir", "in", "127.0.0.1", str(port)],
                     stdin=b"one\r\nbig\nempty\n")
    assert r.status == 0, r.err
    assert r.out == b"1\n" + big
    assert log == [b"one", b"ok", b"big", b"ok", b"empty", b"ok"]  # terminators stripped, each acked
    assert box["result"] == "eof"  # sockdiag closed only after the last reply


def test_ascii_ack_custom_ack_and_a_length_that_is_not_a_number():
    log: list = []
    with one_connection_server(_ack_server({b"x": b"y"}, log)) as (port, _):
        r = run_main(["connect", "--frame-mode", "ascii-ack", "--frame-dir", "in", "--ack", "ACK", "127.0.0.1",
                      str(port)], stdin=b"x\n")
    assert r.status == 0 and log == [b"x", b"ACK"]

    def liar(conn):
        conn.recv(1024)
        conn.sendall(b"lots")

    with one_connection_server(liar) as (port, _):
        r = run_main(["connect", "--frame-mode", "ascii-ack", "--frame-dir", "in", "127.0.0.1", str(port)],
                     stdin=b"x\n")
    assert r.status == ExitStatus.FAILURE
    assert r.err == "sockdiag connect: error: expected a decimal length, got b'lots'\n"


def test_ascii_ack_length_over_max_frame_is_malformed():
    def boaster(conn):
        conn.recv(1024)
        conn.sendall(b"99999999999")

    with one_connection_server(boaster) as (port, _):
        r = run_main(["connect", "--frame-mode", "ascii-ack", "--frame-dir", "in", "--max-frame", "1M", "127.0.0.1",
                      str(port)], stdin=b"x\n")
    assert r.status == ExitStatus.FAILURE and "more than the maximum of 1048576" in r.err


def test_ack_without_ascii_ack_is_a_usage_error(cli):
    r = cli(["connect", "--ack", "ok", "127.0.0.1", "9"])
    assert r.status == ExitStatus.USAGE and "--ack applies to --frame-mode ascii-ack only" in r.err


# --- ascii-ack: sockdiag as the server ------------------------------------------------------------

def test_ascii_ack_server_answers_each_message_with_a_stdin_line():
    with Proc(["listen", "-v", "-b", "127.0.0.1", "--frame-mode", "ascii-ack", "--frame-dir", "out", "0"],
              stdin=__import__("subprocess").PIPE) as server:
        server.popen.stdin.write(b"first reply\nsecond reply\n")
        server.popen.stdin.close()
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
            got = []
            for command in (b"ls", b"pwd"):
                client.sendall(command)
                length = int(client.recv(64))
                client.sendall(b"ok")
                got.append(_recv_exactly(client, length))
        assert got == [b"first reply", b"second reply"]
        assert server.wait() == 0, server.stderr
        assert server.popen.stdout.read() == b"lspwd"


# --- --exec-each ---------------------------------------------------------------------------------

@posix_only
def test_exec_each_json_mode_is_the_tutorials_command_server():
    argv = ["listen", "-v", "-b", "127.0.0.1", "--exec-each", "sh", "--frame-mode", "json", "--frame-header", "i",
            "--frame-dir", "out", "0"]
    with Proc(argv) as server:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
            replies = []
            for command in (b"echo hello", b"echo oops >&2", b"true"):
                client.sendall(command)
                (size,) = struct.unpack("i", _recv_exactly(client, 4))
                header = json.loads(_recv_exactly(client, size))
                replies.append(_recv_exactly(client, header["total_size"]))
        assert replies == [b"hello\n", b"oops\n", b""]  # stderr is part of the reply by default
        assert server.wait() == 0, server.stderr


@posix_only
def test_exec_each_without_stderr_and_in_length_mode():
    argv = ["listen", "-b", "127.0.0.1", "-v", "--exec-each", "sh", "--no-exec-stderr", "--frame-dir", "out", "0"]
    with Proc(argv) as server:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
            client.sendall(b"echo out; echo err >&2")
            (size,) = struct.unpack("!I", _recv_exactly(client, 4))
            assert _recv_exactly(client, size) == b"out\n"
        server.wait()


@posix_only
def test_exec_each_keep_open_serves_clients_concurrently():
    argv = ["listen", "-k", "-v", "-b", "127.0.0.1", "--exec-each", "tr a-z A-Z", "--frame-dir", "out", "0"]
    results: dict = {}

    def client(i: int, port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(f"client {i}".encode())
            (size,) = struct.unpack("!I", _recv_exactly(sock, 4))
            results[i] = _recv_exactly(sock, size)

    with Proc(argv) as server:
        port = server.port()
        threads = [threading.Thread(target=client, args=(i, port)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert server.interrupt() == ExitStatus.INTERRUPTED
    assert results == {i: f"CLIENT {i}".encode() for i in range(10)}


@posix_only
def test_exec_each_runs_stop_with_the_server():
    argv = ["listen", "-k", "-v", "-b", "127.0.0.1", "--exec-each", "sh", "0"]
    with Proc(argv) as server:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
            client.sendall(b"sleep 300")
            sleeper = wait_until(lambda: [p for p in psutil.Process(server.popen.pid).children(recursive=True)
                                          if p.name() == "sleep"])
            server.popen.send_signal(signal.SIGTERM)
            assert server.wait() == ExitStatus.TERMINATED, server.stderr
            wait_until(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in sleeper))


def test_exec_each_needs_loopback_or_allow(cli):
    r = cli(["listen", "--exec-each", "cat", "0"])
    assert r.status == ExitStatus.USAGE and "would give a command to anyone" in r.err
    r = cli(["listen", "-b", "127.0.0.1", "--exec-each", "  ", "0"])
    assert r.status == ExitStatus.USAGE and "--exec-each: empty command" in r.err
    r = cli(["listen", "-b", "127.0.0.1", "--exec-each", "cat", "--echo", "0"])
    assert r.status == ExitStatus.USAGE


def test_ascii_ack_both_ways_between_two_sockdiags():
    import subprocess

    with Proc(["listen", "-v", "-b", "127.0.0.1", "--frame-mode", "ascii-ack", "0"], stdin=subprocess.PIPE) as server:
        server.popen.stdin.write(b"reply one\nreply two\n")
        server.popen.stdin.close()
        port = server.port()
        r = run_main(["connect", "--frame-mode", "ascii-ack", "127.0.0.1", str(port)], stdin=b"ask one\nask two\n")
        assert server.wait() == 0, server.stderr
        assert server.popen.stdout.read() == b"ask oneask two"
    assert r.status == 0, r.err
    assert r.out == b"reply onereply two"
