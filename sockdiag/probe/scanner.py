"""The scan engine: non-blocking connects, thousands in flight, exactly one socket per attempt.

Jobs are (host, port) pairs numbered 0..total-1 (host-major). A Shard takes every step-th job
and runs them with its own poller (epoll on Linux) and sockets; probe.pool runs a few
shards side by side and merges their results in job order through each shard's watermark
(every job of the shard below it is finished).

Exactness rules (see Completions.connected): a port is open only when the handshake completed
with a peer that is not our own socket (Linux loopback "self-connect"), checked through SO_ERROR
after the socket became writable; silence until the deadline is `filtered`.

A shard's parts, one module each: launch (start attempts, --rate, backoff), inflight (their
sockets, poller and deadlines), completions (readiness and expiry into results), results (the
port states and the tally); jobs holds what to scan. The names other modules use are exported
from here.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from collections.abc import Callable

from sockdiag import platform
from sockdiag.core.rtt import RttTable
from sockdiag.probe.completions import Completions
from sockdiag.probe.inflight import InFlight
from sockdiag.probe.jobs import Host, Jobs, ScanConfig
from sockdiag.probe.launch import Launcher
from sockdiag.probe.quiet import QuietHosts
from sockdiag.probe.results import (CLOSED, ERROR, FILTERED, HOST_TIMEOUT, OPEN, OPEN_FILTERED, STATES, UNREACHABLE,
                                    Result, Tally, classify)

try:  # the C socket type under socket.socket: no Python-level __init__/close per attempt, which
    from _socket import socket as _raw_socket  # is ~8% of a one-thread full loopback scan
except ImportError:  # pragma: no cover - an interpreter without CPython's _socket
    _raw_socket = socket.socket

__all__ = ["CLOSED", "ERROR", "FILTERED", "HOST_TIMEOUT", "OPEN", "OPEN_FILTERED", "STATES", "UNREACHABLE", "Host",
           "Jobs", "Result", "ScanConfig", "Shard", "classify"]

_MAX_WAIT = 0.1  # longest poll while idle, so a stop request (Ctrl-C) is seen quickly
_REPORT_EVERY = 0.05  # how often a shard in a process of its own reports (see probe.pool)


class Shard:
    """One thread's share of the jobs (every step-th, from first): launch, poll, expire.

    It wires the parts together, runs the loop, and exposes what probe.pool reads (out, counts,
    done, self_connects, backoffs, watermark, finished, error).
    """

    def __init__(self, jobs: Jobs, config: ScanConfig, first: int, step: int,
                 clock: Callable[[], float], socket_factory: Callable | None = None,
                 wake: threading.Event | None = None):
        self.jobs, self.config, self.clock, self.wake = jobs, config, clock, wake
        self.watermark = jobs.floor(first)  # every job of this shard below it has its result in `out`
        self.stop = False
        self.finished = False
        self.error: BaseException | None = None
        self.on_progress: Callable[[], None] | None = None  # called every _REPORT_EVERY s by the loop
        self._next_report = 0.0
        tally = self._tally = Tally(config.report, config.report_once)
        # The tally's own deque and dict, never replaced: probe.pool drains `out` result by result.
        self.out: deque[Result] = tally.out  # reportable results, in completion order
        self.counts = tally.counts
        rst = platform.linger_rst_value()
        rtt = RttTable(config.timeout) if config.adaptive else None  # per shard: no sharing needed
        self._inflight = InFlight(config.timeout, rst if config.close == "rst" else None, rst, tally, rtt=rtt,
                                  host_timeout=config.host_timeout, nports=max(1, len(jobs.ports)))
        retry: deque = deque()  # (index, tries): expired or backed-off jobs, started again first
        if config.host_timeout is not None and not config.udp:  # few in flight to a host not heard from
            self._inflight.quiet = QuietHosts(retry, tally)  # (TCP only: UDP silence is the usual answer)
        self._completions = Completions(config, clock, self._inflight, tally, retry)
        self._launcher = Launcher(jobs, config, first, step, clock, socket_factory or _raw_socket,
                                  self._inflight, tally, self._completions, retry)

    @property
    def done(self) -> int:
        return self._tally.done

    @property
    def self_connects(self) -> int:
        return self._tally.self_connects

    @property
    def backoffs(self) -> int:
        return self._launcher.backoffs

    @property
    def concurrency(self) -> int:
        return self._launcher.concurrency

    def run(self) -> None:
        """Scan until every job has a result or stop is set; never raises (see .error)."""
        try:
            self._inflight.open(platform.probe_poller_kind())
            self._loop()
        except BaseException as exc:  # handed to the main thread, which reports it
            self.error = exc
        finally:
            try:
                self._inflight.close()
            except BaseException as exc:
                self.error = self.error or exc
            finally:  # the main thread waits for this flag: set it whatever happened
                self.finished = True
                if self.wake is not None:
                    self.wake.set()

    def _loop(self) -> None:
        total, clock = self.jobs.total, self.clock
        launch, ready, expire = self._launcher.launch, self._completions.ready, self._completions.expire
        inflight, poll = self._inflight.table, self._inflight.poller.poll
        while not self.stop:
            more = launch()
            if not inflight and not more:
                break
            timeout = 0.0 if more == 1 else self._wait_time(clock(), more)
            for fd in poll(timeout):
                attempt = inflight.pop(fd, None)
                if attempt is not None:
                    ready(fd, attempt)
            now = clock()
            expire(now)
            self._publish()
            if self.on_progress is not None and now >= self._next_report:
                self._next_report = now + _REPORT_EVERY
                self.on_progress()
        if not self.stop:
            self.watermark = total

    def _wait_time(self, now: float, more: int) -> float:
        """How long the next poll may block: until a deadline, the next --rate slot or a stop check."""
        wake = self._inflight.first_deadline(now + _MAX_WAIT)
        if more == 3:  # work left, waiting for a --rate token
            wake = min(wake, self._launcher.bucket.next_slot)
        return max(0.0, wake - now)

    def _publish(self) -> None:
        """Move the watermark up to the lowest job still unfinished (or not yet started: in a
        random order, the first job of the host group the launcher is in, see Jobs.floor)."""
        self.watermark = self._tally.low_water(self.jobs.floor(self._launcher.next))
