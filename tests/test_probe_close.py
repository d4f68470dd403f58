"""probe --close rst|fin: how an open probe's connection ends, as the scanned server sees it.

The server is the fragile kind the option is for: `conn, addr = s.accept()` then `conn.recv()`
until the client goes. It records "eof" when recv() returns b"" (the client sent FIN) and
"reset" when recv() raises ConnectionResetError (the client sent RST).
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import threading
from typing import Self

import pytest

from sockdiag import platform
from sockdiag.probe.inflight import InFlight
from sockdiag.probe.pool import Scanner
from sockdiag.probe.results import Tally
from sockdiag.probe.scanner import Host, Jobs, ScanConfig
from tests.conftest import run_main, wait_until

LINUX = platform.SYSTEM == platform.LINUX

# A connection reset while it still waits in the accept queue (the scanner closes at once, the
# server may not have accepted yet): Linux hands it to accept(), and recv() raises ECONNRESET;
# other stacks may drop it from the queue, and the server never sees the connection at all.
linux_reset = pytest.mark.skipif(not LINUX, reason="a reset before accept() reaches the server on Linux only")
needs_fork = pytest.mark.skipif(not platform.probe_forks(), reason="process shards need fork (Linux)")


class TutorialServer:
    """A listener on 127.0.0.1 port 0 that serves `clients` connections one after the other:
    send `greeting`, recv() until the client goes, and record how it went ("eof", "reset", or
    the errno name of anything else)."""

    def __init__(self, clients: int = 1, greeting: bytes = b""):
        self.clients, self.greeting = clients, greeting
        self.endings: list[str] = []
        self._lsock = socket.socket()
        self._lsock.bind(("127.0.0.1", 0))
        self._lsock.listen(8)
        self._lsock.settimeout(10)
        self.port = self._lsock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        for _ in range(self.clients):
            try:
                conn, _addr = self._lsock.accept()
            except OSError:  # closed, or nobody came within the timeout: the test says so
                return
            with conn:
                conn.settimeout(10)
                self.endings.append(self._ending(conn))

    def _ending(self, conn: socket.socket) -> str:
        try:
            if self.greeting:
                conn.sendall(self.greeting)
            while conn.recv(1024):
                pass
        except ConnectionResetError:
            return "reset"
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc))
        return "eof"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._lsock.close()
        self._thread.join(15)

    def wait(self) -> list[str]:
        """The endings, once every expected client has come and gone."""
        wait_until(lambda: len(self.endings) == self.clients)
        return self.endings


@contextlib.contextmanager
def servers(count: int, greeting: bytes = b""):
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(TutorialServer(greeting=greeting)) for _ in range(count)]


def probe(*argv: str):
    return run_main(["probe", *argv])


def spec(found: list[TutorialServer]) -> str:
    return ",".join(str(s.port) for s in sorted(found, key=lambda s: s.port))


# --- through the command line -------------------------------------------------------------------

@pytest.mark.parametrize(
    "close, ending",
    [
        pytest.param([], "reset", id="default-is-rst", marks=linux_reset),
        pytest.param(["--close", "rst"], "reset", id="rst", marks=linux_reset),
        pytest.param(["--close", "fin"], "eof", id="fin"),
    ],
)
def test_open_probes_end_as_close_says(close, ending):
    with servers(2) as found:
        r = probe(*close, "127.0.0.1", spec(found))
        endings = [s.wait() for s in found]
    assert r.status == 0, r.err
    assert [int(line.split()[1]) for line in r.text.splitlines()] == sorted(s.port for s in found)
    assert endings == [[ending], [ending]]


@pytest.mark.parametrize(
    "close, ending",
    [
        pytest.param("rst", "reset", id="rst", marks=linux_reset),
        pytest.param("fin", "eof", id="fin"),
    ],
)
def test_banner_grab_ends_as_close_says(close, ending):
    with servers(1, greeting=b"220 ready\r\n") as (server,):
        r = probe("--banner", "--close", close, "127.0.0.1", str(server.port))
        assert server.wait() == [ending]
    assert r.status == 0 and r.text.rstrip().endswith("220 ready")


@pytest.mark.parametrize(
    "close, ending",
    [
        pytest.param("rst", "reset", id="rst", marks=linux_reset),
        pytest.param("fin", "eof", id="fin"),
    ],
)
def test_banner_cut_short_still_ends_with_fin(close, ending):
    """Closing with unread data sends RST whatever SO_LINGER says (RFC 2525 2.17): --close fin
    reads what is left of a banner longer than --banner keeps before it closes."""
    with servers(1, greeting=b"x" * 5000) as (server,):
        r = probe("--banner", "-o", "json", "--close", close, "127.0.0.1", str(server.port))
        assert server.wait() == [ending]
    assert r.status == 0 and '"banner": "' + "x" * 512 + '"' in r.text


def test_bad_close_value_is_a_usage_error():
    r = probe("--close", "x", "127.0.0.1", "80")
    assert r.status == 2
    assert "--close" in r.err and "invalid choice" in r.err and "Traceback" not in r.err
    assert r.out == b""


# --- the engine ---------------------------------------------------------------------------------

def run_scanner(sc: Scanner) -> list:
    sc.start()
    results = []
    while not sc.wait(0.05):
        results += sc.ready()
    results += sc.ready() + sc.stop()
    sc.check()
    return results


@pytest.mark.parametrize(
    "processes",
    [pytest.param(False, id="threads"), pytest.param(True, id="processes", marks=needs_fork)],
)
@pytest.mark.parametrize(
    "close, ending",
    [
        pytest.param("rst", "reset", id="rst", marks=linux_reset),
        pytest.param("fin", "eof", id="fin"),
    ],
)
def test_every_shard_closes_as_configured(processes, close, ending):
    with servers(4) as found:
        jobs = Jobs([Host(socket.AF_INET, ["127.0.0.1"])], sorted(s.port for s in found))
        sc = Scanner(jobs, ScanConfig(concurrency=8, close=close), shards=2, processes=processes)
        results = run_scanner(sc)
        endings = [s.wait() for s in found]
    assert [r[3] for r in results] == ["open"] * 4
    assert endings == [[ending]] * 4


def test_scan_config_checks_close():
    assert ScanConfig().close == "rst"
    assert ScanConfig(close="fin").replace(concurrency=2).close == "fin"
    with pytest.raises(ValueError):
        ScanConfig(close="x")


def test_fin_reads_a_greeting_that_came_before_the_close():
    """A server that speaks first (SSH, SMTP) may have sent its greeting by the time an open
    probe closes: --close fin reads it first, so the server still sees FIN, not RST."""
    with servers(1, greeting=b"SSH-2.0-fragile\r\n") as (server,), socket.socket() as client:
        client.connect(("127.0.0.1", server.port))
        client.setblocking(False)
        assert select.select([client], [], [], 10)[0], "the greeting did not come"
        inflight = InFlight(1.0, None, platform.linger_rst_value(), Tally(frozenset()))
        inflight.open(platform.probe_poller_kind())
        try:
            inflight.drop(client.fileno(), client, established=True)
        finally:
            inflight.close()
        assert server.wait() == ["eof"]


@pytest.mark.skipif(not LINUX, reason="TCP simultaneous open to oneself is a Linux loopback behaviour")
def test_self_connect_is_reset_even_with_fin():
    """A socket that connected to itself (the scanned port was free and became the source port)
    is reset whatever --close says: a FIN close would leave it in TIME_WAIT, holding the very
    port a server may want to bind next."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def bound_to_target(family, kind):
        sock = socket.socket(family, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    jobs = Jobs([Host(socket.AF_INET, ["127.0.0.1"])], [port])
    sc = Scanner(jobs, ScanConfig(timeout=1.0, close="fin", report=frozenset({"closed"})),
                 socket_factory=bound_to_target)
    assert [r[3] for r in run_scanner(sc)] == ["closed"]
    assert sc.self_connects == 1
    with socket.socket() as server:  # no SO_REUSEADDR: a TIME_WAIT on the port would refuse this
        server.bind(("127.0.0.1", port))
