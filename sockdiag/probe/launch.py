"""Starting attempts: one socket per attempt, paced by --rate, backing off when the machine runs
short of descriptors, ports or buffers."""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable

from sockdiag import platform
from sockdiag.core.errors import SockdiagError
from sockdiag.probe.completions import Completions
from sockdiag.probe.inflight import Attempt, InFlight
from sockdiag.probe.jobs import Jobs, ScanConfig
from sockdiag.probe.results import CLOSED, ERROR, HOST_TIMEOUT, Tally, classify

_BATCH = 512  # launches between two polls: results flow, and a stop request is seen quickly
_NEVER = float("inf")


class TokenBucket:
    """--rate as a token bucket holding at most 10 ms of attempts: over any span of T seconds
    at most rate * T + rate / 100 attempts start, and a poll that wakes a millisecond late
    (epoll counts in ms) does not lower the rate actually reached."""

    def __init__(self, rate: float):
        self.rate = rate
        self.next_slot = 0.0  # when the next token is due, after take() said no
        # 10 ms of attempts, and at least 2 ms of slack: a poll that wakes a little late
        # (epoll counts in ms) keeps its credit instead of lowering a slow rate by up to 10%
        self._burst = max(1.0 + rate * 0.002, rate / 100.0)
        self._tokens, self._time = 0.0, None

    def take(self, now: float) -> bool:
        if self._time is None:
            self._tokens, self._time = 1.0, now
        self._tokens = min(self._burst, self._tokens + (now - self._time) * self.rate)
        self._time = now
        if self._tokens < 1.0:
            self.next_slot = now + (1.0 - self._tokens) / self.rate
            return False
        self._tokens -= 1.0
        return True


def _udp_send(sock, sockaddr, payload: bytes) -> int:
    """connect() a UDP socket (so ICMP port unreachable comes back as ECONNREFUSED) and send."""
    try:
        sock.connect(sockaddr)
        sock.send(payload)
    except OSError as exc:
        return exc.errno or -1
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


def _in_progress_codes() -> frozenset[int]:
    codes = (platform.errno_code(name) for name in platform.IN_PROGRESS)
    return frozenset(code for code in codes if code is not None)


