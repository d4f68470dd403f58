"""UDP (`connect -u`, `listen -u`) and the dual-stack listener, as ncat's and OpenBSD nc's tests
check them. Each case also runs against nc and ncat where they are installed."""

from __future__ import annotations

import socket
import subprocess
import threading

import pytest

from tests.conformance.tools import (NC, NCAT, SOCKDIAG, WAIT, Checks, Running, assert_same_or_better, connect,
                                     eventually, free_dual_port, free_port, needs_ipv6, run, sockdiag, tools)


class _UdpUpper:
    """A UDP peer on 127.0.0.1 owned by the test: answers each datagram with it in capitals."""

    def __enter__(self) -> "_UdpUpper":
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[bytes] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self

    def _serve(self) -> None:
        self.sock.settimeout(0.05)  # to look at `done` between datagrams
        while not self.done.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.seen.append(data)
            self.sock.sendto(data.upper(), addr)

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(WAIT)
        self.sock.close()


# --- connect -u ------------------------------------------------------------------------------------

# same: nc -u -w 1 also sends all of stdin, prints the replies and exits 0.
# better: ncat -u quits at stdin EOF without waiting, so replies still on their way are lost
# (whether any arrive in time is a race); sockdiag waits --wait seconds for them.
@pytest.mark.parametrize("peer", tools(NC, NCAT))
def test_connect_udp_sends_stdin_and_prints_the_replies(request, peer):
    argv = {SOCKDIAG: lambda port: sockdiag("connect", "-u", "127.0.0.1", str(port)),  # --wait 1 (default)
            NC: lambda port: ["nc", "-u", "-w", "1", "127.0.0.1", str(port)],  # -w 1: read replies for 1 s more
            NCAT: lambda port: ["ncat", "-u", "127.0.0.1", str(port)]}

    def case(tool):
        with _UdpUpper() as peer_socket:
            ran = run(argv[tool](peer_socket.port), stdin=b"one\ntwo\n")
            seen = list(peer_socket.seen)
        lines = [line for datagram in seen for line in datagram.split(b"\n") if line]
        checks = Checks({"all of stdin sent": lines == [b"one", b"two"],
                         "replies printed": ran.out == b"ONE\nTWO\n", "exit status 0": ran.status == 0})
        if tool == SOCKDIAG:
            checks["one datagram per line, without its newline"] = seen == [b"one", b"two"]
        return checks

    assert_same_or_better(request, case)


# same: ncat -u exits 1 with "Connection refused".
# better: nc -u exits 0 and says nothing when the port is closed; sockdiag turns the ICMP port
# unreachable into `connection refused (ECONNREFUSED)` and status 1.
@pytest.mark.parametrize("peer", tools(NC, NCAT))
def test_connect_udp_to_a_closed_port_is_refused(request, peer):
    argv = {SOCKDIAG: lambda port: sockdiag("connect", "-u", "--wait", "5", "127.0.0.1", str(port)),
            NC: lambda port: ["nc", "-u", "-w", "1", "127.0.0.1", str(port)],
            NCAT: lambda port: ["ncat", "-u", "127.0.0.1", str(port)]}

    def case(tool):
        port = free_port(socket.SOCK_DGRAM)
        ran = run(argv[tool](port), stdin=b"anyone there?\n")
        checks = Checks({"exit status 1": ran.status == 1, "says why": "refused" in ran.err.lower()})
        if tool == SOCKDIAG:
            checks["house format"] = ran.err == (
                f"sockdiag connect: error: connect 127.0.0.1:{port} (udp): connection refused (ECONNREFUSED)\n")
        return checks

    assert_same_or_better(request, case)


# --- listen -u -------------------------------------------------------------------------------------

# same: nc -u -l and ncat -u -l also print the first peer's datagrams and send stdin back to it.
# better: both then talk to that first peer only (nc connects its socket to it): a second peer's
# datagram is never printed; sockdiag prints datagrams from any peer.
@pytest.mark.parametrize("peer", tools(NC, NCAT))
def test_listen_udp_prints_datagrams_and_answers_the_peer(request, peer):
    argv = {SOCKDIAG: sockdiag("listen", "-u", "-v", "-b", "127.0.0.1", "0"),
            NC: ["nc", "-u", "-l", "127.0.0.1", "0"],
            NCAT: ["ncat", "-u", "-l", "127.0.0.1", "0"]}

    def case(tool):
        with Running(argv[tool], stdin=subprocess.PIPE) as server, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
            port = server.port("udp")
            first.settimeout(WAIT)
            first.sendto(b"hello\n", ("127.0.0.1", port))
            printed = eventually(lambda: server.out == b"hello\n" or server.popen.poll() is not None)
            server.send(b"reply\n")
            try:
                answered = first.recvfrom(100) == (b"reply\n", ("127.0.0.1", port))
            except TimeoutError:
                answered = False
            second.sendto(b"from a second peer\n", ("127.0.0.1", port))
            # The first peer's next datagram is queued after the second's, so once it is printed
            # the second's has been printed too, or dropped.
            first.sendto(b"hello again\n", ("127.0.0.1", port))
            again = eventually(lambda: b"hello again\n" in server.out or server.popen.poll() is not None)
            server.interrupt()
        return Checks({"datagram printed": printed and server.out.startswith(b"hello\n"),
                       "stdin sent to the peer": answered,
                       "first peer heard again": again and b"hello again\n" in server.out,
                       "second peer heard too": b"from a second peer\n" in server.out})

    assert_same_or_better(request, case)


# --- dual stack ------------------------------------------------------------------------------------

# same: ncat -l without an address also takes IPv4 and IPv6 clients on one port.
# better: nc -l without an address listens on 0.0.0.0 only: the ::1 client is refused.
@needs_ipv6
@pytest.mark.parametrize("peer", tools(NC, NCAT))
def test_listen_without_an_address_takes_ipv4_and_ipv6_clients(request, peer):
    def argv(tool):
        if tool == SOCKDIAG:
            return sockdiag("listen", "-k", "-v", "0")
        # The peers get a port chosen here (free in both families): ncat given port 0 binds :: and
        # 0.0.0.0 to two different ports.
        port = str(free_dual_port())
        return ["nc", "-l", "-k", "-d", port] if tool == NC else ["ncat", "-l", "-k", "--recv-only", port]

    def heard(server: Running, port: int, host: str) -> bool:
        line = f"hello from {host}\n".encode()
        try:
            with connect(port, host) as client:
                client.sendall(line)
        except ConnectionRefusedError:
            return False
        return eventually(lambda: line in server.out)

    def case(tool):
        with Running(argv(tool)) as server:
            port = server.port()
            checks = Checks({"IPv4 client (127.0.0.1) heard": heard(server, port, "127.0.0.1"),
                             "IPv6 client (::1) heard": heard(server, port, "::1")})
            if tool == SOCKDIAG:
                checks["says it listens on [::]"] = f"listening on [::]:{port}" in server.err
            server.interrupt()
        return checks

    assert_same_or_better(request, case)
