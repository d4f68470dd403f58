"""--exec/--sh-exec: one child process per client, with the connection as its stdin and stdout.

Everything about the children is here: spawning (with the SOCKDIAG_* address variables), copying
where a socket cannot be a child's stdio, reaping, and stopping. Each child has a waiter thread
that blocks in wait() and then pokes the poll loop through a socketpair, so the loop never
blocks on a child.

Nothing outlives the server: each child leads a process group of its own, and the group gets
SIGTERM, then SIGKILL after GRACE seconds, when the server stops (Ctrl-C, SIGTERM, SIGHUP), when
its client goes (the connection is reset or aborted: poll reports HUP/ERR on our copy of it; a
client's plain half-close is not "gone", it may still be waiting for the reply), and with -i
when the connection moved no data for that long. With -i the bytes go through the server (two
copy threads) so that it sees the activity; otherwise the socket is the child's stdin/stdout.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable

from sockdiag import platform
from sockdiag.platform.errnos import from_oserror
from sockdiag.relay.access import format_peer, peer_parts
from sockdiag.relay.clients import CLIENT_CHUNK
from sockdiag.relay.report import ServerReport


GRACE = 1.0  # seconds between SIGTERM and SIGKILL for a child's process group


class ExecChild:
    """One client's command: the connection it serves, its process, its last activity (bridged)."""

    __slots__ = ("sock", "addr", "peer", "proc", "last_active", "watch", "stopping")

    def __init__(self, sock: socket.socket, addr, proc: subprocess.Popen, now: float):
        self.sock, self.addr, self.peer, self.proc = sock, addr, format_peer(addr), proc
        self.last_active = now
        self.watch: socket.socket | None = None  # our copy of a handed-over connection, for HUP
        self.stopping = False


def stop_group(pid: int, grace: float = GRACE) -> None:
    """SIGTERM to a child's process group, SIGKILL to whatever is left after `grace` seconds."""
    if not platform.signal_group(pid):
        return
    deadline = time.monotonic() + grace
    while platform.group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if platform.group_alive(pid):
        platform.signal_group(pid, kill=True)


class Children:
    """The running children. `wakeup` becomes readable when one has exited: then call reap()."""

    def __init__(self, report: ServerReport, command, keep_open: bool, on_left: Callable[[], None],
                 idle: float | None = None, clock: Callable[[], float] = time.monotonic):
        self._report, self._command, self._keep_open, self._on_left = report, command, keep_open, on_left
        self._idle, self._clock = idle, clock
        self._running: list[ExecChild] = []
        self.wakeup, self._wakeup_w = socket.socketpair()  # the waiter threads poke the loop
        self.wakeup.setblocking(False)
        self._lock = threading.Lock()
        self._finished: list[ExecChild] = []  # exited, not yet reaped; guarded by _lock
        self._lingering: set[int] = set()  # groups whose leader exited while members remain
        self.idle_peer: str | None = None  # the last client whose command -i stopped
        self._hangups = _HangupWatch(self._client_gone) if platform.poll_supported() else None

    def __len__(self) -> int:
        return len(self._running)

    def spawn(self, conn: socket.socket, addr) -> None:
        """Start the command for a new connection. A failure ends a one-client server (raised)
        and is a warning with -k (the next client may fare better)."""
        conn.setblocking(True)  # the child expects ordinary blocking stdio (BSDs inherit O_NONBLOCK)
        child_env = _child_env(conn, addr)
        child = None
        try:
            proc, threads, child = self._start(conn, addr, child_env)
        except OSError as exc:
            conn.close()
            error = from_oserror(f"exec for {format_peer(addr)}", exc)
            if not self._keep_open:
                raise error from None
            self._report.exec_failed(error.message)
            return
        if not threads:
            if self._hangups is not None:
                child.watch = conn.dup()
                self._hangups.add(child)
            conn.close()  # the child holds the connection now
        self._running.append(child)
        threading.Thread(target=self._wait, args=(child, threads), daemon=True, name="sockdiag-exec-wait").start()

    def reap(self) -> None:
        """`wakeup` was readable: note the exited children and forget them."""
        try:
            while self.wakeup.recv(4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            done, self._finished = self._finished, []
        for child in done:
            self._running.remove(child)
            if self._hangups is not None and child.watch is not None:
                self._hangups.remove(child)
            if platform.group_alive(child.proc.pid):
                self._lingering.add(child.proc.pid)
            self._report.exited(child.peer, child.proc.returncode)
            self._on_left()

    def next_deadline(self) -> float | None:
        """When the -i timer of the quietest bridged child runs out (None: no timer)."""
        if self._idle is None or not self._running:
            return None
        waiting = [c.last_active for c in self._running if not c.stopping]
        return min(waiting) + self._idle if waiting else None

    def tick(self, now: float) -> None:
        """-i: stop the group of every child whose connection moved no data for that long."""
        if self._idle is None:
            return
        for child in self._running:
            if not child.stopping and now - child.last_active >= self._idle:
                child.stopping = True
                self.idle_peer = child.peer
                self._report.exec_idle(child.peer, self._idle)
                _end_connection(child.sock)  # the copy threads return: the child is reaped at once
                threading.Thread(target=stop_group, args=(child.proc.pid,), daemon=True).start()

    def close(self) -> None:
        """The server stops: SIGTERM to every child's group (and to groups whose leader has gone
        but members remain), SIGKILL to what is left after GRACE; then close the wakeup pair."""
        if self._hangups is not None:
            self._hangups.stop()
        groups = {child.proc.pid for child in self._running} | self._lingering
        alive = [pid for pid in groups if platform.signal_group(pid)]
        deadline = time.monotonic() + GRACE
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in alive if platform.group_alive(pid)]
            if alive:
                time.sleep(0.02)
        for pid in alive:
            platform.signal_group(pid, kill=True)
        for child in self._running:
            if child.watch is not None:
                child.watch.close()
        self.wakeup.close()
        self._wakeup_w.close()

    def _client_gone(self, child: ExecChild) -> None:
        """From the hangup watcher or a copy thread: the connection was reset or aborted."""
        if not child.stopping:
            child.stopping = True
            stop_group(child.proc.pid)

    def _start(self, conn: socket.socket, addr, child_env: dict):
        group = platform.child_group_options()
        if platform.socket_as_stdio() and self._idle is None:
            proc = subprocess.Popen(self._command, stdin=conn.fileno(), stdout=conn.fileno(), env=child_env, **group)
            return proc, [], ExecChild(conn, addr, proc, self._clock())
        proc = subprocess.Popen(self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env, **group)
        child = ExecChild(conn, addr, proc, self._clock())
        return proc, _bridge(child, self._clock, self._client_gone), child

    def _wait(self, child: ExecChild, threads: list[threading.Thread]) -> None:
        """The waiter thread: wait for the child and its copy threads, then wake the loop."""
        child.proc.wait()
        for thread in threads:
            thread.join()
        if threads:
            child.sock.close()
        with self._lock:
            self._finished.append(child)
        try:
            self._wakeup_w.send(b"x")
        except OSError:
            pass  # the server has stopped and closed the pair


