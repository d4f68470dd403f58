"""The socket table through psutil (I/O at the edge): rows shared by `states` and `bindcheck`.

Row keys (also the JSON Lines keys, in this order): proto, family, local_address, local_port,
remote_address, remote_port, state, pid, process.
"""

from __future__ import annotations

import socket

import psutil

ROW_KEYS = ("proto", "family", "local_address", "local_port", "remote_address", "remote_port",
            "state", "pid", "process")

_FAMILIES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}
if hasattr(socket, "AF_UNIX"):
    _FAMILIES[socket.AF_UNIX] = "unix"


def _proto(family: int, type_: int) -> str:
    if _FAMILIES.get(family) == "unix":
        return "unix"
    base = "tcp" if type_ == socket.SOCK_STREAM else "udp"
    return base + ("6" if family == socket.AF_INET6 else "")


def _addr(addr) -> tuple[str | None, int | None]:
    if not addr:
        return None, None
    if isinstance(addr, str):  # AF_UNIX path
        return addr, None
    return addr.ip, addr.port


class ProcessNames:
    """Process names looked up once per PID (not once per socket); None when unavailable."""

    def __init__(self):
        self._names: dict[int, str | None] = {}

    def __call__(self, pid: int | None) -> str | None:
        if not pid:
            return None
        if pid not in self._names:
            try:
                self._names[pid] = psutil.Process(pid).name()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self._names[pid] = None
        return self._names[pid]


def row_from_conn(conn, names: ProcessNames) -> dict:
    """One psutil connection tuple -> a row dict with ROW_KEYS. TIME_WAIT has no PID: None."""
    local_ip, local_port = _addr(conn.laddr)
    remote_ip, remote_port = _addr(conn.raddr)
    pid = conn.pid or None
    status = conn.status if conn.status and conn.status != psutil.CONN_NONE else None
    return {
        "proto": _proto(conn.family, conn.type),
        "family": _FAMILIES.get(conn.family, str(conn.family)),
        "local_address": local_ip,
        "local_port": local_port,
        "remote_address": remote_ip,
        "remote_port": remote_port,
        "state": status,
        "pid": pid,
        "process": names(pid),
    }


def socket_rows(kind: str = "inet") -> list[dict]:
    """All sockets of psutil kind `kind` ('inet', 'tcp', 'udp', 'unix', 'all', ...) as rows.

    May raise psutil.AccessDenied (macOS without root); callers decide how to fall back.
    """
    names = ProcessNames()
    return [row_from_conn(conn, names) for conn in psutil.net_connections(kind=kind)]
