"""Linux only (owned by `states`): the socket table read straight from /proc, without psutil.

It reads the same files psutil's Linux backend reads (/proc/net/{tcp,tcp6,udp,udp6,unix} and the
/proc/<pid>/fd links that map socket inodes to processes) and yields the same row tuples as the
psutil path in states.py, so the two can be compared in tests. Why it exists: at 20,000 sockets
psutil's generic path (plus its 18 ms import) took about twice as long as `ss -tanp`, which this
path matches (benchmarks/states.py). platform.socket_table_source() decides when it is used.

Rows are tuples in states.ROW_KEYS order: proto, family, local_address, local_port,
remote_address, remote_port, state, pid, process.
"""

from __future__ import annotations

import os
import sys

PROC = "/proc"

# /proc/net/tcp "st" column: the kernel's TCP_* numbers (include/net/tcp_states.h), named as psutil.
TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
    "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN",
    "0B": "CLOSING", "0C": "SYN_RECV",  # 0C: TCP_NEW_SYN_RECV, a request socket
}
# (file under /proc/net, proto, family, is_ipv6)
INET_TABLES = (
    ("tcp", "tcp", "inet", False), ("tcp6", "tcp6", "inet6", True),
    ("udp", "udp", "inet", False), ("udp6", "udp6", "inet6", True),
)
_UNIX_ACCEPTCON = 0x10000  # __SO_ACCEPTCON in the Flags column: a listening unix socket
_LITTLE_ENDIAN = sys.byteorder == "little"


def decode_ipv4(hexaddr: str) -> str:
    """'0100007F' (the kernel prints the address as a host-order 32-bit word) -> '127.0.0.1'."""
    raw = bytes.fromhex(hexaddr)
    if _LITTLE_ENDIAN:
        raw = raw[::-1]
    return "%d.%d.%d.%d" % tuple(raw)


def decode_ipv6(hexaddr: str) -> str:
    """32 hex digits, four host-order 32-bit words -> the compressed text form ('::1')."""
    import socket  # only for inet_ntop, and only on a cache miss

    raw = bytes.fromhex(hexaddr)
    if _LITTLE_ENDIAN:
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, raw)


def socket_owners(proc: str = PROC, pids=None) -> tuple[dict[str, int], int]:
    """Map socket inode (as the text /proc/net prints) -> PID, from the /proc/<pid>/fd links of
    every process, or only of `pids` (a --pid/--process query need not walk them all).

    Returns the map and how many processes' fd directories could not be read (not root). A
    socket shared by several processes goes to the last one listed, as psutil does. The links
    are read with readlinkat() relative to the open fd directory: one path lookup per process,
    not one per descriptor (about 10% faster at 20,000 sockets).
    """
    owners: dict[str, int] = {}
    denied = 0
    readlink = os.readlink
    for name in os.listdir(proc) if pids is None else map(str, pids):
        if not name.isdigit():
            continue
        try:
            dir_fd = os.open(f"{proc}/{name}/fd", os.O_RDONLY | os.O_DIRECTORY)
        except PermissionError:
            denied += 1
            continue
        except OSError:  # the process is gone, or a kernel thread without fds
            continue
        try:
            pid = int(name)
            for fd in os.listdir(dir_fd):
                try:
                    target = readlink(fd, dir_fd=dir_fd)
                except OSError:  # closed meanwhile
                    continue
                if target.startswith("socket:["):
                    owners[target[8:-1]] = pid
        except PermissionError:
            denied += 1
        except OSError:
            pass
        finally:
            os.close(dir_fd)
    return owners, denied


class ProcessNames:
    """PID -> process name, read once per PID; the same name psutil.Process(pid).name() gives."""

    def __init__(self, proc: str = PROC):
        self._proc = proc
        self._names: dict[int | None, str | None] = {None: None}

    def __call__(self, pid: int | None) -> str | None:
        try:
            return self._names[pid]
        except KeyError:
            name = self._names[pid] = self._lookup(pid)
            return name

    def _lookup(self, pid: int) -> str | None:
        try:
            with open(f"{self._proc}/{pid}/comm", encoding="utf-8", errors="surrogateescape") as f:
                name = f.read().removesuffix("\n")
        except OSError:
            return None
        if len(name) >= 15:  # comm is cut at 15 characters; psutil then uses argv[0] if it fits
            argv0 = self._argv0(pid)
            if argv0 and os.path.basename(argv0).startswith(name):
                name = os.path.basename(argv0)
        return name

    def _argv0(self, pid: int) -> str | None:
        try:
            with open(f"{self._proc}/{pid}/cmdline", encoding="utf-8", errors="surrogateescape") as f:
                data = f.read()
        except OSError:
            return None
        # Arguments end in NULs, unless the process rewrote its title with spaces (as psutil).
        sep = "\x00" if data.endswith("\x00") else " "
        args = data.removesuffix(sep).split(sep)
        if sep == "\x00" and len(args) == 1 and " " in args[0]:
            args = args[0].split(" ")
        return args[0] if data else None


