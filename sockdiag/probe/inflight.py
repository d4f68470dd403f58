"""The attempts a scanner shard has in flight: their sockets, the poller, the deadlines."""

from __future__ import annotations

import heapq
import socket
from collections import deque

from sockdiag.core.rtt import RttTable
from sockdiag.probe.poller import Poller
from sockdiag.probe.results import Tally


class Attempt:
    """One socket's try at one job; rtt is set once connected (then it waits for a banner)."""

    __slots__ = ("sock", "index", "ip", "port", "tries", "start", "rtt", "banner")

    def __init__(self, sock, index, ip, port, tries, start):
        self.sock, self.index, self.ip, self.port, self.tries, self.start = sock, index, ip, port, tries, start
        self.rtt = None
        self.banner = b""

    def __lt__(self, other: "Attempt") -> bool:
        """Only for equal (deadline, fd) pairs in the deadline heap: never in practice."""
        return self.index < other.index


class InFlight:
    """Sockets waiting on the poller: fd -> attempt, each with its deadline, and closing them.

    The shard's loop and Completions use `table` and the deadline queues directly; a socket is
    removed from `table` before drop() closes it, so it is closed exactly once.

    linger: the SO_LINGER value an open probe is closed with, {1, 0} (RST) for --close rst, or
    None for --close fin (a normal close, FIN). rst: {1, 0}, for what is reset whatever --close
    says (a self-connect). Decided once per shard, so drop() only tests for None.
    """

    def __init__(self, timeout: float, linger: bytes | None, rst: bytes, tally: Tally, *,
                 rtt: RttTable | None = None, host_timeout: float | None = None, nports: int = 1):
        self.timeout = timeout
        self.linger, self._rst = linger, rst
        self.table: dict[int, Attempt] = {}
        # (deadline, fd, attempt). One fixed timeout (-w): a FIFO, sorted by construction, and the
        # cheapest. Adaptive timeouts or --host-timeout make deadlines differ per attempt: a heap.
        self.rtt, self.host_timeout, self.nports = rtt, host_timeout, nports
        self.heap = rtt is not None or host_timeout is not None
        self.deadlines: deque | list = [] if self.heap else deque()
        self.host_deadlines: dict[int, float] = {}  # host index -> when --host-timeout gives it up
        self.quiet = None  # probe.quiet.QuietHosts with --host-timeout (the shard sets it)
        if self.heap:
            self.watch = self._watch_timed
        self.banner_deadlines: deque = deque()
        self.poller: Poller | None = None
        self._live, self._live_heap, self._started = tally.live, tally.live_heap, tally.started

    def open(self, kind: str) -> None:
        """Create the poller: in run(), so that a forked shard makes its own."""
        self.poller = Poller(kind)

    def watch(self, sock, attempt: Attempt, events: int) -> None:
        """Wait for a launched attempt until its deadline (one call per attempt that did not end
        at once, so Tally.started is inlined)."""
        fd = sock.fileno()
        self.poller.register(fd, events)
        self.table[fd] = attempt
        self.deadlines.append((attempt.start + self.timeout, fd, attempt))
        if attempt.index not in self._live:
            self._live.add(attempt.index)
            heapq.heappush(self._live_heap, attempt.index)

    def _watch_timed(self, sock, attempt: Attempt, events: int) -> None:
        """watch() with a deadline of the attempt's own: the host's adaptive timeout, and never
        past the host's --host-timeout."""
        fd = sock.fileno()
        self.poller.register(fd, events)
        self.table[fd] = attempt
        host = attempt.index // self.nports
        deadline = attempt.start + (self.rtt.timeout(host) if self.rtt is not None else self.timeout)
        if self.host_timeout is not None:
            deadline = min(deadline, self.host_deadlines.get(host, deadline))
            quiet = self.quiet
            if quiet is not None and host not in quiet.heard:
                quiet.launched(host)
        heapq.heappush(self.deadlines, (deadline, fd, attempt))
        if attempt.index not in self._live:
            self._live.add(attempt.index)
            heapq.heappush(self._live_heap, attempt.index)

    def answered(self, host: int, now: float) -> None:
        """The host answered (a handshake, a refusal, a UDP reply): its --host-timeout starts
        again and probe.quiet's window opens. (The launcher's refusal path does the same inline.)"""
        if self.host_timeout is not None:
            self.host_deadlines[host] = now + self.host_timeout
        if self.quiet is not None:
            self.quiet.answered(host)

    def watch_banner(self, fd: int, attempt: Attempt, deadline: float) -> None:
        """Wait for what a connected service sends first, until deadline."""
        poller = self.poller
        try:
            poller.modify(fd, poller.IN)
        except OSError:  # not registered yet (connected at once): register it
            poller.register(fd, poller.IN)
        self.table[fd] = attempt
        self.banner_deadlines.append((deadline, fd, attempt))
        self._started(attempt.index)

    def first_deadline(self, wake: float) -> float:
        """The earliest deadline, if it comes before wake."""
        if self.deadlines:
            wake = min(wake, self.deadlines[0][0])
        if self.banner_deadlines:
            wake = min(wake, self.banner_deadlines[0][0])
        return wake

    def drop(self, fd: int, sock, established: bool = False, reset: bool = False) -> None:
        """Close an attempt's socket (exactly once: callers have removed it from the table).

        established: the handshake completed, so close as --close says. With SO_LINGER 0
        close() sends RST instead of FIN: the scanning side keeps no TIME_WAIT socket, and
        repeated full scans do not pile up TIME_WAIT entries holding ephemeral ports. With
        --close fin (linger None) it is a normal close, after _drain. Refused and silent
        attempts never reached ESTABLISHED: a plain close leaves nothing behind.
        reset: RST whatever --close says: a socket connected to itself has no server to
        spare, and its TIME_WAIT would hold the scanned port against a server's bind().
        """
        try:
            self.poller.forget(fd)
        except (OSError, KeyError):
            pass
        try:
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, self._rst)
            elif established:
                if self.linger is None:
                    _drain(sock)
                else:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, self.linger)
        except OSError:
            pass
        finally:
            sock.close()

    def close(self) -> None:
        """Close every socket still in flight, then the poller."""
        for fd, attempt in list(self.table.items()):
            del self.table[fd]
            try:
                self.drop(fd, attempt.sock, established=attempt.rtt is not None)
            except OSError:
                pass
        if self.poller is not None:
            self.poller.close()


_DRAIN_READS = 8  # at most 512 KiB: a service that keeps sending (chargen) gets its RST anyway


def _drain(sock) -> None:
    """Read (and drop) what the peer sent and nobody read, so that close() sends FIN: closing
    with unread data sends RST (RFC 2525 2.17, Linux and the BSDs), and --close fin promised
    FIN to a server that greets first. The socket is non-blocking; this ends at the first
    EAGAIN or EOF."""
    for _ in range(_DRAIN_READS):
        if not sock.recv(65536):
            return
