"""PURE: socket-table rows -> filtered, sorted, summarised, diffed and aligned text. No I/O here.

A row is a tuple in ROW_KEYS order (states.py collects them from /proc or psutil). Tuples, not
dicts: at 20,000 sockets every per-row step counts (benchmarks/states.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from operator import itemgetter

from sockdiag.core.portspec import format_hostport

# pid/process are the first owner's (kept for scripts written before `owners`). owners: a tuple of
# (pid, process, fd), every process holding the socket (a prefork server's master and workers).
# recv_q/send_q: bytes queued (a LISTEN socket: recv_q is the accept queue; send_q its backlog
# where the OS tells, None from /proc); timer: (name, seconds left) or None; uid: the socket's
# owner user. None wherever the source does not say (psutil has no queues, timers or uids).
# type: stream | dgram | seqpacket; inode: the kernel's socket inode (None where the OS does not say).
ROW_KEYS = ("proto", "family", "local_address", "local_port", "remote_address", "remote_port",
            "state", "pid", "process", "owners", "recv_q", "send_q", "timer", "uid", "type", "inode")
(PROTO, FAMILY, LADDR, LPORT, RADDR, RPORT, STATE, PID, PROCESS, OWNERS, RECVQ, SENDQ, TIMER,
 UID, TYPE, INODE) = range(len(ROW_KEYS))
# A row may carry one value more, True: a /proc/net/unix row that could not be read unambiguously
# (a socket name holding a newline can forge a line there). JSON then has "ambiguous": true, the
# text table shows its protocol as "unix?".
AMBIGUOUS = len(ROW_KEYS)
# What identifies a socket from frame to frame (--watch): queues and timers change all the time.
_IDENTITY = slice(0, RECVQ)
PROTOS = ("tcp", "tcp6", "udp", "udp6", "unix")
_PROTO_ORDER = {proto: i for i, proto in enumerate(PROTOS)}
TEXT_HEADERS = ("Proto", "Recv-Q", "Send-Q", "Local Address", "Remote Address", "State", "PID", "Process")
# One vocabulary (states and bindcheck): a UDP or unix socket that is bound but neither listening
# nor connected is UNCONN (ss's word); connected ones are ESTABLISHED. BOUND (psutil on BSD and
# Windows) means the same, so a --state filter for either finds both.
UNCONN = "UNCONN"
_SAME_STATES = {"UNCONN": ("UNCONN", "BOUND"), "BOUND": ("UNCONN", "BOUND"), "NONE": ("UNCONN", "BOUND")}
TIMER_NAMES = ("on", "keepalive", "timewait", "persist")  # ss -o's names
SORT_KEYS = ("local", "remote", "state", "pid")
# --summary rows (also its JSON Lines keys): section is "total", "state" or "port".
SUMMARY_KEYS = ("section", "proto", "state", "port", "count")
TOP_STATES = ("TIME_WAIT", "ESTABLISHED")
Row = tuple


def protocols(tcp: bool = False, udp: bool = False, unix: bool = False, family: int | None = None) -> frozenset:
    """The protocols -t/-u/-x/-4/-6 select; none of -t/-u/-x means all (as `ss -a`, `netstat -a`)."""
    chosen = set()
    if tcp:
        chosen |= {"tcp", "tcp6"}
    if udp:
        chosen |= {"udp", "udp6"}
    if unix:
        chosen.add("unix")
    if not chosen:
        chosen = set(PROTOS)
    if family == 4:
        chosen &= {"tcp", "udp"}
    elif family == 6:
        chosen &= {"tcp6", "udp6"}
    return frozenset(chosen)


def process_matcher(pattern: str):
    """NAME matches a process name ignoring case; with * ? [ it is a shell pattern (`python*`)."""
    wanted = pattern.casefold()
    if any(ch in wanted for ch in "*?["):
        from fnmatch import fnmatchcase

        return lambda name: fnmatchcase(name.casefold(), wanted)
    return lambda name: name.casefold() == wanted


def address_matcher(networks):
    """A predicate host -> bool: in any of `networks` (ipaddress networks); an IPv4-mapped IPv6
    address counts as its IPv4 address (as core.addrset), and a network ::ffff:a.b.c.d/N as IPv4."""
    from sockdiag.core.addrset import AddressSet

    wanted = AddressSet(networks)
    cache: dict = {}

    def match(host) -> bool:
        try:
            return cache[host]
        except KeyError:
            hit = cache[host] = host is not None and host in wanted
            return hit
    return match


def select(rows: Iterable[Row], *, protos: Iterable[str] | None = None, listening: bool = False,
           states: Iterable[str] | None = None, port: int | None = None, pid: int | None = None,
           process: str | None = None, sport: Iterable[int] | None = None, dport: Iterable[int] | None = None,
           src=None, dst=None, uid: int | None = None) -> list[Row]:
    """The rows that pass every given filter (filters combine with AND).

    listening: TCP/unix LISTEN, or UDP bound to a port and not connected. states: canonical
    names (ESTABLISHED, TIME_WAIT, UNCONN, ...). port: local or remote. pid/process: any owner.
    sport/dport: local/remote port in the set. src/dst: local/remote address in one of the
    ipaddress networks. uid: the socket's user.
    """
    rows = list(rows)
    if protos is not None:
        wanted_protos = frozenset(protos)
        if wanted_protos != frozenset(PROTOS):
            rows = [r for r in rows if r[PROTO] in wanted_protos]
    if listening:
        rows = [r for r in rows if r[STATE] == "LISTEN"
                or (r[PROTO] in ("udp", "udp6") and r[LPORT] is not None and r[RADDR] is None)]
    if states:
        wanted = frozenset(name for state in states for name in _SAME_STATES.get(state, (state,)))
        rows = [r for r in rows if (r[STATE] or UNCONN) in wanted]
    if port is not None:
        rows = [r for r in rows if r[LPORT] == port or r[RPORT] == port]
    if sport is not None:
        sports = frozenset(sport)
        rows = [r for r in rows if r[LPORT] in sports]
    if dport is not None:
        dports = frozenset(dport)
        rows = [r for r in rows if r[RPORT] in dports]
    if src is not None:
        match_src = address_matcher(src)
        rows = [r for r in rows if match_src(r[LADDR])]
    if dst is not None:
        match_dst = address_matcher(dst)
        rows = [r for r in rows if match_dst(r[RADDR])]
    if uid is not None:
        rows = [r for r in rows if r[UID] == uid]
    if pid is not None:
        rows = [r for r in rows if r[PID] == pid or any(o[0] == pid for o in r[OWNERS][1:])]
    if process is not None:
        match = process_matcher(process)
        rows = [r for r in rows if any(o[1] is not None and match(o[1]) for o in r[OWNERS])
                or (r[PROCESS] is not None and match(r[PROCESS]))]
    return rows


# --- JSON / CSV values --------------------------------------------------------------------------

def owners_json(owners) -> list[dict]:
    """owners as JSON: [{"pid": .., "process": .., "fd": ..}, ...]."""
    return [{"pid": pid, "process": name, "fd": fd} for pid, name, fd in owners or ()]


def timer_json(timer) -> dict | None:
    """timer as JSON: {"name": "keepalive", "expires_s": 7.2}, or None."""
    return None if timer is None else {"name": timer[0], "expires_s": timer[1]}


def is_ambiguous(row: Row) -> bool:
    """Whether the row could not be read unambiguously (see AMBIGUOUS)."""
    return len(row) > AMBIGUOUS and bool(row[AMBIGUOUS])


def row_dict(row: Row) -> dict:
    """A row as a JSON-ready dict in ROW_KEYS order (owners and timer as objects), plus
    "ambiguous": True at the end for an ambiguous row (row_keys() says which keys)."""
    d = dict(zip(ROW_KEYS, row))
    d["owners"] = owners_json(row[OWNERS])
    d["timer"] = timer_json(row[TIMER])
    if len(row) > AMBIGUOUS and row[AMBIGUOUS]:
        d["ambiguous"] = True
    return d


def row_keys(row: Row, keys: Sequence[str] = ROW_KEYS) -> Sequence[str]:
    """The JSON keys of one row: `keys`, and "ambiguous" after them for an ambiguous row."""
    return (*keys, "ambiguous") if len(row) > AMBIGUOUS and row[AMBIGUOUS] else keys


def row_csv(row: Row) -> dict:
    """A row as a CSV dict: owners as ss writes them ('nginx,pid=1,fd=6 nginx,pid=2,fd=6'), the
    timer as 'keepalive,7.2'."""
    d = dict(zip(ROW_KEYS, row))
    d["owners"] = " ".join(f"{name or '?'},pid={pid},fd={fd}" for pid, name, fd in row[OWNERS] or ())
    d["timer"] = None if row[TIMER] is None else f"{row[TIMER][0]},{row[TIMER][1]}"
    return d


# --- sorting ------------------------------------------------------------------------------------

def _ipv6_words(text: str) -> tuple[int, ...]:
    """'fe80::1' / '::ffff:127.0.0.1' -> its eight 16-bit words (ValueError if not IPv6)."""
    head, sep, tail = text.partition("::")
    groups = [head.split(":") if head else [], tail.split(":") if tail else []]
    for part in groups:
        if part and "." in part[-1]:  # an embedded IPv4 address is two words
            a, b, c, d = (int(x) for x in part.pop().split("."))
            part += [f"{a << 8 | b:x}", f"{c << 8 | d:x}"]
    missing = 8 - len(groups[0]) - len(groups[1])
    if missing < 0 or (missing and not sep) or (sep and missing < 1):
        raise ValueError(text)
    words = tuple(int(g, 16) for g in groups[0] + ["0"] * missing + groups[1])
    if any(not 0 <= w <= 0xFFFF for w in words):
        raise ValueError(text)
    return words


def address_key(host: str | None) -> tuple:
    """Sort key for an address: IPv4 numerically, then IPv6 numerically, then unix paths, then none."""
    if host is None:
        return (3,)
    parts = host.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return (0, tuple(int(p) for p in parts))
    if ":" in host:
        try:
            return (1, _ipv6_words(host.partition("%")[0]))
        except ValueError:
            pass
    return (2, host)


def sort_rows(rows: list[Row], by: str) -> list[Row]:
    """Rows sorted by local or remote endpoint, state or pid; ties by protocol and local endpoint."""
    cache: dict = {}

    def addr(host):
        try:
            return cache[host]
        except KeyError:
            key = cache[host] = address_key(host)
            return key

    def local(r):
        return _PROTO_ORDER.get(r[PROTO], 9), addr(r[LADDR]), r[LPORT] or 0

    if by == "local":
        key = local
    elif by == "remote":
        def key(r):
            return addr(r[RADDR]), r[RPORT] or 0, local(r)
    elif by == "state":
        def key(r):
            return r[STATE] is None, r[STATE] or "", local(r)
    elif by == "pid":
        def key(r):
            return r[PID] is None, r[PID] or 0, local(r)
    else:
        raise ValueError(f"unknown sort key {by!r}")
    return sorted(rows, key=key)


# --- --summary ----------------------------------------------------------------------------------

def service_port(row: Row, listening_ports: frozenset) -> int | None:
    """The port a connection is "about", so each socket counts once, under the server's port:
    its local port if something listens there (server side), else its remote port if that is
    listened on here (a loopback client), else the lower of the two (ephemeral ports are high)."""
    lport, rport = row[LPORT], row[RPORT]
    if lport is None or rport is None:
        return lport if rport is None else rport
    if lport in listening_ports:
        return lport
    if rport in listening_ports:
        return rport
    return min(lport, rport)


def summarize(rows: Sequence[Row], listening_ports: Iterable[int] = (), top: int = 5) -> list[dict]:
    """Summary rows (SUMMARY_KEYS): totals per protocol and overall, counts per protocol and state,
    and for TIME_WAIT and ESTABLISHED the `top` ports with most sockets (see service_port)."""
    listening = frozenset(listening_ports)
    order = _PROTO_ORDER
    out = [_summary("total", None, None, None, len(rows))]
    per_proto = Counter(map(itemgetter(PROTO), rows))  # map/itemgetter: counted in C, 20,000 rows
    out += [_summary("total", p, None, None, n) for p, n in sorted(per_proto.items(), key=lambda i: order.get(i[0], 9))]
    per_state = Counter(map(itemgetter(PROTO, STATE), rows))
    out += [_summary("state", p, s, None, n)
            for (p, s), n in sorted(per_state.items(), key=lambda i: (order.get(i[0][0], 9), -i[1], i[0][1] or ""))]
    for state in TOP_STATES:
        ports = Counter(service_port(r, listening) for r in rows if r[STATE] == state)
        ports.pop(None, None)
        ranked = sorted(ports.items(), key=lambda i: (-i[1], i[0]))[:top]
        out += [_summary("port", None, state, port, n) for port, n in ranked]
    return out


def _summary(section, proto, state, port, count) -> dict:
    return {"section": section, "proto": proto, "state": state, "port": port, "count": count}


def summary_text(summary: Sequence[dict], top: int = 5) -> list[str]:
    """The summary for people: a total line, a Proto/State/Sockets table, the top-port tables."""
    totals = [s for s in summary if s["section"] == "total"]
    overall = totals[0]["count"] if totals else 0
    parts = ", ".join(f"{s['proto']} {s['count']}" for s in totals[1:])
    lines = [f"Total: {overall} sockets" + (f" ({parts})" if parts else "")]
    states = [(s["proto"], s["state"] or "-", str(s["count"])) for s in summary if s["section"] == "state"]
    if states:
        lines += [""] + align([("Proto", "State", "Sockets")] + states)
    for state in TOP_STATES:
        ports = [(str(s["port"]), str(s["count"])) for s in summary if s["section"] == "port" and s["state"] == state]
        lines.append("")
        if ports:
            lines.append(f"{state} sockets by port (top {top}):")
            lines += align([("Port", "Sockets")] + ports)
        else:
            lines.append(f"{state} sockets by port: none")
    return lines


# --- --watch ------------------------------------------------------------------------------------

def changes(before: Iterable[Row], after: Iterable[Row]) -> tuple[list[Row], list[Row]]:
    """(appeared, disappeared) between two frames; rows compare by everything up to the owners, so a
    socket that changed state disappears in its old state and appears in the new one, while one
    whose queues or timer moved is unchanged."""
    before, after = list(before), list(after)
    old, new = Counter(r[_IDENTITY] for r in before), Counter(r[_IDENTITY] for r in after)
    return _take(after, new - old), _take(before, old - new)


def _take(rows: Iterable[Row], wanted: Counter) -> list[Row]:
    out = []
    for row in rows:
        key = row[_IDENTITY]
        if wanted[key] > 0:
            wanted[key] -= 1
            out.append(row)
    return out


def marked(after: Sequence[Row], appeared: Iterable[Row], disappeared: Iterable[Row]) -> list[tuple[str, Row]]:
    """(mark, row) for a frame: '+' appeared, ' ' unchanged, then the disappeared rows with '-'."""
    fresh = Counter(r[_IDENTITY] for r in appeared)
    out = []
    for row in after:
        key = row[_IDENTITY]
        if fresh[key] > 0:
            fresh[key] -= 1
            out.append(("+", row))
        else:
            out.append((" ", row))
    return out + [("-", row) for row in disappeared]


# --- text ---------------------------------------------------------------------------------------

def _endpoints(rows: Sequence[Row], host_index: int) -> list[str]:
    """'127.0.0.1:80' / '[::1]:80' (portspec.format_hostport, once per distinct host), a unix
    path as is (never bracketed, even with a ':' in it), '-' when missing."""
    port_index = host_index + 1
    prefixes: dict[str, str] = {}
    for host in {r[host_index] for r in rows if r[port_index] is not None}:
        prefixes[host] = format_hostport(host, None) + ":"
    return [f"{prefixes[r[host_index]]}{r[port_index]}" if r[port_index] is not None else (r[host_index] or "-")
            for r in rows]


def owners_text(owners) -> str:
    """Every owner as ss -p prints them: users:(("nginx",pid=1,fd=6),("nginx",pid=2,fd=6))."""
    if not owners:
        return "-"
    return "users:(" + ",".join(f'("{name or "?"}",pid={pid},fd={fd})' for pid, name, fd in owners) + ")"


def timer_text(timer) -> str:
    """'keepalive,7.2s' (ss -o: timer:(keepalive,7.2sec,0)), '-' without a timer."""
    return "-" if timer is None else f"{timer[0]},{timer[1]:g}s"


def text_lines(rows: Sequence[Row], header: bool = True, marks: Sequence[str] | None = None, *,
               all_owners: bool = False, timers: bool = False) -> list[str]:
    """The aligned table (header first), one string per line; '-' for a missing value. With
    `marks`, each line starts with its mark ('+', '-' or ' ') for --watch.

    PID is the first owner's, with '+N' when N more processes hold the socket (a prefork
    server); `all_owners` lists them all in the Process column, as ss -p does. `timers` adds a
    Timer column (ss -o). Built column by column with one %-format per row: at 20,000 rows
    this is about twice as fast as formatting cell by cell.
    """
    rows = list(rows)
    local, remote = _endpoints(rows, LADDR), _endpoints(rows, RADDR)
    pids = [(str(r[PID]) if len(r[OWNERS]) < 2 else f"{r[PID]}+{len(r[OWNERS]) - 1}") if r[PID] else "-"
            for r in rows]
    states = [r[STATE] or "-" for r in rows]
    recvq = ["-" if (q := r[RECVQ]) is None else str(q) for r in rows]
    sendq = ["-" if (q := r[SENDQ]) is None else str(q) for r in rows]
    headers = TEXT_HEADERS[:-1] + (("Timer",) if timers else ()) + TEXT_HEADERS[-1:]
    protos = [r[PROTO] if len(r) <= AMBIGUOUS or not r[AMBIGUOUS] else r[PROTO] + "?" for r in rows]
    columns = [protos, recvq, sendq, local, remote, states, pids]
    if timers:
        columns.append([timer_text(r[TIMER]) for r in rows])
    last = [owners_text(r[OWNERS]) for r in rows] if all_owners else [r[PROCESS] or "-" for r in rows]
    widths = [max(len(title), max(map(len, column), default=0)) for title, column in zip(headers, columns)]
    template = "  ".join(f"%-{width}s" for width in widths) + "  %s"
    lines = [template % headers] if header else []
    lines += [template % cells for cells in zip(*columns, last)]
    if marks is not None:
        lines = ([f"  {lines[0]}"] if header else []) + [f"{m} {line}" for m, line in zip(marks, lines[header:])]
    return lines


def marked_text_lines(frame: Sequence[tuple[str, Row]], **layout) -> list[str]:
    """The aligned table of a --watch frame, each line prefixed by its mark (+, - or space)."""
    return text_lines([row for _, row in frame], True, [mark for mark, _ in frame], **layout)


def align(lines: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    if not lines:
        return []
    widths = [max(map(len, column)) for column in list(zip(*lines))[:-1]]
    template = "".join(f"%-{width}s  " for width in widths) + "%s"
    return [(template % tuple(cells)).rstrip() for cells in lines]
