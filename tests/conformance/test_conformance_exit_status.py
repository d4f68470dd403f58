"""Exit statuses of `sockdiag connect`, as ncat's and OpenBSD nc's tests check them: success 0,
refused and reset 1, usage 2, connect timeout (-w) 3; each failure said in one line on stderr.
Each case also runs against nc and ncat where they are installed (ids vs-nc, vs-ncat)."""

from __future__ import annotations

import re
import socket
import struct

import pytest

from sockdiag import platform
from tests.conformance.tools import (NC, NCAT, SOCKDIAG, Checks, assert_same_or_better, free_port, run, sockdiag,
                                     tools)
from tests.test_relay_support import one_connection_server, recv_all, recv_exactly


def _said_in_one_line(err: str) -> bool:
    return err.count("\n") == 1 and bool(err.strip())


def _house_error(err: str, command: str = "connect") -> bool:
    return re.fullmatch(rf"sockdiag {command}: error: [^\n]+\n", err) is not None


# --- success --------------------------------------------------------------------------------------

# same: all three send stdin, print the reply and exit 0.
@pytest.mark.parametrize("peer", tools(NC, NCAT))
def test_success_is_status_0(request, peer):
    argv = {SOCKDIAG: lambda port: sockdiag("connect", "127.0.0.1", str(port)),
            NC: lambda port: ["nc", "-N", "127.0.0.1", str(port)],  # -N: half-close at stdin EOF, as sockdiag
            NCAT: lambda port: ["ncat", "127.0.0.1", str(port)]}

    def case(tool):
        def server(conn):
            received = recv_all(conn)
            conn.sendall(b"got " + received)
            return received

        with one_connection_server(server) as (port, box):
            ran = run(argv[tool](port), stdin=b"hello\n")
        return Checks({"exit status 0": ran.status == 0, "stdin delivered": box.get("result") == b"hello\n",
                       "reply printed": ran.out == b"got hello\n", "nothing on stderr": ran.err == ""})

    assert_same_or_better(request, case)


# --- refused ---------------------------------------------------------------------------------------

# same: all three exit 1 on refused.
# better: nc says nothing (without -v); sockdiag says why in one line, naming ECONNREFUSED.
@pytest.mark.parametrize("peer", tools(NC, NCAT))
def test_refused_is_status_1(request, peer):
    argv = {SOCKDIAG: lambda port: sockdiag("connect", "127.0.0.1", str(port)),
            NC: lambda port: ["nc", "-N", "127.0.0.1", str(port)],
            NCAT: lambda port: ["ncat", "127.0.0.1", str(port)]}

    def case(tool):
        port = free_port()
        ran = run(argv[tool](port))
        checks = Checks({"exit status 1": ran.status == 1, "says why in one line": _said_in_one_line(ran.err)})
        if tool == SOCKDIAG:
            checks["house format naming the errno"] = ran.err == (
                f"sockdiag connect: error: connect 127.0.0.1:{port}: connection refused (ECONNREFUSED)\n")
        return checks

    assert_same_or_better(request, case)


# --- reset -----------------------------------------------------------------------------------------

# same: ncat exits 1 and says "Connection reset by peer".
# better: nc exits 0 after a reset and says nothing; sockdiag exits 1 naming ECONNRESET.
@pytest.mark.parametrize("peer", tools(NC, NCAT))
def test_reset_by_peer_is_status_1(request, peer):
    # no half-close in any of them, so the tool is still waiting for the reply when the RST comes
    argv = {SOCKDIAG: lambda port: sockdiag("connect", "--no-shutdown", "127.0.0.1", str(port)),
            NC: lambda port: ["nc", "127.0.0.1", str(port)],
            NCAT: lambda port: ["ncat", "--no-shutdown", "127.0.0.1", str(port)]}

    def case(tool):
        def server(conn):
            recv_exactly(conn, 5)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST

        with one_connection_server(server) as (port, _):
            ran = run(argv[tool](port), stdin=b"hello")
        checks = Checks({"exit status 1": ran.status == 1, "says why in one line": _said_in_one_line(ran.err)})
        if tool == SOCKDIAG:
            checks["house format naming the errno"] = _house_error(ran.err) and "(ECONNRESET)" in ran.err
        return checks

    assert_same_or_better(request, case)


