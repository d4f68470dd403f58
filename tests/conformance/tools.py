"""Helpers for the conformance tests (no tests here): sockdiag and its peer tools, OpenBSD nc and
Nmap's ncat, run as a user would run them, with every run bounded by a timeout.

A case runs the same scenario against `sockdiag` and, where installed, against a peer; it turns
what it saw into named checks (`Checks`) and asserts that sockdiag passes every one and that
the peer passes none that sockdiag fails ("the same or better"). A peer that hangs is killed and
fails its checks; it never fails the test by itself.
"""

from __future__ import annotations

import functools
import re
import select
import shutil
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from tests.conftest import has_ipv6_loopback, wait_until
from tests.test_relay_support import Background, module_env

SOCKDIAG, NC, NCAT = "sockdiag", "nc", "ncat"
RUN_TIMEOUT = 10  # seconds a one-shot run may take before it counts as hung and is killed
WAIT = 10  # seconds to wait for a condition (a port, a line of output) before failing
PEER_PATIENCE = 2  # seconds, see patience(): covers a dropped SYN's first retransmission (1 s)
EXIT_WAIT = 3  # seconds a tool may take to exit once its last connection has ended
_LISTENING = re.compile(rb"listening on (?:\[[^\]]*\]|[^ :]+):(\d+)")


@functools.cache
def peer_available(tool: str) -> bool:
    """Whether `tool` is installed AND is the implementation these tests compare with:
    OpenBSD netcat for `nc` (traditional and busybox netcat differ in options), Nmap's ncat."""
    path = shutil.which(tool)
    if path is None:
        return False
    probe = [path, "-h"] if tool == NC else [path, "--version"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    text = (done.stdout + done.stderr).decode("utf-8", "replace")
    return "OpenBSD netcat" in text if tool == NC else "Ncat" in text


def tools(*peers: str) -> list:
    """Parameters for a case: `sockdiag` alone, then `vs-PEER` for each peer, skipped when that
    peer is not installed."""
    params = [pytest.param(None, id=SOCKDIAG)]
    for peer in peers:
        absent = pytest.mark.skipif(not peer_available(peer), reason=f"{peer} (the peer tool) is not installed")
        params.append(pytest.param(peer, id=f"vs-{peer}", marks=absent))
    return params


needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="::1 cannot be bound on this host")


def sockdiag(*args: str) -> list[str]:
    return [sys.executable, "-m", "sockdiag", *args]


def _env(argv: list[str]) -> dict | None:
    return module_env() if argv[0] == sys.executable else None


# --- outcomes -------------------------------------------------------------------------------------

class Checks(dict):
    """Named observations of one run, each True (as it should be) or False."""

    def failed(self) -> list[str]:
        return [name for name, ok in self.items() if not ok]


_OURS: dict[tuple, Checks] = {}  # sockdiag's checks per case, shared by the case's vs-PEER tests


def assert_same_or_better(request, case) -> None:
    """Run `case(tool)` for sockdiag, which must pass every check, and, in a vs-PEER test, for the
    peer: a check the peer passes and sockdiag fails would make sockdiag worse. A case may add
    checks of sockdiag's own conventions (its message format) for sockdiag only.

    sockdiag's half runs once per case (and parameters): its passing result is kept for the case's
    vs-PEER tests, which then run only the peer, so the comparison does not double the run time."""
    params = dict(request.node.callspec.params)
    peer = params.pop("peer")
    key = (request.node.module.__name__, request.node.originalname, tuple(sorted(params.items())))
    ours = _OURS.get(key)
    if ours is None:
        ours = _OURS[key] = case(SOCKDIAG)  # kept even when it fails: the vs-PEER tests fail fast too
    assert not ours.failed(), f"sockdiag failed {ours.failed()}: {ours}"
    if peer is None:
        return
    theirs = case(peer)
    assert set(theirs) <= set(ours), "the case must check the same things for every tool"
    print(f"{peer}: fails {theirs.failed() or 'nothing'}; sockdiag passes all")  # shown by pytest -rP
    worse = [name for name, ok in theirs.items() if ok and not ours[name]]
    assert not worse, f"{peer} passes {worse} where sockdiag does not"


# --- one-shot runs --------------------------------------------------------------------------------

class Ran:
    """A finished run: status None means it hung and was killed after its timeout."""

    def __init__(self, status: int | None, out: bytes, err: bytes):
        self.status, self.out, self.err = status, out, err.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"Ran(status={self.status}, out={self.out[:80]!r}, err={self.err[:300]!r})"


def run(argv: list[str], stdin: bytes = b"", timeout: float = RUN_TIMEOUT) -> Ran:
    """Run to the end with `stdin` (EOF after it); kill it when it takes longer than `timeout`."""
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, env=_env(argv))
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed it already
        return Ran(None, exc.stdout or b"", exc.stderr or b"")
    return Ran(done.returncode, done.stdout, done.stderr)


