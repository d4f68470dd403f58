"""PURE (bindcheck's reasoning): the /proc/net/tcp parser, which sockets are in the way, the
verdict with its advice, and the text/CSV reports. Values in, values out: no sockets, no files;
per-OS rules arrive as a BindRules value (platform.bind_rules(system) builds one), so every OS
is testable here.
"""

from __future__ import annotations

import ipaddress
import math
import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from sockdiag.core import render
from sockdiag.core.portspec import PortSpecError, format_hostport, parse_ports

# "time-wait only" covers every orphaned closing state, FIN_WAIT2 included: Linux keeps an orphaned
# FIN_WAIT2 connection as a time-wait socket (tcp_time_wait(sk, TCP_FIN_WAIT2, tcp_fin_timeout); a
# full socket first when tcp_fin_timeout exceeds 60 s), bound by the same SO_REUSEADDR rule and gone
# by itself. The key stays for scripts; the reason names the states and their waits.
VERDICTS = ("free", "in use", "time-wait only", "reuseport group", "permission", "address not available",
            "error")
JSON_KEYS = ("port", "address", "proto", "verdict", "attempts", "holders", "time_wait", "time_wait_expires_s",
             "advice")
# States a connection reaches after its program closed it (orphans, no PID): like TIME_WAIT, they
# block a plain bind, and a SO_REUSEADDR bind passes them on the same terms.
CLOSING_STATES = frozenset({"TIME_WAIT", "FIN_WAIT1", "FIN_WAIT2", "CLOSING", "LAST_ACK"})
# States whose `tr 3` timer /proc/net/tcp shows: TIME_WAIT, and FIN_WAIT2 held as a time-wait socket.
_TIMED_STATES = frozenset({"TIME_WAIT", "FIN_WAIT2"})
# /proc/net/tcp `st` codes (include/net/tcp_states.h), named as psutil names them.
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
              7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV"}
_TIMER_TIME_WAIT = 3  # the `tr` column: 1 retransmit, 2 keepalive, 3 TIME_WAIT, 4 zero-window probe


class Target(NamedTuple):
    """The address bindcheck binds: `address` as bind() takes it, and whether IPv4 is covered too."""

    address: str
    family: int
    dualstack: bool = False
    scope_id: int = 0
    label: str = ""


class BindRules(NamedTuple):
    """The OS facts a verdict depends on (platform.bind_rules() gives the running system's)."""

    time_wait_seconds: int | None  # how long TIME_WAIT lasts by default; None: unknown
    reuseaddr_passes_time_wait: str | None  # "own", "any", or None (Windows: no remedy)
    unprivileged_start: int | None  # lowest port bindable without privilege; None: none privileged
    unprivileged_setting: str | None  # the setting that moves that limit (Linux sysctl), if any
    privilege_remedy: str  # how a server gets the right to bind a privileged port
    reserved_ports_hint: str | None  # Windows: the command listing excluded port ranges
    fin_wait2_seconds: int | None = None  # longest an orphaned FIN_WAIT2 connection lives; None: unknown
    fin_wait2_setting: str | None = None  # the setting that says so (Linux: net.ipv4.tcp_fin_timeout)


class Diagnosis(NamedTuple):
    verdict: str
    reason: str
    advice: str


class ProcEntry(NamedTuple):
    """One socket line of /proc/net/tcp or tcp6."""

    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    state: str
    timer: int
    when_ticks: int


# --- pure: /proc/net/tcp ------------------------------------------------------------------------

def _hex_address(text: str, byteorder: str) -> str:
    """'0100007F' -> '127.0.0.1'; 32 hex digits -> IPv6. The kernel prints 32-bit words in host order."""
    raw = bytes.fromhex(text)
    if len(raw) not in (4, 16):
        raise ValueError(text)
    if byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw))


def _hex_endpoint(text: str, byteorder: str) -> tuple[str, int]:
    address, _, port = text.partition(":")
    return _hex_address(address, byteorder), int(port, 16)


