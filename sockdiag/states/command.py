"""The `states` command: the socket table with states and owning processes (I/O at the edge).

Row keys (also the JSON Lines keys, in this order): proto, family, local_address, local_port,
remote_address, remote_port, state, pid, process, owners, recv_q, send_q, timer, uid. The rows come from platform.socktable (/proc
on Linux, psutil elsewhere); filtering, sorting, the summary and the text layout are pure
functions in core.sockview.
"""

from __future__ import annotations

from sockdiag.core import sockview
from sockdiag.core.sockview import LPORT, PID, PROTO, STATE
from sockdiag.platform import socktable
from sockdiag.platform.socktable import collect

ROW_KEYS = sockview.ROW_KEYS
WATCH_KEYS = ("change",) + ROW_KEYS


# --- the command --------------------------------------------------------------------------------

_UNOWNED = ("TIME_WAIT", "SYN_RECV")  # owned by the kernel, not a process: no PID even for root


class _Query:
    """What the command line asks for: which rows, in which order, shown how."""

    def __init__(self, args):
        self.protos = sockview.protocols(args.tcp, args.udp, args.unix, args.family)
        self.filters = {"listening": args.listening, "states": args.state, "port": args.port,
                        "pid": args.pid, "process": args.process, "sport": args.sport, "dport": args.dport,
                        "src": args.src, "dst": args.dst, "uid": args.uid}
        self.layout = {"all_owners": args.owners, "timers": args.timers}
        self.info = args.info
        self.sort = args.sort
        self.summary = args.summary
        self.output = args.output
        # The summary needs no owners unless it filters by them: it skips the /proc/*/fd walk.
        self.with_pids = not args.summary or args.pid is not None or args.process is not None
        self.tcp_info = None  # inode -> TcpInfo when the last snapshot read it with the rows (-i)

    def snapshot(self, collect_rows=collect, with_pids: bool | None = None) -> tuple[list[tuple], list[str], frozenset]:
        """(selected rows, warnings, listening ports before filtering). `with_pids` overrides the
        query's choice for one reading."""
        with_pids = self.with_pids if with_pids is None else with_pids
        extra = {"with_uids": True} if self.filters["uid"] is not None else {}
        if self.info:
            extra["with_info"] = True
        snap = collect_rows(self.protos, with_pids, pid=self.filters["pid"], process=self.filters["process"],
                            **extra)
        rows, warnings = snap.rows, list(snap.warnings)
        self.tcp_info = getattr(snap, "tcp_info", None)
        listening = frozenset(r[LPORT] for r in rows if r[STATE] == "LISTEN") if self.summary else frozenset()
        rows = sockview.select(rows, **self.filters)
        if self.sort:
            rows = sockview.sort_rows(rows, self.sort)
        # Like netstat -p: say why some PIDs are '-', but only if a listed socket could have one.
        if snap.uninspected and with_pids and any(r[PID] is None and r[STATE] not in _UNOWNED for r in rows):
            warnings.append(f"{snap.uninspected} processes could not be inspected (their /proc/PID/fd is not "
                            f"readable), so their sockets show PID '-'; {socktable.socket_table_denied_hint()}")
        return rows, warnings, listening


def run(args, env) -> int:
    """`sockdiag states`: print the socket table (or its summary), once or every --watch SEC."""
    import gc

    query = _Query(args)
    if args.watch:
        return watch(query, env, args.watch)
    if query.output == "prometheus" and not query.summary:
        from sockdiag.core.errors import UsageError

        raise UsageError("-o prometheus goes with --summary (metrics, not a socket list)")
    # The table is ~100,000 tuples at 20,000 sockets and none of them is in a cycle: the cyclic
    # collector would only rescan them (about 15% of the CPU time). Back on when done.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _run_once(query, args, env)
    finally:
        if collecting:
            gc.enable()


