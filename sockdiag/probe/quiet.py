"""--host-timeout's window for hosts not heard from yet: few probes in flight to a host that has
never answered, as nmap's per-host congestion window keeps them.

Without it every port of a silent host is launched within its group's first fraction of a
second, and each holds a place in flight and costs a socket until its timeout, long before
--host-timeout could give the host up. With it a host that has not answered has at most
QUIET_WINDOW attempts in flight; its other jobs wait here ("parked", counted as started so that
the shard's watermark waits for them). The first answer (a refusal, a handshake, a UDP reply)
opens the host for good and hands its parked jobs back to the launcher's retry queue. An attempt
that ends in silence hands back one job, so the window stays full. When --host-timeout gives the
host up, the parked jobs end as host-timeout without a socket.

Only with --host-timeout: without it every port of a silent host must wait its own timeout, and
a window would only spread that wait over more time. Only for TCP: a live host answers a closed
TCP port with a reset, so TCP silence means the host does not answer; a UDP port that says
nothing is the usual case (open|filtered), and a window would cut a firewalled host's UDP scan
short.
"""

from __future__ import annotations

from collections import deque

from sockdiag.probe.results import HOST_TIMEOUT, Tally

QUIET_WINDOW = 8  # attempts in flight to a host not heard from yet


class QuietHosts:
    """Per-shard: attempts in flight to each unheard host, the hosts heard from, parked jobs."""

    def __init__(self, retry: deque, tally: Tally, window: int = QUIET_WINDOW):
        self.window = window
        self.inflight: dict[int, int] = {}  # host -> attempts in flight (unheard hosts only)
        self.heard: set[int] = set()
        self.parked: dict[int, deque] = {}  # host -> (job index, tries, ip, port)
        self._retry, self._tally = retry, tally

    def full(self, host: int) -> bool:
        """True when an attempt on this host must wait (called only for hosts not in `heard`)."""
        return self.inflight.get(host, 0) >= self.window

    def park(self, host: int, index: int, tries: int, ip: str, port: int) -> None:
        self._tally.started(index)
        queue = self.parked.get(host)
        if queue is None:
            queue = self.parked[host] = deque()
        queue.append((index, tries, ip, port))

    def launched(self, host: int) -> None:
        """An attempt on an unheard host went in flight."""
        self.inflight[host] = self.inflight.get(host, 0) + 1

    def answered(self, host: int) -> None:
        """The host answered: no window any more; its parked jobs go back to the launcher."""
        if host in self.heard:
            return
        self.heard.add(host)
        self.inflight.pop(host, None)
        queue = self.parked.pop(host, None)
        if queue:
            self._retry.extend((index, tries) for index, tries, _ip, _port in queue)

    def give_up(self, host: int) -> None:
        """--host-timeout gave the host up: its parked jobs end as host-timeout."""
        queue = self.parked.pop(host, None)
        if queue:
            finish = self._tally.finish
            for index, _tries, ip, port in queue:
                finish(index, ip, port, HOST_TIMEOUT, None, None, None)

    def release_all(self) -> None:
        """Hand every parked job back (nothing is in flight that would release them)."""
        for queue in self.parked.values():
            self._retry.extend((index, tries) for index, tries, _ip, _port in queue)
        self.parked.clear()
        self.inflight.clear()

    def ended(self, host: int, given_up: bool) -> None:
        """An attempt on a host ended without an answer (silence, or an error). given_up: the
        host's --host-timeout has passed, so its parked jobs end now."""
        if host in self.heard:
            return
        left = self.inflight.get(host, 0) - 1
        if left > 0:
            self.inflight[host] = left
        else:
            self.inflight.pop(host, None)
        if given_up:
            self.give_up(host)
            return
        queue = self.parked.get(host)
        if queue:  # keep the window full
            index, tries, _ip, _port = queue.popleft()
            if not queue:
                del self.parked[host]
            self._retry.append((index, tries))