def parse_proc_net_tcp(text: str, byteorder: str = "little") -> list[ProcEntry]:
    """The socket lines of /proc/net/tcp or tcp6 (header and malformed lines are skipped).

    Columns: sl local rem st tx:rx tr:tm->when retrnsmt uid timeout inode ...; `tm->when` is the
    time left on the active timer in USER_HZ ticks (jiffies_delta_to_clock_t), so a TIME_WAIT
    socket (tr 3) has when/USER_HZ seconds left.
    """
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or not fields[0].endswith(":") or not fields[0][:-1].isdigit():
            continue
        try:
            local, local_port = _hex_endpoint(fields[1], byteorder)
            remote, remote_port = _hex_endpoint(fields[2], byteorder)
            state = TCP_STATES.get(int(fields[3], 16), fields[3])
            timer_text, _, when_text = fields[5].partition(":")
            timer, when = int(timer_text, 16), int(when_text, 16)
        except ValueError:
            continue
        entries.append(ProcEntry(local, local_port, remote, remote_port, state, timer, when))
    return entries


def _ip_key(address: str | None):
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _conn_key(local, local_port, remote, remote_port) -> tuple:
    return (_ip_key(local), local_port, _ip_key(remote), remote_port)


def time_wait_timers(entries: Iterable[ProcEntry], ticks_per_second: int = 100) -> dict[tuple, float]:
    """Seconds left per TIME_WAIT connection, keyed by (local ip, port, remote ip, port); also per
    orphaned FIN_WAIT2 connection that the kernel holds as a time-wait socket (same timer)."""
    return {_conn_key(e.local_address, e.local_port, e.remote_address, e.remote_port):
            e.when_ticks / ticks_per_second
            for e in entries if e.state in _TIMED_STATES and e.timer == _TIMER_TIME_WAIT}


def row_timer(row: Mapping[str, Any], timers: Mapping[tuple, float]) -> float | None:
    """The seconds left for a TIME_WAIT (or timed FIN_WAIT2) holder row, when the kernel told us."""
    if row.get("state") not in _TIMED_STATES:
        return None
    key = _conn_key(row.get("local_address"), row.get("local_port"), row.get("remote_address"),
                    row.get("remote_port"))
    return timers.get(key)


# --- pure: which sockets are in the way ---------------------------------------------------------