def _run_once(query: _Query, args, env) -> int:
    from sockdiag.core.status import ExitStatus

    rows, warnings, listening = query.snapshot()
    for warning in warnings:
        env.warn(warning)
    if query.summary:
        rows = _with_close_wait_owners(query, rows)
        _write(env, _summary_lines(rows, listening, query.output, args.close_wait_threshold))
    elif query.info:
        infos = query.tcp_info if query.tcp_info is not None else _tcp_info(env)
        _write(env, _info_lines(rows, query.output, infos, layout=query.layout))
    else:
        _write(env, _table_lines(rows, query.output, layout=query.layout))
    return ExitStatus.OK


def _write(env, lines: list[str]) -> None:
    """All lines in one write: 20,000 rows cost one system call, not 20,000."""
    if lines:
        env.write("\n".join(lines) + "\n")


def _table_lines(rows: list[tuple], output: str, header: bool = True, layout=None) -> list[str]:
    if output == "text":
        return sockview.text_lines(rows, header, **(layout or {}))
    from sockdiag.core import render  # json, csv and typing: 6 ms of start-up text output skips

    if output == "json":
        return [render.json_line(sockview.row_dict(row), sockview.row_keys(row)) for row in rows]
    return render.csv_lines(map(sockview.row_csv, rows), ROW_KEYS, header)


INFO_KEYS = ("rtt_ms", "rttvar_ms", "rto_ms", "min_rtt_ms", "mss", "cwnd", "ssthresh", "unacked", "lost",
             "retrans", "total_retrans", "bytes_acked", "bytes_received", "bytes_sent", "bytes_retrans")


def _tcp_info(env) -> dict:
    """inode -> TcpInfo of every TCP socket (sock_diag INET_DIAG); {} where not available."""
    from sockdiag.platform import netlink

    try:
        return {s.inode: s.info for s in netlink.tcp_sockets(with_info=True) if s.inode and s.info is not None}
    except netlink.NetlinkUnavailable:
        env.warn("-i: TCP internals are not available on this system (they come from Linux sock_diag)")
        return {}


def _info_json(info) -> dict | None:
    if info is None:
        return None
    return dict(zip(INFO_KEYS, (info.rtt_ms, info.rttvar_ms, info.rto_ms, info.min_rtt_ms, info.snd_mss,
                                info.snd_cwnd, info.snd_ssthresh, info.unacked, info.lost, info.retrans,
                                info.total_retrans, info.bytes_acked, info.bytes_received, info.bytes_sent,
                                info.bytes_retrans)))


_INFO_LINE = "        rtt:%s/%s ms cwnd:%s ssthresh:%s retrans:%s/%s bytes_acked:%s bytes_received:%s"


def _info_text(info) -> str:
    """The ss -i style line under a socket: rtt:avg/var cwnd ssthresh retrans bytes ('-' for a
    value the kernel did not send). One %-format per line: 20,000 of them with states -ti."""
    rtt, rttvar, cwnd, ssthresh = info.rtt_ms, info.rttvar_ms, info.snd_cwnd, info.snd_ssthresh
    retrans, total, acked, received = info.retrans, info.total_retrans, info.bytes_acked, info.bytes_received
    return _INFO_LINE % ("-" if rtt is None else f"{rtt:g}", "-" if rttvar is None else f"{rttvar:g}",
                         "-" if cwnd is None else cwnd, "-" if ssthresh is None else ssthresh,
                         "-" if retrans is None else retrans, "-" if total is None else total,
                         "-" if acked is None else acked, "-" if received is None else received)


