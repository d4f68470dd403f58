"""Linux-only values read from /proc: sysctls, the TCP table text, clock ticks. None or [] elsewhere."""

from __future__ import annotations

import os
import sys

from sockdiag.platform.system import LINUX, SYSTEM

def read_sysctl(path: str) -> str | None:
    """A /proc/sys value on Linux (e.g. 'net/ipv4/tcp_tw_reuse'), or None elsewhere/unreadable."""
    if SYSTEM != LINUX:
        return None
    try:
        with open(os.path.join("/proc/sys", path), encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def proc_net_tcp_texts() -> list[str]:
    """Linux only: the text of /proc/net/tcp and /proc/net/tcp6, whose `tm->when` column holds
    the TIME_WAIT timers that psutil does not expose. [] elsewhere or when unreadable."""
    if SYSTEM != LINUX:
        return []
    texts = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                texts.append(f.read())
        except OSError:
            pass
    return texts


def clock_ticks_per_second() -> int:
    """USER_HZ, the unit of /proc/net/tcp's timer column: sysconf(SC_CLK_TCK), 100 on Linux."""
    try:
        return int(os.sysconf("SC_CLK_TCK")) or 100
    except (AttributeError, ValueError, OSError):
        return 100


def host_byteorder() -> str:
    """/proc/net/tcp prints addresses as 32-bit words in host byte order: "little" or "big"."""
    return sys.byteorder
