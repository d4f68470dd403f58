"""Env: the process's binary standard streams, their terminal flags and a clock.

Commands receive an Env instead of touching sys.std* so that tests can pass their own
(io.BytesIO streams, a fake clock) and run `main(argv, env)` in-process.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Callable

TYPE_CHECKING = False  # typing costs ~3 ms of start-up; annotations are never evaluated at run time
if TYPE_CHECKING:
    from typing import BinaryIO


STDOUT_NAME = "standard output"  # the filename an OSError on stdout carries, for its message


class ClosedStream:
    """Stands in for a standard stream that was closed when sockdiag started (`>&-`): every
    write fails with EBADF, naming the stream, so the command reports it in one line."""

    def __init__(self, name: str):
        self.name = name

    def write(self, data) -> int:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF), self.name)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF), self.name)

    def isatty(self) -> bool:
        return False


def _open_closed_std_fds() -> set[int]:
    """Put /dev/null on whichever of fds 0, 1, 2 are closed, so that no socket or pipe opened
    later takes their number (and is then written to as "stdout", or inherited by an --exec
    child as its stdin). Returns the fds that were closed."""
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
    for fd in sorted(closed):
        try:
            new = os.open(os.devnull, os.O_RDWR)
            if new != fd:
                os.dup2(new, fd)
                os.close(new)
        except OSError:
            pass
    return closed


class Env:
    """Where a command reads and writes. stdout carries data only; messages go to stderr.

    A plain class, not a dataclass: dataclasses imports inspect, which costs start-up time.
    `real_fds` is True only for the process's own streams, whose descriptors a command may use.
    """

    def __init__(self, stdin: BinaryIO, stdout: BinaryIO, stderr: BinaryIO, *, stdin_isatty: bool = False,
                 stdout_isatty: bool = False, stderr_isatty: bool = False,
                 clock: Callable[[], float] = time.monotonic, verbosity: int = 0, debug: bool = False,
                 real_fds: bool = False):
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.stdin_isatty, self.stdout_isatty, self.stderr_isatty = stdin_isatty, stdout_isatty, stderr_isatty
        self.clock = clock
        self.verbosity = verbosity
        self.debug = debug
        self.real_fds = real_fds
        self.command: str | None = None  # the subcommand, once parsed: names error lines

    @classmethod
    def from_process(cls) -> "Env":
        """The Env of the running process (sys.std*'s binary buffers)."""

        def tty(stream) -> bool:
            try:
                return stream is not None and stream.isatty()
            except (ValueError, OSError):
                return False

        closed = _open_closed_std_fds()
        # A closed stderr does not stop the work: messages go to /dev/null. A closed stdout is
        # an error the first time data is written (ClosedStream), not a silent /dev/null.
        return cls(
            stdin=sys.stdin.buffer if sys.stdin is not None and 0 not in closed else open(os.devnull, "rb"),
            stdout=sys.stdout.buffer if sys.stdout is not None and 1 not in closed else ClosedStream(STDOUT_NAME),
            stderr=sys.stderr.buffer if sys.stderr is not None and 2 not in closed else open(os.devnull, "wb"),
            stdin_isatty=tty(sys.stdin),
            stdout_isatty=tty(sys.stdout),
            stderr_isatty=tty(sys.stderr),
            real_fds=True,
        )

    def write(self, data: bytes | str) -> None:
        """Write data to stdout (text is UTF-8 encoded)."""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        try:
            self.stdout.write(data)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _named(exc) from None

    def print(self, line: str = "") -> None:
        """Write one line of text to stdout."""
        self.write(line + "\n")

    def error(self, message: str, hint: str | None = None) -> None:
        """Write `sockdiag CMD: error: MESSAGE` on stderr (one line), and at most one hint line."""
        where = f"sockdiag {self.command}" if self.command else "sockdiag"
        self._stderr_line(f"{where}: error: {message}")
        if hint:
            self._stderr_line(hint)

    def note(self, message: str) -> None:
        """Write `sockdiag CMD: MESSAGE` on stderr: an ending that is no error (`interrupted`)."""
        self._stderr_line(f"sockdiag {self.command}: {message}" if self.command else f"sockdiag: {message}")

    def warn(self, message: str) -> None:
        """Write `sockdiag: warning: MESSAGE` on stderr."""
        self._stderr_line(f"sockdiag: warning: {message}")

    def info(self, message: str, level: int = 1) -> None:
        """Write an event line to stderr when -v was given `level` times or more."""
        if self.verbosity >= level:
            self._stderr_line(f"sockdiag: {message}")

    def progress(self, text: str) -> None:
        """Redraw a one-line progress indicator on stderr, only when stderr is a terminal."""
        if self.stderr_isatty:
            self._stderr_raw(f"\r\x1b[K{text}")

    def progress_done(self) -> None:
        """Erase the progress line, if one was drawn."""
        if self.stderr_isatty:
            self._stderr_raw("\r\x1b[K")

    def _stderr_line(self, text: str) -> None:
        self._stderr_raw(text.replace("\n", " ") + "\n")

    def _stderr_raw(self, text: str) -> None:
        try:
            self.stderr.write(text.encode("utf-8", "replace"))
            self.stderr.flush()
        except (OSError, ValueError):
            pass  # nowhere left to report to

    def flush(self) -> None:
        """Flush stdout; BrokenPipeError propagates to cli.main, which ends quietly. Any other
        failure (a full disk: ENOSPC) is an OSError naming standard output."""
        try:
            self.stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _named(exc) from None

    def silence_stdout(self) -> None:
        """After a broken pipe: point stdout at /dev/null so interpreter shutdown stays quiet."""
        if self.real_fds:
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.stdout.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass


def _named(exc: OSError) -> OSError:
    """The same OSError, naming standard output as the file it happened on."""
    if exc.filename is None and exc.errno is not None:
        return OSError(exc.errno, exc.strerror, STDOUT_NAME)
    return exc
