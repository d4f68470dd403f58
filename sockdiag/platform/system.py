"""Which operating system this is: the one place sys.platform is read.

The other platform modules take an optional `system` ("linux", "darwin", "win32") so tests can
emulate the other platforms' values."""

from __future__ import annotations

import sys

LINUX, DARWIN, WINDOWS = "linux", "darwin", "win32"


def current_system() -> str:
    """The running OS as one of LINUX / DARWIN / WINDOWS, or sys.platform for others (BSDs)."""
    if sys.platform.startswith("linux"):
        return LINUX
    if sys.platform == "darwin":
        return DARWIN
    if sys.platform in ("win32", "cygwin"):
        return WINDOWS
    return sys.platform


SYSTEM = current_system()
