"""Linux only (owned by `states`): the socket table read straight from /proc, without psutil.

It reads the same files psutil's Linux backend reads (/proc/net/{tcp,tcp6,udp,udp6,unix} and the
/proc/<pid>/fd links that map socket inodes to processes) and yields the same row tuples as the
psutil path in states.py, so the two can be compared in tests. Why it exists: at 20,000 sockets
psutil's generic path (plus its 18 ms import) took about twice as long as `ss -tanp`, which this
path matches (benchmarks/states.py). platform.socket_table_source() decides when it is used.

Rows are tuples in core.sockview.ROW_KEYS order: proto, family, local_address, local_port,
remote_address, remote_port, state, pid, process, owners, recv_q, send_q, timer, uid.

The queue columns (/proc/net/tcp `tx_queue:rx_queue`, net/ipv4/tcp_ipv4.c get_tcp4_sock): for a
connection rx is rcv_nxt - copied_seq (bytes not yet read) and tx is write_seq - snd_una (bytes
not yet acknowledged); for a LISTEN socket rx is sk_ack_backlog, the connections waiting in the
accept queue, while tx is 0, NOT the backlog (ss gets that from netlink), so send_q is None there.
UDP: tx is the send buffer in use, rx the receive queue (bytes). /proc/net/unix has no queues.
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
_UNIX_CONNECTED = "03"  # the St column: SS_CONNECTED (include/uapi/linux/net.h)
# UDP's `st` is the TCP number its sk_state uses: 01 connected, 07 (TCP_CLOSE) not.
UDP_STATES = {"01": "ESTABLISHED", "07": "UNCONN"}
# The `tr` column (tcp4_seq_show): 1 retransmit/loss probe, 2 keepalive (sk_timer), 3 TIME_WAIT,
# 4 zero-window probe; named as ss -o names them. `tm->when` is jiffies_delta_to_clock_t: USER_HZ
# ticks left, never negative.
TIMERS = {"1": "on", "2": "keepalive", "3": "timewait", "4": "persist"}
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


def socket_owners(proc: str = PROC, pids=None) -> tuple[dict[str, tuple], int]:
    """Map socket inode (as the text /proc/net prints) -> ((pid, fd), ...), every process holding
    it (in /proc order: ascending PIDs), from the /proc/<pid>/fd links of every process, or only
    of `pids` (a --pid/--process query need not walk them all).

    Returns the map and how many processes' fd directories could not be read (not root). A
    socket shared by several processes (fork, a prefork server) lists each, as ss -p does. The
    links are read with readlinkat() relative to the open fd directory: one path lookup per
    process, not one per descriptor (about 10% faster at 20,000 sockets).
    """
    owners: dict[str, tuple] = {}
    get = owners.get
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
                    inode = target[8:-1]
                    held = get(inode)
                    owners[inode] = ((pid, int(fd)),) if held is None else held + ((pid, int(fd)),)
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


def clock_ticks(proc: str = PROC) -> int:
    """USER_HZ, the unit of /proc/net/tcp's tm->when (100 on every common architecture)."""
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return 100


def _owned(held, names) -> tuple:
    """((pid, fd), ...) -> (first pid, its name, ((pid, name, fd), ...)); one owner is the fast path."""
    if held is None:
        return None, None, ()
    if len(held) == 1:
        pid, fd = held[0]
        name = names(pid)
        return pid, name, ((pid, name, fd),)
    owners = tuple((pid, names(pid), fd) for pid, fd in held)
    return owners[0][0], owners[0][1], owners


def inet_rows(table: str, owners: dict[str, tuple] | None, names, proc: str = PROC, hz: int | None = None) -> list[tuple]:
    """Rows of /proc/net/TABLE (tcp, tcp6, udp, udp6). A missing file (no IPv6) gives no rows.

    As psutil: an endpoint with port 0 is no endpoint (None, None); sockets without an inode
    (TIME_WAIT, SYN_RECV) have no owner. UDP: ESTABLISHED when connected, else UNCONN (as ss).
    """
    file, proto, family, v6 = next(t for t in INET_TABLES if t[0] == table)
    try:
        lines = _read(f"{proc}/net/{file}")
    except FileNotFoundError:
        return []
    decode = decode_ipv6 if v6 else decode_ipv4
    width = 32 if v6 else 8
    tcp = proto.startswith("tcp")
    states = TCP_STATES if tcp else UDP_STATES
    owner = (owners or {}).get
    hz = hz or clock_ticks(proc)
    rows = []
    append = rows.append
    # Endpoints, queue pairs, uids and process names repeat (a server's 10,000 connections share
    # its local endpoint; most queues read 00000000:00000000): each is decoded once per table.
    endpoints: dict[str, tuple] = {"00000000:0000": (None, None), "0" * 32 + ":0000": (None, None)}
    queue_pairs: dict[str, tuple] = {}
    uid_numbers: dict[str, int] = {}
    name_of: dict[int, str | None] = {}
    listen = "0A" if tcp else None
    kind = "stream" if tcp else "dgram"
    for line in lines:  # the hot loop at 20,000 sockets: keep it flat
        try:
            _, local, remote, st, queues, trw, _, uid, _, inode, _ = line.split(None, 10)
        except ValueError:  # exactly 10 fields: nothing after the inode
            fields = line.split()
            if len(fields) < 10:
                continue
            _, local, remote, st, queues, trw, _, uid, _, inode = fields[:10]
        lend = endpoints.get(local)
        if lend is None:
            port = int(local[width + 1:], 16)
            lend = endpoints[local] = (decode(local[:width]), port) if port else (None, None)
        rend = endpoints.get(remote)
        if rend is None:
            port = int(remote[width + 1:], 16)
            rend = endpoints[remote] = (decode(remote[:width]), port) if port else (None, None)
        queue = queue_pairs.get(queues)
        if queue is None:  # (recv_q, send_q) from "tx_queue:rx_queue"
            queue = queue_pairs[queues] = (int(queues[9:], 16), int(queues[:8], 16))
        uid_number = uid_numbers.get(uid)
        if uid_number is None:
            uid_number = uid_numbers[uid] = int(uid)
        timer = (TIMERS.get(trw[1], trw[:2]), int(trw[3:], 16) / hz) if trw[1] != "0" else None
        held = owner(inode)  # inode 0 (TIME_WAIT, SYN_RECV) is never in the map
        if held is None:
            pid = name = None
            owned = ()
        elif len(held) == 1:
            pid, fd = held[0]
            if pid in name_of:
                name = name_of[pid]
            else:
                name = name_of[pid] = names(pid)
            owned = ((pid, name, fd),)
        else:
            pid, name, owned = _owned(held, names)
        # A listener's tx_queue is 0, not its backlog (see the module docstring): send_q None.
        append((proto, family, lend[0], lend[1], rend[0], rend[1], states.get(st, st), pid, name, owned,
                queue[0], None if st == listen else queue[1], timer, uid_number, kind, int(inode)))
    return rows


