"""UDP keeps datagram boundaries (issue 12, item 6): connect -u sends one datagram per stdin line
without its terminator, both ends print one datagram per line (listen -u -o json: one object),
--reply-wait is the tutorials' request/response loop, and 100 such clients at once all get
every reply from a threaded server."""

from __future__ import annotations

import io
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
from contextlib import ExitStack, contextmanager

import pytest

from sockdiag.core.status import ExitStatus
from sockdiag.env import Env
from tests.conftest import has_ipv6_loopback, wait_until
from tests.test_relay_support import TIMEOUT, ThreadedMain, module_env


def _received(sock: socket.socket, count: int) -> list[bytes]:
    return [sock.recv(65535) for _ in range(count)]


def _nothing_queued(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(65535)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(TIMEOUT)
    return False


class PipedMain(ThreadedMain):
    """main(argv, env) in a thread whose stdin is a pipe the test writes and closes: the test
    says when stdin ends (after the replies it waits for), so --wait never races them."""

    def __init__(self, argv: list[str]):
        read_fd, write_fd = os.pipe()
        self.stdin = os.fdopen(write_fd, "wb", buffering=0)
        self._reader = os.fdopen(read_fd, "rb")
        super().__init__(argv, env=Env(stdin=self._reader, stdout=io.BytesIO(), stderr=io.BytesIO()))

    def wait_out(self, expected: bytes) -> None:
        wait_until(lambda: self.out == expected or not self.thread.is_alive(), timeout=TIMEOUT)
        assert self.out == expected, self.err

    def result(self) -> int:
        self.stdin.close()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), f"main() still running; stderr: {self.err}"
        self._reader.close()
        return self.status