def in_the_way(row: Mapping[str, Any], target: Target) -> bool:
    """Whether a socket on the same port conflicts with binding `target`: the same address or a
    wildcard on either side, within one IP version; a dual-stack '::' meets every socket, and an
    IPv6 '::' socket may be dual-stack, so it meets every IPv4 target."""
    mine, theirs = _ip_key(target.address), _ip_key(row.get("local_address"))
    if target.dualstack or not isinstance(mine, (ipaddress.IPv4Address, ipaddress.IPv6Address)) \
            or not isinstance(theirs, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return True  # an address we cannot compare: better listed than hidden
    if mine.version == 4 and theirs == ipaddress.IPv6Address("::"):
        return True
    if mine.version != theirs.version:
        return False
    return mine.is_unspecified or theirs.is_unspecified or mine == theirs


def select_holders(rows: Iterable[Mapping[str, Any]], port: int, target: Target) -> tuple[list, list]:
    """The rows using `port`: (in the way of `target`, elsewhere on other addresses)."""
    same_port = [row for row in rows if row.get("local_port") == port]
    holders = [row for row in same_port if in_the_way(row, target)]
    others = [row for row in same_port if not in_the_way(row, target)]
    return holders, others


def state_name(row: Mapping[str, Any]) -> str:
    """A row's state, in `states`' vocabulary: a socket bound but neither listening nor connected
    is UNCONN (a row from an older reader may have no state)."""
    return row.get("state") or "UNCONN"


def row_owners(row: Mapping[str, Any]) -> list[tuple]:
    """Every (pid, process) holding the socket: its `owners`, else its pid (rows without owners)."""
    owners = row.get("owners")
    if owners:
        return [(o[0], o[1]) if isinstance(o, (tuple, list)) else (o["pid"], o.get("process")) for o in owners]
    return [(row["pid"], row.get("process"))] if row.get("pid") else []


def holder_pids(rows: Iterable[Mapping[str, Any]]) -> list[tuple]:
    """The distinct (pid, process) holding any of `rows`, in order of appearance."""
    seen: dict[int, tuple] = {}
    for row in rows:
        for pid, name in row_owners(row):
            seen.setdefault(pid, (pid, name))
    return list(seen.values())


def ancestors(pid: int, parents: Mapping[int, int | None]) -> list[int]:
    """pid's parent, grandparent, ... as far as `parents` (pid -> ppid) knows them."""
    chain, seen = [], {pid}
    while (pid := parents.get(pid)) and pid not in seen:
        chain.append(pid)
        seen.add(pid)
    return chain


def master(owners: Sequence[tuple], parents: Mapping[int, int | None]) -> tuple | None:
    """The owner every other owner descends from (a prefork server's master, not a worker), or
    None when there is one owner or no such process among them."""
    if len(owners) < 2:
        return None
    pids = {pid for pid, _ in owners}
    for pid, name in owners:
        if all(other == pid or pid in ancestors(other, parents) for other in pids):
            return pid, name
    return None


def count_states(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """{state: count}, most frequent first."""
    return dict(Counter(state_name(row) for row in rows).most_common())


def _is_closing(row: Mapping[str, Any]) -> bool:
    return row.get("state") in CLOSING_STATES and not row.get("pid")


# --- pure: the verdict --------------------------------------------------------------------------

def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _pid_list(owners: Sequence[tuple]) -> str:
    """'PID 7 (nginx)' or 'PIDs 7 (nginx), 8 (nginx), 9 (nginx)'."""
    named = ", ".join(f"{pid} ({name or '?'})" for pid, name in owners)
    return f"PID{'s' if len(owners) > 1 else ''} {named}"


def _owned(row: Mapping[str, Any]) -> str:
    """'a LISTEN socket of PID 7 (nginx) on 0.0.0.0:80' (every PID when processes share it), or
    who could not be seen."""
    kind = "connection" if row.get("remote_address") else "socket"
    state = state_name(row)
    text = f"{'an' if state[:1] in 'AEIOU' else 'a'} {state} {kind}"
    owners = row_owners(row)
    if owners:
        shared = " (shared: a forked server)" if len(owners) > 1 else ""
        return f"{text} of {_pid_list(owners)}{shared} on {_where(row)}"
    return (f"{text} on {_where(row)}, of a process not visible here (another user's: run as root to see it; "
            "or one outside this container)")


def _where(row: Mapping[str, Any]) -> str:
    local = format_hostport(row.get("local_address"), row.get("local_port"))
    if row.get("remote_address"):
        return f"{local} -> {format_hostport(row.get('remote_address'), row.get('remote_port'))}"
    return local


def _seconds(expires_s: float | None, rules: BindRules) -> str:
    if expires_s is not None:
        return f"~{max(1, math.ceil(expires_s))} s"
    default = rules.time_wait_seconds
    return f"up to {default} s" if default else "until they expire"


def decide(attempts: Sequence[Mapping[str, Any]], holders: Sequence[Mapping[str, Any]] | None, *, port: int,
           address: str, expires_s: float | None = None, udp: bool = False,
           rules: BindRules, fin_wait2_expires_s: float | None = None,
           parents: Mapping[int, int | None] | None = None) -> Diagnosis:
    """The verdict from what the real binds showed and who holds the port. Pure: `rules`
    (platform.bind_rules(system)) let tests emulate other OSes. `expires_s`: when the last
    TIME_WAIT holder expires; `fin_wait2_expires_s`: the last orphaned FIN_WAIT2 one (if known).
    `parents` (pid -> parent pid, for the holders and their ancestors) lets the advice name the
    process the other holders descend from: stopping a prefork server's worker does not help."""
    by_option = {a["option"]: a for a in attempts}
    plain = by_option["plain"]
    live = [row for row in holders or () if not _is_closing(row)]
    closing = [row for row in holders or () if _is_closing(row)]
    if plain["ok"]:
        reason = "a plain bind succeeds"
        if holders:
            reason += f" (the {_plural(len(holders), 'socket')} on the port do not block it here)"
        return Diagnosis("free", reason, "nothing to do: a server can bind it now")
    err = plain["errno"]
    if err == "EADDRNOTAVAIL":
        return Diagnosis("address not available", f"{address} is not an address of this host (EADDRNOTAVAIL)",
                         "bind one of this host's addresses, or leave out -b to check all interfaces")
    if err in ("EACCES", "EPERM") and not live:
        return _permission(port, err, rules)
    if err not in ("EADDRINUSE", "EACCES", "EPERM"):
        return Diagnosis("error", f"a plain bind fails: {err}",
                         "see the errno; bindcheck knows no common cause for it")
    if live:
        return _in_use(live, by_option, udp, rules, parents or {})
    if closing:
        return _time_wait(closing, by_option, expires_s, fin_wait2_expires_s, rules)
    if holders is None:
        reason = "the port is taken, but the socket table could not be read, so the holder is unknown"
        return Diagnosis("in use", reason, "run bindcheck as root to see who holds it")
    return Diagnosis("in use", "the port is taken, but no socket on it is visible: most likely a socket that "
                               "is bound without listening (psutil, ss and lsof cannot list those), or one "
                               "that closed just now",
                     f"run bindcheck again; if it stays, look for a program that binds port {port} "
                     "without listening (a server still starting, a client with a fixed source port)")


def _permission(port: int, err: str, rules: BindRules) -> Diagnosis:
    start, setting, hint = rules.unprivileged_start, rules.unprivileged_setting, rules.reserved_ports_hint
    if start is not None and port < start:
        where = f" ({setting} = {start})" if setting else ""
        reason = f"ports below {start} need privilege{where}, and this process lacks it ({err})"
        lower = f", lower {setting}" if setting else ""
        advice = f"{rules.privilege_remedy}{lower}, or use a port of {start} or above"
    elif hint:
        reason = (f"the system refuses port {port} ({err}): it lies in an excluded port range (Hyper-V, "
                  "WinNAT), or another socket holds it exclusively")
        advice = f"list the excluded ranges with '{hint}' and pick a port outside them"
    else:
        reason = f"the bind is refused ({err}) although port {port} is not privileged: a security policy " \
                 "(SELinux, AppArmor, a seccomp or cgroup BPF hook) forbids it"
        advice = "check the security policy that applies to this program, or pick another port"
    return Diagnosis("permission", reason, advice)


def _who(live: Sequence[Mapping[str, Any]], first: Mapping[str, Any], parents: Mapping[int, int | None]) -> str:
    """Whom to stop: the master when several processes hold the port and one is the ancestor of
    the rest (killing a worker only makes the master fork another), else every holder."""
    owners = holder_pids(live)
    if len(owners) < 2:
        return _pid_list(row_owners(first)) if row_owners(first) else "that process"
    top = master(owners, parents)
    if top is None:
        return f"all of {_pid_list(owners)}"
    others = ", ".join(str(pid) for pid, _ in owners if pid != top[0])
    return (f"PID {top[0]} ({top[1] or '?'}), the parent the other holders (PID{'s' if len(owners) > 2 else ''} "
            f"{others}) were forked from; stopping only those would not free the port")


def _in_use(live: Sequence[Mapping[str, Any]], by_option: Mapping[str, Mapping], udp: bool,
            rules: BindRules, parents: Mapping[int, int | None]) -> Diagnosis:
    order = sorted(live, key=lambda r: (r.get("state") != "LISTEN", not r.get("pid")))
    first = order[0]
    state = state_name(first)
    reason = _owned(first)
    if len(live) > 1:
        reason += f" (and {_plural(len(live) - 1, 'more socket')})"
    who = _who(live, first, parents)
    reuseport = by_option.get("SO_REUSEPORT", {})
    if reuseport.get("ok"):
        return Diagnosis("reuseport group", reason + ", set up with SO_REUSEPORT: a SO_REUSEPORT bind succeeds",
                         "to share the port, set SO_REUSEPORT on the new server too (the kernel allows it "
                         "only to the same user, and spreads new connections over the group); "
                         f"otherwise stop {who} or pick another port")
    if by_option.get("SO_REUSEADDR", {}).get("ok") and rules.reuseaddr_passes_time_wait:
        # Linux and BSD let a SO_REUSEADDR listener start beside connections (not listeners) whose
        # sockets had SO_REUSEADDR too: the old server's workers may keep serving meanwhile.
        return Diagnosis("in use", reason + "; a bind with SO_REUSEADDR succeeds now",
                         "set SO_REUSEADDR on the server socket before bind(), as 'sockdiag listen' does, and "
                         f"it can start beside that connection; or stop {who}")
    if state == "LISTEN":
        advice = f"stop {who} (an old instance of the server?), or pick another port"
    elif first.get("remote_address"):
        advice = f"stop {who} or wait until its connection closes, or pick another port"
    else:
        advice = f"stop {who}, or pick another port"
    if udp and any(a.get("ok") is None for a in by_option.values()):
        advice += ("; SO_REUSEADDR/SO_REUSEPORT binds were not tried: on UDP they would join the port "
                   "and could take datagrams meant for it")
    return Diagnosis("in use", reason, advice)


def _time_wait(closing: Sequence[Mapping[str, Any]], by_option: Mapping[str, Mapping], expires_s: float | None,
               fin_expires_s: float | None, rules: BindRules) -> Diagnosis:
    counts = count_states(closing)
    states = " or ".join(counts)  # for "a TIME_WAIT or FIN_WAIT2 socket"
    n_tw, n_fin = counts.pop("TIME_WAIT", 0), counts.pop("FIN_WAIT2", 0)
    wait = _wait(n_tw, n_fin, expires_s, fin_expires_s, rules)
    parts = []
    if n_tw:
        part = f"{_plural(n_tw, 'socket')} in TIME_WAIT"
        if expires_s is not None:
            part += f", {'the last ' if n_tw > 1 else ''}expiring in {_seconds(expires_s, rules)}"
        parts.append(part)
    if n_fin:
        parts.append(_fin_wait2(n_fin, fin_expires_s, rules))
    if counts:
        one = sum(counts.values()) == 1
        parts.append(", ".join(f"{_plural(n, 'socket')} in {state}" for state, n in counts.items())
                     + (" (closed by its program, its FIN not yet acknowledged by the peer)" if one
                        else " (closed by their programs, their FINs not yet acknowledged by the peers)"))
    reason = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + ", and " + parts[-1]
    reason += ", nothing live"
    passes = [name for name in ("SO_REUSEADDR", "SO_REUSEPORT") if by_option.get(name, {}).get("ok")]
    rule = rules.reuseaddr_passes_time_wait
    if rule is None:  # Windows: SO_REUSEADDR is no remedy there
        until = "" if wait.startswith("until") else " for them to expire"
        return Diagnosis("time-wait only", reason,
                         f"wait {wait}{until}; do not set SO_REUSEADDR to get past them: on this "
                         "system it would also let a server bind a port that is really in use")
    if "SO_REUSEADDR" in passes:
        return Diagnosis("time-wait only", reason + "; a bind with SO_REUSEADDR succeeds now",
                         "set SO_REUSEADDR on the server socket before bind(), as 'sockdiag listen' does, "
                         f"and it can bind now; or wait {wait}")
    if passes:
        return Diagnosis("time-wait only", reason + "; a bind with SO_REUSEPORT succeeds now (the old server had "
                                                    "set it), one with SO_REUSEADDR does not",
                         f"set SO_REUSEPORT as the old server did (same user), or wait {wait}; and make the "
                         "server set SO_REUSEADDR so later restarts do not hit this")
    reason += "; not even a SO_REUSEADDR bind passes them"
    if rule == "own":
        reason += (f" (the old server had not set SO_REUSEADDR: here it passes a {states} socket only if that "
                   "socket's own server had set it too)")
    return Diagnosis("time-wait only", reason,
                     f"wait {wait}, and make the server set SO_REUSEADDR so the next restart does not hit this")


def _fin_wait2(n: int, expires_s: float | None, rules: BindRules) -> str:
    """'1 socket in FIN_WAIT2 (its program closed it, its peer has not: the kernel keeps it up to
    net.ipv4.tcp_fin_timeout = 60 s)', with the time left when the kernel showed it."""
    who = "its program closed it, its peer has not" if n == 1 else "their programs closed them, their peers have not"
    seconds, setting = rules.fin_wait2_seconds, rules.fin_wait2_setting
    if seconds is None:
        keep = "until its FIN_WAIT2 timer ends" if n == 1 else "until their FIN_WAIT2 timers end"
    else:
        keep = f"up to {setting} = {seconds} s" if setting else f"up to {seconds} s"
    text = f"{_plural(n, 'socket')} in FIN_WAIT2 ({who}: the kernel keeps {'it' if n == 1 else 'each'} {keep})"
    if expires_s is not None:
        text += f", {'the last ' if n > 1 else ''}expiring in ~{max(1, math.ceil(expires_s))} s"
    return text


def _wait(n_tw: int, n_fin: int, expires_s: float | None, fin_expires_s: float | None, rules: BindRules) -> str:
    """How long to wait for the TIME_WAIT and FIN_WAIT2 holders: '~N s' when the kernel showed
    every time left, 'up to N s' from the OS defaults, or 'until they expire'."""
    if not n_fin:
        return _seconds(expires_s, rules)
    groups = [(fin_expires_s, rules.fin_wait2_seconds)] + ([(expires_s, rules.time_wait_seconds)] if n_tw else [])
    if any(left is None and limit is None for left, limit in groups):
        return "until they expire"
    longest = max(left if left is not None else limit for left, limit in groups)
    exact = all(left is not None for left, _ in groups)
    return f"~{max(1, math.ceil(longest))} s" if exact else f"up to {math.ceil(longest)} s"


# --- pure: Linux context ------------------------------------------------------------------------

def _range_text(text: str | None) -> tuple[int, int] | None:
    try:
        low, high = (int(part) for part in (text or "").split())
    except ValueError:
        return None
    return low, high


def _reserved(text: str | None, port: int) -> bool:
    try:
        return bool(text and text.strip()) and port in parse_ports(text.strip())
    except PortSpecError:
        return False


def linux_context(port: int, udp: bool, sysctl: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """(label, text) lines on the kernel settings that matter to this port; none off Linux."""
    lines = []
    span = _range_text(sysctl.get("net/ipv4/ip_local_port_range"))
    if span:
        low, high = span
        text = f"{low}-{high}: {port} is "
        if not low <= port <= high:
            text += "outside it"
        elif _reserved(sysctl.get("net/ipv4/ip_local_reserved_ports"), port):
            text += "inside it, but reserved (net.ipv4.ip_local_reserved_ports), so connects never take it"
        else:
            text += ("inside it: an outgoing connection may take it at any time (pick a port outside the "
                     "range, or list it in net.ipv4.ip_local_reserved_ports)")
        lines.append(("ephemeral ports", text))
    start = sysctl.get("net/ipv4/ip_unprivileged_port_start")
    if start and start.isdigit() and port < int(start):
        lines.append(("privileged", f"ports below {start} need root or CAP_NET_BIND_SERVICE "
                                    "(net.ipv4.ip_unprivileged_port_start)"))
    if udp:
        return lines
    reuse = sysctl.get("net/ipv4/tcp_tw_reuse")
    if reuse is not None:
        mode = {"0": "off", "1": "on", "2": "loopback only"}.get(reuse, "?")
        lines.append(("tcp_tw_reuse", f"{reuse} ({mode}): lets outgoing connect()s reuse a local port still in "
                                      "TIME_WAIT; it does nothing for bind()"))
    fin = sysctl.get("net/ipv4/tcp_fin_timeout")
    if fin is not None:
        lines.append(("tcp_fin_timeout", f"{fin} s: how long an orphaned connection may stay in FIN_WAIT2; it "
                                         "does not shorten TIME_WAIT, fixed at 60 s"))
    return lines


CONTEXT_SYSCTLS = ("net/ipv4/ip_local_port_range", "net/ipv4/ip_local_reserved_ports",
                   "net/ipv4/ip_unprivileged_port_start", "net/ipv4/tcp_tw_reuse", "net/ipv4/tcp_fin_timeout")


# --- pure: output -------------------------------------------------------------------------------

ATTEMPT_COLUMNS = [("option", "OPTION"), ("result", "RESULT"), ("errno", "ERRNO")]
WRAP_WIDTH = 100  # text report lines; a fixed width keeps the output the same in a pipe and a terminal
HOLDER_COLUMNS = [("proto", "PROTO"), ("local", "LOCAL"), ("remote", "REMOTE"), ("state", "STATE"),
                  ("pid", "PID"), ("process", "PROCESS"), ("expires_s", "EXPIRES_S")]


def _result(attempt: Mapping[str, Any]) -> str:
    return {True: "ok", False: "failed", None: "not tried"}[attempt.get("ok")]


def text_report(report: Mapping[str, Any], diagnosis: Diagnosis, *, target: Target,
                context: Sequence[tuple[str, str]] = (), others: int = 0, note: str | None = None,
                timers: Mapping[tuple, float] | None = None) -> list[str]:
    """The report for people: a verdict block, then the attempts, holders and context tables."""
    head = [("port", f"{report['port']}/{report['proto']}"), ("address", target.label or target.address),
            ("verdict", diagnosis.verdict.upper()), ("reason", diagnosis.reason), ("advice", diagnosis.advice)]
    if note:
        head.append(("warning", note))
    lines = _labelled(head, "")
    lines += ["", "bind attempts (throw-away sockets, closed at once, never listening):"]
    rows = [{"option": a["option"], "result": _result(a), "errno": a.get("errno")} for a in report["attempts"]]
    lines += ["  " + line for line in render.text_table(rows, ATTEMPT_COLUMNS)]
    holders = report["holders"]
    lines.append("")
    if holders is None:
        lines.append("holders: unknown (the socket table could not be read)")
    else:
        counts = ", ".join(f"{n} {state}" for state, n in count_states(holders).items())
        lines.append(f"holders: {len(holders)} ({counts})" if holders else "holders: none")
        table = [{"proto": row.get("proto"), "local": format_hostport(row.get("local_address"), row.get("local_port")),
                  "remote": format_hostport(row.get("remote_address"), row.get("remote_port"))
                  if row.get("remote_address") else None,
                  "state": state_name(row), "pid": ",".join(str(pid) for pid, _ in row_owners(row)) or None,
                  "process": row.get("process"),
                  "expires_s": row_timer(row, timers or {})} for row in holders]
        lines += ["  " + line for line in render.text_table(table, HOLDER_COLUMNS)] if table else []
    if others:
        verb = "uses" if others == 1 else "use"
        lines.append(f"  ({_plural(others, 'other socket')} {verb} port {report['port']} on addresses not in the way)")
    if context:
        lines += ["", "context:"] + _labelled(context, "  ")
    return lines


def _labelled(pairs: Sequence[tuple[str, str]], indent: str) -> list[str]:
    """'label  text' lines, labels padded to one width, long texts wrapped under the text column."""
    width = max(len(label) for label, _ in pairs)
    lines = []
    for label, text in pairs:
        first = f"{indent}{label.ljust(width)}  "
        lines += textwrap.wrap(text, WRAP_WIDTH, initial_indent=first, subsequent_indent=" " * len(first),
                               break_long_words=False, break_on_hyphens=False) or [first.rstrip()]
    return lines


def csv_report(report: Mapping[str, Any]) -> list[str]:
    """One CSV row with the JSON keys; attempts as 'plain=EADDRINUSE SO_REUSEADDR=ok', holders as a count."""
    flat = dict(report)
    flat["attempts"] = " ".join(f"{a['option']}={'ok' if a['ok'] else (a['errno'] or 'not-tried')}"
                                for a in report["attempts"])
    flat["holders"] = None if report["holders"] is None else len(report["holders"])
    return render.csv_lines([flat], JSON_KEYS)