# --- background runs ------------------------------------------------------------------------------

class Running(Background):
    """A tool running in the background (see Background), with sockdiag's or the peer's port."""

    wait_timeout = RUN_TIMEOUT
    join_timeout = WAIT

    def __init__(self, argv: list[str], stdin=subprocess.DEVNULL):
        super().__init__(argv, stdin, env=_env(argv))

    def port(self, kind: str = "tcp") -> int:
        """The port the tool listens on. sockdiag says it (`listening on HOST:PORT` with -v);
        nc and ncat were given port 0 too and are asked through the socket table."""
        if self.argv[0] == sys.executable:
            found = wait_until(lambda: _LISTENING.search(self._err) or self.popen.poll() is not None, timeout=WAIT)
            assert found is not True, f"exited before listening: {self.err}"
            return int(found.group(1))
        found = wait_until(lambda: _bound_port(self.popen.pid, kind) or self.popen.poll() is not None, timeout=WAIT)
        assert found is not True, f"exited before listening: {self.err}"
        return found

    def send(self, data: bytes) -> None:
        """Write a little to stdin (less than a pipe holds, so it never blocks)."""
        self.write(data)

    def feed(self, data: bytes) -> None:
        """Write `data` to stdin, then close it, from a thread: a tool that stops reading its stdin
        must not block the test (wait() ends the thread by ending the tool)."""
        def write() -> None:
            try:
                self.popen.stdin.write(data)
                self.popen.stdin.close()
            except (BrokenPipeError, ValueError):
                pass  # the tool is gone (or was killed and its stdin closed)

        feeder = threading.Thread(target=write, daemon=True)
        self._extra_threads.append(feeder)
        feeder.start()


def _bound_port(pid: int, kind: str) -> int | None:
    """The local port of a TCP listener (kind "tcp") or bound UDP socket ("udp") of process pid."""
    try:
        conns = psutil.Process(pid).net_connections(kind=kind)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    for conn in conns:
        if conn.laddr and conn.laddr.port and (kind == "udp" or conn.status == psutil.CONN_LISTEN):
            return conn.laddr.port
    return None


# --- loopback clients and servers owned by the test -------------------------------------------------

def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on: bound to 0, read back and closed (for refused cases only)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(port: int, host: str = "127.0.0.1", source: str | None = None) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(WAIT)
        if source is not None:
            sock.bind((source, 0))
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def connect_many(port: int, count: int, timeout: float) -> list[socket.socket]:
    """`count` connections to 127.0.0.1:port opened at once; those established within `timeout`
    (blocking sockets again), in order. The others are closed: a listener with a small backlog
    that accepts nobody (nc -k while serving its first client) drops their SYNs."""
    pending = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        pending.append(sock)
    deadline = time.monotonic() + timeout
    waiting = list(pending)
    while waiting and (left := deadline - time.monotonic()) > 0:
        _, writable, _ = select.select([], waiting, [], left)
        waiting = [sock for sock in waiting if sock not in writable]
    connected = []
    for sock in pending:
        if sock not in waiting and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            sock.setblocking(True)
            sock.settimeout(WAIT)
            connected.append(sock)
        else:
            sock.close()
    return connected


def read_to_eof(sock: socket.socket, timeout: float = WAIT) -> tuple[bytes, str]:
    """Everything until the connection ends, and how it ended: "eof" (an orderly close),
    "reset", or "open" (nothing more came for `timeout` seconds)."""
    chunks = []
    sock.settimeout(timeout)
    try:
        while data := sock.recv(65536):
            chunks.append(data)
    except ConnectionResetError:
        return b"".join(chunks), "reset"
    except TimeoutError:
        return b"".join(chunks), "open"
    return b"".join(chunks), "eof"


def background(action) -> threading.Thread:
    """Run action() in a daemon thread, started; a socket error there (the tool went away or stopped
    reading) ends it quietly: the checks then see what was and was not delivered."""
    def quietly() -> None:
        try:
            action()
        except OSError:
            pass

    thread = threading.Thread(target=quietly, daemon=True)
    thread.start()
    return thread


def free_dual_port() -> int:
    """A TCP port free in both families, for peers that cannot listen on port 0 and say which port
    they got (ncat binds :: and 0.0.0.0 separately, each on an ephemeral port of its own)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", 0))  # bound, never listening: no traffic
        return s.getsockname()[1]


def eventually(predicate, timeout: float = WAIT) -> bool:
    """Whether `predicate` becomes true before the deadline (wait_until without the assertion)."""
    try:
        wait_until(predicate, timeout=timeout)
    except AssertionError:
        return False
    return True


def patience(tool: str) -> float:
    """How long to wait for something a peer may never do (nc -k serves one client at a time):
    the full WAIT for sockdiag, whose checks must all pass, a short one for a peer, whose failed
    check can only show that sockdiag is better, never fail the test."""
    return WAIT if tool == SOCKDIAG else PEER_PATIENCE
