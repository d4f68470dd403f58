"""PURE: socket-table rows -> the leaks and exhaustion a snapshot shows. No I/O here.

Three findings (issue 13): processes piling up CLOSE_WAIT sockets, destinations whose outgoing
connections use up the ephemeral port range (the road to EADDRNOTAVAIL), and the ports with
most TIME_WAIT sockets (taken from sockview.summarize, not counted again). Kernel settings
arrive as text, as /proc/sys holds them (platform.read_sysctl): "32768\t60999", "2".

Rows are sockview rows, read by index (they may grow trailing elements).
"""

from __future__ import annotations

import functools
import ipaddress
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from sockdiag.core import sockview
from sockdiag.core.portspec import format_hostport
from sockdiag.core.sockview import (
    LADDR,
    LPORT,
    PID,
    PROCESS,
    PROTO,
    RADDR,
    RPORT,
    STATE,
)

# A few CLOSE_WAIT sockets are normal in a snapshot (the peer closed a moment ago and the program
# is about to); ten from one process is the usual sign that it never will.
DEFAULT_CLOSE_WAIT_THRESHOLD = 10
# One destination holding this share of the range: the next connect()s to it are about to fail.
WARN_RATIO = 0.8
TCP_PROTOS = frozenset({"tcp", "tcp6"})
# Server-side states: the local port is the server's, not one connect() took from the range.
_NOT_OUTBOUND = frozenset({"LISTEN", "SYN_RECV", "NEW_SYN_RECV", "CLOSE", None})
CLOSE_WAIT_DIAGNOSIS = ("the application never closes these: its peer closed, it did not call close() "
                        "(look for a connection or response object that is not closed on every path)")
# leak_rows() keys, also the JSON Lines keys; see leak_rows for which section fills which.
LEAK_KEYS = ("section", "pid", "process", "remote_address", "remote_port", "port", "count", "ports_used",
             "range_size", "ratio", "warning")
CONNECT_VERDICTS = ("ports left", "running out", "exhausted", "unknown range")
CONNECT_KEYS = ("destination", "verdict", "range_low", "range_high", "range_size", "used", "time_wait",
                "bound", "left", "tcp_tw_reuse", "reason", "advice")


class PortRange(NamedTuple):
    """net.ipv4.ip_local_port_range: the ports connect() picks from, both ends included."""

    low: int
    high: int

    @property
    def size(self) -> int:
        return self.high - self.low + 1

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high


class CloseWait(NamedTuple):
    pid: int | None  # None: the owner is not visible (another user's process, without root)
    process: str | None
    count: int


class Destination(NamedTuple):
    """Outgoing TCP connections toward one (remote address, remote port)."""

    address: str
    port: int
    sockets: int  # sockets toward it whose local port lies in the range, from every local address
    ports_used: int  # the most local ports one local address uses toward it: the space that runs out
    time_wait: int  # of `sockets`, how many are in TIME_WAIT
    ratio: float | None  # ports_used / range size; None when the range is unknown


class Leaks(NamedTuple):
    close_wait: list[CloseWait]
    destinations: list[Destination]
    time_wait_ports: list[tuple[int, int]]  # (port, sockets), most first
    port_range: PortRange | None
    tcp_tw_reuse: str | None
    close_wait_threshold: int
    warn_ratio: float


class ConnectExplanation(NamedTuple):
    """Why a connect() toward `destination` may fail with EADDRNOTAVAIL (see explain_connect)."""

    destination: str
    verdict: str  # one of CONNECT_VERDICTS
    port_range: PortRange | None
    used: int  # local ports of the range this destination uses (busiest local address)
    by_state: tuple[tuple[str, int], ...]  # those sockets per state, most first
    bound: int  # ports of the range held by listeners: connect() skips them for every destination
    left: int | None  # ports connect() may still take toward it; None when the range is unknown
    tcp_tw_reuse: str | None
    reason: str
    advice: str
    context: tuple[tuple[str, str], ...]  # (label, text) lines: the range, tcp_tw_reuse


# --- inputs -------------------------------------------------------------------------------------

def parse_port_range(text: str | None) -> PortRange | None:
    """'32768\\t60999' (as /proc/sys prints it) -> PortRange(32768, 60999); None if absent or odd."""
    try:
        low, high = (int(part) for part in (text or "").split())
    except ValueError:
        return None
    if not 0 < low <= high <= 65535:
        return None
    return PortRange(low, high)


