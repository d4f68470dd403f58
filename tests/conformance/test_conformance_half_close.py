"""EOF and half-close in both directions, for `connect` and for `listen`, as ncat's and OpenBSD
nc's tests check them: after stdin EOF the write side is shut down and the reply is still read;
after the peer's EOF the rest of stdin is still sent; once both directions are shut down the
tool exits 0 and the connection ends in an orderly close, every byte delivered.
Each case also runs against nc (with -N, its half-close flag) and ncat where installed."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from tests.conformance.tools import (NC, NCAT, SOCKDIAG, WAIT, Checks, Running, assert_same_or_better, background,
                                     connect, eventually, read_to_eof, sockdiag, tools)
from tests.test_relay_support import one_connection_server, recv_all

CONNECT = {SOCKDIAG: lambda port: sockdiag("connect", "127.0.0.1", str(port)),
           NC: lambda port: ["nc", "-N", "127.0.0.1", str(port)],  # -N: shut down the socket at stdin EOF
           NCAT: lambda port: ["ncat", "127.0.0.1", str(port)]}
LISTEN = {SOCKDIAG: sockdiag("listen", "-v", "-b", "127.0.0.1", "0"),
          NC: ["nc", "-l", "-N", "127.0.0.1", "0"],
          NCAT: ["ncat", "-l", "127.0.0.1", "0"]}


def _send_stdin(tool: Running, data: bytes) -> bool:
    """Write the rest of stdin and close it; False when the tool had already closed its stdin."""
    try:
        tool.send(data)
        tool.close_stdin()
    except BrokenPipeError:
        return False
    return True


# --- connect ---------------------------------------------------------------------------------------

# same: nc -N and ncat also shut down the write side at stdin EOF and print the whole reply.
@pytest.mark.parametrize("peer", tools(NC, NCAT))
def test_connect_stdin_eof_shuts_down_the_write_side_and_still_reads_the_reply(request, peer):
    data = os.urandom(100_000)

    def case(tool):
        def server(conn):
            received = recv_all(conn)  # ends only when the client has shut down its write side
            conn.sendall(b"got " + str(len(received)).encode() + b"\n" + received[::-1])
            return received

        with one_connection_server(server) as (port, box):
            with Running(CONNECT[tool](port), stdin=subprocess.PIPE) as client:
                client.feed(data)
                status = client.wait()
        return Checks({"stdin delivered, then EOF": box.get("result") == data,
                       "whole reply printed": client.out == b"got 100000\n" + data[::-1],
                       "exit status 0": status == 0})

    assert_same_or_better(request, case)


# same: nc -N and ncat also go on sending stdin after the server's EOF.
@pytest.mark.parametrize("peer", tools(NC, NCAT))
def test_connect_peer_eof_still_sends_the_rest_of_stdin(request, peer):
    def case(tool):
        def server(conn):
            conn.sendall(b"early reply\n")
            conn.shutdown(socket.SHUT_WR)  # the server is done talking but still listens
            return recv_all(conn)

        with one_connection_server(server) as (port, box):
            with Running(CONNECT[tool](port), stdin=subprocess.PIPE) as client:
                client.send(b"first part\n")
                replied = eventually(lambda: client.out == b"early reply\n" or client.popen.poll() is not None)
                sent = _send_stdin(client, b"second part, after the server's EOF\n")
                status = client.wait()
        return Checks({"reply printed": replied and client.out == b"early reply\n",
                       "rest of stdin sent after the peer's EOF":
                           sent and box.get("result") == b"first part\nsecond part, after the server's EOF\n",
                       "exit status 0": status == 0})

    assert_same_or_better(request, case)


# same: nc -N and ncat move 1 MB each way at once and exit 0 once both directions are shut down.
@pytest.mark.parametrize("peer", tools(NC, NCAT))
def test_connect_full_duplex_then_both_shut_down_exits_0(request, peer):
    up, down = os.urandom(1_000_000), os.urandom(1_000_000)

    def case(tool):
        def server(conn):
            sender = background(lambda: (conn.sendall(down), conn.shutdown(socket.SHUT_WR)))
            received = recv_all(conn)
            sender.join(WAIT)
            return received

        with one_connection_server(server) as (port, box):
            with Running(CONNECT[tool](port), stdin=subprocess.PIPE) as client:
                client.feed(up)
                status = client.wait()
        return Checks({"every byte up": box.get("result") == up, "every byte down": client.out == down,
                       "exit status 0": status == 0})

    assert_same_or_better(request, case)


# --- listen ----------------------------------------------------------------------------------------

# same: nc -l -N and ncat -l also shut down their write side at stdin EOF and still read.
@pytest.mark.parametrize("peer", tools(NC, NCAT))
def test_listen_stdin_eof_shuts_down_the_write_side_and_still_reads(request, peer):
    def case(tool):
        with Running(LISTEN[tool], stdin=subprocess.PIPE) as server:
            _send_stdin(server, b"greeting\n")  # all of stdin, then EOF, before anyone connects
            with connect(server.port()) as client:
                greeting, how = read_to_eof(client)  # EOF while the client's own side is still open
                client.sendall(b"upload after the server's EOF\n")
                client.shutdown(socket.SHUT_WR)
                rest, end = read_to_eof(client)
            status = server.wait()
        return Checks({"stdin sent, then EOF": (greeting, how) == (b"greeting\n", "eof"),
                       "client's data still printed": server.out == b"upload after the server's EOF\n",
                       "orderly close": (rest, end) == (b"", "eof"), "exit status 0": status == 0})

    assert_same_or_better(request, case)


# better: nc -l -N and ncat -l quit when the client half-closes, and the rest of their stdin is
# never sent; sockdiag still sends it, then exits 0.
@pytest.mark.parametrize("peer", tools(NC, NCAT))
def test_listen_client_eof_still_sends_the_rest_of_stdin(request, peer):
    def case(tool):
        with Running(LISTEN[tool], stdin=subprocess.PIPE) as server:
            with connect(server.port()) as client:
                client.sendall(b"upload\n")
                client.shutdown(socket.SHUT_WR)  # the client is done talking but still listens
                printed = eventually(lambda: server.out == b"upload\n" or server.popen.poll() is not None)
                sent = _send_stdin(server, b"reply after the client's EOF\n")
                reply, how = read_to_eof(client)
            status = server.wait()
        return Checks({"client's data printed": printed and server.out == b"upload\n",
                       "rest of stdin sent after the peer's EOF": sent and reply == b"reply after the client's EOF\n",
                       "orderly close": how == "eof", "exit status 0": status == 0})

    assert_same_or_better(request, case)


# better: nc -l -N and ncat -l quit as soon as the client has sent its 1 MB and half-closed, so the
# part of their own stdin not yet sent never reaches the client (they still exit 0); sockdiag
# delivers every byte both ways, then exits 0.
@pytest.mark.parametrize("peer", tools(NC, NCAT))
def test_listen_full_duplex_then_both_shut_down_exits_0(request, peer):
    up, down = os.urandom(1_000_000), os.urandom(1_000_000)

    def case(tool):
        with Running(LISTEN[tool], stdin=subprocess.PIPE) as server:
            with connect(server.port()) as client:
                server.feed(down)
                sender = background(lambda: (client.sendall(up), client.shutdown(socket.SHUT_WR)))
                received, how = read_to_eof(client)
                status = server.wait()
                sender.join(WAIT)
        return Checks({"every byte to the client": received == down, "every byte from the client": server.out == up,
                       "orderly close": how == "eof", "exit status 0": status == 0})

    assert_same_or_better(request, case)
