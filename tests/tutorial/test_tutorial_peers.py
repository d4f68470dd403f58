"""sockdiag against the programs socket tutorials teach, in both roles: as the client of each
tutorial server and as the server of each tutorial client, byte-exact, over 127.0.0.1 and ::1.

The tutorial programs are in this folder (plain sockets, no sockdiag). Each case runs one
command line exactly as README's "Talking to tutorial-style servers" shows it (see
tutorial_support.documented), and checks that the tutorial program ended cleanly too.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.tutorial.tutorial_support import (HOSTS, PEERS, TIMEOUT, Sockdiag, TutorialServer, documented, posix_only,
                                             run_client, run_sockdiag)

# The command lines, as README shows them.
CONNECT = "sockdiag connect 127.0.0.1 8000"
CONNECT_UDP = "sockdiag connect -u --reply-wait 2 127.0.0.1 8000"
CONNECT_ACK = "sockdiag connect --frame-mode ascii-ack --frame-dir in 127.0.0.1 8000"
CONNECT_JSON = "sockdiag connect --frame-mode json --frame-header i --frame-dir in 127.0.0.1 8000"
LISTEN_ECHO = "sockdiag listen -b 127.0.0.1 --echo 8000"
LISTEN_UDP_ECHO = "sockdiag listen -u -b 127.0.0.1 --echo 8000"
LISTEN_ACK = "sockdiag listen -b 127.0.0.1 --exec-each sh --frame-mode ascii-ack --frame-dir out 8000"
LISTEN_JSON = "sockdiag listen -b 127.0.0.1 --exec-each sh --frame-mode json --frame-header i --frame-dir out 8000"

LINES = b"hello\nworld\n" + b"x" * 3000 + b"\n" + b"".join(b"line %d\n" % i for i in range(5000))
SEQ = b"".join(b"%d\n" % i for i in range(1, 3001))  # `seq 1 3000`: 13,893 bytes, many recv()s
# Commands for the command servers and what each prints: stdout, stderr, a long output (the
# tutorials' sticky-packet case), and none at all.
COMMANDS = [("echo hello", b"hello\n"), ("echo oops >&2", b"oops\n"), ("seq 1 3000", SEQ), ("true", b"")]
STDOUT_ONLY = [(command, out) for command, out in COMMANDS if ">&2" not in command]


def _script(commands) -> tuple[bytes, bytes]:
    """(stdin: one command per line, everything they print in order)."""
    return (b"".join(command.encode() + b"\n" for command, _ in commands),
            b"".join(out for _, out in commands))


# --- sockdiag as the client of a tutorial server ------------------------------------------------------

@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("server, expected", [("echo_server.py", LINES), ("upper_tcp_server.py", LINES.upper())],
                         ids=["echo_server", "ThreadingTCPServer"])
def test_connect_to_a_tutorial_tcp_server(host, server, expected):
    with TutorialServer(server, host) as peer:
        status, out, err = run_sockdiag(documented(CONNECT, host, peer.port()), LINES)
        assert (status, err) == (0, "")
        assert out == expected
        assert peer.wait() == 0, peer.err  # the client's half-close ended its session


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("server", ["udp_server.py", "upper_udp_server.py"], ids=["udp_server", "ThreadingUDPServer"])
def test_connect_udp_to_a_tutorial_udp_server(host, server):
    requests = [b"hello", b"udp world", b"x" * 1400]
    with TutorialServer(server, host, len(requests)) as peer:  # it answers that many datagrams, then exits
        status, out, err = run_sockdiag(documented(CONNECT_UDP, host, peer.port()),
                                        b"".join(r + b"\n" for r in requests))
        assert (status, err) == (0, "")
        assert out == b"".join(r.upper() + b"\n" for r in requests)  # one reply per request, one line each
        assert peer.wait() == 0, peer.err  # every request arrived as one datagram without its newline


@posix_only
@pytest.mark.parametrize("host", HOSTS)
def test_connect_ascii_ack_to_the_simple_ssh_server(host):
    stdin, expected = _script(COMMANDS)
    with TutorialServer("ssh_ack_server.py", host) as peer:
        status, out, err = run_sockdiag(documented(CONNECT_ACK, host, peer.port()), stdin)
        assert (status, err) == (0, "")
        assert out == expected
        assert peer.wait() == 0, peer.err  # connect closed after stdin EOF: the server's empty read


@posix_only
@pytest.mark.parametrize("host", HOSTS)
def test_connect_json_to_the_struct_json_server(host):
    # stdout-only commands: the stream relay may hand the server several lines in one recv()
    # (see test_tutorial_sessions.py), and it prints a merged run's stderr after its stdout.
    stdin, expected = _script(STDOUT_ONLY)
    with TutorialServer("ssh_json_server.py", host) as peer:
        status, out, err = run_sockdiag(documented(CONNECT_JSON, host, peer.port()), stdin)
        assert (status, err) == (0, "")
        assert out == expected
        assert peer.wait() == 0, peer.err


@posix_only
def test_connect_json_a_command_that_writes_to_stderr():
    with TutorialServer("ssh_json_server.py", "127.0.0.1") as peer:
        status, out, err = run_sockdiag(documented(CONNECT_JSON, "127.0.0.1", peer.port()), b"echo oops >&2\n")
        assert (status, out, err) == (0, b"oops\n", "")
        assert peer.wait() == 0, peer.err


@posix_only
def test_connect_json_verbose_header_note_is_json():
    with TutorialServer("ssh_json_server.py", "127.0.0.1") as peer:
        args = documented(CONNECT_JSON, "127.0.0.1", peer.port())
        status, out, err = run_sockdiag([args[0], "-v", *args[1:]], b"echo hi\n")
        assert (status, out) == (0, b"hi\n")
        assert peer.wait() == 0, peer.err
    assert '"total_size": 3' in err, err


# --- sockdiag as the server of a tutorial client ------------------------------------------------------

@pytest.mark.parametrize("host", HOSTS)
def test_listen_echo_for_the_tutorial_echo_client(host):
    with Sockdiag(documented(LISTEN_ECHO, host, 0)) as server:
        status, out, err = run_client("echo_client.py", host, server.bound_port(), LINES)
        assert (status, err) == (0, "")
        assert out == LINES  # each line came back whole (the client prints it with print())
        assert server.wait() == 0, server.err  # one client, then the listener closes (no -k)
        assert server.out == b""


@pytest.mark.parametrize("host", HOSTS)
def test_listen_udp_echo_for_the_tutorial_udp_client(host):
    requests = b"hello\nudp world\n" + b"x" * 1400 + b"\n"
    with Sockdiag(documented(LISTEN_UDP_ECHO, host, 0)) as server:
        status, out, err = run_client("udp_client.py", host, server.bound_port("udp"), requests)
        assert (status, err) == (0, "")
        assert out == requests
        assert server.interrupt() == 130, server.err  # a UDP server runs until Ctrl-C
        assert server.out == b""


@posix_only
@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("client, line", [("ssh_ack_client.py", LISTEN_ACK), ("ssh_json_client.py", LISTEN_JSON)],
                         ids=["simple_ssh_client", "struct_json_client"])
def test_listen_exec_each_for_the_tutorial_command_clients(host, client, line):
    stdin, expected = _script(COMMANDS)
    with Sockdiag(documented(line, host, 0)) as server:
        status, out, err = run_client(client, host, server.bound_port(), stdin)
        assert (status, err) == (0, "")
        assert out == expected  # stderr is part of each reply, as the tutorial servers send it
        assert server.wait() == 0, server.err  # the client's close ends the session and the server
        assert server.out == b""


@posix_only
def test_listen_exec_each_with_k_serves_tutorial_clients_at_once():
    """-k added to the documented line (README says so) serves clients that are connected at the
    same time; Ctrl-C ends it."""
    args = documented(LISTEN_JSON, "127.0.0.1", 0)
    with Sockdiag([args[0], "-k", *args[1:]]) as server:
        port = server.bound_port()
        clients = [subprocess.Popen([sys.executable, str(PEERS / "ssh_json_client.py"), str(port), "127.0.0.1"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(3)]
        try:  # all three are connected; each is answered while the others hold their connections
            results = [client.communicate(b"echo %d\nseq 1 3000\n" % i, timeout=TIMEOUT)
                       for i, client in enumerate(clients)]
        finally:
            for client in clients:
                if client.poll() is None:
                    client.kill()
                    client.wait()
        assert [out for out, _ in results] == [b"%d\n" % i + SEQ for i in range(3)]
        assert [client.returncode for client in clients] == [0, 0, 0]
        assert server.interrupt() == 130, server.err
