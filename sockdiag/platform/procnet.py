"""Linux only (owned by `states`): the socket table read straight from /proc, without psutil.

It reads the same files psutil's Linux backend reads (/proc/net/{tcp,tcp6,udp,udp6,unix} and the
/proc/<pid>/fd links that map socket inodes to processes) and yields the same row tuples as the
psutil path in states.py, so the two can be compared in tests. Why it exists: at 20,000 sockets
psutil's generic path (plus its 18 ms import) took about twice as long as `ss -tanp`, which this
path matches (benchmarks/states.py). platform.socket_table_source() decides when it is used.

Two things make it faster than ss at 20,000 sockets (benchmarks/states.py): TCP comes through
sock_diag netlink (platform.netlink.tcp_rows, the same rows as /proc/net/tcp, whose text the
kernel alone takes ~70 ms to format; /proc/net/tcp remains the fallback), and the /proc/PID/fd
walk runs beside it, in two forked children over alternate processes (ForkedOwnerWalk), or in
a thread where forking is not safe (OwnerWalk). UDP and unix are few and read as before (unix
through netlink too, where names are exact; /proc/net/unix marks what it cannot read exactly).

Rows are tuples in core.sockview.ROW_KEYS order: proto, family, local_address, local_port,
remote_address, remote_port, state, pid, process, owners, recv_q, send_q, timer, uid.

The queue columns (/proc/net/tcp `tx_queue:rx_queue`, net/ipv4/tcp_ipv4.c get_tcp4_sock): for a
connection rx is rcv_nxt - copied_seq (bytes not yet read) and tx is write_seq - snd_una (bytes
not yet acknowledged); for a LISTEN socket rx is sk_ack_backlog, the connections waiting in the
accept queue, while tx is 0, NOT the backlog (ss gets that from netlink), so send_q is None there.
UDP: tx is the send buffer in use, rx the receive queue (bytes). /proc/net/unix has no queues.
"""

from __future__ import annotations

import array
import os
import re
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


def socket_owners(proc: str = PROC, pids=None) -> tuple[dict[int, tuple], int]:
    """Map socket inode -> ((pid, fd), ...), every process holding it (in /proc order: ascending
    PIDs), from the /proc/<pid>/fd links of every process, or only of `pids` (a --pid/--process
    query need not walk them all).

    Returns the map and how many processes' fd directories could not be read (not root). A
    socket shared by several processes (fork, a prefork server) lists each, as ss -p does, in
    ascending PID order.
    """
    return _merge_triples([socket_triples(proc, pids)])


def socket_triples(proc: str = PROC, pids=None) -> array.array:
    """The walk behind socket_owners, as flat int64s: [denied, inode, pid, fd, inode, pid, fd, ...]
    in walk order (ascending PIDs, each process's fds ascending). No dict and no tuple per socket:
    at 20,000 sockets this is the forked walkers' whole job, and the parent's critical path
    waits for it. The links are read with readlinkat() relative to the open fd directory: one
    path lookup per process, not one per descriptor (about 10% faster at 20,000 sockets)."""
    out = array.array("q", [0])
    extend = out.extend
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
                    extend((int(target[8:-1]), pid, int(fd)))
        except PermissionError:
            denied += 1
        except OSError:
            pass
        finally:
            os.close(dir_fd)
    out[0] = denied
    return out


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
        return NOBODY
    if len(held) == 1:
        pid, fd = held[0]
        name = names(pid)
        return pid, name, ((pid, name, fd),)
    owners = tuple((pid, names(pid), fd) for pid, fd in held)
    return owners[0][0], owners[0][1], owners


NOBODY = (None, None, ())  # a row's pid, process, owners when no visible process holds the socket


def owner_table(held: dict[int, tuple] | None, names) -> dict[int, tuple]:
    """socket_owners()' map -> inode -> (first pid, its name, ((pid, name, fd), ...)): a row's
    pid, process and owners columns, ready to put in."""
    return {inode: _owned(owners, names) for inode, owners in (held or {}).items()}


def with_owners(rows: list[tuple], owners: dict[int, tuple]) -> list[tuple]:
    """Rows (owners not yet known: NOBODY) with the owner_table() entries of their inodes."""
    if not owners:
        return rows
    get = owners.get
    return [row if (owned := get(row[15])) is None else row[:7] + owned + row[10:] for row in rows]  # 15: inode


