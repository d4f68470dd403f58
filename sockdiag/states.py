"""The `states` command: the socket table with states and owning processes (I/O at the edge).

Also the psutil row builder shared with bindcheck: socket_rows(kind) -> dicts with ROW_KEYS.
Row keys (also the JSON Lines keys, in this order): proto, family, local_address, local_port,
remote_address, remote_port, state, pid, process.

Two sources give the same rows: on Linux sockdiag.procnet reads /proc itself (no psutil import,
about twice as fast at 20,000 sockets); elsewhere psutil (platform.socket_table_source decides).
Filtering, sorting, the summary and the text layout are pure functions in sockdiag.sockview.
"""

from __future__ import annotations

import socket

from sockdiag import sockview
from sockdiag.sockview import LPORT, PID, PROTO, STATE

ROW_KEYS = sockview.ROW_KEYS
WATCH_KEYS = ("change",) + ROW_KEYS

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
    # `sockdiag.states.psutil` keeps working (monkeypatch.setattr("sockdiag.states.psutil...")).
    if name == "psutil":
        return _psutil()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- rows from psutil (shared with bindcheck) ---------------------------------------------------

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


def _conn_row(conn, pid: int | None, names) -> tuple:
    """One psutil connection tuple -> a row tuple (ROW_KEYS order). TIME_WAIT has no PID: None."""
    local_ip, local_port = _addr(conn.laddr)
    remote_ip, remote_port = _addr(conn.raddr)
    pid = pid or None
    status = conn.status if conn.status and conn.status != _psutil().CONN_NONE else None
    return (_proto(conn.family, conn.type), _FAMILIES.get(conn.family, str(conn.family)), local_ip, local_port,
            remote_ip, remote_port, status, pid, names(pid))


def row_from_conn(conn, names: ProcessNames) -> dict:
    """One psutil connection tuple -> a row dict with ROW_KEYS. TIME_WAIT has no PID: None."""
    return dict(zip(ROW_KEYS, _conn_row(conn, conn.pid, names)))