# --- usage -----------------------------------------------------------------------------------------

USAGE = {
    # name: (sockdiag args, nc args, ncat args) for the same mistake
    "port-out-of-range": (["connect", "127.0.0.1", "70000"], ["-N", "127.0.0.1", "70000"], ["127.0.0.1", "70000"]),
    "no-destination": (["connect"], [], []),  # (`ncat HOST` alone is no mistake: its port defaults to 31337)
    "unknown-option": (["connect", "--no-such-option", "127.0.0.1", "1"], ["-Y", "127.0.0.1", "1"],
                       ["--no-such-option", "127.0.0.1", "1"]),
    # None: not run against nc, whose `nc -l 70000` is no usage error at all: it wraps the port
    # to 4464 and listens there on every interface (worse; but a test must not take a fixed port).
    "listen-port-out-of-range": (["listen", "70000"], None, ["-l", "70000"]),
}


# same: ncat exits 2 for a usage error too.
# better: nc exits 1 for a usage error, the status it uses for "refused"; sockdiag exits 2.
@pytest.mark.parametrize("mistake", USAGE)
@pytest.mark.parametrize("peer", tools(NC, NCAT))
def test_usage_error_is_status_2(request, peer, mistake):
    ours, nc_args, ncat_args = USAGE[mistake]
    if peer == NC and nc_args is None:
        pytest.skip(f"{mistake} is not run against nc (see USAGE)")
    argv = {SOCKDIAG: sockdiag(*ours), NC: ["nc", *(nc_args or [])], NCAT: ["ncat", *ncat_args]}

    def case(tool):
        ran = run(argv[tool])
        checks = Checks({"exit status 2": ran.status == 2, "says why": bool(ran.err.strip()),
                         "no output": ran.out == b""})
        if tool == SOCKDIAG:
            command = ours[0]
            checks["one error line and one hint"] = re.fullmatch(
                rf"sockdiag {command}: error: [^\n]+\nTry 'sockdiag {command} --help'\.\n", ran.err) is not None
        return checks

    assert_same_or_better(request, case)


# --- connect timeout -------------------------------------------------------------------------------

class _FullAcceptQueue:
    """A listener whose accept queue is full: Linux drops further SYNs, so a connect hangs until
    the client's own timeout."""

    def __enter__(self) -> int:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        port = self.listener.getsockname()[1]
        self.fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            self.fillers.append(filler)
        return port

    def __exit__(self, *exc) -> None:
        for filler in self.fillers:
            filler.close()
        self.listener.close()


# better: nc exits 1 in silence and ncat exits 1 ("TIMEOUT."), the status of every other failure;
# sockdiag exits 3, the documented timeout status, and says so.
@pytest.mark.skipif(platform.SYSTEM != platform.LINUX, reason="relies on Linux dropping SYNs when the accept queue is full")
@pytest.mark.parametrize("peer", tools(NC, NCAT))
def test_connect_timeout_is_status_3(request, peer):
    argv = {SOCKDIAG: lambda port: sockdiag("connect", "-w", "0.5", "127.0.0.1", str(port)),
            NC: lambda port: ["nc", "-N", "-w", "1", "127.0.0.1", str(port)],  # nc's -w takes whole seconds
            NCAT: lambda port: ["ncat", "-w", "500ms", "127.0.0.1", str(port)]}

    def case(tool):
        with _FullAcceptQueue() as port:
            ran = run(argv[tool](port))
        checks = Checks({"ends by itself": ran.status is not None, "fails": ran.status not in (None, 0),
                         "a status of its own (not 0, 1 or 2)": ran.status not in (None, 0, 1, 2),
                         "says why in one line": _said_in_one_line(ran.err)})
        if tool == SOCKDIAG:
            checks["exit status 3"] = ran.status == 3
            checks["house format"] = ran.err == f"sockdiag connect: error: connect 127.0.0.1:{port}: timed out\n"
        return checks

    assert_same_or_better(request, case)
