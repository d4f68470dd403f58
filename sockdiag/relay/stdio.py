"""The local ends of a relay: stdin as something a selector can wait on, stdout as a sink.

With the process's real descriptors (Env.real_fds) on POSIX, stdin is its own fd and data moves
with os.read / os.write (or splice/sendfile, see relay.stream). Otherwise (tests with BytesIO,
or Windows, whose select() takes sockets only) a thread copies stdin into a socketpair, so the
relay loops only ever wait on descriptors.
"""

from __future__ import annotations

import os
import socket
import stat
import threading

from sockdiag import platform

CHUNK = 64 * 1024  # one read/recv: 4x netcat's 16 KiB; 256 KiB measured slower (the copies spill out of L2)


def fd_kind(fd: int) -> str:
    """'file', 'pipe', 'socket', 'char' (tty, /dev/null) or 'other': picks the transfer method."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return "other"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISFIFO(mode):
        return "pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "char"
    return "other"


class StdinSource:
    """stdin as a selectable descriptor. `kind` says what the descriptor is ('thread': a
    socketpair fed by a helper thread). read() returns b"" at end of input."""

    def __init__(self, fd: int, kind: str, owner: socket.socket | None = None):
        self.fd, self.kind, self._owner = fd, kind, owner

    def readinto(self, buffer) -> int:
        if self._owner is not None:
            return self._owner.recv_into(buffer)
        return os.readv(self.fd, [buffer])

    def read(self, size: int = CHUNK) -> bytes:
        if self._owner is not None:
            return self._owner.recv(size)
        return os.read(self.fd, size)

    def close(self) -> None:
        """Release the helper socketpair (the feeding thread then stops); never closes fd 0."""
        if self._owner is not None:
            self._owner.close()


def open_stdin(env) -> StdinSource:
    """The Env's stdin as a StdinSource (see the module docstring for the thread fallback)."""
    if env.real_fds and platform.stdio_selectable():
        fd = env.stdin.fileno()
        return StdinSource(fd, fd_kind(fd))
    ours, theirs = socket.socketpair()
    if env.real_fds:
        fd = env.stdin.fileno()
        read = lambda: os.read(fd, CHUNK)  # noqa: E731
    else:
        stream = env.stdin
        method = stream.read1 if hasattr(stream, "read1") else stream.read
        read = lambda: method(CHUNK)  # noqa: E731
    thread = threading.Thread(target=_feed, args=(read, theirs), name="sockdiag-stdin", daemon=True)
    thread.start()
    return StdinSource(ours.fileno(), "thread", owner=ours)


def _feed(read, sock: socket.socket) -> None:
    """Copy stdin into the socketpair until EOF, then half-close it (the relay sees EOF)."""
    with sock:
        try:
            while data := read():
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):
            pass  # the relay closed its end: nothing left to feed


class StdoutSink:
    """stdout for relayed data. Real descriptors get os.write (no extra buffering layer);
    other streams (BytesIO in tests) get write(). `fd` is set only for a real descriptor."""

    def __init__(self, env):
        self._stream = env.stdout
        self.fd: int | None = None
        self.kind = "stream"
        if env.real_fds:
            try:
                env.stdout.flush()
                self.fd = env.stdout.fileno()
                self.kind = fd_kind(self.fd)
            except (OSError, ValueError, AttributeError):
                self.fd = None

    def write(self, data) -> None:
        """Write all of `data`; BrokenPipeError (stdout closed) propagates to cli.main."""
        if self.fd is None:
            self._stream.write(data)
            return
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:  # an inherited O_NONBLOCK stdout: wait until it drains
                wait_writable(self.fd)
                continue
            view = view[written:]

    def flush(self) -> None:
        if self.fd is None:
            self._stream.flush()


def wait_writable(fd: int) -> None:
    """Block until `fd` can take a write (for descriptors someone else made non-blocking)."""
    import select

    select.select([], [fd], [], 1.0)
