"""The socket table, read the way this OS allows: rows of ROW_KEYS for `states` and bindcheck.

Linux: /proc/net/* and /proc/PID/fd read directly (platform.procnet; no psutil import, about
twice as fast at 20,000 sockets). Elsewhere psutil, with a per-process fallback where the
system-wide table is refused (macOS without root). Rows are tuples in core.sockview.ROW_KEYS
order; filtering, sorting and layout are pure functions in core.sockview.
"""

from __future__ import annotations

import os
import socket

from sockdiag.core import sockview
from sockdiag.core.errors import PermissionFailure
from sockdiag.core.sockview import LPORT, OWNERS, PID, PROTO, ROW_KEYS, STATE, UID
from sockdiag.platform.errnos import from_oserror
from sockdiag.platform.system import DARWIN, LINUX, SYSTEM, WINDOWS

# --- where the table comes from ---------------------------------------------------------------

def socket_table_source(system: str | None = None) -> str:
    """Where `states` reads the socket table: "procfs" or "psutil".

    Linux: "procfs", i.e. platform.procnet reading /proc/net/{tcp,tcp6,udp,udp6,unix} and the
    /proc/<pid>/fd links itself. Those are the files psutil's Linux backend parses too, but its
    generic path (and its 18 ms import) took about twice as long as `ss -tanp` at 20,000 sockets;
    see benchmarks/states.py. Everywhere else (macOS, Windows, BSD) psutil is the only way.
    """
    system = system or SYSTEM
    if system == LINUX and (system != SYSTEM or os.path.exists("/proc/net/tcp")):
        return "procfs"
    return "psutil"


# Why psutil.net_connections() may raise AccessDenied, and what to do about it, per OS: macOS
# lists other processes' sockets only to root (psutil walks every process with proc_pidinfo).
SOCKET_TABLE_DENIED_HINTS = {
    DARWIN: "macOS shows other users' sockets only to root; run with sudo to see them all",
    WINDOWS: "Windows hides some processes' sockets from non-administrators; run as Administrator",
    LINUX: "run as root to see every socket's process",
}


def socket_table_denied_hint(system: str | None = None) -> str:
    """One line on why the whole socket table was refused on `system`, and the remedy."""
    return SOCKET_TABLE_DENIED_HINTS.get(system or SYSTEM, "run as root to see all sockets")


_FAMILIES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}
if hasattr(socket, "AF_UNIX"):
    _FAMILIES[socket.AF_UNIX] = "unix"


def _psutil():
    """psutil, imported on first use: its 18 ms import is start-up the Linux fast path skips."""
    global psutil
    try:
        return psutil
    except NameError:
        import psutil as module

        psutil = module
        return module


def __getattr__(name: str):
    # `socktable.psutil` works as a module attribute (tests monkeypatch psutil through it).
    if name == "psutil":
        return _psutil()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- rows from psutil ---------------------------------------------------

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
            ps = _psutil()
            try:
                self._names[pid] = ps.Process(pid).name()
            except (ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess):
                self._names[pid] = None
        return self._names[pid]


def _state(conn, proto: str, remote) -> str:
    """psutil's status, in the one vocabulary: UDP and unix have none there (CONN_NONE), so
    ESTABLISHED when connected and UNCONN when not, as ss and the Linux path say."""
    status = conn.status
    if status and status != _psutil().CONN_NONE and proto not in ("udp", "udp6", "unix"):
        return status
    return "ESTABLISHED" if remote else "UNCONN"


_SOCK_TYPES = {socket.SOCK_STREAM: "stream", socket.SOCK_DGRAM: "dgram",
               getattr(socket, "SOCK_SEQPACKET", -5): "seqpacket"}


def _conn_row(conn, pid: int | None, names) -> tuple:
    """One psutil connection tuple -> a row tuple (ROW_KEYS order). TIME_WAIT has no PID: None.
    psutil tells no queues, timers or socket uid: None."""
    local_ip, local_port = _addr(conn.laddr)
    remote_ip, remote_port = _addr(conn.raddr)
    pid = pid or None
    proto = _proto(conn.family, conn.type)
    name = names(pid)
    fd = conn.fd if getattr(conn, "fd", -1) not in (-1, None) else None
    owners = ((pid, name, fd),) if pid else ()
    return (proto, _FAMILIES.get(conn.family, str(conn.family)), local_ip, local_port,
            remote_ip, remote_port, _state(conn, proto, remote_ip), pid, name, owners, None, None, None, None,
            _SOCK_TYPES.get(conn.type), None)


