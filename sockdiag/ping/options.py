"""The options of `sockdiag ping` (argparse; no side effects)."""

from __future__ import annotations

import argparse

from sockdiag.cmdline import MAX_SECONDS, common, family, host, int_range, port, seconds

DEFAULT_TIMEOUT = 2.0
DEFAULT_PAYLOAD = b"ping"
MAX_PAYLOAD = 65507  # the largest UDP payload over IPv4 (65535 - 8 UDP - 20 IP header bytes)

_DESCRIPTION = """\
Measure TCP connect latency to HOST PORT, ping-style: one connect per interval, one line per
attempt with the time the handshake took (connect() only: name resolution happens once, at the
start, and closing is not timed). Ctrl-C or the end of -c prints ping's statistics block.
Each attempt closes with a reset (SO_LINGER 0, as 'probe' does) so that a long run leaves no
TIME_WAIT sockets behind on this side; --close fin sends a normal FIN instead. With -u, each
attempt sends one datagram and times the reply (for UDP echo and request/reply services).

Exit status as ping(8): 0 when at least one attempt connected (or got a reply), else 1; also
after Ctrl-C, which ends ping normally (so not 130; an attempt cut short by it is not counted).
SIGTERM still prints the statistics, then exits 143 as every command does.

-o json writes one object per attempt:
  {"seq", "address", "port", "connected", "rtt_ms", "error"}
(connected: true when the handshake completed, with -u when a reply came; rtt_ms: the time in
milliseconds, null on failure; error: the errno name of a failure, e.g. ECONNREFUSED, and
ETIMEDOUT when -w ran out, else null), then one summary object:
  {"summary": true, "probes", "connected", "loss_pct", "time_ms",
   "rtt_min_ms", "rtt_avg_ms", "rtt_max_ms", "rtt_mdev_ms"}
(loss_pct null before the first attempt; the rtt fields null when nothing connected).
"""


def interval(text: str) -> float:
    """-i: seconds between attempt starts; 0 (back to back) is allowed, unlike for timeouts."""
    try:
        if text.isascii() and float(text) == 0:
            return 0.0
    except ValueError:
        pass
    try:
        return seconds(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("more than 0", "0 or more")) from None


def payload(text: str) -> bytes:
    """--payload: the datagram, as UTF-8 bytes (may be empty), at most MAX_PAYLOAD bytes."""
    data = text.encode("utf-8", "surrogateescape")
    if len(data) > MAX_PAYLOAD:
        raise argparse.ArgumentTypeError(f"{len(data)} bytes is too long for one datagram "
                                         f"(allowed: at most {MAX_PAYLOAD})")
    return data


def add_ping(sub) -> None:
    p = sub.add_parser("ping", help="TCP connect latency (or a UDP reply time), ping-style",
                       description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("host", type=host, metavar="HOST",
                   help="name or address; resolved once, the first address is used (shown in the header)")
    p.add_argument("port", type=port, metavar="PORT", help="port number or service name")
    family(p)
    p.add_argument("-c", "--count", type=int_range(1), metavar="COUNT",
                   help="stop after COUNT attempts (default: until Ctrl-C, as ping)")
    p.add_argument("-i", "--interval", type=interval, default=1.0, metavar="SEC",
                   help=f"seconds from one attempt's start to the next, or right after a slower attempt ends "
                        f"(default 1; at most {MAX_SECONDS}). "
                        "0 runs them back to back: still one attempt at a time, each waiting for its answer, "
                        "so the rate is bounded by the round trip (meant for loopback and benchmarks)")
    p.add_argument("-w", "--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SEC",
                   help=f"per-attempt timeout (default {DEFAULT_TIMEOUT:g}: above the 1 s initial TCP "
                        "retransmission timeout, so one lost SYN shows as a slow attempt, not a loss; "
                        "note ping's -w is a deadline, this is ping's -W)")
    p.add_argument("-u", "--udp", action="store_true",
                   help="UDP: send one datagram per attempt and time the reply; an ICMP port unreachable "
                        "shows as connection refused, no reply within -w as timed out")
    p.add_argument("--payload", type=payload, metavar="TEXT",
                   help=f"with -u: the datagram to send (default {DEFAULT_PAYLOAD.decode()!r})")
    p.add_argument("--close", choices=("rst", "fin"),
                   help="how a TCP attempt is closed: rst (default, SO_LINGER 0: no TIME_WAIT left here) or "
                        "fin, a normal close (each attempt then holds a TIME_WAIT socket and its port here for "
                        "a minute or so)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text",
                   help="output: ping-style lines (default) or JSON Lines (keys above)")
    common(p)