def _end_connection(sock: socket.socket) -> None:
    """Shut a bridged connection down both ways: the client sees EOF now, and the copy thread
    blocked in recv() returns, so the waiter can reap the child without waiting for the client."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _child_env(conn: socket.socket, addr) -> dict[str, str]:
    """The environment plus the connection's addresses, for scripts that want to know the client."""
    local_host, local_port = peer_parts(conn.getsockname())
    remote_host, remote_port = peer_parts(addr)
    return dict(os.environ, SOCKDIAG_REMOTE_ADDR=remote_host, SOCKDIAG_REMOTE_PORT=str(remote_port),
                SOCKDIAG_LOCAL_ADDR=local_host, SOCKDIAG_LOCAL_PORT=str(local_port),
                SOCKDIAG_PROTO="unix" if conn.family == getattr(socket, "AF_UNIX", None) else "tcp")


def _bridge(child: ExecChild, clock: Callable[[], float], gone: Callable[[ExecChild], None]) -> list[threading.Thread]:
    """Copy socket <-> the child's pipes in two threads (where a socket cannot be its stdio, or
    with -i, where the server must see the activity). A reset or failed send means the client
    has gone: the child's group is stopped."""
    sock, proc = child.sock, child.proc

    def inbound():
        try:
            while data := sock.recv(CLIENT_CHUNK):
                child.last_active = clock()
                proc.stdin.write(data)
                proc.stdin.flush()
        except (ConnectionError, TimeoutError):
            gone(child)
        except OSError:
            pass
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    def outbound():
        try:
            while data := proc.stdout.read1(CLIENT_CHUNK):
                child.last_active = clock()
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (ConnectionError, TimeoutError):
            gone(child)
        except OSError:
            pass

    threads = [threading.Thread(target=inbound, daemon=True), threading.Thread(target=outbound, daemon=True)]
    for thread in threads:
        thread.start()
    return threads


class _HangupWatch:
    """One thread that waits, with poll(2) and no requested events, on our copies of the
    connections handed to children: poll always reports HUP and ERR, which a TCP socket shows
    once the connection is reset or aborted (not after a plain FIN: a half-closed client may
    still be reading the reply). Then `on_hangup(child)` runs, in this thread."""

    def __init__(self, on_hangup: Callable[[ExecChild], None]):
        self._on_hangup = on_hangup
        self._poll = select.poll()
        self._by_fd: dict[int, ExecChild] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._poll.register(self._wake_r.fileno(), select.POLLIN)
        self._stopped = False
        self._thread: threading.Thread | None = None

    def add(self, child: ExecChild) -> None:
        with self._lock:
            self._by_fd[child.watch.fileno()] = child
            self._poll.register(child.watch.fileno(), 0)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="sockdiag-exec-hangup")
            self._thread.start()
        self._poke()

    def remove(self, child: ExecChild) -> None:
        with self._lock:
            if self._by_fd.pop(child.watch.fileno(), None) is not None:
                self._poll.unregister(child.watch.fileno())
        child.watch.close()
        self._poke()

    def stop(self) -> None:
        self._stopped = True
        self._poke()
        if self._thread is not None:
            self._thread.join(2.0)
        self._wake_r.close()
        self._wake_w.close()

    def _poke(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _run(self) -> None:
        while not self._stopped:
            for fd, _events in self._poll.poll():
                if fd == self._wake_r.fileno():
                    self._wake_r.recv(4096)
                    continue
                with self._lock:
                    child = self._by_fd.pop(fd, None)
                    if child is not None:
                        self._poll.unregister(fd)
                if child is not None:
                    self._on_hangup(child)