def socket_rows(kind: str = "inet") -> list[dict]:
    """All sockets of psutil kind `kind` ('inet', 'tcp', 'udp', 'unix', 'all', ...) as rows, read
    the way `states` reads them: /proc on Linux (no psutil import), psutil elsewhere.

    On the psutil path it may raise psutil.AccessDenied (macOS without root); callers decide how
    to fall back (`states` lists per-process sockets instead, see _collect_psutil).
    """
    from sockdiag import platform

    if platform.socket_table_source() == "procfs":
        protos = PSUTIL_KINDS[kind]
        return [dict(zip(ROW_KEYS, row)) for row in _collect_procfs(protos, True).rows if row[PROTO] in protos]
    names = ProcessNames()
    return [row_from_conn(conn, names) for conn in _psutil().net_connections(kind=kind)]


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
    not be inspected (Linux without root: their sockets have no PID)."""

    def __init__(self, rows: list[tuple], warnings: list[str] | None = None, uninspected: int = 0):
        self.rows, self.warnings, self.uninspected = rows, warnings or [], uninspected


def collect(protos, with_pids: bool = True, source: str | None = None, *, pid: int | None = None,
            process: str | None = None) -> Snapshot:
    """The sockets of the protocols in `protos`. Without `with_pids`, pid and process may be
    None (the Linux path then skips the /proc/<pid>/fd walk, most of its time). `pid` and
    `process` say that only the sockets of that PID / of processes of that name need owners
    (the Linux path then walks only their descriptors); the caller still filters."""
    from sockdiag import platform

    source = source or platform.socket_table_source()
    if source == "procfs":
        return _collect_procfs(protos, with_pids, pid, process)
    return _collect_psutil(protos, with_pids)


def _collect_procfs(protos, with_pids: bool, pid: int | None = None, process: str | None = None) -> Snapshot:
    from sockdiag import procnet
    from sockdiag.errors import from_oserror

    match = sockview.process_matcher(process) if process is not None else None
    try:
        rows, uninspected = procnet.read_rows(protos, with_pids, pids=None if pid is None else [pid], process=match)
    except OSError as exc:
        raise from_oserror(f"read {exc.filename or procnet.PROC + '/net'}", exc) from None
    return Snapshot(rows, uninspected=uninspected)


def _collect_psutil(protos, with_pids: bool) -> Snapshot:
    ps = _psutil()
    kind = psutil_kind(protos)
    names = ProcessNames() if with_pids else (lambda pid: None)
    warnings = []
    try:
        rows = [_conn_row(conn, conn.pid, names) for conn in ps.net_connections(kind=kind)]
    except ps.AccessDenied:
        rows, warning = _per_process_rows(ps, kind, names)
        warnings.append(warning)
    rows = [r for r in rows if r[PROTO] in protos]
    return Snapshot(sockview.sort_rows(rows, "local"), warnings)  # psutil's order is arbitrary


def _per_process_rows(ps, kind: str, names) -> tuple[list[tuple], str]:
    """The fallback when the system-wide table is refused (macOS without root): the sockets of
    every process this user may inspect. Raises PermissionFailure when that lists nothing."""
    from sockdiag import platform
    from sockdiag.errors import PermissionFailure

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
    hint = platform.socket_table_denied_hint()
    if not rows:
        raise PermissionFailure(f"cannot list sockets: the system socket table is not readable (access denied) "
                                f"and the {inspected} processes this user may inspect have none; {hint}")
    return rows, (f"the system socket table is not readable (access denied): showing only the sockets of "
                  f"the {inspected} processes this user may inspect; {denied} other processes and sockets "
                  f"without an owner (TIME_WAIT) are missing; {hint}")


# --- the command --------------------------------------------------------------------------------

_UNOWNED = ("TIME_WAIT", "SYN_RECV")  # owned by the kernel, not a process: no PID even for root


class _Query:
    """What the command line asks for: which rows, in which order, shown how."""

    def __init__(self, args):
        self.protos = sockview.protocols(args.tcp, args.udp, args.unix, args.family)
        self.filters = {"listening": args.listening, "states": args.state, "port": args.port,
                        "pid": args.pid, "process": args.process}
        self.sort = args.sort
        self.summary = args.summary
        self.output = args.output
        # The summary needs no owners unless it filters by them: it skips the /proc/*/fd walk.
        self.with_pids = not args.summary or args.pid is not None or args.process is not None

    def snapshot(self, collect_rows=collect) -> tuple[list[tuple], list[str], frozenset]:
        """(selected rows, warnings, listening ports before filtering)."""
        snap = collect_rows(self.protos, self.with_pids, pid=self.filters["pid"], process=self.filters["process"])
        rows, warnings = snap.rows, list(snap.warnings)
        listening = frozenset(r[LPORT] for r in rows if r[STATE] == "LISTEN") if self.summary else frozenset()
        rows = sockview.select(rows, **self.filters)
        if self.sort:
            rows = sockview.sort_rows(rows, self.sort)
        # Like netstat -p: say why some PIDs are '-', but only if a listed socket could have one.
        if snap.uninspected and self.with_pids and any(r[PID] is None and r[STATE] not in _UNOWNED for r in rows):
            from sockdiag import platform

            warnings.append(f"{snap.uninspected} processes could not be inspected (their /proc/PID/fd is not "
                            f"readable), so their sockets show PID '-'; {platform.socket_table_denied_hint()}")
        return rows, warnings, listening


def run(args, env) -> int:
    """`sockdiag states`: print the socket table (or its summary), once or every --watch SEC."""
    from sockdiag.status import ExitStatus

    query = _Query(args)
    if args.watch:
        return watch(query, env, args.watch)
    rows, warnings, listening = query.snapshot()
    for warning in warnings:
        env.warn(warning)
    if query.summary:
        _write(env, _summary_lines(rows, listening, query.output))
    else:
        _write(env, _table_lines(rows, query.output))
    return ExitStatus.OK


def _write(env, lines: list[str]) -> None:
    """All lines in one write: 20,000 rows cost one system call, not 20,000."""
    if lines:
        env.write("\n".join(lines) + "\n")


def _table_lines(rows: list[tuple], output: str, header: bool = True) -> list[str]:
    if output == "text":
        return sockview.text_lines(rows, header)
    from sockdiag import render  # json, csv and typing: 6 ms of start-up text output skips

    dicts = [dict(zip(ROW_KEYS, row)) for row in rows]
    if output == "json":
        return [render.json_line(d, ROW_KEYS) for d in dicts]
    return render.csv_lines(dicts, ROW_KEYS, header)


def _summary_lines(rows: list[tuple], listening: frozenset, output: str) -> list[str]:
    summary = sockview.summarize(rows, listening)
    if output == "text":
        return sockview.summary_text(summary)
    from sockdiag import render

    return list(render.render(summary, [(k, k) for k in sockview.SUMMARY_KEYS], output))


# --- --watch ------------------------------------------------------------------------------------

_CLEAR = "\x1b[H\x1b[2J"  # cursor home, erase screen: what watch(1) does between frames


def watch(query: _Query, env, interval: float, *, collect_rows=collect, sleep=None, frames: int | None = None) -> int:
    """Redraw every `interval` seconds (env.clock), marking appeared (+) and disappeared (-)
    sockets since the previous frame; Ctrl-C ends with status 0. `sleep` and `frames` let tests
    run frames without real waiting. JSON/CSV print the first frame whole, then only changes."""
    import time

    from sockdiag.status import ExitStatus

    sleep = sleep or time.sleep
    start = due = env.clock()
    previous: list[tuple] | None = None
    warned: set[str] = set()
    count = 0
    try:
        while True:
            rows, warnings, listening = query.snapshot(collect_rows)
            for warning in warnings:
                if warning not in warned:
                    warned.add(warning)
                    env.warn(warning)
            _write(env, _watch_frame(query, env, rows, listening, previous, env.clock() - start))
            env.flush()
            previous, count = rows, count + 1
            if frames is not None and count >= frames:
                break
            now = env.clock()
            due = max(due + interval, now)  # a frame that overran starts the cadence again
            sleep(due - now)
    except KeyboardInterrupt:
        pass
    return ExitStatus.OK


def _watch_frame(query: _Query, env, rows, listening, previous, elapsed: float) -> list[str]:
    text, first = query.output == "text", previous is None
    if query.summary:
        lines = _summary_lines(rows, listening, query.output)
        if not text:
            return lines
        return _frame_title(env, f"[{elapsed:.1f}s] {len(rows)} sockets", first) + lines
    appeared, gone = ([], []) if first else sockview.changes(previous, rows)
    if text:
        title = f"[{elapsed:.1f}s] {len(rows)} sockets"
        if not first:
            title += f", {len(appeared)} appeared (+), {len(gone)} disappeared (-)"
        frame = sockview.marked(rows, appeared, gone)
        return _frame_title(env, title, first) + sockview.marked_text_lines(frame)
    if first:
        stream = [(None, row) for row in rows]
    else:
        stream = [("+", row) for row in appeared] + [("-", row) for row in gone]
    from sockdiag import render

    dicts = [dict(zip(WATCH_KEYS, (mark,) + row)) for mark, row in stream]
    if query.output == "json":
        return [render.json_line(d, WATCH_KEYS) for d in dicts]
    return render.csv_lines(dicts, WATCH_KEYS, header=first)


def _frame_title(env, title: str, first: bool) -> list[str]:
    """A terminal gets its screen cleared before each frame; a pipe gets frames a blank line apart."""
    if env.stdout_isatty:
        return [_CLEAR + title]
    return [title] if first else ["", title]