def _info_lines(rows: list[tuple], output: str, infos: dict, layout=None) -> list[str]:
    """states -i: each TCP row with its tcp_info (a line under it, or JSON "tcp_info")."""
    from sockdiag.core.sockview import INODE

    if output == "text":
        lines = sockview.text_lines(rows, True, **(layout or {}))
        out = lines[:1]
        for row, line in zip(rows, lines[1:]):
            out.append(line)
            info = infos.get(row[INODE]) if row[PROTO].startswith("tcp") and row[STATE] != "LISTEN" else None
            if info is not None:
                out.append(_info_text(info))
        return out
    from sockdiag.core import render

    keys = ROW_KEYS + ("tcp_info",)
    if output == "json":
        return [render.json_line(dict(sockview.row_dict(row), tcp_info=_info_json(infos.get(row[INODE]))),
                                 sockview.row_keys(row, keys)) for row in rows]
    flat = []
    for row in rows:
        d = sockview.row_csv(row)
        info = infos.get(row[INODE])
        d["tcp_info"] = None if info is None else _info_text(info).strip()
        flat.append(d)
    return render.csv_lines(flat, keys, True)


def _with_close_wait_owners(query, rows: list[tuple]) -> list[tuple]:
    """The summary reads no owners (the /proc/*/fd walk is most of its time), but CLOSE_WAIT
    sockets are diagnosed per process: read them again with owners only when there are some."""
    if query.with_pids or not any(r[STATE] == "CLOSE_WAIT" for r in rows):
        return rows
    return query.snapshot(with_pids=True)[0]


def _summary_lines(rows: list[tuple], listening: frozenset, output: str, close_wait_threshold: int = 10) -> list[str]:
    from sockdiag.core import leaks
    from sockdiag.platform.linux import read_sysctl

    summary = sockview.summarize(rows, listening)
    port_range = read_sysctl("net/ipv4/ip_local_port_range")
    if output == "prometheus":
        from sockdiag.core import prometheus

        return prometheus.socket_exposition(rows, port_range=port_range, summary=summary,
                                            listening=listening).splitlines()
    found = leaks.find_leaks(rows, port_range=port_range, tcp_tw_reuse=read_sysctl("net/ipv4/tcp_tw_reuse"),
                             summary=summary, listening=listening, close_wait_threshold=close_wait_threshold)
    if output == "text":
        return sockview.summary_text(summary) + [""] + leaks.leak_lines(found, with_time_wait=False)
    from sockdiag.core import render

    lines = list(render.render(summary, [(k, k) for k in sockview.SUMMARY_KEYS], output))
    if output == "json":  # sections close_wait and outbound: the diagnosis, keys core.leaks.LEAK_KEYS
        lines += [render.json_line(row, leaks.LEAK_KEYS) for row in leaks.leak_rows(found)
                  if row["section"] != "time_wait"]  # the port section above has those already
    return lines


# --- --watch ------------------------------------------------------------------------------------

_CLEAR = "\x1b[H\x1b[2J"  # cursor home, erase screen: what watch(1) does between frames


def watch(query: _Query, env, interval: float, *, collect_rows=collect, sleep=None, frames: int | None = None) -> int:
    """Redraw every `interval` seconds (env.clock), marking appeared (+) and disappeared (-)
    sockets since the previous frame; Ctrl-C ends with status 0. `sleep` and `frames` let tests
    run frames without real waiting. JSON/CSV print the first frame whole, then only changes."""
    import time

    from sockdiag.core.status import ExitStatus

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
        return _frame_title(env, title, first) + sockview.marked_text_lines(frame, **query.layout)
    if first:
        stream = [(None, row) for row in rows]
    else:
        stream = [("+", row) for row in appeared] + [("-", row) for row in gone]
    from sockdiag.core import render

    convert = sockview.row_dict if query.output == "json" else sockview.row_csv
    dicts = [{"change": mark, **convert(row)} for mark, row in stream]
    if query.output == "json":
        return [render.json_line(d, sockview.row_keys(row, WATCH_KEYS)) for d, (_, row) in zip(dicts, stream)]
    return render.csv_lines(dicts, WATCH_KEYS, header=first)


def _frame_title(env, title: str, first: bool) -> list[str]:
    """A terminal gets its screen cleared before each frame; a pipe gets frames a blank line apart."""
    if env.stdout_isatty:
        return [_CLEAR + title]
    return [title] if first else ["", title]
