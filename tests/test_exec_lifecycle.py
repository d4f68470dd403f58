"""--exec/--sh-exec children never outlive their server or their client.

Before: children (and the connections they held) survived SIGINT, SIGTERM and SIGHUP of a
`listen -k --exec` server, -i did not apply to them, and `--exec ''` ran a plain relay.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys

import psutil
import pytest

from sockdiag.core.status import ExitStatus
from tests.conftest import wait_until
from tests.test_relay_support import TIMEOUT, Proc, recv_all

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups and signals")

SLEEPER = "sleep 300 & sleep 301; echo never"  # a shell with a background grandchild: a whole group


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _sleepers(pid: int, count: int = 2) -> list[psutil.Process]:
    """Wait until the server's child shell has started both of its sleeps."""
    return wait_until(lambda: [p for p in _descendants(pid) if p.name() == "sleep"][:count]
                      if len([p for p in _descendants(pid) if p.name() == "sleep"]) >= count else None)


def _gone(procs: list[psutil.Process]) -> bool:
    for proc in procs:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            pass
    return True


@pytest.mark.parametrize("signum, status", [
    pytest.param(signal.SIGINT, ExitStatus.INTERRUPTED, id="SIGINT"),
    pytest.param(signal.SIGTERM, ExitStatus.TERMINATED, id="SIGTERM"),
    pytest.param(signal.SIGHUP, ExitStatus.HANGUP, id="SIGHUP"),
])
def test_children_and_connections_end_with_the_server(signum, status):
    with Proc(["listen", "-k", "-v", "-b", "127.0.0.1", "--sh-exec", SLEEPER, "0"]) as server:
        port = server.port()
        clients = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(2)]
        try:
            wait_until(lambda: len([p for p in _descendants(server.popen.pid) if p.name() == "sleep"]) >= 4)
            sleepers = [p for p in _descendants(server.popen.pid) if p.name() == "sleep"]
            server.popen.send_signal(signum)
            assert server.wait() == status, server.stderr
            wait_until(lambda: _gone(sleepers))
            for client in clients:  # the connection is closed too: the client reads EOF
                assert recv_all(client) == b""
        finally:
            for client in clients:
                client.close()
    assert "Traceback" not in server.stderr


def test_a_reset_client_stops_its_command():
    with Proc(["listen", "-k", "-v", "-b", "127.0.0.1", "--sh-exec", SLEEPER, "0"]) as server:
        port = server.port()
        client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        sleepers = _sleepers(server.popen.pid)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # RST: the client is gone, not half-closed
        wait_until(lambda: _gone(sleepers))
        wait_until(lambda: "command exited" in server.stderr)
        server.interrupt()


def test_a_half_closed_client_still_gets_its_reply():
    """A client's FIN is not "gone": `echo cmd | sockdiag connect` waits for the command's output."""
    with Proc(["listen", "-k", "-b", "127.0.0.1", "-v", "--sh-exec", "cat; sleep 0.3; echo done", "0"]) as server:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
            client.sendall(b"hello\n")
            client.shutdown(socket.SHUT_WR)
            assert recv_all(client) == b"hello\ndone\n"
        server.interrupt()


def test_idle_timeout_applies_to_exec_clients():
    with Proc(["listen", "-v", "-i", "0.3", "-b", "127.0.0.1", "--sh-exec", "read line; echo got $line; sleep 300",
               "0"]) as server:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
            client.sendall(b"x\n")
            assert client.recv(100) == b"got x\n"  # data flowed: the timer restarted
            assert recv_all(client) == b""  # then nothing for 0.3 s: the command is stopped
        assert server.wait() == ExitStatus.TIMEOUT, server.stderr  # as the plain relay's -i
    assert "no data for 0.3 s, stopping its command" in server.stderr
    assert "idle for 0.3 s (-i): closed" in server.stderr


@pytest.mark.parametrize("option", ["--exec", "--sh-exec"])
@pytest.mark.parametrize("value", ["", "   "])
def test_empty_command_is_a_usage_error(cli, option, value):
    r = cli(["listen", "-b", "127.0.0.1", option, value, "0"])
    assert r.status == ExitStatus.USAGE
    assert r.err == f"sockdiag listen: error: {option}: empty command\nTry 'sockdiag listen --help'.\n"


def test_child_gets_ncat_style_environment():
    env_line = "echo $SOCKDIAG_PROTO $SOCKDIAG_REMOTE_ADDR $SOCKDIAG_LOCAL_ADDR $SOCKDIAG_LOCAL_PORT"
    with Proc(["listen", "-v", "-b", "127.0.0.1", "--sh-exec", env_line, "0"]) as server:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
            client.shutdown(socket.SHUT_WR)
            assert recv_all(client) == f"tcp 127.0.0.1 127.0.0.1 {port}\n".encode()
        server.wait()


def test_each_child_leads_its_own_process_group():
    with Proc(["listen", "-k", "-v", "-b", "127.0.0.1", "--sh-exec", SLEEPER, "0"]) as server:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
            sleepers = _sleepers(server.popen.pid)
            (shell,) = psutil.Process(server.popen.pid).children()
            assert os.getpgid(shell.pid) == shell.pid != os.getpgid(server.popen.pid)
            assert {os.getpgid(p.pid) for p in sleepers} == {shell.pid}
            server.interrupt()