@contextmanager
def answering(sock: socket.socket, reply):
    """A thread answering each datagram on `sock` with reply(data) (None: no answer), until the
    block ends. Yields the list of datagrams seen, in order."""
    seen: list[bytes] = []
    done = threading.Event()

    def serve():
        sock.settimeout(0.05)  # to look at `done` between datagrams
        while not done.is_set():
            try:
                data, addr = sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            seen.append(data)
            for answer in reply(data) or ():
                sock.sendto(answer, addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join(TIMEOUT)


# --- connect -u: stdin -> datagrams ---------------------------------------------------------------

@pytest.mark.parametrize("stdin, datagrams", [
    pytest.param(b"one\ntwo\n", [b"one", b"two"], id="lf"),
    pytest.param(b"one\r\ntwo\r\n", [b"one", b"two"], id="crlf"),
    pytest.param(b"one\ntwo", [b"one", b"two"], id="last-line-without-newline"),
    pytest.param(b"a\rb\n\r\r\n", [b"a\rb", b"\r"], id="only-the-cr-before-lf-goes"),
    pytest.param(b"\n\nx\n", [b"", b"", b"x"], id="empty-lines-are-empty-datagrams"),
    pytest.param("héllo\n".encode(), ["héllo".encode()], id="utf-8"),
])
def test_connect_udp_sends_each_line_as_one_datagram_without_its_terminator(cli, udp_peer, stdin, datagrams):
    port = udp_peer.getsockname()[1]
    r = cli(["connect", "-u", "-v", "--wait", "0.1", "127.0.0.1", str(port)], stdin=stdin)
    assert r.status == 0, r.err
    assert _received(udp_peer, len(datagrams)) == datagrams
    assert _nothing_queued(udp_peer)
    assert f"{sum(map(len, datagrams))} bytes out" in r.err


def test_connect_udp_empty_stdin_sends_nothing(cli, udp_peer):
    r = cli(["connect", "-u", "--wait", "0.1", "127.0.0.1", str(udp_peer.getsockname()[1])], stdin=b"")
    assert r.status == 0, r.err
    assert _nothing_queued(udp_peer)


def test_connect_udp_raw_sends_bytes_as_read(cli, udp_peer):
    port = udp_peer.getsockname()[1]
    r = cli(["connect", "-u", "--raw", "--wait", "0.1", "127.0.0.1", str(port)], stdin=b"a\r\n\nb")
    assert r.status == 0, r.err
    assert udp_peer.recv(100) == b"a\r\n\nb"  # one read, one datagram, terminators and all


def test_connect_udp_line_of_the_largest_datagram_with_crlf(cli, udp_peer):
    """The "\\r\\n" is not part of the datagram, so it does not count against the maximum."""
    udp_peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    port = udp_peer.getsockname()[1]
    r = cli(["connect", "-u", "--wait", "0.1", "127.0.0.1", str(port)], stdin=b"x" * 65507 + b"\r\n")
    assert r.status == 0, r.err
    assert len(udp_peer.recv(65535)) == 65507


# --- connect -u: datagrams -> stdout --------------------------------------------------------------

def test_connect_udp_prints_each_reply_on_a_line_of_its_own(udp_peer):
    port = udp_peer.getsockname()[1]
    with answering(udp_peer, lambda data: [b"X", b"Y\n", b"", b"Z\r\n"]):
        run = PipedMain(["connect", "-u", "--wait", "0.1", "127.0.0.1", str(port)])
        run.stdin.write(b"go\n")
        run.wait_out(b"X\nY\n\nZ\r\n")  # a newline after X and after the empty datagram only
        assert run.result() == 0, run.err


# --- connect -u --reply-wait ----------------------------------------------------------------------

def test_reply_wait_sends_the_next_datagram_after_the_reply(udp_peer):
    port = udp_peer.getsockname()[1]
    run = PipedMain(["connect", "-u", "--reply-wait", "5", "--wait", "0.1", "127.0.0.1", str(port)])
    run.stdin.write(b"one\ntwo\n")
    data, addr = udp_peer.recvfrom(100)
    assert data == b"one"
    udp_peer.settimeout(0.3)  # a bounded look for what must not come: "two" before "one"'s reply
    with pytest.raises(TimeoutError):
        udp_peer.recv(100)
    udp_peer.settimeout(TIMEOUT)
    udp_peer.sendto(b"ONE", addr)
    assert udp_peer.recv(100) == b"two"
    udp_peer.sendto(b"TWO", addr)
    run.wait_out(b"ONE\nTWO\n")
    assert run.result() == 0, run.err


def test_reply_wait_moves_on_when_a_reply_is_missing(udp_peer):
    port = udp_peer.getsockname()[1]
    with answering(udp_peer, lambda data: None if data == b"two" else [data.upper()]) as seen:
        run = PipedMain(["connect", "-u", "-v", "--reply-wait", "0.3", "--wait", "0.1", "127.0.0.1", str(port)])
        run.stdin.write(b"one\ntwo\nthree\n")
        run.wait_out(b"ONE\nTHREE\n")
        assert run.result() == 0, run.err
    assert seen == [b"one", b"two", b"three"]
    assert f"no reply from 127.0.0.1:{port} within 0.3 s (--reply-wait)" in run.err
    assert "closed, 8 bytes in, 11 bytes out" in run.err


def test_reply_wait_empty_datagrams_and_last_line(udp_peer):
    """An empty reply is a reply; a last line without newline is sent and answered too."""
    port = udp_peer.getsockname()[1]
    with answering(udp_peer, lambda data: [data.upper()]) as seen:
        run = PipedMain(["connect", "-u", "--reply-wait", "5", "--wait", "0.1", "127.0.0.1", str(port)])
        run.stdin.write(b"\nlast")
        run.wait_out(b"\n")
        run.stdin.close()  # EOF: the unterminated "last" goes now
        run.wait_out(b"\nLAST\n")
        assert run.result() == 0, run.err
    assert seen == [b"", b"last"]


def test_reply_wait_port_unreachable_is_connection_refused(cli):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    r = cli(["connect", "-u", "--reply-wait", "5", "127.0.0.1", str(port)], stdin=b"anyone?\nstill there?\n")
    assert r.status == ExitStatus.FAILURE
    assert r.err == f"sockdiag connect: error: connect 127.0.0.1:{port} (udp): connection refused (ECONNREFUSED)\n"


# --- listen -u ------------------------------------------------------------------------------------

def _listen(*options: str, bind: str = "127.0.0.1") -> tuple[ThreadedMain, int]:
    run = ThreadedMain(["listen", "-u", "-v", "-i", "0.5", *options, "-b", bind, "0"])
    return run, run.port()


def test_listen_udp_text_prints_each_datagram_on_a_line_of_its_own(udp_peer):
    run, port = _listen()
    for datagram in (b"a", b"b\n", b"", b"c\r\n", b"two\nlines"):
        udp_peer.sendto(datagram, ("127.0.0.1", port))
    expected = b"a\nb\n\nc\r\ntwo\nlines\n"
    wait_until(lambda: run.out == expected or not run.thread.is_alive(), timeout=TIMEOUT)
    assert run.result() == ExitStatus.TIMEOUT  # -i 0.5 ends it
    assert run.out == expected


def test_listen_udp_json_one_object_per_datagram(udp_peer):
    run, port = _listen("-o", "json")
    datagrams = ["héllo".encode(), b"\xff\x00binary", b"", b"line\n", b'q"\\\t']
    for datagram in datagrams:
        udp_peer.sendto(datagram, ("127.0.0.1", port))
    wait_until(lambda: run.out.count(b"\n") == len(datagrams) or not run.thread.is_alive(), timeout=TIMEOUT)
    assert run.result() == ExitStatus.TIMEOUT
    objects = [json.loads(line) for line in run.out.decode("utf-8").split("\n")[:-1]]
    peer = udp_peer.getsockname()[1]
    assert objects == [
        {"from": "127.0.0.1", "port": peer, "size": 6, "data": "héllo"},
        {"from": "127.0.0.1", "port": peer, "size": 8, "data_b64": "/wBiaW5hcnk="},
        {"from": "127.0.0.1", "port": peer, "size": 0, "data": ""},
        {"from": "127.0.0.1", "port": peer, "size": 5, "data": "line\n"},
        {"from": "127.0.0.1", "port": peer, "size": 4, "data": 'q"\\\t'},
    ]
    assert [list(obj) for obj in objects][:2] == [["from", "port", "size", "data"],
                                                  ["from", "port", "size", "data_b64"]]  # stable key order


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 on this host (a dual-stack socket needs it)")
def test_listen_udp_json_shows_an_ipv4_mapped_peer_as_ipv4(udp_peer):
    run, port = _listen("-o", "json", bind="::ffff:127.0.0.1")  # an AF_INET6 socket: peers arrive mapped
    udp_peer.sendto(b"hi", ("127.0.0.1", port))
    wait_until(lambda: run.out.endswith(b"\n") or not run.thread.is_alive(), timeout=TIMEOUT)
    run.result()
    assert json.loads(run.out)["from"] == "127.0.0.1"


def test_reply_wait_client_against_listen_echo():
    server, port = _listen("--echo")
    client = PipedMain(["connect", "-u", "--reply-wait", "5", "--wait", "0.1", "127.0.0.1", str(port)])
    client.stdin.write(b"ping\r\n\npong\n")
    client.wait_out(b"ping\n\npong\n")
    assert client.result() == 0, client.err
    server.result()


# --- many clients at once -------------------------------------------------------------------------

class _Upper(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(data.upper(), self.client_address)


@pytest.fixture
def threaded_upper_server():
    """socketserver.ThreadingUDPServer answering each datagram in capitals, from a thread per datagram."""
    server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), _Upper)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


