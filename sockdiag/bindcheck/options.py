"""The options of `sockdiag bindcheck` (argparse; no side effects)."""

from __future__ import annotations


from sockdiag.cmdline import common, host, port

def add_bindcheck(sub) -> None:
    p = sub.add_parser("bindcheck", help="explain why PORT cannot be bound (in use, TIME_WAIT, permission)",
                       description="Try to bind PORT the ways a server would (plain, SO_REUSEADDR, SO_REUSEPORT; "
                                   "SO_EXCLUSIVEADDRUSE on Windows) on throw-away sockets closed at once, list "
                                   "the sockets holding it (with TIME_WAIT timers on Linux), and give a verdict "
                                   "with advice: free, in use, time-wait only, reuseport group, permission or "
                                   "address not available. Exit 0 when a plain bind succeeds, 1 when it does "
                                   "not (whatever the verdict), 4 when not even the check is permitted.")
    p.add_argument("port", nargs="?", type=port, metavar="PORT", help="port to check (not with --connect)")
    p.add_argument("--connect", metavar="HOST:PORT",
                   help="instead: explain EADDRNOTAVAIL for outgoing connections to HOST:PORT (the ephemeral "
                        "port range, how much of it this destination uses, tcp_tw_reuse); exit 1 when the "
                        "range is exhausted for it")
    p.add_argument("-b", "--bind", type=host, metavar="ADDR",
                   help="address to check (default: all interfaces, dual-stack '::' as 'sockdiag listen' binds)")
    p.add_argument("-u", "--udp", action="store_true", help="check a UDP port")
    p.add_argument("-o", "--output", choices=("text", "json", "csv"), default="text",
                   help="output format: a report for people (default), one JSON object, or one CSV row "
                        "after a header row")
    common(p)