def inet_rows(table: str, owners: dict[int, tuple] | None, names, proc: str = PROC, hz: int | None = None) -> list[tuple]:
    """Rows of /proc/net/TABLE (tcp, tcp6, udp, udp6). A missing file (no IPv6) gives no rows.
    `owners`: socket_owners()' map (None: no owners).

    As psutil: an endpoint with port 0 is no endpoint (None, None); sockets without an inode
    (TIME_WAIT, SYN_RECV) have no owner. UDP: ESTABLISHED when connected, else UNCONN (as ss).
    """
    rows = _inet_rows(table, proc, hz)
    return with_owners(rows, owner_table(owners, names)) if owners else rows


def _inet_rows(table: str, proc: str = PROC, hz: int | None = None) -> list[tuple]:
    """inet_rows without owners (pid, process None, owners ())."""
    file, proto, family, v6 = next(t for t in INET_TABLES if t[0] == table)
    try:
        lines = _read(f"{proc}/net/{file}")
    except FileNotFoundError:
        return []
    decode = decode_ipv6 if v6 else decode_ipv4
    width = 32 if v6 else 8
    tcp = proto.startswith("tcp")
    states = TCP_STATES if tcp else UDP_STATES
    hz = hz or clock_ticks(proc)
    rows = []
    append = rows.append
    # Endpoints, queue pairs and uids repeat (a server's 10,000 connections share its local
    # endpoint; most queues read 00000000:00000000): each is decoded once per table.
    endpoints: dict[str, tuple] = {"00000000:0000": (None, None), "0" * 32 + ":0000": (None, None)}
    queue_pairs: dict[str, tuple] = {}
    uid_numbers: dict[str, int] = {}
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
        # A listener's tx_queue is 0, not its backlog (see the module docstring): send_q None.
        append((proto, family, lend[0], lend[1], rend[0], rend[1], states.get(st, st), None, None, (),
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


def unix_rows(owners: dict[int, tuple] | None, names, proc: str = PROC, uids=None) -> list[tuple]:
    """Rows of /proc/net/unix: one per socket, path as the local address (None when unnamed).
    `owners`: socket_owners()' map.

    State: LISTEN when Flags has __SO_ACCEPTCON (`-l -x` finds listeners, as `ss -lx` does),
    ESTABLISHED when connected (a socketpair, an accepted stream, a connected datagram socket),
    else UNCONN, as ss. No queues or timers; the uid (not in this file) is the first owner's.
    """
    return _unix_rows(owner_table(owners, names), proc, uids)


def _unix_rows(owners: dict[int, tuple], proc: str = PROC, uids=None) -> list[tuple]:
    """unix_rows on an owner_table(). /proc/net/unix prints names raw, so a name holding a newline
    can cut its own record short and forge the next line: the rows that cannot be told apart
    from such a forgery carry a 17th value, True (core.sockview.AMBIGUOUS); see _unix_records."""
    before = _unix_socket_count(proc)
    try:
        with open(f"{proc}/net/unix", encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    after = _unix_socket_count(proc)  # sockets come and go meanwhile: the larger count
    kernel_count = None if before is None or after is None else max(before, after)
    owner = owners.get
    uids = uids or ProcessUids(proc)
    rows = []
    for (flags, kind, st, inode, path), ambiguous in _unix_records(text, kernel_count):
        if int(flags, 16) & _UNIX_ACCEPTCON:
            state = "LISTEN"
        else:
            state = "ESTABLISHED" if st == _UNIX_CONNECTED else "UNCONN"
        if path is not None and "\n" in path:  # joined across lines: shown as netlink names are, escaped
            from sockdiag.core.pathtext import path_text

            path = path_text(path.encode("utf-8", "surrogateescape"))
        pid, name, owned = owner(inode, NOBODY)
        row = ("unix", "unix", path, None, None, None, state, pid, name, owned, None, None, None, uids(pid),
               UNIX_TYPES.get(kind, kind), inode)
        rows.append(row + (True,) if ambiguous else row)
    return rows


# The start of a /proc/net/unix record (net/unix/af_unix.c unix_seq_show): "%pK: %08X %08X %08X
# %04X %02X %5lu", then " NAME" when bound, then a newline.
_UNIX_RECORD = re.compile(r"[0-9a-fA-F]+: [0-9A-F]{8} [0-9A-F]{8} [0-9A-F]{8} [0-9A-F]{4} [0-9A-F]{2} +[0-9]+(?: |$)")


def _unix_records(text: str, kernel_count: int | None = None) -> list[tuple[tuple, bool]]:
    """((flags, type, st, inode, name), ambiguous) per record of /proc/net/unix `text`.

    Ambiguous: (1) a record whose name went on past a newline: the next line does not start
    like a record (the name is kept whole, newline included, as the best reading); (2) records
    sharing an inode, one of them forged; (3) when there are more records than the kernel counts
    unix sockets (`kernel_count`, /proc/net/protocols), the lines a name could have forged: every
    record with a name and the record after it. Lines split on "\\n" only (a name may hold
    \\x1c, which str.splitlines() would split on too)."""
    records: list[list] = []
    lines = text.split("\n")[1:]
    if lines and lines[-1] == "":  # the newline that ends the last record
        lines.pop()
    for line in lines:
        if _UNIX_RECORD.match(line):
            fields = line.split(None, 7)
            name = fields[7] if len(fields) == 8 else None
            records.append([(fields[3], fields[4], fields[5], int(fields[6]), name), False])
        elif records and records[-1][0][4] is not None:  # the rest of a name that held "\n"
            flags, kind, st, inode, name = records[-1][0]
            records[-1] = [(flags, kind, st, inode, name + "\n" + line), True]
        elif line and records:  # a stray line after an unnamed record: cannot happen unforged
            records[-1][1] = True
    seen: dict[int, int] = {}
    for record in records:
        seen[record[0][3]] = seen.get(record[0][3], 0) + 1
    for record in records:
        if seen[record[0][3]] > 1:
            record[1] = True
    if kernel_count is not None and len(records) > kernel_count:
        named = False
        for record in records:
            if named or record[0][4] is not None:
                record[1] = True
            named = record[0][4] is not None
    return [(record[0], record[1]) for record in records]


def _unix_socket_count(proc: str = PROC) -> int | None:
    """The unix sockets this network namespace has, by the kernel's own count (the "sockets"
    column of /proc/net/protocols, UNIX and UNIX-STREAM), or None where it does not say."""
    try:
        with open(f"{proc}/net/protocols", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    counts = [line.split() for line in lines[1:] if line.startswith("UNIX")]
    try:
        return sum(int(fields[2]) for fields in counts) if counts else None
    except (IndexError, ValueError):
        return None


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


def read_rows(protos, with_pids: bool = True, proc: str = PROC, pids=None, process=None,
              infos: dict | None = None) -> tuple[list[tuple], int]:
    """Rows for the protocols in `protos` (tcp, tcp6, udp, udp6, unix), in that order.

    Without `with_pids` the /proc/<pid>/fd walk (most of the time at 20,000 sockets) is skipped
    and pid/process are None; with it, the walk runs in forked children (or a thread) while
    this one reads the tables (see ForkedOwnerWalk, OwnerWalk). `pids`, or `process` (a name predicate), limit the walk to those
    processes; other sockets then have no pid. TCP comes through sock_diag netlink where it
    answers (the same rows, in half the CPU time of /proc/net/tcp); `infos`, when given,
    receives inode -> TcpInfo from that dump (states -i) and stays empty on the /proc path.
    Returns (rows, processes whose fds could not be read).
    """
    names = ProcessNames(proc) if with_pids else None
    if with_pids and process is not None:
        pids = pids_named(process, names, proc, pids)
    walk = _owner_walk(proc, pids, names) if with_pids else None
    try:
        rows = _tcp_rows([p for p in ("tcp", "tcp6") if p in protos], proc, infos)
        for table in ("udp", "udp6"):
            if table in protos:
                rows += _inet_rows(table, proc)
        owners, denied = walk.result() if walk is not None else ({}, 0)
    finally:
        if walk is not None:
            walk.close()
    rows = with_owners(rows, owners)
    if "unix" in protos:
        netlinked = _unix_rows_netlink(owners, proc) if proc == PROC else None
        rows += netlinked if netlinked is not None else _unix_rows(owners, proc)
    return rows, denied


def _tcp_rows(protos: list[str], proc: str, infos: dict | None) -> list[tuple]:
    """TCP rows without owners: sock_diag netlink for the real /proc, else (and where netlink is
    refused) /proc/net/tcp and tcp6."""
    if not protos:
        return []
    hz = clock_ticks(proc)
    if proc == PROC:
        from sockdiag.core.errors import SockdiagError
        from sockdiag.platform import netlink

        try:
            return netlink.tcp_rows(protos, hz, infos)
        except SockdiagError:  # no inet_diag here, or refused (a seccomp sandbox): /proc as before
            pass
    rows = []
    for table in protos:
        rows += _inet_rows(table, proc, hz)
    return rows


class OwnerWalk:
    """socket_owners() and owner_table() for read_rows, in a thread while the caller reads the
    socket tables: readlink() releases the GIL, and the walk is ~60% system time, so on two
    cores much of it overlaps the netlink dump and its parsing.

    Measured at 20,000 sockets (read_rows of TCP, 9 alternating rounds, median wall / CPU ms,
    the measuring process at nice -15 on a 2-core machine busy with other work): the walk first
    and then the tables 287 / 276, this thread 248 / 297; the caller taking shares of the walk
    once its reading is done, 260 / 371 (GIL hand-offs); a forked child sending the table back
    (marshal) cost the most CPU (+70 ms: after fork() every page either process writes,
    reference counts included, is copied).
    """

    def __init__(self, proc: str, pids, names):
        import threading

        self._args = proc, pids, names
        self._result: tuple | None = None
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="sockdiag-owner-walk", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            proc, pids, names = self._args
            self._result = owners_from_triples([socket_triples(proc, pids)], names)
        except Exception as exc:  # noqa: BLE001 - re-raised in result(), in the caller's thread
            self._error = exc

    def result(self) -> tuple[dict[int, tuple], int]:
        """(inode -> (pid, process, owners), processes whose fds could not be read)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result

    def close(self) -> None:
        """Wait for the walk (at most its own length) when result() was not taken: no thread
        outlives read_rows, whatever ended it (an error, Ctrl-C)."""
        self._thread.join()


def _owner_walk(proc: str, pids, names):
    """The walk beside the table reading: in forked children when this process runs no other
    thread (fork() beside threads is unsafe) and there are processes to walk, else in a thread."""
    import threading

    if threading.active_count() == 1 and (pids is None or len(pids) > 1):
        try:
            return ForkedOwnerWalk(proc, pids, names)
        except OSError:  # no fork (a process limit): the thread walks the same
            pass
    return OwnerWalk(proc, pids, names)


class ForkedOwnerWalk:
    """socket_owners() in two forked children, each walking every other process, sending
    (inode, pid, fd) triples back through a pipe while this process reads the socket tables.

    The thread (OwnerWalk) overlaps the walk only where readlink() releases the GIL: its Python
    part and the netlink parsing take turns, and the caller still waited 120-180 ms for it at
    20,000 sockets. Readlinks over different processes' fd tables do not contend in the kernel
    (over one table they do: two threads were slower than one), and two children over alternate
    processes walked in 92-112 ms where one walk took 160 ms. In-process read_rows of TCP at
    20,000 sockets: 191-212 ms against 254-274 ms with the thread. Copy-on-write costs little:
    the children write only their own dicts and arrays.
    """

    CHILDREN = 2

    def __init__(self, proc: str, pids, names):
        self._args, self._names, self._result = (proc, pids), names, None
        everyone = [name for name in os.listdir(proc) if name.isdigit()] if pids is None else list(pids)
        self._children: list[tuple[int, int]] = []  # (pid, read end)
        try:
            for share in range(self.CHILDREN):
                self._children.append(_fork_walk(proc, everyone[share::self.CHILDREN]))
        except OSError:
            self.close()
            raise

    def result(self) -> tuple[dict[int, tuple], int]:
        """(inode -> (pid, process, owners), processes whose fds could not be read)."""
        if self._result is None:
            parts = [array.array("q", _read_to_end(read_end)) for _child, read_end in self._children]
            self.close()
            if not all(parts):  # a child failed (out of memory, say): walk here instead
                parts = [socket_triples(*self._args)]
            self._result = owners_from_triples(parts, self._names)
        return self._result

    def close(self) -> None:
        """Reap every child, whatever ended read_rows: no zombie, no open pipe."""
        for child, read_end in self._children:
            try:
                _read_to_end(read_end)  # let it finish writing, then it exits
            except OSError:
                pass
            os.close(read_end)
            os.waitpid(child, 0)
        self._children = []


def _read_to_end(fd: int) -> bytes:
    """Everything a child writes to its pipe, up to its end (the child exited or closed it)."""
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _fork_walk(proc: str, pids: list) -> tuple[int, int]:
    """A child walking `pids`; returns (its pid, the read end of its pipe). The child writes
    [denied, inode, pid, fd, ...] as int64 and leaves with os._exit: none of the parent's
    cleanup (finally blocks, atexit, buffered stdout) runs twice."""
    read_end, write_end = os.pipe()
    try:
        child = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        raise
    if child == 0:
        status = 1
        try:
            os.close(read_end)
            view = memoryview(socket_triples(proc, pids).tobytes())
            while view:
                view = view[os.write(write_end, view):]
            status = 0
        except BaseException:  # noqa: BLE001 - an empty pipe tells the parent to walk itself
            pass
        finally:
            os._exit(status)
    os.close(write_end)
    return child, read_end


def _merge_triples(parts: list) -> tuple[dict[int, tuple], int]:
    """socket_triples() arrays -> (inode -> ((pid, fd), ...), denied), a shared socket's holders
    in ascending PID (then fd) order, as a walk of the real /proc lists them."""
    held: dict[int, tuple] = {}
    get, shared, denied = held.get, set(), 0
    for triples in parts:
        denied += triples[0]
        it = iter(triples)
        next(it)
        for inode, pid, fd in zip(it, it, it):
            found = get(inode)
            if found is None:
                held[inode] = ((pid, fd),)
            else:
                held[inode] = found + ((pid, fd),)
                shared.add(inode)
    for inode in shared:  # two walks interleave (and a /proc's listing need not be in order)
        held[inode] = tuple(sorted(held[inode]))
    return held, denied


def owners_from_triples(parts: list, names) -> tuple[dict[int, tuple], int]:
    """socket_triples() arrays -> (owner_table(), denied) in one pass: what _merge_triples and
    owner_table give together, without the intermediate map (the parent's share of the walk,
    on the critical path after the children answer: 30-40 ms less at 20,000 sockets)."""
    table: dict[int, tuple] = {}
    get = table.get
    shared: dict[int, list] = {}
    denied = 0
    last_pid, last_name = None, None
    for triples in parts:
        denied += triples[0]
        it = iter(triples)
        next(it)
        for inode, pid, fd in zip(it, it, it):
            if pid != last_pid:
                last_pid, last_name = pid, names(pid)
            found = get(inode)
            if found is None:
                table[inode] = (pid, last_name, ((pid, last_name, fd),))
            elif inode in shared:
                shared[inode].append((pid, last_name, fd))
            else:
                shared[inode] = [*found[2], (pid, last_name, fd)]
    for inode, owners in shared.items():  # holders in ascending PID (then fd) order
        owners.sort(key=_pid_fd)
        table[inode] = (owners[0][0], owners[0][1], tuple(owners))
    return table, denied


def _pid_fd(owner: tuple) -> tuple:
    return owner[0], owner[2]


def _unix_rows_netlink(owners: dict[int, tuple], proc: str = PROC) -> list[tuple] | None:
    """Unix sockets through sock_diag netlink (UNIX_DIAG): each name arrives with its length, so a
    path holding a newline or \\x1c is exact, where /proc/net/unix prints names raw and a name
    holding a newline forges a line. Names are shown by core.pathtext's lossless rule (@ for an
    abstract name). None when netlink is not available (_unix_rows' /proc reading is the fallback)."""
    from sockdiag.core.pathtext import unix_name_text
    from sockdiag.platform import netlink

    try:
        socks = netlink.unix_sockets()
    except netlink.NetlinkUnavailable:
        return None
    owner = owners.get
    uids = ProcessUids(proc)
    rows = []
    for s in socks:
        pid, name, owned = owner(s.inode, NOBODY)
        path = unix_name_text(s.name) if s.name is not None else None
        listening = s.state == "LISTEN"
        rows.append(("unix", "unix", path, None, None, None, s.state, pid, name, owned, s.rqueue,
                     s.wqueue if listening or s.wqueue else None, None, s.uid if s.uid is not None else uids(pid),
                     s.type, s.inode))
    return rows