class Launcher:
    """Starts a shard's jobs (every step-th, from first; retries first) up to its concurrency."""

    def __init__(self, jobs: Jobs, config: ScanConfig, first: int, step: int, clock: Callable[[], float],
                 socket_factory: Callable, inflight: InFlight, tally: Tally, completions: Completions,
                 retry: deque):
        self.jobs, self.config, self.step, self.clock = jobs, config, step, clock
        self.socket_factory = socket_factory
        self.next = first  # the next new job of this shard
        self.concurrency = config.concurrency  # lowered by a backoff
        self.backoffs = 0
        self.bucket = TokenBucket(config.rate) if config.rate else None
        self._inflight, self._table, self._tally = inflight, inflight.table, tally
        self._connected, self._finish = completions.connected, tally.finish
        self._retry = retry  # (index, tries)
        self._host_index = -1
        self._host = (socket.AF_INET, "", 0, "")
        self._in_progress = _in_progress_codes()
        self._type_flags = platform.probe_socket_type_flags()
        self._stype = (socket.SOCK_DGRAM if config.udp else socket.SOCK_STREAM) | self._type_flags
        self._refused = platform.errno_code("ECONNREFUSED")
        self._aborted = platform.errno_code("ECONNABORTED")
        self._already = platform.errno_code("EALREADY")
        # a refused TCP socket connects again on Linux (platform.probe_reuses_refused_sockets)
        self._reuse = not config.udp and platform.probe_reuses_refused_sockets()
        self._rtt = inflight.rtt  # adaptive timeouts: RTT samples (None: a fixed -w)
        self._host_timeout = config.host_timeout
        self._host_deadlines = inflight.host_deadlines
        self._host_deadline = _NEVER
        self._group = (0, 0, ())  # the random order's current (start, end, table): see Jobs.group_table

    def launch(self) -> int:
        """Start up to _BATCH attempts. Returns 0: no work left to start; 1: more can start now;
        2: work left, waiting for sockets in flight to finish; 3: waiting for a --rate token.

        The hot path of a scan (65535 rounds for `-`), so it is one loop with local names: the
        common loopback outcome, a refusal that arrived before connect_ex() returned, costs
        three system calls and no other function call.
        """
        jobs, inflight, retry, live = self.jobs, self._table, self._retry, self._tally.live
        ports, nports, total, step = jobs.ports, len(jobs.ports), jobs.total, self.step
        order = jobs.group_table if jobs.randomize else None
        g_start, g_end, g_table = self._group
        udp, payload, payloads, clock = self.config.udp, self.config.udp_payload, self.config.udp_payloads, self.clock
        take_token = self.bucket.take if self.bucket else None
        new_socket, stype, set_nonblocking = self.socket_factory, self._stype, not self._type_flags
        in_progress, refused, sol, so_error = self._in_progress, self._refused, socket.SOL_SOCKET, socket.SO_ERROR
        report_closed, out = CLOSED in self.config.report, self._tally.out
        watch, poller = self._inflight.watch, self._inflight.poller
        concurrency = self.concurrency  # only a backoff lowers it, and the batch ends there
        current, (family, ip, scope, label) = self._host_index, self._host
        v4 = family == socket.AF_INET
        host_deadline, host_timeout, rtt, sample_due = self._host_deadline, self._host_timeout, self._rtt, True
        host_deadlines, targets_get = self._host_deadlines, jobs.targets.get
        quiet = self._inflight.quiet  # --host-timeout's window for hosts not heard from (probe.quiet)
        heard = quiet.heard if quiet is not None else None
        nxt, closed, state = self.next, 0, 1
        reuse, aborted, already, spare, spare_family = self._reuse, self._aborted, self._already, None, 0
        try:
            for _ in range(_BATCH):
                if len(inflight) >= concurrency:
                    state = 2
                    break
                if retry:
                    index, tries = retry[0]
                elif nxt < total:
                    if order is None:
                        index = nxt
                    else:  # attempt position -> job, from the group's table
                        if not g_start <= nxt < g_end:
                            g_start, g_end, g_table = self._group = order(nxt)
                        index = g_table[nxt - g_start]
                    tries = 0
                else:
                    state = 0
                    break
                host_index, port_index = divmod(index, nports)
                if host_index != current:  # every attempt in random order: a dict lookup, no call
                    found = targets_get(host_index)
                    if found is None:
                        found = jobs.target(host_index)
                    family, ip, scope, label, v4 = found
                    current = host_index
                    if host_timeout is not None:  # SEC after the host's first attempt in this shard, or
                        # after its latest answer (a refusal here, any answer in Completions.ready)
                        host_deadline = host_deadlines.get(host_index)
                        if host_deadline is None:
                            host_deadline = host_deadlines[host_index] = clock() + host_timeout
                now = clock()
                if now >= host_deadline and now >= (host_deadline := host_deadlines.get(host_index, _NEVER)):
                    # --host-timeout gave this host up: no socket, no --rate token
                    if retry:
                        retry.popleft()
                    else:
                        nxt += step
                    self._finish(index, label, ports[port_index], HOST_TIMEOUT, None, None, None)
                    if quiet is not None:
                        quiet.give_up(host_index)
                    continue
                if quiet is not None and host_index not in heard and quiet.full(host_index):
                    # not heard from yet, and its window is full: the job waits (probe.quiet)
                    if retry:
                        retry.popleft()
                    else:
                        nxt += step
                    quiet.park(host_index, index, tries, label, ports[port_index])
                    continue
                if take_token and not take_token(now):
                    state = 3
                    break
                if retry:
                    retry.popleft()
                else:
                    nxt += step
                port = ports[port_index]
                if spare is not None and spare_family == family:  # the last refused socket, again
                    sock, spare, reused = spare, None, True
                else:
                    reused = False
                    try:
                        sock = new_socket(family, stype)
                    except OSError as exc:
                        if not self._failed(index, label, port, tries, exc.errno, now):
                            state = 2
                            break
                        continue
                try:
                    if set_nonblocking:
                        sock.setblocking(False)
                    sockaddr = (ip, port) if v4 else (ip, port, 0, scope)
                    if udp:
                        err = _udp_send(sock, sockaddr, payloads.get(port, payload))
                        if not err:  # sent, no error yet: wait for a reply or an ICMP error
                            watch(sock, Attempt(sock, index, label, port, tries, now), poller.IN)
                            continue
                    else:
                        err = sock.connect_ex(sockaddr)
                        if reused and err == aborted:  # that reset the refused socket: now connect
                            err = sock.connect_ex(sockaddr)
                        if err in in_progress:
                            if reuse:  # Linux: connect() again tells how it went, and resets a refused
                                err = sock.connect_ex(sockaddr)  # socket for its next attempt
                                if err == already or err in in_progress:
                                    watch(sock, Attempt(sock, index, label, port, tries, now), poller.OUT)
                                    continue
                            else:
                                err = sock.getsockopt(sol, so_error)
                                if not err:
                                    watch(sock, Attempt(sock, index, label, port, tries, now), poller.OUT)
                                    continue
                        if not err:  # connected at once (some stacks do for loopback), or by now
                            self._inflight.answered(host_index, now)
                            attempt = Attempt(sock, index, label, port, tries, now)
                            attempt.rtt = clock() - now
                            if rtt is not None:
                                rtt.sample(host_index, attempt.rtt)
                            self._connected(sock.fileno(), attempt)
                            continue
                except BaseException:
                    sock.close()
                    raise
                if err == refused:
                    if reuse and spare is None:
                        spare, spare_family = sock, family
                    else:
                        sock.close()
                    closed += 1
                    if host_timeout is not None:  # the host answered (InFlight.answered, inline: hot)
                        host_deadlines[host_index] = now + host_timeout
                        if quiet is not None and host_index not in heard:
                            quiet.answered(host_index)
                    if rtt is not None and sample_due:  # one sample per batch: cheap
                        rtt.sample(host_index, clock() - now)
                        sample_due = False
                    if report_closed:
                        out.append((index, label, port, CLOSED, clock() - now, "ECONNREFUSED", None))
                    if tries:
                        live.discard(index)
                    continue
                sock.close()
                if not self._failed(index, label, port, tries, err, now):
                    state = 2
                    break
            else:
                state = 1
            if not (retry or nxt < total):
                state = 0
                if quiet is not None and quiet.parked and not inflight:  # nothing left to release them
                    quiet.release_all()
                    state = 1
        finally:
            if spare is not None:  # kept only within a batch: no socket outlives launch()
                spare.close()
            self.next = nxt
            self._host_index, self._host, self._host_deadline = current, (family, ip, scope, label), host_deadline
            self._tally.counts[CLOSED] += closed
            self._tally.done += closed
        return state

    def _failed(self, index: int, label: str, port: int, tries: int, err: int | None, now: float) -> bool:
        """An attempt that failed at once (other than a plain refusal). False: the machine ran
        short of descriptors, ports or buffers, and the job waits for sockets in flight to end."""
        name = platform.errno_name(err) if err else "EIO"
        if name in platform.PROBE_BACKOFF:
            return self._backoff(index, tries, err, label, port, now)
        self._finish(index, label, port, classify(name), self.clock() - now, name, None)
        return True

    def _backoff(self, index: int, tries: int, err: int | None, ip: str, port: int, now: float) -> bool:
        """Out of descriptors, ports or buffers: fewer sockets in flight, and this job again later.
        With nothing in flight there is nothing to wait for: the job ends as an error."""
        name = platform.errno_name(err) if err is not None else "EMFILE"
        if not self._table:
            if name in ("EMFILE", "ENFILE"):
                raise SockdiagError(f"socket: {platform.describe(err)}; lower -c/--concurrency")
            self._finish(index, ip, port, ERROR, None, name, None)
            return True
        self.backoffs += 1
        self.concurrency = max(1, len(self._table))
        self._retry.appendleft((index, tries))
        self._tally.started(index)
        return False
