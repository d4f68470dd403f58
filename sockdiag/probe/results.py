"""What a scan finds: the port states, the result tuple, and one shard's tally of them."""

from __future__ import annotations

import heapq
from collections import deque

from sockdiag import platform

OPEN, CLOSED, FILTERED, UNREACHABLE, ERROR = "open", "closed", "filtered", "unreachable", "error"
OPEN_FILTERED = "open|filtered"  # UDP: no reply, no ICMP port unreachable
HOST_TIMEOUT = "host-timeout"  # not decided: --host-timeout gave the host up first
STATES = (OPEN, OPEN_FILTERED, CLOSED, FILTERED, UNREACHABLE, ERROR, HOST_TIMEOUT)

# (job index, ip, port, state, rtt seconds or None, errno name or None, banner bytes or None)
Result = tuple


def classify(name: str | None) -> str:
    """The port state for a failed attempt's errno name."""
    if name == "ECONNREFUSED":
        return CLOSED
    if name == "ETIMEDOUT":
        return FILTERED
    if name in platform.UNREACHABLE:
        return UNREACHABLE
    return ERROR


class Tally:
    """One shard's findings: counts per state, the reportable results in completion order, and
    the jobs started but not finished, whose lowest index holds the shard's watermark back."""

    def __init__(self, report: frozenset, once: frozenset = frozenset()):
        self.report = report  # results of these states are handed back; the others only counted
        # of these (reported) states, only a host's first result is handed back: host-timeout
        # without -a, where the command only warns about the host, not about each of its ports
        self.once, self._seen = once, set()
        self.out: deque[Result] = deque()
        self.counts = dict.fromkeys(STATES, 0)
        self.done = 0
        self.self_connects = 0
        # Jobs started but not finished (in flight or awaiting retry). The launcher and InFlight
        # add to both inline, without a call per attempt; finish() only discards from the set,
        # and low_water() drops finished indexes from the heap lazily.
        self.live: set[int] = set()
        self.live_heap: list[int] = []

    def finish(self, index: int, ip: str, port: int, state: str, rtt, errno_name, banner) -> None:
        self.counts[state] += 1
        self.done += 1
        if state in self.report and (state not in self.once or (ip, state) not in self._seen):
            if self.once:
                self._seen.add((ip, state))
            self.out.append((index, ip, port, state, rtt, errno_name, banner))
        self.live.discard(index)

    def started(self, index: int) -> None:
        """Mark a job unfinished (off the hot path: a backoff, a banner read)."""
        if index not in self.live:
            self.live.add(index)
            heapq.heappush(self.live_heap, index)

    def low_water(self, mark: int) -> int:
        """The lowest unfinished job below mark (the next job not yet started), else mark."""
        heap, live = self.live_heap, self.live
        while heap and heap[0] not in live:
            heapq.heappop(heap)
        if heap and heap[0] < mark:
            return heap[0]
        return mark
