"""How an attempt in flight ends: what the poller reported (SO_ERROR, the self-connect check, a
UDP reply, banner bytes) or what its deadline says (retry, or silence)."""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable

from sockdiag import platform
from sockdiag.probe.inflight import Attempt, InFlight
from sockdiag.probe.jobs import ScanConfig
from sockdiag.probe.results import CLOSED, ERROR, FILTERED, OPEN, OPEN_FILTERED, Tally, classify


class Completions:
    """Turns readiness and expired deadlines into results in the Tally (or retries)."""

    def __init__(self, config: ScanConfig, clock: Callable[[], float], inflight: InFlight, tally: Tally,
                 retry: deque):
        self.config, self.clock = config, clock
        self._inflight, self._table = inflight, inflight.table
        self._drop, self._finish = inflight.drop, tally.finish
        self._tally = tally
        self._retry = retry  # (index, tries): jobs the launcher starts again before new ones

    def ready(self, fd: int, attempt: Attempt) -> None:
        """The poller reported fd (already out of the table): a connect finished, a UDP
        reply/ICMP error or banner bytes came."""
        sock = attempt.sock
        if attempt.rtt is not None:  # banner phase
            self._read_banner(fd, attempt)
            return
        now = self.clock()
        if self.config.udp:
            try:
                data = sock.recv(max(1, self.config.banner_bytes))
            except OSError as exc:
                self._drop(fd, sock)
                name = platform.errno_name(exc.errno) if exc.errno else "EIO"
                self._finish(attempt.index, attempt.ip, attempt.port, classify(name), now - attempt.start, name, None)
                return
            self._drop(fd, sock)
            self._finish(attempt.index, attempt.ip, attempt.port, OPEN, now - attempt.start, None,
                         data if self.config.banner else None)
            return
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._drop(fd, sock)
            name = platform.errno_name(err)
            self._finish(attempt.index, attempt.ip, attempt.port, classify(name), now - attempt.start, name, None)
            return
        attempt.rtt = now - attempt.start
        self.connected(fd, attempt)

    def connected(self, fd: int, attempt: Attempt) -> None:
        """SO_ERROR is 0 after writability: the handshake completed, unless the peer is this very
        socket. Linux loopback: a connect from ephemeral port P to 127.0.0.1:P with nothing
        listening meets its own SYN (TCP simultaneous open, RFC 793 3.4) and "connects" to itself,
        about once per full-range scan. The kernel hands out P as an ephemeral port only when no
        socket is bound to P, so a self-connect proves the port closed; ss and nmap agree."""
        sock = attempt.sock
        try:
            peer = sock.getpeername()
        except OSError as exc:  # writable, no error, yet not connected: report what we know
            self._drop(fd, sock)
            name = platform.errno_name(exc.errno) if exc.errno else "ENOTCONN"
            self._finish(attempt.index, attempt.ip, attempt.port, ERROR, attempt.rtt, name, None)
            return
        if peer == sock.getsockname():
            self._tally.self_connects += 1
            self._drop(fd, sock, reset=True)
            self._finish(attempt.index, attempt.ip, attempt.port, CLOSED, attempt.rtt, None, None)
            return
        if not self.config.banner:
            self._drop(fd, sock, established=True)
            self._finish(attempt.index, attempt.ip, attempt.port, OPEN, attempt.rtt, None, None)
            return
        self._inflight.watch_banner(fd, attempt, self.clock() + self.config.banner_wait)

    def _read_banner(self, fd: int, attempt: Attempt) -> None:
        """Collect what the service sends first: up to banner_bytes, ending early at a newline or EOF."""
        try:
            data = attempt.sock.recv(self.config.banner_bytes - len(attempt.banner))
        except OSError:
            data = b""
        attempt.banner += data
        if data and b"\n" not in data and len(attempt.banner) < self.config.banner_bytes:
            self._table[fd] = attempt  # more may come before the banner deadline
            return
        self._drop(fd, attempt.sock, established=True)
        self._finish(attempt.index, attempt.ip, attempt.port, OPEN, attempt.rtt, None, attempt.banner)

    def expire(self, now: float) -> None:
        """Attempts past their deadline: retry (a new socket) or report silence."""
        inflight, deadlines = self._table, self._inflight.deadlines
        silent = OPEN_FILTERED if self.config.udp else FILTERED
        while deadlines and deadlines[0][0] <= now:
            _, fd, attempt = deadlines.popleft()
            if inflight.get(fd) is not attempt or attempt.rtt is not None:
                continue
            del inflight[fd]
            self._drop(fd, attempt.sock)
            if attempt.tries < self.config.retries:
                self._retry.append((attempt.index, attempt.tries + 1))
            else:
                self._finish(attempt.index, attempt.ip, attempt.port, silent, None, None, None)
        banners = self._inflight.banner_deadlines
        while banners and banners[0][0] <= now:
            _, fd, attempt = banners.popleft()
            if inflight.get(fd) is not attempt:
                continue
            del inflight[fd]
            self._drop(fd, attempt.sock, established=True)
            self._finish(attempt.index, attempt.ip, attempt.port, OPEN, attempt.rtt, None, attempt.banner)
