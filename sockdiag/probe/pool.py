"""Scanner: runs scanner shards side by side and hands back their results in job order.

One shard runs in a thread (the main thread keeps printing). Several run in forked processes
where platform.probe_forks() allows it, else in threads: a connect's kernel work releases the
GIL, but hand-offs cost; with processes a full loopback scan uses every CPU. A process shard
reports to the parent through a pipe, in length-prefixed marshal frames:
(watermark, done, counts, self_connects, backoffs, results, finished, error).
"""

from __future__ import annotations

import heapq
import marshal
import os
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable

from sockdiag import platform
from sockdiag.core.errors import SockdiagError
from sockdiag.probe.scanner import STATES, Jobs, Result, ScanConfig, Shard
from sockdiag.core.status import ExitStatus

_STOP_GRACE = 10.0  # seconds a stopped shard process gets to close its sockets and report
_HELD_OVER_FORK = {signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM)}


class Scanner:
    """Start shards, wait for news, collect ready results in job order, stop."""

    def __init__(self, jobs: Jobs, config: ScanConfig, shards: int = 1, clock: Callable[[], float] = time.monotonic,
                 socket_factory: Callable | None = None, processes: bool | None = None):
        shards = max(1, min(shards, jobs.total or 1))
        self.jobs = jobs
        self.wake = threading.Event()
        shard_config = config.replace(concurrency=max(1, config.concurrency // shards),
                                      rate=config.rate / shards if config.rate else None)
        self._local = [Shard(jobs, shard_config, k, shards, clock, socket_factory, self.wake) for k in range(shards)]
        self.processes = (shards > 1 and platform.probe_forks()) if processes is None else processes
        self.shards: list = self._local
        self._threads: list[threading.Thread] = []
        self._pending: list[Result] = []
        self._fresh: list[Result] = []  # see waiting()

    # --- totals over shards ---------------------------------------------------------------------

    @property
    def done(self) -> int:
        return sum(shard.done for shard in self.shards)

    def counts(self) -> dict[str, int]:
        totals = dict.fromkeys(STATES, 0)
        for shard in self.shards:
            for state, n in shard.counts.items():
                totals[state] += n
        return totals

    @property
    def self_connects(self) -> int:
        return sum(shard.self_connects for shard in self.shards)

    # --- running --------------------------------------------------------------------------------

    def start(self) -> None:
        if self.processes:
            self.shards = remotes = []  # filled as they start, so stop() reaps exactly those
            for shard in self._local:
                _RemoteShard.fork(shard, remotes)  # appends itself before a signal can interrupt
            return
        for k, shard in enumerate(self._local):
            thread = threading.Thread(target=shard.run, name=f"sockdiag-scan-{k}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def wait(self, timeout: float) -> bool:
        """Block until a shard has news or `timeout` passes; True when all have finished."""
        if self.processes:
            _RemoteShard.wait_any(self.shards, timeout)
        elif not all(shard.finished for shard in self.shards):
            self.wake.wait(timeout)
            self.wake.clear()
        return all(shard.finished for shard in self.shards)

    def ready(self) -> list[Result]:
        """Reportable results whose every predecessor job is finished, in job order."""
        mark = min((shard.watermark for shard in self.shards), default=0)  # read before draining
        fresh = self._fresh
        for shard in self.shards:
            out = shard.out
            while out:
                result = out.popleft()
                heapq.heappush(self._pending, result)
                if result[0] >= mark:
                    fresh.append(result)
        ready = []
        while self._pending and self._pending[0][0] < mark:
            ready.append(heapq.heappop(self._pending))
        return ready

    def waiting(self) -> list[Result]:
        """Results that ready() took in since the last call but could not hand out yet (an earlier
        job is unfinished), in no particular order: the output may format them meanwhile."""
        fresh, self._fresh = self._fresh, []
        return fresh

    def stop(self) -> list[Result]:
        """Stop every shard (they close their sockets), wait for them; return the results found
        so far that ready() has not handed out, in job order."""
        for shard in self.shards:
            shard.stop = True
        for thread in self._threads:
            thread.join()
        if self.processes:
            for remote in self.shards:
                remote.reap()
        for shard in self.shards:
            while shard.out:
                heapq.heappush(self._pending, shard.out.popleft())
        return [heapq.heappop(self._pending) for _ in range(len(self._pending))]

    def check(self) -> None:
        """Re-raise the first error a shard hit (after stop())."""
        for shard in self.shards:
            if shard.error is not None:
                raise shard.error


class _RemoteShard:
    """The parent's view of a shard running in a child process: the same attributes as a Shard
    (out, watermark, done, counts, finished, error), updated from the child's frames."""

    def __init__(self, pid: int, fd: int):
        self.pid, self.fd = pid, fd
        self.out: deque[Result] = deque()
        self.watermark = 0
        self.done = self.self_connects = self.backoffs = 0
        self.counts = dict.fromkeys(STATES, 0)
        self.finished = False
        self.error: BaseException | None = None
        self.eof = False
        self._buffer = bytearray()
        self._stopped = False

    @classmethod
    def fork(cls, shard: Shard, earlier: list["_RemoteShard"]) -> None:
        """Start a child for shard and append it to `earlier`. Ctrl-C, SIGTERM and SIGHUP are held
        meanwhile: landing inside fork() they would raise in the child before _child_main takes
        over (the child would then run the parent's code on), or in the parent before the child
        is in the list that stop() reaps (it would outlive the scan)."""
        read_fd, write_fd = os.pipe()
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_OVER_FORK)
        try:
            pid = os.fork()
            if pid == 0:  # the child: never returns
                _child_main(shard, write_fd, [read_fd] + [remote.fd for remote in earlier], held)
            os.close(write_fd)
            earlier.append(cls(pid, read_fd))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    @property
    def stop(self) -> bool:
        return self._stopped

    @stop.setter
    def stop(self, value: bool) -> None:
        """Ask the child to stop: SIGINT, which its handler turns into Shard.stop."""
        if value and not self._stopped and not self.finished:
            self._stopped = True
            try:
                os.kill(self.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    @staticmethod
    def wait_any(remotes: list["_RemoteShard"], timeout: float) -> None:
        fds = {remote.fd: remote for remote in remotes if not remote.eof}
        if not fds:
            return
        readable, _, _ = select.select(list(fds), [], [], timeout)
        for fd in readable:
            fds[fd].feed()

    def feed(self) -> None:
        """Read what the child sent; apply every complete frame. SIGINT is held off meanwhile so
        that Ctrl-C cannot fall between a read and its use and lose part of a frame."""
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            data = os.read(self.fd, 1 << 16)
            if not data:
                self.eof = True
                if not self.finished:
                    self.finished = True
                    self.error = self.error or SockdiagError("a scanner process ended without reporting")
                return
            self._buffer += data
            while len(self._buffer) >= 4:
                size = int.from_bytes(self._buffer[:4], "big")
                if len(self._buffer) < 4 + size:
                    break
                frame = bytes(self._buffer[4:4 + size])
                del self._buffer[:4 + size]
                self._apply(marshal.loads(frame))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _apply(self, frame) -> None:
        watermark, done, counts, self_connects, backoffs, results, finished, error = frame
        self.out.extend(results)  # before the watermark moves: see Scanner.ready
        self.watermark, self.done, self.self_connects, self.backoffs = watermark, done, self_connects, backoffs
        self.counts = dict(zip(STATES, counts))
        if error is not None:
            message, status = error
            self.error = SockdiagError(message, ExitStatus(status))
        self.finished = finished

    def reap(self) -> None:
        """Read until the child closes its pipe (it reports what it found, then exits); wait for it."""
        deadline = time.monotonic() + _STOP_GRACE
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(self.pid, signal.SIGKILL)
                self.error = self.error or SockdiagError("a scanner process did not stop; killed")
                break
            if select.select([self.fd], [], [], left)[0]:
                self.feed()
        os.close(self.fd)
        os.waitpid(self.pid, 0)


def _child_main(shard: Shard, write_fd: int, inherited: list[int], held: set) -> None:
    """Run one shard in this forked child, report through write_fd, and _exit (never return:
    the parent's stack, atexit handlers and unflushed buffers must not run twice). Signals held
    over the fork are let in (`held`: the mask before it) once the SIGINT handler is in place."""
    status = 1
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: setattr(shard, "stop", True))
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        for fd in inherited:
            os.close(fd)
        shard.wake = None
        shard.on_progress = lambda: _send(write_fd, shard)
        shard.run()
        _send(write_fd, shard, final=True)
        status = 0
    except BaseException:  # the parent learns from the missing final frame
        pass
    finally:
        os._exit(status)


def _send(fd: int, shard: Shard, final: bool = False) -> None:
    results = []
    while shard.out:
        results.append(shard.out.popleft())
    error = None
    if final and shard.error is not None:
        exc = shard.error
        if isinstance(exc, SockdiagError):
            error = (exc.message, int(exc.status))
        else:
            error = (f"internal error in a scanner process: {type(exc).__name__}: {exc}", int(ExitStatus.FAILURE))
    frame = marshal.dumps((shard.watermark, shard.done, tuple(shard.counts[s] for s in STATES), shard.self_connects,
                           shard.backoffs, results, final, error))
    data = memoryview(len(frame).to_bytes(4, "big") + frame)
    while data:
        data = data[os.write(fd, data):]
