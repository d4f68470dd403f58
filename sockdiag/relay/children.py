"""--exec/--sh-exec: one child process per client, with the connection as its stdin and stdout.

Everything about the children is here: spawning (with the SOCKDIAG_* address variables), copying
where a socket cannot be a child's stdio, and reaping. Each child has a waiter thread that blocks
in wait() and then pokes the poll loop through a socketpair, so the loop never blocks on a child.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Callable

from sockdiag import platform
from sockdiag.platform.errnos import from_oserror
from sockdiag.relay.access import format_peer, peer_parts
from sockdiag.relay.clients import CLIENT_CHUNK
from sockdiag.relay.report import ServerReport


class ExecChild:
    """One client's command: the connection it serves and its process."""

    __slots__ = ("sock", "addr", "peer", "proc")

    def __init__(self, sock: socket.socket, addr, proc: subprocess.Popen):
        self.sock, self.addr, self.peer, self.proc = sock, addr, format_peer(addr), proc


class Children:
    """The running children. `wakeup` becomes readable when one has exited: then call reap()."""

    def __init__(self, report: ServerReport, command, keep_open: bool, on_left: Callable[[], None]):
        self._report, self._command, self._keep_open, self._on_left = report, command, keep_open, on_left
        self._running: list[ExecChild] = []
        self.wakeup, self._wakeup_w = socket.socketpair()  # the waiter threads poke the loop
        self.wakeup.setblocking(False)
        self._lock = threading.Lock()
        self._finished: list[ExecChild] = []  # exited, not yet reaped; guarded by _lock

    def __len__(self) -> int:
        return len(self._running)

    def spawn(self, conn: socket.socket, addr) -> None:
        """Start the command for a new connection. A failure ends a one-client server (raised)
        and is a warning with -k (the next client may fare better)."""
        conn.setblocking(True)  # the child expects ordinary blocking stdio (BSDs inherit O_NONBLOCK)
        child_env = _child_env(conn, addr)
        try:
            proc, threads = self._start(conn, child_env)
        except OSError as exc:
            conn.close()
            error = from_oserror(f"exec for {format_peer(addr)}", exc)
            if not self._keep_open:
                raise error from None
            self._report.exec_failed(error.message)
            return
        if not threads:
            conn.close()  # the child holds the connection now
        child = ExecChild(conn, addr, proc)
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
            self._report.exited(child.peer, child.proc.returncode)
            self._on_left()

    def close(self) -> None:
        """Close the wakeup pair. Children still running are left to finish on their own."""
        self.wakeup.close()
        self._wakeup_w.close()

    def _start(self, conn: socket.socket, child_env: dict) -> tuple[subprocess.Popen, list[threading.Thread]]:
        if platform.socket_as_stdio():
            proc = subprocess.Popen(self._command, stdin=conn.fileno(), stdout=conn.fileno(), env=child_env)
            return proc, []
        proc = subprocess.Popen(self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env)
        return proc, _bridge(conn, proc)

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


def _child_env(conn: socket.socket, addr) -> dict[str, str]:
    """The environment plus the connection's addresses, for scripts that want to know the client."""
    local_host, local_port = peer_parts(conn.getsockname())
    remote_host, remote_port = peer_parts(addr)
    return dict(os.environ, SOCKDIAG_REMOTE_ADDR=remote_host, SOCKDIAG_REMOTE_PORT=str(remote_port),
                SOCKDIAG_LOCAL_ADDR=local_host, SOCKDIAG_LOCAL_PORT=str(local_port))


def _bridge(sock: socket.socket, proc: subprocess.Popen) -> list[threading.Thread]:
    """Copy socket <-> the child's pipes in two threads (where a socket cannot be its stdio)."""

    def inbound():
        try:
            while data := sock.recv(CLIENT_CHUNK):
                proc.stdin.write(data)
                proc.stdin.flush()
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
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threads = [threading.Thread(target=inbound, daemon=True), threading.Thread(target=outbound, daemon=True)]
    for thread in threads:
        thread.start()
    return threads
