"""connect -u and listen -u: datagram round trips, ICMP port unreachable as `connection refused`."""

from __future__ import annotations

import socket
import threading


from sockdiag.core.status import ExitStatus
from tests.test_relay_support import TIMEOUT, ThreadedMain


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _echo_upper(sock: socket.socket, count: int, seen: list) -> None:
    for _ in range(count):
        data, addr = sock.recvfrom(65535)
        seen.append(data)
        sock.sendto(data.upper(), addr)


def test_connect_udp_sends_each_line_as_a_datagram_and_prints_replies(cli, udp_peer):
    seen: list[bytes] = []
    echo = threading.Thread(target=_echo_upper, args=(udp_peer, 2, seen))
    echo.start()
    port = udp_peer.getsockname()[1]
    r = cli(["connect", "-u", "-v", "--wait", "2", "127.0.0.1", str(port)], stdin=b"one\ntwo")
    echo.join(TIMEOUT)
    assert r.status == 0, r.err
    assert seen == [b"one", b"two"]  # one datagram per line, without its newline
    assert r.out == b"ONE\nTWO\n"  # each reply printed on a line of its own
    assert "closed, 6 bytes in, 6 bytes out" in r.err


def test_connect_udp_raw_sends_chunks(cli, udp_peer):
    port = udp_peer.getsockname()[1]
    r = cli(["connect", "-u", "--raw", "--wait", "0.1", "127.0.0.1", str(port)], stdin=b"a\nb\n")
    assert r.status == 0, r.err
    assert udp_peer.recv(100) == b"a\nb\n"


def test_connect_udp_port_unreachable_is_connection_refused(cli):
    port = _free_udp_port()
    r = cli(["connect", "-u", "--wait", "5", "127.0.0.1", str(port)], stdin=b"anyone?\n")
    assert r.status == ExitStatus.FAILURE
    assert r.err == f"sockdiag connect: error: connect 127.0.0.1:{port} (udp): connection refused (ECONNREFUSED)\n"


def test_connect_udp_oversized_line(cli, udp_peer):
    port = udp_peer.getsockname()[1]
    r = cli(["connect", "-u", "127.0.0.1", str(port)], stdin=b"x" * 70000 + b"\n")
    assert r.status == ExitStatus.FAILURE
    assert "stdin line (one UDP datagram) longer than the maximum of 65507 bytes" in r.err


def test_listen_udp_prints_datagrams_and_answers_the_last_peer(udp_peer):
    run = ThreadedMain(["listen", "-u", "-v", "-i", "0.5", "-b", "127.0.0.1", "0"], stdin=b"reply\n")
    port = run.port()
    udp_peer.sendto(b"hello\n", ("127.0.0.1", port))
    data, addr = udp_peer.recvfrom(100)  # stdin is read only once a peer is known
    assert (data, addr) == (b"reply\n", ("127.0.0.1", port))
    assert run.result() == ExitStatus.TIMEOUT  # -i: no datagram for 0.5 s
    assert run.out == b"hello\n"
    assert f"datagram from 127.0.0.1:{udp_peer.getsockname()[1]}" in run.err


def test_listen_udp_echo(udp_peer):
    run = ThreadedMain(["listen", "-u", "--echo", "-v", "-i", "0.5", "-b", "127.0.0.1", "0"])
    port = run.port()
    for payload in (b"first", b"\x00\xffbinary"):
        udp_peer.sendto(payload, ("127.0.0.1", port))
        assert udp_peer.recv(100) == payload
    run.result()
    assert run.out == b""


def test_listen_udp_deny_drops_datagrams(udp_peer):
    run = ThreadedMain(["listen", "-u", "-v", "-i", "0.5", "--deny", "127.0.0.0/8", "-b", "127.0.0.1", "0"])
    port = run.port()
    udp_peer.sendto(b"let me in", ("127.0.0.1", port))
    run.result()
    assert run.out == b""
    assert "dropped datagram from 127.0.0.1:" in run.err


def test_udp_round_trip_between_connect_and_listen():
    server = ThreadedMain(["listen", "-u", "--echo", "-v", "-i", "1", "-b", "127.0.0.1", "0"])
    port = server.port()
    client = ThreadedMain(["connect", "-u", "--wait", "2", "127.0.0.1", str(port)], stdin=b"ping\npong\n")
    assert client.result() == 0, client.err
    assert client.out == b"ping\npong\n"
    server.result()


def test_listen_udp_idle_timer_starts_at_bind():
    """No datagram ever arrives: -i still ends the listener (it used to wait forever)."""
    run = ThreadedMain(["listen", "-u", "-i", "0.3", "-b", "127.0.0.1", "0"])
    assert run.result() == ExitStatus.TIMEOUT
    assert run.err == "sockdiag listen: error: udp: no datagram for 0.3 s (-i)\n"