CLIENTS, BATCH, REQUESTS = 100, 25, 3


def _batches() -> list[range]:
    """Client 0 alone first (it fills the bytecode cache the others read), then BATCH at once."""
    return [range(1)] + [range(first, min(first + BATCH, CLIENTS)) for first in range(1, CLIENTS, BATCH)]


def test_100_reply_wait_clients_against_a_threading_udp_server(threaded_upper_server, tmp_path):
    """Each `connect -u --reply-wait 2` process (25 started at once, four batches on this 2-core
    machine) sends its own lines and must print every reply, in order."""
    argv = [sys.executable, "-m", "sockdiag", "connect", "-u", "--reply-wait", "2", "--wait", "0.2",
            "127.0.0.1", str(threaded_upper_server)]
    # A bytecode cache of their own: with PYTHONDONTWRITEBYTECODE set (as in this sandbox) each process would
    # compile sockdiag from source again, and start-up is most of what a client costs.
    env = module_env(PYTHONDONTWRITEBYTECODE="", PYTHONPYCACHEPREFIX=str(tmp_path / "pycache"))
    failures = []
    for batch in _batches():
        with ExitStack() as stack:
            runs = []
            for client in batch:
                lines = [f"client {client} request {k}" for k in range(REQUESTS)]
                (tmp_path / f"{client}.in").write_text("".join(f"{line}\n" for line in lines))
                files = [stack.enter_context(open(tmp_path / f"{client}.{name}", mode))
                         for name, mode in (("in", "rb"), ("out", "wb"), ("err", "wb"))]
                popen = subprocess.Popen(argv, stdin=files[0], stdout=files[1], stderr=files[2], env=env)
                stack.callback(popen.kill)
                runs.append((client, popen, "".join(f"{line.upper()}\n" for line in lines).encode()))
            for client, popen, expected in runs:
                status = popen.wait(TIMEOUT)
                out = (tmp_path / f"{client}.out").read_bytes()
                if status != 0 or out != expected:
                    failures.append((client, status, out, (tmp_path / f"{client}.err").read_text()))
    assert not failures, f"{len(failures)} of {CLIENTS} clients missed replies, first: {failures[0]}"
