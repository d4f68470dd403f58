"""What the scanner may use on each OS: non-blocking sockets, the poller, forks, file limits."""

from __future__ import annotations

import os
import socket

from sockdiag.platform.system import LINUX, SYSTEM, WINDOWS

def probe_socket_type_flags() -> int:
    """Flags OR-ed into the socket type so socket() returns a non-blocking socket in one system
    call: SOCK_NONBLOCK on Linux (and the BSDs that have it); 0 elsewhere (macOS, Windows), where
    the scanner calls setblocking(False) itself. A full scan creates 65535 sockets."""
    return getattr(socket, "SOCK_NONBLOCK", 0)


def probe_reuses_refused_sockets(system: str | None = None) -> bool:
    """Whether a TCP socket whose non-blocking connect was refused may connect again: on Linux
    it can (the refusal put it back in TCP_CLOSE and released its ephemeral port; the next
    connect() answers ECONNABORTED once, resetting the socket's state, and the one after that
    connects). That halves a refused attempt's cost on loopback (19 against 38 us: no socket()
    and close(), no file or inode allocated and freed). Elsewhere a refused socket is closed, as
    POSIX leaves its state unspecified after a failed connect.

    Where this holds, a second connect() right after EINPROGRESS also tells how the first went
    instead of getsockopt(SO_ERROR): EALREADY while the handshake is pending, 0 once it completed,
    else the error (ECONNREFUSED), and that same call resets a failed socket for its next connect.
    Two system calls per refused port instead of three (16.3 against 17.7 us on loopback)."""
    return (system or SYSTEM) == LINUX


def probe_poller_kind(system: str | None = None) -> str:
    """How the scanner waits on thousands of connecting sockets: epoll on Linux (O(ready) per
    wait), poll(2) on macOS and the BSDs, select() on Windows (which has no poll for sockets
    that reports refused connects reliably; WSAPoll misses them before Windows 10 2004)."""
    system = system or SYSTEM
    if system == LINUX:
        return "epoll"
    if system == WINDOWS:
        return "select"
    return "poll"


# CPython's Windows build sets FD_SETSIZE to 512, so one select() call takes at most 512 sockets.
WINDOWS_SELECT_LIMIT = 512


def probe_max_concurrency(system: str | None = None) -> int | None:
    """An OS cap on sockets in flight per scanner shard, or None: Windows' select() limit."""
    return WINDOWS_SELECT_LIMIT - 12 if (system or SYSTEM) == WINDOWS else None


def raise_open_file_limit(wanted: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE toward `wanted` (never above the hard limit); return the
    (soft, hard) limits now in force. Windows has no such limit: (wanted, wanted)."""
    try:
        import resource
    except ImportError:  # Windows: sockets are handles, not bounded by an rlimit
        return wanted, wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = hard if hard != resource.RLIM_INFINITY else max(wanted, soft)
    target = min(wanted, ceiling)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        soft = wanted
    return soft, hard


def probe_forks(system: str | None = None) -> bool:
    """Whether the scanner may run its shards in forked processes (else threads). Linux: yes;
    connect() work then runs on every CPU without GIL hand-offs (about 20% faster than threads
    on a full loopback scan, see benchmarks/README.md). macOS: fork without exec is unsafe once
    system frameworks are loaded; Windows has no fork."""
    return (system or SYSTEM) == LINUX and hasattr(os, "fork")


def usable_cpus() -> int:
    """CPUs this process may run on: the affinity mask on Linux (containers and taskset shrink
    it), os.cpu_count() elsewhere."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


# connect_ex()/socket() failures that mean "this machine is short of something right now"
# (descriptors, ephemeral ports, buffers), not "this port is in this state": the scanner backs
# off (fewer sockets in flight) and tries the port again. Linux reports an exhausted ephemeral
# port range as EADDRNOTAVAIL on connect; macOS and Windows as EADDRINUSE/ENOBUFS.
PROBE_BACKOFF = frozenset({"EMFILE", "ENFILE", "ENOBUFS", "ENOMEM", "EADDRNOTAVAIL", "EADDRINUSE"})