@functools.lru_cache(maxsize=4096)
def normalize_address(address: str | None) -> str | None:
    """One spelling per address: IPv4-mapped IPv6 as IPv4 (a dual-stack socket connecting to
    ::ffff:10.0.0.5 uses the IPv4 port space), IPv6 compressed; anything else as given.
    Cached: a table of 20,000 sockets has a handful of distinct addresses, and parsing each row's
    took 0.2 s of a --summary."""
    if not address:
        return address
    head, sep, zone = address.partition("%")
    try:
        ip = ipaddress.ip_address(head)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip) + sep + zone


def listening_ports(rows: Iterable[sockview.Row]) -> frozenset:
    """Local ports of TCP listeners: a connection on one of them is the server side."""
    return frozenset(r[LPORT] for r in rows if r[STATE] == "LISTEN" and r[PROTO] in TCP_PROTOS)


def _outbound(rows: Iterable[sockview.Row], span: PortRange | None, listening: frozenset) -> list[sockview.Row]:
    """TCP connections this host opened: a remote end, a local port from the range (any, when the
    range is unknown) that no listener owns, and not a server-side state."""
    any_port = span is None
    low, high = (0, 0) if span is None else span  # compared inline: PortRange.__contains__ per row is slow
    return [r for r in rows
            if r[PROTO] in TCP_PROTOS and r[RADDR] is not None and r[RPORT] is not None
            and r[STATE] not in _NOT_OUTBOUND and r[LPORT] not in listening
            and (any_port or (r[LPORT] is not None and low <= r[LPORT] <= high))]


# --- findings -----------------------------------------------------------------------------------

def close_wait_by_process(rows: Iterable[sockview.Row],
                          threshold: int = DEFAULT_CLOSE_WAIT_THRESHOLD) -> list[CloseWait]:
    """Processes holding at least `threshold` CLOSE_WAIT sockets, most first (ties by PID).
    Sockets whose owner is not visible are grouped under pid None."""
    counts = Counter((r[PID], r[PROCESS]) for r in rows if r[STATE] == "CLOSE_WAIT")
    found = [CloseWait(pid, process, n) for (pid, process), n in counts.items() if n >= threshold]
    return sorted(found, key=lambda c: (-c.count, c.pid is None, c.pid or 0, c.process or ""))


def outbound_destinations(rows: Iterable[sockview.Row], port_range: str | PortRange | None,
                          listening: Iterable[int] | None = None, top: int | None = None) -> list[Destination]:
    """Destinations of outgoing TCP connections, the one using most ports first (ties by address
    and port); `top` keeps the first ones. `listening` defaults to the rows' TCP listeners."""
    rows = list(rows)
    span = port_range if isinstance(port_range, PortRange) or port_range is None else parse_port_range(port_range)
    ports = frozenset(listening) if listening is not None else listening_ports(rows)
    per_source: dict[tuple, dict[str | None, set]] = defaultdict(lambda: defaultdict(set))
    sockets: Counter = Counter()
    time_wait: Counter = Counter()
    normal: dict = {}  # normalize_address, without lru_cache's call per row
    for r in _outbound(rows, span, ports):
        remote, local = r[RADDR], r[LADDR]
        key = (normal[remote] if remote in normal else normal.setdefault(remote, normalize_address(remote)), r[RPORT])
        source = normal[local] if local in normal else normal.setdefault(local, normalize_address(local))
        per_source[key][source].add(r[LPORT])
        sockets[key] += 1
        if r[STATE] == "TIME_WAIT":
            time_wait[key] += 1
    out = []
    for key, sources in per_source.items():
        used = max(len(p) for p in sources.values())
        ratio = used / span.size if span else None
        out.append(Destination(key[0], key[1], sockets[key], used, time_wait[key], ratio))
    out.sort(key=lambda d: (-d.ports_used, -d.sockets, sockview.address_key(d.address), d.port))
    return out[:top] if top is not None else out


