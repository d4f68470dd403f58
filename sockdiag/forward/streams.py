"""One direction of a forwarded TCP connection (client -> upstream or upstream -> client).

On Linux the bytes go socket -> pipe -> socket with splice(2) and never enter the process (the
pipes come from a small pool, so short connections do not pay for pipe(2) and F_SETPIPE_SZ each);
with --dump, or where splice is missing, a recv_into/send loop on a 64 KiB buffer. A direction
says what it waits for (`want_read` on its source, `want_write` on its destination); at the
source's end of stream it passes the half-close on (shutdown(SHUT_WR)) once everything is sent.
"""

from __future__ import annotations

import os
import socket

from sockdiag import platform

CHUNK = 64 * 1024  # the copy loop's buffer
SPLICE_CHUNK = platform.RELAY_PIPE_SIZE  # at most this much per splice call
_BURST = 16  # transfers per wake-up before the other connections get their turn
# A direction that has moved this much is a bulk transfer: its pipe grows to SPLICE_CHUNK (one
# splice per MiB instead of per 64 KiB). Only then: the kernel counts a pipe's capacity against a
# per-user budget (fs.pipe-user-pages-soft, 64 MiB), and 200 idle clients must not use it up.
_BULK = 4 * 1024 * 1024
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_UNSUPPORTED = frozenset({"EINVAL", "ENOSYS", "EOPNOTSUPP", "ENOTSUP"})


class SideError(Exception):
    """A socket of the pair failed (reset, broken pipe): `sock` is the one that did."""

    def __init__(self, sock: socket.socket, exc: OSError):
        super().__init__(str(exc))
        self.sock, self.exc = sock, exc


class PipePool:
    """Empty pipes kept for the next connection: pipe(2) costs more than a short connection's
    whole transfer."""

    def __init__(self, keep: int = 64):
        self._free: list[tuple[int, int]] = []
        self._keep = keep

    def take(self) -> tuple[int, int]:
        if self._free:
            return self._free.pop()
        return os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK) if hasattr(os, "pipe2") else os.pipe()

    def give(self, pipe: tuple[int, int], empty: bool) -> None:
        if empty and len(self._free) < self._keep:
            self._free.append(pipe)
        else:
            for fd in pipe:
                os.close(fd)

    def close(self) -> None:
        while self._free:
            for fd in self._free.pop():
                os.close(fd)


class Direction:
    """src -> dst. pump() moves what can be moved now; raises SideError when a socket fails."""

    __slots__ = ("_big", "_buffer", "_pending", "_pipe", "_pool", "done", "dst", "dump", "eof", "ident", "in_pipe",
                 "mark", "pipe_full", "src", "total", "want_read", "want_write")

    def __init__(self, src: socket.socket, dst: socket.socket, pool: PipePool | None, dump=None,
                 ident: int = 0, mark: str = ""):
        self.src, self.dst = src, dst
        self._pool = pool  # None: the copy loop
        self.dump, self.ident, self.mark = dump, ident, mark
        self.total = 0  # bytes delivered to dst
        self.eof = False  # the source said end of stream
        self.done = False  # ...and everything is passed on, dst shut down for writing
        self.want_read, self.want_write = True, False
        self._pipe: tuple[int, int] | None = None
        self._big = False  # the pipe has been grown (pooled pipes may be big already)
        self.in_pipe = 0
        self.pipe_full = False
        self._buffer: memoryview | None = None
        self._pending = memoryview(b"")

    def pump(self) -> None:
        if self.done:
            return
        if self._pool is not None:
            self._splice()
        else:
            self._copy()
        if self.eof and not self.in_pipe and not self._pending:
            self._finish()

    # --- zero-copy: socket -> pipe -> socket ----------------------------------------------------

    def _splice(self) -> None:
        if self._pipe is None:
            try:
                self._pipe = self._pool.take()
            except OSError:  # out of descriptors for a pipe: this direction copies instead
                self._pool = None
                self._copy()
                return
        r, w = self._pipe
        src, dst = self.src.fileno(), self.dst.fileno()
        for _ in range(_BURST):
            moved = False
            if self.in_pipe:
                try:
                    n = os.splice(r, dst, self.in_pipe, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise SideError(self.dst, exc) from None
                else:
                    self.in_pipe -= n
                    self.total += n
                    self.pipe_full = False
                    moved = True
            if not self.eof and not self.pipe_full:
                try:
                    n = os.splice(src, w, SPLICE_CHUNK, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    # Nothing to read, or (with bytes in the pipe) the pipe is full: then wait for
                    # the destination; a write that drains the pipe clears the flag.
                    self.pipe_full = self.in_pipe > 0
                except OSError as exc:
                    if not self.in_pipe and _name(exc) in _UNSUPPORTED:
                        self._to_copy_loop()
                        return
                    raise SideError(self.src, exc) from None
                else:
                    if n == 0:
                        self.eof = True
                    else:
                        self.in_pipe += n
                        moved = True
            if not moved:
                break
        self.want_read = not self.eof and not self.pipe_full
        self.want_write = self.in_pipe > 0
        if not self._big and self.total >= _BULK:
            self._big = True
            platform.enlarge_pipe(w)

    def _to_copy_loop(self) -> None:
        self._pool.give(self._pipe, empty=True)
        self._pipe, self._pool = None, None
        self._copy()

    # --- the copy loop --------------------------------------------------------------------------

    def _copy(self) -> None:
        if self._buffer is None:
            self._buffer = memoryview(bytearray(CHUNK))
        for _ in range(_BURST):
            if self._pending:
                try:
                    sent = self.dst.send(self._pending)
                except BlockingIOError:
                    break
                except OSError as exc:
                    raise SideError(self.dst, exc) from None
                self._pending = self._pending[sent:]
                self.total += sent
                if self._pending:
                    break
            if self.eof:
                break
            try:
                count = self.src.recv_into(self._buffer)
            except BlockingIOError:
                break
            except OSError as exc:
                raise SideError(self.src, exc) from None
            if count == 0:
                self.eof = True
                break
            self._pending = self._buffer[:count]
            if self.dump is not None:
                self.dump.chunk(self.mark, self.ident, self.total, self._pending)
        self.want_read = not self.eof and not self._pending
        self.want_write = bool(self._pending)

    # --- the end --------------------------------------------------------------------------------

    def _finish(self) -> None:
        """Everything is passed on: the half-close goes on to dst (as socat and ncat do)."""
        self.done = True
        self.want_read = self.want_write = False
        self.release()
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # dst is gone already; its own direction reports that

    def release(self) -> None:
        """Give the pipe back (to the pool when empty) and drop the buffer."""
        if self._pipe is not None:
            self._pool.give(self._pipe, empty=self.in_pipe == 0)
            self._pipe = None
        self._buffer = None
        self._pending = memoryview(b"")


def _name(exc: OSError) -> str:
    return platform.errno_name(exc.errno) if exc.errno is not None else ""
