"""PURE: socket-table rows -> the Prometheus text exposition format (version 0.0.4), for
node_exporter's textfile collector. No I/O here.

The collector reads *.prom files from its directory; it rejects samples with timestamps, so
none are written. Every family is written with its # HELP and # TYPE lines even without
samples, and samples are sorted by their label values, so one table gives one text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from sockdiag.core import leaks, sockview
from sockdiag.core.sockview import LPORT, PROTOS, STATE

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_TOP = 10
# A row without a state (a bound UDP or unix socket, from a reader that leaves it empty) gets ss's
# word for it, as the table's own vocabulary does: state="UNCONN".
NO_STATE = "UNCONN"
_PROTO_ORDER = {proto: i for i, proto in enumerate(PROTOS)}


class Family(NamedTuple):
    """One metric family: its name, type ('gauge', ...), help text and (labels, value) samples,
    labels as (name, value) pairs in output order."""

    name: str
    type: str
    help: str
    samples: tuple[tuple[tuple[tuple[str, str], ...], float], ...]


# --- the format ---------------------------------------------------------------------------------

def _utf8_safe(text: str) -> str:
    """Text that encodes as UTF-8: a lone surrogate (a process name psutil decoded with
    surrogateescape) becomes a visible '\\udcff' instead of failing the whole write."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def escape_label_value(value: str) -> str:
    """A label value for inside double quotes: backslash, double quote and line feed escaped
    (\\\\, \\", \\n), as the exposition format requires."""
    return _utf8_safe(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """A # HELP text: backslash and line feed escaped (a double quote stays as is there)."""
    return _utf8_safe(text).replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: integers without a decimal point, floats as Python's shortest repr,
    +Inf / -Inf / NaN spelled as the format wants."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def exposition_lines(families: Iterable[Family]) -> list[str]:
    """The text format as lines without line feeds; join them with '\\n' and end with one."""
    lines = []
    for family in families:
        lines.append(f"# HELP {family.name} {escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for labels, value in family.samples:
            text = ",".join(f'{name}="{escape_label_value(str(v))}"' for name, v in labels)
            lines.append(f"{family.name}{{{text}}} {format_value(value)}" if labels
                         else f"{family.name} {format_value(value)}")
    return lines


def exposition(families: Iterable[Family]) -> str:
    """The whole text, ending with a line feed (the format requires the last line to end)."""
    return "".join(line + "\n" for line in exposition_lines(families))


# --- sockdiag's families ------------------------------------------------------------------------

def socket_families(rows: Sequence[sockview.Row], *, port_range: str | None = None,
                    summary: Sequence[Mapping[str, Any]] | None = None, listening: Iterable[int] | None = None,
                    top: int = DEFAULT_TOP) -> list[Family]:
    """sockdiag's metric families from one socket table:

    sockdiag_sockets{proto, state}: sockets per protocol and state (NO_STATE when it has none);
    sockdiag_close_wait_sockets{process, pid}: CLOSE_WAIT sockets per process, every process with
      one ('' for an owner that is not visible);
    sockdiag_time_wait_sockets{port}: TIME_WAIT sockets per port, the `top` ports (sockview's
      summary counting: each under its server's port);
    sockdiag_ephemeral_ports_used_ratio{remote_address, remote_port}: share of the ephemeral port
      range that outgoing connections to one destination use, the `top` destinations (only when
      `port_range` is known; near 1, connect() to it fails with EADDRNOTAVAIL).

    `summary`: an existing sockview.summarize(rows, listening, top) result to reuse.
    """
    if summary is None:
        all_listening = frozenset(r[LPORT] for r in rows if r[STATE] == "LISTEN")
        summary = sockview.summarize(rows, all_listening, top)
    states = sorted(((s["proto"], s["state"] or NO_STATE, s["count"]) for s in summary if s["section"] == "state"),
                    key=lambda s: (_PROTO_ORDER.get(s[0], len(PROTOS)), s[0], s[1]))
    families = [Family("sockdiag_sockets", "gauge", "Sockets by protocol and state.",
                       tuple(((("proto", p), ("state", s)), n) for p, s, n in states))]
    close_wait = sorted(leaks.close_wait_by_process(rows, threshold=1),
                        key=lambda c: (c.process or "", c.pid is None, c.pid or 0))
    families.append(Family("sockdiag_close_wait_sockets", "gauge",
                           "CLOSE_WAIT sockets by process: the peer closed, the process has not called close().",
                           tuple(((("process", c.process or ""), ("pid", "" if c.pid is None else str(c.pid))),
                                  c.count) for c in close_wait)))
    ports = sorted(leaks.time_wait_ports(summary)[:top])  # the most first, then by port
    families.append(Family("sockdiag_time_wait_sockets", "gauge",
                           f"TIME_WAIT sockets by port (the {top} ports with most).",
                           tuple(((("port", str(port)),), n) for port, n in ports)))
    span = leaks.parse_port_range(port_range)
    if span is not None:
        destinations = leaks.outbound_destinations(rows, span, listening, top)
        destinations.sort(key=lambda d: (sockview.address_key(d.address), d.port))
        families.append(Family("sockdiag_ephemeral_ports_used_ratio", "gauge",
                               "Share of the ephemeral port range used by outgoing TCP connections to one "
                               "destination; near 1, connect() to it fails with EADDRNOTAVAIL.",
                               tuple(((("remote_address", d.address), ("remote_port", str(d.port))), d.ratio)
                                     for d in destinations)))
    return families


def socket_exposition(rows: Sequence[sockview.Row], **options) -> str:
    """socket_families(rows, **options) as exposition text: what goes into a .prom file."""
    return exposition(socket_families(rows, **options))