def time_wait_ports(summary: Iterable[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """(port, sockets) of the TIME_WAIT top-port section of a sockview.summarize() result."""
    return [(s["port"], s["count"]) for s in summary if s["section"] == "port" and s["state"] == "TIME_WAIT"]


def find_leaks(rows: Sequence[sockview.Row], *, port_range: str | None, tcp_tw_reuse: str | None = None,
               summary: Sequence[Mapping[str, Any]] | None = None, listening: Iterable[int] | None = None,
               close_wait_threshold: int = DEFAULT_CLOSE_WAIT_THRESHOLD, top: int = 5,
               warn_ratio: float = WARN_RATIO) -> Leaks:
    """All three findings. `summary`: an existing sockview.summarize(rows, ...) result, so
    `states --summary` does not count twice; computed (top `top`) when not given."""
    span = parse_port_range(port_range)
    if summary is None:
        all_listening = frozenset(r[LPORT] for r in rows if r[STATE] == "LISTEN")
        summary = sockview.summarize(rows, all_listening, top)
    return Leaks(close_wait_by_process(rows, close_wait_threshold),
                 outbound_destinations(rows, span, listening, top), time_wait_ports(summary),
                 span, tcp_tw_reuse, close_wait_threshold, warn_ratio)


# --- output -------------------------------------------------------------------------------------

def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.1f}%"


def _range_words(span: PortRange | None) -> str:
    return "unknown" if span is None else f"{span.low}-{span.high}, {span.size} ports"


def leak_lines(leaks: Leaks, with_time_wait: bool = True) -> list[str]:
    """The findings for people: CLOSE_WAIT by process with the diagnosis, outbound ports by
    destination with a warning per destination near EADDRNOTAVAIL, TIME_WAIT by port (left out
    with `with_time_wait=False` where sockview.summary_text already lists it)."""
    lines = []
    if leaks.close_wait:
        lines.append(f"CLOSE_WAIT sockets by process ({leaks.close_wait_threshold} or more):")
        lines += sockview.align([("PID", "Process", "Sockets")]
                                + [(str(c.pid or "-"), c.process or "-", str(c.count)) for c in leaks.close_wait])
        lines.append(CLOSE_WAIT_DIAGNOSIS)
    else:
        lines.append(f"CLOSE_WAIT sockets by process: none with {leaks.close_wait_threshold} or more")
    lines.append("")
    head = f"Outgoing connections by destination (ephemeral ports {_range_words(leaks.port_range)})"
    if leaks.destinations:
        lines.append(head + ":")
        lines += sockview.align([("Destination", "Sockets", "TIME_WAIT", "Ports used", "Share")]
                                + [(format_hostport(d.address, d.port), str(d.sockets), str(d.time_wait),
                                    str(d.ports_used), _percent(d.ratio)) for d in leaks.destinations])
        lines += [destination_warning(d, leaks.port_range, leaks.tcp_tw_reuse) for d in leaks.destinations
                  if d.ratio is not None and d.ratio >= leaks.warn_ratio]
    else:
        lines.append(head + ": none")
    if not with_time_wait:
        return lines
    lines.append("")
    if leaks.time_wait_ports:
        lines.append("TIME_WAIT sockets by port:")
        lines += sockview.align([("Port", "Sockets")] + [(str(p), str(n)) for p, n in leaks.time_wait_ports])
    else:
        lines.append("TIME_WAIT sockets by port: none")
    return lines


def destination_warning(d: Destination, span: PortRange | None, tcp_tw_reuse: str | None) -> str:
    """One line: this destination is about to exhaust its local ports, and what to do."""
    where = format_hostport(d.address, d.port)
    size = span.size if span else "?"
    text = (f"warning: {where} uses {d.ports_used} of {size} ephemeral ports ({_percent(d.ratio)}): once all are "
            "taken, connect() to it fails with EADDRNOTAVAIL")
    if d.time_wait * 2 >= d.sockets:
        text += f"; most are TIME_WAIT ({d.time_wait}): {tw_reuse_effect(tcp_tw_reuse, _is_loopback(d.address))}"
    else:
        setting = "net.ipv4.tcp_tw_reuse" + ("" if tcp_tw_reuse is None else f" = {tcp_tw_reuse}")
        text += f"; most are open connections: pool and reuse them, or close idle ones ({setting} only frees " \
                "ports in TIME_WAIT)"
    return text


def leak_rows(leaks: Leaks) -> list[dict]:
    """Rows with exactly LEAK_KEYS (None where a key does not apply), for JSON Lines / CSV:
    section "close_wait": pid, process, count (CLOSE_WAIT sockets of that process);
    section "outbound": remote_address, remote_port, count (sockets toward it), ports_used,
    range_size, ratio (ports_used / range_size, rounded to 4 places), warning (ratio >= warn_ratio);
    section "time_wait": port, count (TIME_WAIT sockets counted under that port)."""
    out = [_leak_row("close_wait", pid=c.pid, process=c.process, count=c.count) for c in leaks.close_wait]
    size = leaks.port_range.size if leaks.port_range else None
    out += [_leak_row("outbound", remote_address=d.address, remote_port=d.port, count=d.sockets,
                      ports_used=d.ports_used, range_size=size,
                      ratio=None if d.ratio is None else round(d.ratio, 4),
                      warning=d.ratio is not None and d.ratio >= leaks.warn_ratio) for d in leaks.destinations]
    out += [_leak_row("time_wait", port=port, count=n) for port, n in leaks.time_wait_ports]
    return out


def _leak_row(section: str, **values) -> dict:
    row = dict.fromkeys(LEAK_KEYS)
    row["section"] = section
    row.update(values)
    return row


# --- bindcheck --connect HOST:PORT --------------------------------------------------------------

def _is_loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address((normalize_address(address) or "").partition("%")[0]).is_loopback
    except ValueError:
        return False


def tw_reuse_effect(value: str | None, loopback: bool | None = None) -> str:
    """What net.ipv4.tcp_tw_reuse = `value` does for outgoing connect()s (and for this
    destination, when `loopback` says whether it is one)."""
    # tcp_twsk_unique(): connect() may take over a TIME_WAIT 4-tuple when the old connection used
    # TCP timestamps (the peer then tells old segments from new) and entered TIME_WAIT at least
    # 1 s ago (net.ipv4.tcp_tw_reuse_delay, in ms, since Linux 6.14). Value 2 (kernel commit
    # 79e9fed460385a, 2018) limits that to connections provably on loopback: bound to 'lo', or
    # 127.0.0.0/8, ::ffff:127.0.0.0/104 or ::1 at either end; 2 is the default since then.
    safe = ("a connect() may take over a 4-tuple still in TIME_WAIT once it is 1 s old, when the old "
            "connection used TCP timestamps (net.ipv4.tcp_timestamps, on by default)")
    if value == "0":
        return ("net.ipv4.tcp_tw_reuse = 0 (off): each TIME_WAIT socket keeps its local port from this "
                f"destination for 60 s; with 1, {safe}")
    if value == "1":
        return f"net.ipv4.tcp_tw_reuse = 1 (on): {safe}, so TIME_WAIT sockets rarely exhaust the range"
    if value == "2":
        text = f"net.ipv4.tcp_tw_reuse = 2 (loopback only, the kernel default): {safe}, but only on loopback"
        if loopback is True:
            return text + "; this destination is loopback, so it applies"
        if loopback is False:
            return text + ("; this destination is not loopback, so its TIME_WAIT ports stay blocked for 60 s "
                           "(setting 1 extends the reuse to it)")
        return text
    if value is None:
        return "net.ipv4.tcp_tw_reuse: unknown here (it is a Linux setting)"
    return f"net.ipv4.tcp_tw_reuse = {value}: an unknown value"


def _reuse_applies(value: str | None, loopback: bool) -> bool:
    return value == "1" or (value == "2" and loopback)


def explain_connect(rows: Sequence[sockview.Row], address: str, port: int, port_range: str | None,
                    tcp_tw_reuse: str | None, *, listening: Iterable[int] | None = None,
                    warn_ratio: float = WARN_RATIO) -> ConnectExplanation:
    """Why connect() to address:port may fail with EADDRNOTAVAIL: with no bind() first, the kernel
    needs a local port from the range whose 4-tuple (local address and port, address, port) is
    free, skipping ports a bind() took (listeners). `address` is an IP as the rows spell it."""
    span = parse_port_range(port_range)
    ports = frozenset(listening) if listening is not None else listening_ports(rows)
    want = (normalize_address(address), port)
    toward = [r for r in _outbound(rows, span, ports) if (normalize_address(r[RADDR]), r[RPORT]) == want]
    per_source: dict[str | None, set] = defaultdict(set)
    for r in toward:
        per_source[normalize_address(r[LADDR])].add(r[LPORT])
    busiest = max(per_source.values(), key=len, default=set())
    used = len(busiest)
    by_state = tuple(Counter(r[STATE] for r in toward if r[LPORT] in busiest).most_common())
    time_wait = dict(by_state).get("TIME_WAIT", 0)
    bound = len({p for p in ports if span and p in span})
    loopback = _is_loopback(address)
    where = format_hostport(normalize_address(address), port)
    reuse = tw_reuse_effect(tcp_tw_reuse, loopback)
    context = [("ephemeral ports", "unknown (net.ipv4.ip_local_port_range could not be read)" if span is None
                else f"{span.low}-{span.high} (net.ipv4.ip_local_port_range): {span.size} ports"),
               ("tcp_tw_reuse", reuse)]
    states = ", ".join(f"{n} {s}" for s, n in by_state)
    uses = f"{used} local {'port' if used == 1 else 'ports'} toward {where}" + (f" ({states})" if states else "")
    if span is None:
        return ConnectExplanation(where, "unknown range", None, used, by_state, 0, None, tcp_tw_reuse,
                                  f"{uses}; the ephemeral port range is unknown, so not how many remain",
                                  _connect_advice(time_wait, used, tcp_tw_reuse, loopback), tuple(context))
    left = max(0, span.size - used - bound)
    reason = (f"{uses} of {span.size} in the range"
              + (f", {bound} more held by listeners (connect() skips ports a bind() took)" if bound else "")
              + f": {left} left")
    if left == 0:
        verdict = "exhausted"
        reason += ", so connect() fails with EADDRNOTAVAIL"
    elif (used + bound) / span.size >= warn_ratio:
        verdict = "running out"
        reason += ", so connect() will soon fail with EADDRNOTAVAIL"
    else:
        verdict = "ports left"
    if time_wait and _reuse_applies(tcp_tw_reuse, loopback):
        reason += f" (tcp_tw_reuse may take over most of the {time_wait} in TIME_WAIT, so more in practice)"
    advice = (_connect_advice(time_wait, used, tcp_tw_reuse, loopback) if verdict != "ports left" else
              "nothing to do: connect() to it has ports to spare (if EADDRNOTAVAIL still happens, the program "
              "may bind() before connect(): set IP_BIND_ADDRESS_NO_PORT, or every destination shares one range)")
    return ConnectExplanation(where, verdict, span, used, by_state, bound, left, tcp_tw_reuse, reason, advice,
                              tuple(context))


def _connect_advice(time_wait: int, used: int, tcp_tw_reuse: str | None, loopback: bool) -> str:
    parts = []
    if used and time_wait * 2 >= used:
        parts.append("most ports are TIME_WAIT from short connections: reuse connections (keep-alive, a pool) "
                     "instead of one per request")
        if not _reuse_applies(tcp_tw_reuse, loopback) and tcp_tw_reuse is not None:
            parts.append("or set net.ipv4.tcp_tw_reuse = 1 so connect() takes over TIME_WAIT ports safely "
                         "(by TCP timestamps)")
    elif used:
        parts.append("most ports are open connections: pool and reuse them, or close idle ones "
                     "(tcp_tw_reuse does not help with open connections)")
    parts.append("widen net.ipv4.ip_local_port_range, or spread the load over more destination addresses, "
                 "ports or source addresses (each has its own range of 4-tuples)")
    parts.append("if the program bind()s before connect(), set IP_BIND_ADDRESS_NO_PORT, or every destination "
                 "shares one range")
    return "; ".join(parts)


def connect_lines(explanation: ConnectExplanation) -> list[str]:
    """The explanation for people: 'label  text' lines, labels padded to one width."""
    pairs = [("destination", explanation.destination), ("verdict", explanation.verdict.upper()),
             ("reason", explanation.reason), ("advice", explanation.advice), *explanation.context]
    width = max(len(label) for label, _ in pairs)
    return [f"{label.ljust(width)}  {text}" for label, text in pairs]


def connect_row(explanation: ConnectExplanation) -> dict:
    """A dict with exactly CONNECT_KEYS, for JSON Lines / CSV (range_* None when unknown)."""
    span = explanation.port_range
    return {"destination": explanation.destination, "verdict": explanation.verdict,
            "range_low": span.low if span else None, "range_high": span.high if span else None,
            "range_size": span.size if span else None, "used": explanation.used,
            "time_wait": dict(explanation.by_state).get("TIME_WAIT", 0), "bound": explanation.bound,
            "left": explanation.left, "tcp_tw_reuse": explanation.tcp_tw_reuse, "reason": explanation.reason,
            "advice": explanation.advice}