def _read(path: str) -> list[str]:
    # Names and unix paths are bytes to the kernel: decoded as psutil does (UTF-8, and
    # surrogateescape for anything else, so the text output gives back the original bytes).
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read().splitlines()[1:]


def inet_rows(table: str, owners: dict[str, int] | None, names, proc: str = PROC) -> list[tuple]:
    """Rows of /proc/net/TABLE (tcp, tcp6, udp, udp6). A missing file (no IPv6) gives no rows.

    As psutil: an endpoint with port 0 is no endpoint (None, None); UDP has no state (None);
    sockets without an inode (TIME_WAIT, SYN_RECV) have no owner.
    """
    file, proto, family, v6 = next(t for t in INET_TABLES if t[0] == table)
    try:
        lines = _read(f"{proc}/net/{file}")
    except FileNotFoundError:
        return []
    decode = decode_ipv6 if v6 else decode_ipv4
    width = 32 if v6 else 8
    hosts: dict[str, str] = {}
    states = TCP_STATES if proto.startswith("tcp") else {}
    owner = (owners or {}).get
    rows = []
    append = rows.append
    for line in lines:  # the hot loop at 20,000 sockets: keep it flat
        try:
            _, local, remote, st, _, _, _, _, _, inode, _ = line.split(None, 10)
        except ValueError:  # exactly 10 fields: nothing after the inode
            fields = line.split()
            if len(fields) < 10:
                continue
            local, remote, st, inode = fields[1], fields[2], fields[3], fields[9]
        lport = int(local[width + 1:], 16)
        rport = int(remote[width + 1:], 16)
        if lport:
            lhex = local[:width]
            lhost = hosts.get(lhex) or hosts.setdefault(lhex, decode(lhex))
        else:
            lhost = lport = None
        if rport:
            rhex = remote[:width]
            rhost = hosts.get(rhex) or hosts.setdefault(rhex, decode(rhex))
        else:
            rhost = rport = None
        pid = owner(inode)  # inode 0 (TIME_WAIT, SYN_RECV) is never in the map
        append((proto, family, lhost, lport, rhost, rport, states.get(st, st) if states else None, pid, names(pid)))
    return rows


def unix_rows(owners: dict[str, int] | None, names, proc: str = PROC) -> list[tuple]:
    """Rows of /proc/net/unix: one per socket, path as the local address (None when unnamed).

    A listening socket (Flags has __SO_ACCEPTCON) gets state LISTEN; psutil reports no state for
    unix sockets at all, but `-l -x` should find listeners, as `netstat -lx` and `ss -lx` do.
    """
    try:
        lines = _read(f"{proc}/net/unix")
    except FileNotFoundError:
        return []
    owners = owners if owners is not None else {}
    rows = []
    for line in lines:
        fields = line.split(None, 7)  # the path may contain spaces
        if len(fields) < 7:
            continue
        flags, inode = fields[3], fields[6]
        path = fields[7] if len(fields) == 8 else None
        state = "LISTEN" if int(flags, 16) & _UNIX_ACCEPTCON else None
        pid = owners.get(inode)
        rows.append(("unix", "unix", path, None, None, None, state, pid, names(pid)))
    return rows


def pids_named(match, names: ProcessNames, proc: str = PROC, pids=None) -> list[int]:
    """The PIDs (of all, or of `pids`) whose process name satisfies `match` (a --process query)."""
    if pids is None:
        pids = [int(name) for name in os.listdir(proc) if name.isdigit()]
    return [pid for pid in pids if (name := names(pid)) is not None and match(name)]


def read_rows(protos, with_pids: bool = True, proc: str = PROC, pids=None, process=None) -> tuple[list[tuple], int]:
    """Rows for the protocols in `protos` (tcp, tcp6, udp, udp6, unix), in that order.

    Without `with_pids` the /proc/<pid>/fd walk (most of the time at 20,000 sockets) is skipped
    and pid/process are None. `pids`, or `process` (a name predicate), limit the walk to those
    processes; other sockets then have no pid. Returns (rows, processes whose fds could not be read).
    """
    names = ProcessNames(proc) if with_pids else (lambda pid: None)
    if with_pids and process is not None:
        pids = pids_named(process, names, proc, pids)
    owners, denied = socket_owners(proc, pids) if with_pids else (None, 0)
    rows: list[tuple] = []
    for table, _, _, _ in INET_TABLES:
        if table in protos:
            rows += inet_rows(table, owners, names, proc)
    if "unix" in protos:
        rows += unix_rows(owners, names, proc)
    return rows, denied
