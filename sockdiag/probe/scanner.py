"""The scan engine: non-blocking connects, thousands in flight, exactly one socket per attempt.

Jobs are (host, port) pairs numbered 0..total-1 (host-major). A Shard takes every step-th job
and runs them with its own poller (epoll on Linux) and sockets; probe.pool runs a few
shards side by side and merges their results in job order through each shard's watermark
(every job of the shard below it is finished).

Exactness rules (see _connected): a port is open only when the handshake completed with a
peer that is not our own socket (Linux loopback "self-connect"), checked through SO_ERROR
after the socket became writable; silence until the deadline is `filtered`.
"""

from __future__ import annotations

import bisect
import heapq
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from sockdiag import platform
from sockdiag.core.errors import SockdiagError

try:  # the C socket type under socket.socket: no Python-level __init__/close per attempt, which
    from _socket import socket as _raw_socket  # is ~8% of a one-thread full loopback scan
except ImportError:  # pragma: no cover - an interpreter without CPython's _socket
    _raw_socket = socket.socket

OPEN, CLOSED, FILTERED, UNREACHABLE, ERROR = "open", "closed", "filtered", "unreachable", "error"
OPEN_FILTERED = "open|filtered"  # UDP: no reply, no ICMP port unreachable
STATES = (OPEN, OPEN_FILTERED, CLOSED, FILTERED, UNREACHABLE, ERROR)

_BATCH = 512  # launches between two polls: results flow, and a stop request is seen quickly
_MAX_WAIT = 0.1  # longest poll while idle, so a stop request (Ctrl-C) is seen quickly
_REPORT_EVERY = 0.05  # how often a shard in a process of its own reports (see probe.pool)


class ScanConfig:
    """How to scan: per-shard concurrency, per-attempt timeout, retries for silent ports.

    Plain classes here, not dataclasses: dataclasses imports inspect, ~10 ms of start-up in a
    command whose whole loopback scan of 1024 ports takes about as long.
    """

    def __init__(self, *, udp: bool = False, timeout: float = 1.0, retries: int = 0, concurrency: int = 1024,
                 rate: float | None = None, banner: bool = False, banner_wait: float = 1.0,
                 banner_bytes: int = 512, udp_payload: bytes = b"", report: frozenset = frozenset({OPEN})):
        self.udp, self.timeout, self.retries, self.concurrency = udp, timeout, retries, concurrency
        self.rate, self.banner, self.banner_wait, self.banner_bytes = rate, banner, banner_wait, banner_bytes
        self.udp_payload = udp_payload
        self.report = report  # results of these states are handed back; the others only counted

    def replace(self, **changes) -> "ScanConfig":
        return ScanConfig(**{**self.__dict__, **changes})


class Host:
    """A resolved target: `count` addresses (a network is indexed lazily, never listed)."""

    def __init__(self, family: int, addresses: Sequence, scope_id: int = 0, count: int = 0,
                 label: str | None = None):
        self.family = family
        self.addresses = addresses  # an ipaddress network, or a one-element list of address text
        self.scope_id = scope_id  # IPv6 zone (interface index) for link-local addresses
        self.count = count or len(addresses)
        self.label = label  # how a single address is printed: with its %zone

    def address(self, i: int) -> str:
        return str(self.addresses[i])

    def width(self) -> int:
        """Characters of the longest printed address (text column width). In a block the last
        address has every host bit set, so it is the longest; IPv6 may compress the first less."""
        if self.label is not None:
            return len(self.label)
        return max(len(self.address(0)), len(self.address(self.count - 1)))


class Jobs:
    """hosts x ports, numbered host-major: job i is host i // len(ports), port i % len(ports)."""

    def __init__(self, hosts: Sequence[Host], ports: Sequence[int]):
        self.hosts, self.ports = hosts, ports
        self._starts: list[int] = []
        total = 0
        for host in hosts:
            self._starts.append(total)
            total += host.count
        self.host_count = total
        self.total = total * len(ports)

    def target(self, host_index: int) -> tuple[int, str, int, str]:
        """(family, ip text, scope id, printed label) of the host_index-th address of all hosts."""
        k = bisect.bisect_right(self._starts, host_index) - 1
        host = self.hosts[k]
        ip = host.address(host_index - self._starts[k])
        return host.family, ip, host.scope_id, host.label or ip