def merge_owners(rows) -> list[tuple]:
    """psutil lists a socket once per process holding it (a prefork server's listener under the
    master and each worker): one row per socket, with every owner. Without an inode the socket
    is known by its protocol, endpoints and state, so only sockets with a local port merge (not
    the many unnamed unix sockets); SO_REUSEPORT sockets of one address would merge too."""
    merged: dict[tuple, int] = {}
    out: list[tuple] = []
    for row in rows:
        if row[LPORT] is None or not row[OWNERS]:
            out.append(row)
            continue
        key = row[:PID]
        at = merged.get(key)
        if at is None:
            merged[key] = len(out)
            out.append(row)
        else:
            first = out[at]
            out[at] = first[:OWNERS] + (first[OWNERS] + row[OWNERS],) + first[OWNERS + 1:]
    return out


def row_from_conn(conn, names: ProcessNames) -> dict:
    """One psutil connection tuple -> a row dict with ROW_KEYS. TIME_WAIT has no PID: None."""
    return dict(zip(ROW_KEYS, _conn_row(conn, conn.pid, names)))


def socket_rows(kind: str = "inet") -> list[dict]:
    """All sockets of psutil kind `kind` ('inet', 'tcp', 'udp', 'unix', 'all', ...) as rows, read
    the way `states` reads them: /proc on Linux (no psutil import), psutil elsewhere.

    On the psutil path it may raise psutil.AccessDenied (macOS without root); callers decide how
    to fall back (`states` lists per-process sockets instead, see _collect_psutil).
    """
    if socket_table_source() == "procfs":
        protos = PSUTIL_KINDS[kind]
        return [dict(zip(ROW_KEYS, row)) for row in _collect_procfs(protos, True).rows if row[PROTO] in protos]
    names = ProcessNames()
    rows = merge_owners(_conn_row(conn, conn.pid, names) for conn in _psutil().net_connections(kind=kind))
    return [dict(zip(ROW_KEYS, row)) for row in rows]


def parent_pid(pid: int) -> int | None:
    """The parent process of `pid` (None when gone or hidden): /proc/PID/stat on Linux, psutil elsewhere."""
    if socket_table_source() == "procfs":
        from sockdiag.platform import procnet

        return procnet.parent_pid(pid)
    ps = _psutil()
    try:
        return ps.Process(pid).ppid() or None
    except (ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess):
        return None


def user_of(pid: int) -> int | None:
    """The real uid of process `pid` (psutil; None off POSIX or when hidden): --uid on the psutil path."""
    ps = _psutil()
    try:
        return ps.Process(pid).uids().real
    except (ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess, AttributeError):
        return None


# --- collecting a snapshot ----------------------------------------------------------------------

# psutil's `kind` values and the protocols each covers; the smallest cover of a request is used.
PSUTIL_KINDS = {
    "tcp4": {"tcp"}, "tcp6": {"tcp6"}, "udp4": {"udp"}, "udp6": {"udp6"}, "unix": {"unix"},
    "tcp": {"tcp", "tcp6"}, "udp": {"udp", "udp6"}, "inet4": {"tcp", "udp"}, "inet6": {"tcp6", "udp6"},
    "inet": {"tcp", "tcp6", "udp", "udp6"}, "all": set(sockview.PROTOS),
}


def psutil_kind(protos) -> str:
    """The psutil `kind` that covers `protos` with the fewest extra sockets."""
    covering = [(len(covered), kind) for kind, covered in PSUTIL_KINDS.items() if covered >= set(protos)]
    return min(covering)[1]


class Snapshot:
    """One reading of the socket table: rows, warnings for stderr, and how many processes could
    not be inspected (Linux without root: their sockets have no PID). tcp_info: inode -> TcpInfo
    when asked for and read in the same dump as the rows (None: not read; ask netlink)."""

    def __init__(self, rows: list[tuple], warnings: list[str] | None = None, uninspected: int = 0,
                 tcp_info: dict | None = None):
        self.rows, self.warnings, self.uninspected = rows, warnings or [], uninspected
        self.tcp_info = tcp_info


