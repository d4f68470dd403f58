"""How an attempt in flight ends: what the poller reported (SO_ERROR, the self-connect check, a
UDP reply, banner bytes) or what its deadline says (retry, or silence)."""

from __future__ import annotations

import heapq
import socket
from collections import deque
from collections.abc import Callable

from sockdiag import platform
from sockdiag.core import banners
from sockdiag.probe.inflight import Attempt, InFlight
from sockdiag.probe.jobs import ScanConfig
from sockdiag.probe.results import CLOSED, ERROR, FILTERED, HOST_TIMEOUT, OPEN, OPEN_FILTERED, Tally, classify

_REFUSED = platform.errno_code("ECONNREFUSED")
_NEVER = float("inf")


class Completions:
    """Turns readiness and expired deadlines into results in the Tally (or retries)."""

    def __init__(self, config: ScanConfig, clock: Callable[[], float], inflight: InFlight, tally: Tally,
                 retry: deque):
        self.config, self.clock = config, clock
        self._inflight, self._table = inflight, inflight.table
        self._drop, self._finish = inflight.drop, tally.finish
        self._tally = tally
        self._retry = retry  # (index, tries): jobs the launcher starts again before new ones
        self._rtt, self._nports = inflight.rtt, inflight.nports
        self._probes: dict[int, bytes] = {}  # port -> what --banner sends first (core.banners)

    def ready(self, fd: int, attempt: Attempt) -> None:
        """The poller reported fd (already out of the table): a connect finished, a UDP
        reply/ICMP error or banner bytes came."""
        sock = attempt.sock
        if attempt.rtt is not None:  # banner phase
            self._read_banner(fd, attempt)
            return
        now = self.clock()
        host = attempt.index // self._nports
        if self.config.udp:
            try:
                data = sock.recv(max(1, self.config.banner_bytes))
            except OSError as exc:
                self._drop(fd, sock)
                name = platform.errno_name(exc.errno) if exc.errno else "EIO"
                self._finish(attempt.index, attempt.ip, attempt.port, classify(name), now - attempt.start, name, None)
                return
            self._drop(fd, sock)
            self._inflight.answered(host, now)  # a reply
            self._finish(attempt.index, attempt.ip, attempt.port, OPEN, now - attempt.start, None,
                         data if self.config.banner else None)
            return
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if not err or err == _REFUSED:  # the host answered
            if self._rtt is not None:  # the handshake's round trip
                self._rtt.sample(host, now - attempt.start)
            self._inflight.answered(host, now)
        elif self._inflight.quiet is not None:  # unreachable, or another error: not the host's own answer
            self._inflight.quiet.ended(host, False)
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
        request = self._probe(attempt.port)
        if request:  # a service that waits for the client (HTTP, redis): ask at once
            try:
                sock.send(request)
            except OSError:
                pass  # reset or gone already: the banner read sees it
        self._inflight.watch_banner(fd, attempt, self.clock() + self.config.banner_wait)

    def _probe(self, port: int) -> bytes:
        request = self._probes.get(port)
        if request is None:
            request = self._probes[port] = banners.probe_for(port, platform.service_name(port, "tcp"))
        return request

    def _read_banner(self, fd: int, attempt: Attempt) -> None:
        """Collect what the service sends first: up to banner_bytes, ending early at EOF or
        when core.banners.complete says so (a first line; an HTTP answer's whole header). The
        socket closes as --close says; the command makes that FIN unless --close rst is given."""
        try:
            data = attempt.sock.recv(self.config.banner_bytes - len(attempt.banner))
        except OSError:
            data = b""
        attempt.banner += data
        if (data and len(attempt.banner) < self.config.banner_bytes
                and not banners.complete(attempt.banner, self._probe(attempt.port))):
            self._table[fd] = attempt  # more may come before the banner deadline
            return
        self._drop(fd, attempt.sock, established=True)
        self._finish(attempt.index, attempt.ip, attempt.port, OPEN, attempt.rtt, None, attempt.banner)

    def expire(self, now: float) -> None:
        """Attempts past their deadline: retry (a new socket) or report silence; past the
        host's --host-timeout, report host-timeout."""
        inflight, deadlines = self._table, self._inflight.deadlines
        silent = OPEN_FILTERED if self.config.udp else FILTERED
        pop = (lambda: heapq.heappop(deadlines)) if self._inflight.heap else deadlines.popleft
        host_deadlines = self._inflight.host_deadlines if self._inflight.host_timeout is not None else None
        quiet = self._inflight.quiet
        while deadlines and deadlines[0][0] <= now:
            deadline, fd, attempt = pop()
            if inflight.get(fd) is not attempt or attempt.rtt is not None:
                continue
            given_up = False
            if host_deadlines is not None:
                host = attempt.index // self._nports
                host_deadline = host_deadlines.get(host, _NEVER)
                given_up = now >= host_deadline
                own = attempt.start + (self._rtt.timeout(host) if self._rtt is not None else self.config.timeout)
                if not given_up and deadline < own and now < own:  # cut at a host deadline an answer has moved
                    heapq.heappush(deadlines, (min(own, host_deadline), fd, attempt))
                    continue
            del inflight[fd]
            self._drop(fd, attempt.sock)
            if quiet is not None:
                quiet.ended(attempt.index // self._nports, given_up)
            if given_up:
                self._finish(attempt.index, attempt.ip, attempt.port, HOST_TIMEOUT, None, None, None)
            elif attempt.tries < self.config.retries:
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
