"""The attempts a scanner shard has in flight: their sockets, the poller, the deadlines."""

from __future__ import annotations

import heapq
import socket
from collections import deque

from sockdiag.probe.poller import Poller
from sockdiag.probe.results import Tally


class Attempt:
    """One socket's try at one job; rtt is set once connected (then it waits for a banner)."""

    __slots__ = ("sock", "index", "ip", "port", "tries", "start", "rtt", "banner")

    def __init__(self, sock, index, ip, port, tries, start):
        self.sock, self.index, self.ip, self.port, self.tries, self.start = sock, index, ip, port, tries, start
        self.rtt = None
        self.banner = b""


class InFlight:
    """Sockets waiting on the poller: fd -> attempt, each with its deadline, and closing them.

    The shard's loop and Completions use `table` and the deadline queues directly; a socket is
    removed from `table` before drop() closes it, so it is closed exactly once.
    """

    def __init__(self, timeout: float, linger: bytes, tally: Tally):
        self.timeout = timeout
        self.table: dict[int, Attempt] = {}
        self.deadlines: deque = deque()  # (deadline, fd, attempt): one timeout, so FIFO is sorted
        self.banner_deadlines: deque = deque()
        self.poller: Poller | None = None
        self._linger = linger
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

    def drop(self, fd: int, sock, reset: bool = False) -> None:
        """Close an attempt's socket (exactly once: callers have removed it from the table).

        reset: the connection was established, so close with SO_LINGER 0, which sends RST
        instead of FIN. The scanning side then keeps no TIME_WAIT socket, and repeated full
        scans do not pile up TIME_WAIT entries holding ephemeral ports. (Refused and silent
        attempts never reached ESTABLISHED: a plain close leaves nothing behind.)
        """
        try:
            self.poller.forget(fd)
        except (OSError, KeyError):
            pass
        try:
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, self._linger)
        except OSError:
            pass
        finally:
            sock.close()

    def close(self) -> None:
        """Close every socket still in flight, then the poller."""
        for fd, attempt in list(self.table.items()):
            del self.table[fd]
            try:
                self.drop(fd, attempt.sock, reset=attempt.rtt is not None)
            except OSError:
                pass
        if self.poller is not None:
            self.poller.close()