class ProcessUids:
    """PID -> the process's real uid (the owner of /proc/PID), read once per PID."""

    def __init__(self, proc: str = PROC):
        self._proc = proc
        self._uids: dict[int, int | None] = {}

    def __call__(self, pid: int | None) -> int | None:
        if pid is None:
            return None
        try:
            return self._uids[pid]
        except KeyError:
            try:
                uid = os.stat(f"{self._proc}/{pid}").st_uid
            except OSError:
                uid = None
            self._uids[pid] = uid
            return uid


# /proc/net/unix's Type column (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET)
UNIX_TYPES = {"0001": "stream", "0002": "dgram", "0005": "seqpacket"}


def unix_rows(owners: dict[str, tuple] | None, names, proc: str = PROC, uids=None) -> list[tuple]:
    """Rows of /proc/net/unix: one per socket, path as the local address (None when unnamed).

    State: LISTEN when Flags has __SO_ACCEPTCON (`-l -x` finds listeners, as `ss -lx` does),
    ESTABLISHED when connected (a socketpair, an accepted stream, a connected datagram socket),
    else UNCONN, as ss. No queues or timers; the uid (not in this file) is the first owner's.
    """
    try:
        lines = _read(f"{proc}/net/unix")
    except FileNotFoundError:
        return []
    owner = (owners or {}).get
    uids = uids or ProcessUids(proc)
    rows = []
    for line in lines:
        fields = line.split(None, 7)  # the path may contain spaces
        if len(fields) < 7:
            continue
        flags, kind, st, inode = fields[3], fields[4], fields[5], fields[6]
        path = fields[7] if len(fields) == 8 else None
        if int(flags, 16) & _UNIX_ACCEPTCON:
            state = "LISTEN"
        else:
            state = "ESTABLISHED" if st == _UNIX_CONNECTED else "UNCONN"
        pid, name, owned = _owned(owner(inode), names)
        rows.append(("unix", "unix", path, None, None, None, state, pid, name, owned, None, None, None, uids(pid),
                     UNIX_TYPES.get(kind, kind), int(inode)))
    return rows


def parent_pid(pid: int, proc: str = PROC) -> int | None:
    """The parent of `pid` from /proc/PID/stat (field 4, after the parenthesised name, which may
    itself hold spaces and parentheses), or None when the process is gone."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        return int(data[data.rindex(b")") + 2:].split()[1])
    except (ValueError, IndexError):
        return None


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
        netlinked = unix_rows_netlink(owners, names, proc) if proc == PROC else None
        rows += netlinked if netlinked is not None else unix_rows(owners, names, proc)
    return rows, denied


def unix_rows_netlink(owners: dict[str, tuple] | None, names, proc: str = PROC) -> list[tuple] | None:
    """Unix sockets through sock_diag netlink (UNIX_DIAG): each name arrives with its length, so a
    path holding a newline or \\x1c is exact, where /proc/net/unix prints names raw and a name
    holding a newline forges a line. Names are shown by core.pathtext's lossless rule (@ for an
    abstract name). None when netlink is not available (unix_rows' /proc reading is the fallback)."""
    from sockdiag.core.pathtext import unix_name_text
    from sockdiag.platform import netlink

    try:
        socks = netlink.unix_sockets()
    except netlink.NetlinkUnavailable:
        return None
    owner = (owners or {}).get
    uids = ProcessUids(proc)
    rows = []
    for s in socks:
        pid, name, owned = _owned(owner(str(s.inode)), names)
        path = unix_name_text(s.name) if s.name is not None else None
        listening = s.state == "LISTEN"
        rows.append(("unix", "unix", path, None, None, None, s.state, pid, name, owned, s.rqueue,
                     s.wqueue if listening or s.wqueue else None, None, s.uid if s.uid is not None else uids(pid),
                     s.type, s.inode))
    return rows
