"""How sockdiag ends a session with the tutorials' command servers, which never end one
themselves: the fixed versions wait in recv() until the client closes, the first versions loop
for ever on the empty read that follows (running the empty command and answering it).

- after stdin EOF and the last reply, connect (--frame-dir in) closes the connection: the
  fixed servers' empty read, and a failed send for the first versions;
- -i SEC closes a connection that moved nothing for SEC seconds (stdin left open, as a
  terminal would be);
- against a server that loops on the empty read, connect must still end.

Each case runs the command line README shows (see tutorial_support.documented).
"""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import wait_until
from tests.tutorial.tutorial_support import (HOSTS, TIMEOUT, Sockdiag, TutorialServer, documented, posix_only,
                                             run_sockdiag)

CONNECT_ACK = "sockdiag connect --frame-mode ascii-ack --frame-dir in 127.0.0.1 8000"
CONNECT_JSON = "sockdiag connect --frame-mode json --frame-header i --frame-dir in 127.0.0.1 8000"
IDLE_ACK = "sockdiag connect -i 2 --frame-mode ascii-ack --frame-dir in 127.0.0.1 8000"
IDLE_JSON = "sockdiag connect -i 2 --frame-mode json --frame-header i --frame-dir in 127.0.0.1 8000"
IDLE = 2  # the -i of the lines above
LOOPS = 50  # empty reads a "first version" server answers before it gives up (it would loop for ever)
FOREVER = 10**9  # as good as for ever: only a failed send ends the session

pytestmark = posix_only


@pytest.mark.parametrize("host", HOSTS)
def test_ascii_ack_connect_closes_after_stdin_eof_and_the_server_takes_the_next_client(host):
    with TutorialServer("ssh_ack_server.py", host, 2) as peer:  # two clients, one after the other
        port = peer.port()
        first = run_sockdiag(documented(CONNECT_ACK, host, port), b"echo first\n")
        second = run_sockdiag(documented(CONNECT_ACK, host, port), b"echo second\n")
        assert first == (0, b"first\n", "")
        assert second == (0, b"second\n", "")  # the first session had ended: the server accepted again
        assert peer.wait() == 0, peer.err


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("server, line", [
    pytest.param("ssh_ack_server.py", IDLE_ACK, id="ascii-ack"),
    pytest.param("ssh_json_server.py", IDLE_JSON, id="json"),
])
def test_idle_timeout_ends_a_session_while_stdin_stays_open(host, server, line):
    with TutorialServer(server, host) as peer:
        with Sockdiag(documented(line, host, peer.port()), stdin=subprocess.PIPE) as client:
            client.write(b"echo hi\n")  # and stdin stays open, as a terminal's would
            wait_until(lambda: client.out == b"hi\n" or client.popen.poll() is not None, timeout=TIMEOUT)
            assert client.out == b"hi\n", client.err
            status = client.wait(timeout=IDLE + 5)  # bounded: killed (None) if -i does not end it
            assert status == 3, client.err  # 3: timeout
            assert "idle for 2 s (-i)" in client.err
        assert peer.wait() == 0, peer.err  # the server saw the close and ended the session


@pytest.mark.parametrize("host", HOSTS)
def test_json_connect_against_a_server_that_loops_on_the_empty_read(host):
    """The first-version server answers each empty read with an empty output (total_size 0):
    connect prints nothing for those and ends when the server gives up (here after LOOPS; the
    tutorial's would go on for ever; see the next test)."""
    with TutorialServer("ssh_json_server.py", host, 1, LOOPS) as peer:
        status, out, err = run_sockdiag(documented(CONNECT_JSON, host, peer.port()), b"echo hi\n")
        assert (status, out, err) == (0, b"hi\n", "")
        assert peer.wait() == 0, peer.err


@pytest.mark.parametrize("host", HOSTS)
def test_json_connect_ends_against_a_server_that_loops_for_ever(host):
    """connect closes once stdin has ended and the last reply is in: the looping server's next
    send fails and it stops (before, only -q ended this)."""
    with TutorialServer("ssh_json_server.py", host, 1, FOREVER) as peer:
        status, out, err = run_sockdiag(documented(CONNECT_JSON, host, peer.port()), b"echo hi\n")
        assert (status, out, err) == (0, b"hi\n", "")
        assert peer.wait() == 0, peer.err  # its next send failed: the session is over


@pytest.mark.parametrize("host", HOSTS)
def test_ascii_ack_connect_against_a_server_that_loops_on_the_empty_read(host):
    with TutorialServer("ssh_ack_server.py", host, 1, LOOPS) as peer:
        status, out, err = run_sockdiag(documented(CONNECT_ACK, host, peer.port()), b"echo hi\n")
        assert peer.wait() == 0, peer.err
    assert (status, out, err) == (0, b"hi\n", "")


def test_json_connect_sends_one_command_per_reply():
    # Run one at a time, "echo one >&2" then "echo two" print one, two. Run as one shell script,
    # the tutorial server sends the script's stdout before its stderr: two, one.
    with TutorialServer("ssh_json_server.py", "127.0.0.1") as peer:
        status, out, err = run_sockdiag(documented(CONNECT_JSON, "127.0.0.1", peer.port()),
                                        b"echo one >&2\necho two\n")
        assert peer.wait() == 0, peer.err
    assert (status, err) == (0, "")
    assert out == b"one\ntwo\n"
