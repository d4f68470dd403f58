"""Linux only: the socket table through sock_diag netlink (UNIX_DIAG, INET_DIAG), as ss reads it.

Why, next to /proc (platform/procnet.py): the kernel sends each unix socket name with its length,
so a path holding "\\n" or an abstract name holding anything is read exactly (a line of
/proc/net/unix cannot be told from a forged one), plus the peer inode and the queues; and for TCP
it sends struct tcp_info (rtt, cwnd, retransmits, bytes) that /proc does not have at all.
The messages are packed and parsed by the pure core.netlinkmsg; this module only does the I/O.
Not in the facade (like procnet): imported where needed.
"""

from __future__ import annotations

import errno
import os
import socket
import sys

from sockdiag.core.errors import SockdiagError
from sockdiag.core.netlinkmsg import (AF_INET, AF_INET6, NETLINK_SOCK_DIAG, NLMSG_DONE, TABLE_STATES, InetSock,
                                      NetlinkError, TableDump, UnixSock, inet_request, messages, parse_inet, parse_unix,
                                      unix_request)
from sockdiag.platform.errnos import from_oserror
from sockdiag.platform.system import LINUX, SYSTEM

# Dump replies come in batches of at most 32 KiB (the kernel's netlink_dump allocation cap);
# a larger buffer never truncates one.
_RECV_SIZE = 1 << 16
_LITTLE_ENDIAN = sys.byteorder == "little"  # inet_diag ports arrive in network order
# What says "this kernel/sandbox has no sock_diag (or not this family)": no AF_NETLINK or no
# NETLINK_SOCK_DIAG (gVisor, some containers), or no unix_diag / inet_diag module (ENOENT).
_UNAVAILABLE = frozenset(("EAFNOSUPPORT", "EPROTONOSUPPORT", "ENOENT", "ESOCKTNOSUPPORT"))


class NetlinkUnavailable(SockdiagError):
    """sock_diag netlink cannot be used here: fall back to /proc or psutil."""


def available(system: str | None = None) -> bool:
    """Whether this OS has sock_diag netlink at all (Linux); whether the kernel answers is only
    known by asking (NetlinkUnavailable)."""
    return (system or SYSTEM) == LINUX and hasattr(socket, "AF_NETLINK")


def unix_sockets() -> list[UnixSock]:
    """Every unix socket of this network namespace: name (exact bytes), type, state, peer, queues."""
    with _open() as sock:
        return _dump(sock, unix_request(seq=1), 1, parse_unix, "unix_diag")


def tcp_sockets(with_info: bool = True, families: tuple[int, ...] = (AF_INET, AF_INET6)) -> list[InetSock]:
    """Every TCP socket (IPv4 then IPv6) with, if asked, its tcp_info. A kernel without IPv6
    gives no IPv6 rows rather than an error."""
    cache: dict[bytes, str] = {}

    def ntop6(raw: bytes) -> str:  # the same text as procnet's inet_ntop, once per address
        text = cache.get(raw)
        if text is None:
            text = cache[raw] = socket.inet_ntop(socket.AF_INET6, raw)
        return text

    def parse(buf, start, end):
        return parse_inet(buf, start, end, ntop6)

    rows: list[InetSock] = []
    with _open() as sock:
        for seq, family in enumerate(families, 1):
            try:
                rows += _dump(sock, inet_request(family, seq=seq, with_info=with_info), seq, parse, "inet_diag")
            except NetlinkUnavailable:
                if family != AF_INET6 or len(families) == 1:
                    raise
    return rows


def tcp_rows(protos=("tcp", "tcp6"), hz: int = 100, infos: dict | None = None) -> list[tuple]:
    """The socket table's TCP rows (core.sockview.ROW_KEYS order, no owners yet) of `protos`
    ("tcp": IPv4, "tcp6": IPv6, as /proc/net/tcp and tcp6 split them), the same rows
    platform.procnet reads from /proc in less than half the CPU time. `infos`, when given,
    receives inode -> TcpInfo (the one dump then carries struct tcp_info: states -i). A kernel
    without IPv6 gives no IPv6 rows; NetlinkUnavailable when there is no INET_DIAG at all."""
    def ntop6(raw: bytes) -> str:  # TableDump keeps each address's text: one call per address
        return socket.inet_ntop(socket.AF_INET6, raw)

    rows: list[tuple] = []
    buf = bytearray(_RECV_SIZE)
    with _open() as sock:
        for seq, (proto, family) in enumerate((("tcp", AF_INET), ("tcp6", AF_INET6)), 1):
            if proto not in protos:
                continue
            dump = TableDump(proto, seq, hz, ntop6, infos, _LITTLE_ENDIAN)
            try:
                sock.sendto(inet_request(family, seq=seq, with_info=infos is not None, states=TABLE_STATES), (0, 0))
                while True:
                    n = sock.recv_into(buf)
                    if not n:
                        raise SockdiagError("inet_diag: the kernel closed the dump early")
                    if dump.feed(buf, n):
                        break
            except NetlinkError as exc:
                if errno.errorcode.get(exc.errno) in _UNAVAILABLE:
                    if family == AF_INET6 and "tcp" in protos:  # a kernel without IPv6
                        continue
                    raise NetlinkUnavailable(f"inet_diag: not supported by this kernel "
                                             f"({errno.errorcode[exc.errno]})") from exc
                raise from_oserror("inet_diag", OSError(exc.errno, os.strerror(exc.errno))) from exc
            except OSError as exc:
                raise from_oserror("inet_diag", exc) from exc
            rows += dump.rows
    return rows


def _open() -> socket.socket:
    if not available():
        raise NetlinkUnavailable(f"sock_diag netlink is not available on {SYSTEM} (Linux only)")
    try:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
    except OSError as exc:
        if exc.errno is not None and errno.errorcode.get(exc.errno) in _UNAVAILABLE:
            raise NetlinkUnavailable(f"sock_diag netlink: {os.strerror(exc.errno).lower()}") from exc
        raise from_oserror("sock_diag netlink socket", exc) from exc


def _dump(sock: socket.socket, request: bytes, seq: int, parse, what: str) -> list:
    """Send one dump request and parse every reply message until NLMSG_DONE."""
    out = []
    append = out.append
    try:
        sock.sendto(request, (0, 0))
        while True:
            buf = sock.recv(_RECV_SIZE)
            if not buf:
                raise SockdiagError(f"{what}: the kernel closed the dump early")
            for msg_type, start, end in messages(buf, seq):
                if msg_type == NLMSG_DONE:
                    return out
                append(parse(buf, start, end))
    except NetlinkError as exc:
        if errno.errorcode.get(exc.errno) in _UNAVAILABLE:
            raise NetlinkUnavailable(f"{what}: not supported by this kernel ({errno.errorcode[exc.errno]})") from exc
        raise from_oserror(what, OSError(exc.errno, os.strerror(exc.errno))) from exc
    except OSError as exc:
        raise from_oserror(what, exc) from exc