# (job index, ip, port, state, rtt seconds or None, errno name or None, banner bytes or None)
Result = tuple


class _Attempt:
    __slots__ = ("sock", "index", "ip", "port", "tries", "start", "rtt", "banner")

    def __init__(self, sock, index, ip, port, tries, start):
        self.sock, self.index, self.ip, self.port, self.tries, self.start = sock, index, ip, port, tries, start
        self.rtt = None
        self.banner = b""


class _Poller:
    """The few poller operations the scanner needs, over epoll, poll or select (platform)."""

    def __init__(self, kind: str):
        self.kind = kind
        if kind == "epoll":
            self._p = select.epoll()
            self.OUT, self.IN = select.EPOLLOUT, select.EPOLLIN
        elif kind == "poll":
            self._p = select.poll()
            self.OUT, self.IN = select.POLLOUT, select.POLLIN
        else:
            self._read: set[int] = set()
            self._write: set[int] = set()
            self.OUT, self.IN = 1, 2

    def register(self, fd: int, events: int) -> None:
        if self.kind == "select":
            (self._write if events == self.OUT else self._read).add(fd)
        else:
            self._p.register(fd, events)

    def modify(self, fd: int, events: int) -> None:
        if self.kind == "select":
            self.forget(fd)
            self.register(fd, events)
        else:
            self._p.modify(fd, events)

    def forget(self, fd: int) -> None:
        """Before close(): epoll drops a closed descriptor by itself; poll and select do not."""
        if self.kind == "poll":
            self._p.unregister(fd)
        elif self.kind == "select":
            self._read.discard(fd)
            self._write.discard(fd)

    def poll(self, timeout: float) -> list[int]:
        if self.kind == "epoll":
            return [fd for fd, _ in self._p.poll(timeout)]
        if self.kind == "poll":
            return [fd for fd, _ in self._p.poll(timeout * 1000.0)]
        if not self._read and not self._write:
            time.sleep(timeout)
            return []
        # Windows reports a failed non-blocking connect in the "exceptional" set, not as writable.
        r, w, x = select.select(self._read, self._write, self._write, timeout)
        return list(set(r) | set(w) | set(x))

    def close(self) -> None:
        if self.kind == "epoll":  # poll and select hold no descriptor of their own
            self._p.close()


def classify(name: str | None) -> str:
    """The port state for a failed attempt's errno name."""
    if name == "ECONNREFUSED":
        return CLOSED
    if name == "ETIMEDOUT":
        return FILTERED
    if name in platform.UNREACHABLE:
        return UNREACHABLE
    return ERROR


def _in_progress_codes() -> frozenset[int]:
    codes = (platform.errno_code(name) for name in platform.IN_PROGRESS)
    return frozenset(code for code in codes if code is not None)