def collect(protos, with_pids: bool = True, source: str | None = None, *, pid: int | None = None,
            process: str | None = None, with_uids: bool = False, with_info: bool = False) -> Snapshot:
    """The sockets of the protocols in `protos`. Without `with_pids`, pid and process may be
    None (the Linux path then skips the /proc/<pid>/fd walk, most of its time). `pid` and
    `process` say that only the sockets of that PID / of processes of that name need owners
    (the Linux path then walks only their descriptors); the caller still filters. `with_uids`:
    the psutil path fills uid from the owner process (a --uid query; /proc has the socket's).
    `with_info`: read TCP's tcp_info in the same netlink dump where the rows come from one
    (Snapshot.tcp_info; None where they do not)."""
    source = source or socket_table_source()
    if source == "procfs":
        return _collect_procfs(protos, with_pids, pid, process, with_info)
    return _collect_psutil(protos, with_pids, with_uids)


_NO_INFO = ("TIME_WAIT", "SYN_RECV")  # sockets a sock_diag dump sends without tcp_info


def _collect_procfs(protos, with_pids: bool, pid: int | None = None, process: str | None = None,
                    with_info: bool = False) -> Snapshot:
    from sockdiag.platform import procnet

    match = sockview.process_matcher(process) if process is not None else None
    infos: dict | None = {} if with_info else None
    try:
        rows, uninspected = procnet.read_rows(protos, with_pids, pids=None if pid is None else [pid], process=match,
                                              infos=infos)
    except OSError as exc:
        raise from_oserror(f"read {exc.filename or procnet.PROC + '/net'}", exc) from None
    # An empty map with TCP rows that carry tcp_info in a netlink dump means the /proc path read
    # them: no tcp_info there (None: the command asks netlink itself). TIME_WAIT and request
    # sockets carry none either way, so a table of only those keeps its (empty) map: no second dump.
    if infos is not None and not infos and any(r[PROTO] in ("tcp", "tcp6") and r[STATE] not in _NO_INFO
                                                for r in rows):
        infos = None
    warnings = []
    if "unix" in protos:
        ambiguous = 0
        for r in reversed(rows):  # the unix rows come last: no pass over 20,000 TCP rows
            if r[PROTO] != "unix":
                break
            ambiguous += sockview.is_ambiguous(r)
        if ambiguous:
            warnings.append(f"{ambiguous} unix socket rows could not be read unambiguously (shown as 'unix?', "
                            f"JSON \"ambiguous\": true): /proc/net/unix prints socket names as they are, so a "
                            f"name holding a newline can cut its line short or forge another, and sock_diag "
                            f"netlink, which reads names exactly, is not available here")
    return Snapshot(rows, warnings, uninspected=uninspected, tcp_info=infos)


def _collect_psutil(protos, with_pids: bool, with_uids: bool = False) -> Snapshot:
    ps = _psutil()
    kind = psutil_kind(protos)
    names = ProcessNames() if with_pids else (lambda pid: None)
    warnings = []
    try:
        rows = [_conn_row(conn, conn.pid, names) for conn in ps.net_connections(kind=kind)]
    except ps.AccessDenied:
        rows, warning = _per_process_rows(ps, kind, names)
        warnings.append(warning)
    rows = merge_owners(r for r in rows if r[PROTO] in protos)
    if with_uids:  # psutil has no socket uid: the first owner's
        uids: dict = {}
        rows = [r[:UID] + (uids[r[PID]] if r[PID] in uids else uids.setdefault(r[PID], user_of(r[PID])),)
                if r[PID] else r for r in rows]
    return Snapshot(sockview.sort_rows(rows, "local"), warnings)  # psutil's order is arbitrary


def _per_process_rows(ps, kind: str, names) -> tuple[list[tuple], str]:
    """The fallback when the system-wide table is refused (macOS without root): the sockets of
    every process this user may inspect. Raises PermissionFailure when that lists nothing."""
    rows, inspected, denied = [], 0, 0
    for proc in ps.process_iter():
        connections = getattr(proc, "net_connections", None) or proc.connections  # psutil < 6
        try:
            conns = connections(kind=kind)
        except ps.AccessDenied:
            denied += 1
            continue
        except ps.NoSuchProcess:  # gone meanwhile, or a zombie (no sockets left)
            continue
        inspected += 1
        rows += [_conn_row(conn, proc.pid, names) for conn in conns]
    hint = socket_table_denied_hint()
    if not rows:
        raise PermissionFailure(f"cannot list sockets: the system socket table is not readable (access denied) "
                                f"and the {inspected} processes this user may inspect have none; {hint}")
    return rows, (f"the system socket table is not readable (access denied): showing only the sockets of "
                  f"the {inspected} processes this user may inspect; {denied} other processes and sockets "
                  f"without an owner (TIME_WAIT) are missing; {hint}")


