"""bindcheck: why can't I bind this port? Real bind attempts, the sockets holding the port, the
TIME_WAIT timers, and a verdict in plain words.

This module does the I/O (resolving -b, the throw-away binds, reading the socket table and the
Linux TIME_WAIT timers); the reasoning and the reports are pure, in core.bindverdict.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import Any

from sockdiag import platform
from sockdiag.core import render
from sockdiag.core.bindverdict import (CONTEXT_SYSCTLS, JSON_KEYS, _result, csv_report, decide,
                                  holder_pids, linux_context, parse_proc_net_tcp, row_timer, select_holders, text_report,
                                  time_wait_timers)
from sockdiag.core.errors import UsageError
from sockdiag.core.portspec import format_hostport
from sockdiag.core.status import ExitStatus
from sockdiag.net.binds import resolve_target, run_attempts

# --- I/O ----------------------------------------------------------------------------------------
# The throw-away binds (resolve_target, try_bind, run_attempts) live in net.binds, shared with
# `wait --bindable`.


def _read_rows(udp: bool) -> list[dict] | None:
    """The socket table rows (platform.socktable, as `states` reads them), or None when the OS refuses to show it."""
    from sockdiag.platform import socktable

    try:
        return socktable.socket_rows("udp" if udp else "tcp")
    except socktable.psutil.AccessDenied:  # evaluated only on an exception: Linux never imports psutil
        return None


def _run_connect(args, env) -> int:
    """bindcheck --connect HOST:PORT: why connect() to it may fail with EADDRNOTAVAIL."""
    from sockdiag.core import leaks
    from sockdiag.core.portspec import PortSpecError, parse_hostport
    from sockdiag.net.resolve import resolve

    if args.port is not None or args.udp or args.bind is not None:
        raise UsageError("--connect HOST:PORT goes alone (no PORT, -u or -b)")
    try:
        host, port = parse_hostport(args.connect, platform.service_port)
    except PortSpecError as exc:
        raise UsageError(f"--connect: {exc.message}") from None
    _af, sockaddr = resolve(host, port, None, socket.SOCK_STREAM)[0]
    rows = _read_rows(False)
    if rows is None:
        env.warn("the socket table is not readable (access denied): the counts are incomplete")
        rows = []
    from sockdiag.core.sockview import ROW_KEYS as KEYS

    tuples = [tuple(row.get(key) for key in KEYS) for row in rows]
    explanation = leaks.explain_connect(tuples, sockaddr[0], port,
                                        platform.read_sysctl("net/ipv4/ip_local_port_range"),
                                        platform.read_sysctl("net/ipv4/tcp_tw_reuse"))
    if args.output == "json":
        env.print(render.json_line(leaks.connect_row(explanation), leaks.CONNECT_KEYS))
    elif args.output == "csv":
        for line in render.csv_lines([leaks.connect_row(explanation)], leaks.CONNECT_KEYS):
            env.print(line)
    else:
        for line in leaks.connect_lines(explanation):
            env.print(line)
    return ExitStatus.FAILURE if explanation.verdict == "exhausted" else ExitStatus.OK


def _read_timers() -> dict[tuple, float]:
    entries = []
    for text in platform.proc_net_tcp_texts():
        entries += parse_proc_net_tcp(text, platform.host_byteorder())
    return time_wait_timers(entries, platform.clock_ticks_per_second())


def _last_expiry(holders: Sequence[Mapping[str, Any]], timers: Mapping[tuple, float], state: str, *,
                 every: bool) -> float | None:
    """Seconds until the last holder in `state` expires, from the kernel's timers. With `every`, None
    unless each one shows its timer (a FIN_WAIT2 kept beyond 60 s is a full socket without one)."""
    times = [row_timer(row, timers) for row in holders if row.get("state") == state]
    known = [t for t in times if t is not None]
    if not known or (every and len(known) < len(times)):
        return None
    return round(max(known), 1)


def _public_row(row: Mapping[str, Any]) -> dict:
    from sockdiag.core.sockview import ROW_KEYS, owners_json, timer_json

    public = {key: row.get(key) for key in ROW_KEYS}
    public["owners"] = owners_json(row.get("owners"))
    public["timer"] = timer_json(row.get("timer"))
    return public


def _parents(holders: Sequence[Mapping[str, Any]], depth: int = 32) -> dict[int, int | None]:
    """pid -> parent pid for every process holding the port and its ancestors (a few /proc reads),
    so the advice can name the master of a forked server."""
    from sockdiag.platform import socktable

    parents: dict[int, int | None] = {}
    for pid, _ in holder_pids(holders):
        for _ in range(depth):
            if pid in parents or pid is None or pid <= 1:
                break
            parent = socktable.parent_pid(pid)
            parents[pid] = parent
            pid = parent
    return parents


def run(args, env) -> int:
    """`sockdiag bindcheck PORT [-b ADDR] [-u]`: exit 0 when a plain bind succeeds, 1 when not
    (the `permission` verdict included: the check ran, its answer is "not bindable"), and 4 only
    when the check itself is not permitted (not even a socket may be created)."""
    if args.connect is not None:
        return _run_connect(args, env)
    if args.port is None:
        raise UsageError("give the PORT to check, or --connect HOST:PORT")
    port, udp = args.port, bool(args.udp)
    target = resolve_target(args.bind, udp)
    attempts = run_attempts(target, port, udp, platform.bind_attempt_options())
    for a in attempts:
        env.info(f"bind {format_hostport(target.address, port)} {a['option']}: {a['errno'] or _result(a)}")
    rows = _read_rows(udp)
    if rows is None:
        env.warn("the socket table is not readable (access denied): holders unknown; run as root to see them")
    holders, others = select_holders(rows or [], port, target)
    timers = {} if udp else _read_timers()
    expires_s = _last_expiry(holders, timers, "TIME_WAIT", every=False)
    diagnosis = decide(attempts, None if rows is None else holders, port=port, address=target.address,
                       expires_s=expires_s, udp=udp, rules=platform.bind_rules(),
                       fin_wait2_expires_s=_last_expiry(holders, timers, "FIN_WAIT2", every=True),
                       parents=_parents(holders) if len(holder_pids(holders)) > 1 else None)
    report = {"port": port, "address": target.address, "proto": "udp" if udp else "tcp",
              "verdict": diagnosis.verdict, "attempts": attempts,
              "holders": None if rows is None else [_public_row(row) for row in holders],
              "time_wait": None if rows is None else sum(1 for row in holders if row.get("state") == "TIME_WAIT"),
              "time_wait_expires_s": expires_s, "advice": diagnosis.advice}
    if args.output == "json":
        env.print(render.json_line(report, JSON_KEYS))
    elif args.output == "csv":
        for line in csv_report(report):
            env.print(line)
    else:
        sysctl = {path: platform.read_sysctl(path) for path in CONTEXT_SYSCTLS}
        note = platform.reuseaddr_note() if "SO_EXCLUSIVEADDRUSE" in platform.bind_attempt_options() else None
        for line in text_report(report, diagnosis, target=target, context=linux_context(port, udp, sysctl),
                                others=len(others), note=note, timers=timers):
            env.print(line)
    return ExitStatus.OK if attempts[0]["ok"] else ExitStatus.FAILURE