class Shard:
    """One thread's share of the jobs (every step-th, from first): launch, poll, expire."""

    def __init__(self, jobs: Jobs, config: ScanConfig, first: int, step: int,
                 clock: Callable[[], float], socket_factory: Callable | None = None,
                 wake: threading.Event | None = None):
        self.jobs, self.config, self.step = jobs, config, step
        self.clock, self.wake = clock, wake
        self.socket_factory = socket_factory or _raw_socket
        self.next = first
        self.concurrency = config.concurrency
        self.out: deque[Result] = deque()  # reportable results, in completion order
        self.counts = dict.fromkeys(STATES, 0)
        self.done = 0
        self.self_connects = 0
        self.backoffs = 0
        self.watermark = first  # every job of this shard below it has its result in `out`
        self.stop = False
        self.finished = False
        self.error: BaseException | None = None
        self.on_progress: Callable[[], None] | None = None  # called every _REPORT_EVERY s by the loop
        self._next_report = 0.0
        self._inflight: dict[int, _Attempt] = {}
        self._deadlines: deque = deque()  # (deadline, fd, attempt): one timeout, so FIFO is sorted
        self._banner_deadlines: deque = deque()
        self._retry: deque = deque()  # (index, tries)
        self._live: set[int] = set()  # jobs started but not finished (in flight or awaiting retry)
        self._live_heap: list[int] = []
        self._next_slot = 0.0  # --rate: when the next token is due
        self._tokens, self._token_time = 0.0, None
        self._host_index = -1
        self._host = (socket.AF_INET, "", 0, "")
        self._poller: _Poller | None = None
        self._in_progress = _in_progress_codes()
        self._type_flags = platform.probe_socket_type_flags()
        self._stype = (socket.SOCK_DGRAM if config.udp else socket.SOCK_STREAM) | self._type_flags
        self._refused = platform.errno_code("ECONNREFUSED")
        self._linger = platform.linger_rst_value()

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Scan until every job has a result or stop is set; never raises (see .error)."""
        try:
            self._poller = _Poller(platform.probe_poller_kind())
            self._loop()
        except BaseException as exc:  # handed to the main thread, which reports it
            self.error = exc
        finally:
            try:
                self._close_all()
                if self._poller is not None:
                    self._poller.close()
            except BaseException as exc:
                self.error = self.error or exc
            finally:  # the main thread waits for this flag: set it whatever happened
                self.finished = True
                if self.wake is not None:
                    self.wake.set()

    def _loop(self) -> None:
        total, clock = self.jobs.total, self.clock
        while not self.stop:
            more = self._launch()
            if not self._inflight and not more:
                break
            timeout = 0.0 if more == 1 else self._wait_time(clock(), more)
            for fd in self._poller.poll(timeout):
                attempt = self._inflight.pop(fd, None)
                if attempt is not None:
                    self._ready(fd, attempt)
            now = clock()
            self._expire(now)
            self._publish()
            if self.on_progress is not None and now >= self._next_report:
                self._next_report = now + _REPORT_EVERY
                self.on_progress()
        if not self.stop:
            self.watermark = total

    def _wait_time(self, now: float, more: int) -> float:
        """How long the next poll may block: until a deadline, the next --rate slot or a stop check."""
        wake = now + _MAX_WAIT
        if self._deadlines:
            wake = min(wake, self._deadlines[0][0])
        if self._banner_deadlines:
            wake = min(wake, self._banner_deadlines[0][0])
        if more == 3:  # work left, waiting for a --rate token
            wake = min(wake, self._next_slot)
        return max(0.0, wake - now)

    def _publish(self) -> None:
        heap, live = self._live_heap, self._live
        while heap and heap[0] not in live:
            heapq.heappop(heap)
        mark = min(self.next, self.jobs.total)
        if heap and heap[0] < mark:
            mark = heap[0]
        self.watermark = mark

    # --- launching ----------------------------------------------------------------------------

    def _launch(self) -> int:
        """Start up to _BATCH attempts. Returns 0: no work left to start; 1: more can start now;
        2: work left, waiting for sockets in flight to finish; 3: waiting for a --rate token.

        The hot path of a scan (65535 rounds for `-`), so it is one loop with local names: the
        common loopback outcome, a refusal that arrived before connect_ex() returned, costs
        three system calls and no other function call.
        """
        jobs, inflight, retry, live = self.jobs, self._inflight, self._retry, self._live
        ports, nports, total, step = jobs.ports, len(jobs.ports), jobs.total, self.step
        rate, udp, clock = self.config.rate, self.config.udp, self.clock
        new_socket, stype, set_nonblocking = self.socket_factory, self._stype, not self._type_flags
        in_progress, refused, sol, so_error = self._in_progress, self._refused, socket.SOL_SOCKET, socket.SO_ERROR
        report_closed, out = CLOSED in self.config.report, self.out
        family, ip, scope, label = self._host
        v4 = family == socket.AF_INET
        nxt, closed, state = self.next, 0, 1
        try:
            for _ in range(_BATCH):
                if len(inflight) >= self.concurrency:
                    state = 2
                    break
                if retry:
                    index, tries = retry[0]
                elif nxt < total:
                    index, tries = nxt, 0
                else:
                    state = 0
                    break
                now = clock()
                if rate and not self._take_token(now, rate):
                    state = 3
                    break
                if retry:
                    retry.popleft()
                else:
                    nxt += step
                host_index, port_index = divmod(index, nports)
                if host_index != self._host_index:
                    self._host_index, self._host = host_index, jobs.target(host_index)
                    family, ip, scope, label = self._host
                    v4 = family == socket.AF_INET
                port = ports[port_index]
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
                        err = self._udp_send(sock, sockaddr)
                        if not err:  # sent, no error yet: wait for a reply or an ICMP error
                            self._wait_for(sock, _Attempt(sock, index, label, port, tries, now), self._poller.IN)
                            continue
                    else:
                        err = sock.connect_ex(sockaddr)
                        if err in in_progress:
                            err = sock.getsockopt(sol, so_error)
                            if not err:
                                self._wait_for(sock, _Attempt(sock, index, label, port, tries, now), self._poller.OUT)
                                continue
                        elif not err:  # connected at once (some stacks do for loopback)
                            attempt = _Attempt(sock, index, label, port, tries, now)
                            attempt.rtt = clock() - now
                            self._connected(sock.fileno(), attempt)
                            continue
                except BaseException:
                    sock.close()
                    raise
                sock.close()
                if err == refused:
                    closed += 1
                    if report_closed:
                        out.append((index, label, port, CLOSED, clock() - now, "ECONNREFUSED", None))
                    if tries:
                        live.discard(index)
                    continue
                if not self._failed(index, label, port, tries, err, now):
                    state = 2
                    break
            else:
                state = 1
            if not (retry or nxt < total):
                state = 0
        finally:
            self.next = nxt
            self.counts[CLOSED] += closed
            self.done += closed
        return state

    def _failed(self, index: int, label: str, port: int, tries: int, err: int | None, now: float) -> bool:
        """An attempt that failed at once (other than a plain refusal). False: the machine ran
        short of descriptors, ports or buffers, and the job waits for sockets in flight to end."""
        name = platform.errno_name(err) if err else "EIO"
        if name in platform.PROBE_BACKOFF:
            return self._backoff(index, tries, err, label, port, now)
        self._finish(index, label, port, classify(name), self.clock() - now, name, None)
        return True

    def _take_token(self, now: float, rate: float) -> bool:
        """--rate as a token bucket holding at most 10 ms of attempts: over any span of T seconds
        at most rate * T + rate / 100 attempts start, and a poll that wakes a millisecond late
        (epoll counts in ms) does not lower the rate actually reached."""
        burst = max(1.0, rate / 100.0)
        if self._token_time is None:
            self._tokens, self._token_time = 1.0, now
        self._tokens = min(burst, self._tokens + (now - self._token_time) * rate)
        self._token_time = now
        if self._tokens < 1.0:
            self._next_slot = now + (1.0 - self._tokens) / rate
            return False
        self._tokens -= 1.0
        return True

    def _udp_send(self, sock, sockaddr) -> int:
        """connect() a UDP socket (so ICMP port unreachable comes back as ECONNREFUSED) and send."""
        try:
            sock.connect(sockaddr)
            sock.send(self.config.udp_payload)
        except OSError as exc:
            return exc.errno or -1
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def _wait_for(self, sock, attempt: _Attempt, events: int) -> None:
        fd = sock.fileno()
        self._poller.register(fd, events)
        self._inflight[fd] = attempt
        self._deadlines.append((attempt.start + self.config.timeout, fd, attempt))
        if attempt.index not in self._live:
            self._live.add(attempt.index)
            heapq.heappush(self._live_heap, attempt.index)

    def _backoff(self, index: int, tries: int, err: int | None, ip: str, port: int, now: float) -> bool:
        """Out of descriptors, ports or buffers: fewer sockets in flight, and this job again later.
        With nothing in flight there is nothing to wait for: the job ends as an error."""
        name = platform.errno_name(err) if err is not None else "EMFILE"
        if not self._inflight:
            if name in ("EMFILE", "ENFILE"):
                raise SockdiagError(f"socket: {platform.describe(err)}; lower -c/--concurrency")
            self._finish(index, ip, port, ERROR, None, name, None)
            return True
        self.backoffs += 1
        self.concurrency = max(1, len(self._inflight))
        self._retry.appendleft((index, tries))
        if index not in self._live:
            self._live.add(index)
            heapq.heappush(self._live_heap, index)
        return False

    # --- completions --------------------------------------------------------------------------

    def _ready(self, fd: int, attempt: _Attempt) -> None:
        """The poller reported fd: a connect finished, a UDP reply/ICMP error or banner bytes came."""
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
        self._connected(fd, attempt)

    def _connected(self, fd: int, attempt: _Attempt) -> None:
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
            self.self_connects += 1
            self._drop(fd, sock, reset=True)
            self._finish(attempt.index, attempt.ip, attempt.port, CLOSED, attempt.rtt, None, None)
            return
        if not self.config.banner:
            self._drop(fd, sock, reset=True)
            self._finish(attempt.index, attempt.ip, attempt.port, OPEN, attempt.rtt, None, None)
            return
        try:
            self._poller.modify(fd, self._poller.IN)
        except OSError:  # not registered yet (connected at once): register it
            self._poller.register(fd, self._poller.IN)
        self._inflight[fd] = attempt
        self._banner_deadlines.append((self.clock() + self.config.banner_wait, fd, attempt))
        if attempt.index not in self._live:
            self._live.add(attempt.index)
            heapq.heappush(self._live_heap, attempt.index)

    def _read_banner(self, fd: int, attempt: _Attempt) -> None:
        """Collect what the service sends first: up to banner_bytes, ending early at a newline or EOF."""
        try:
            data = attempt.sock.recv(self.config.banner_bytes - len(attempt.banner))
        except OSError:
            data = b""
        attempt.banner += data
        if data and b"\n" not in data and len(attempt.banner) < self.config.banner_bytes:
            self._inflight[fd] = attempt  # more may come before the banner deadline
            return
        self._drop(fd, attempt.sock, reset=True)
        self._finish(attempt.index, attempt.ip, attempt.port, OPEN, attempt.rtt, None, attempt.banner)

    def _expire(self, now: float) -> None:
        """Attempts past their deadline: retry (a new socket) or report silence."""
        inflight, deadlines = self._inflight, self._deadlines
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
        banners = self._banner_deadlines
        while banners and banners[0][0] <= now:
            _, fd, attempt = banners.popleft()
            if inflight.get(fd) is not attempt:
                continue
            del inflight[fd]
            self._drop(fd, attempt.sock, reset=True)
            self._finish(attempt.index, attempt.ip, attempt.port, OPEN, attempt.rtt, None, attempt.banner)

    def _drop(self, fd: int, sock, reset: bool = False) -> None:
        """Close an attempt's socket (exactly once: callers have removed it from _inflight).

        reset: the connection was established, so close with SO_LINGER 0, which sends RST
        instead of FIN. The scanning side then keeps no TIME_WAIT socket, and repeated full
        scans do not pile up TIME_WAIT entries holding ephemeral ports. (Refused and silent
        attempts never reached ESTABLISHED: a plain close leaves nothing behind.)
        """
        try:
            self._poller.forget(fd)
        except (OSError, KeyError):
            pass
        try:
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, self._linger)
        except OSError:
            pass
        finally:
            sock.close()

    def _finish(self, index: int, ip: str, port: int, state: str, rtt, errno_name, banner) -> None:
        self.counts[state] += 1
        self.done += 1
        if state in self.config.report:
            self.out.append((index, ip, port, state, rtt, errno_name, banner))
        self._live.discard(index)

    def _close_all(self) -> None:
        for fd, attempt in list(self._inflight.items()):
            del self._inflight[fd]
            try:
                self._drop(fd, attempt.sock, reset=attempt.rtt is not None)
            except OSError:
                pass
