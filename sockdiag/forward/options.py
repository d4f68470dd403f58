"""The options of `sockdiag forward` (argparse; no side effects)."""

from __future__ import annotations

from sockdiag.cmdline import (
    access_options,
    common,
    family,
    host,
    int_range,
    port,
    port_or_zero,
    proxy_options,
    seconds,
)


def add_forward(sub) -> None:
    p = sub.add_parser("forward", help="forward a local port to HOST PORT, many clients at once "
                                       "(like socat TCP-LISTEN:LPORT,fork TCP:HOST:PORT)",
                       description="Listen on LPORT and forward each client to HOST PORT over a connection of "
                                   "its own, bytes exact both ways, half-close passed on. Listens on loopback "
                                   "(127.0.0.1 and ::1) unless LADDR is given, as ssh -L does, so an internal "
                                   "service is not exposed by accident. Serves until interrupted.")
    p.add_argument("laddr", nargs="?", type=host, metavar="LADDR",
                   help="address (or name) to listen on instead of loopback; 0.0.0.0 or :: for all interfaces")
    p.add_argument("lport", type=port_or_zero, metavar="LPORT", help="port to listen on (0: any free port; -v "
                                                                     "shows it)")
    p.add_argument("host", type=host, metavar="HOST", help="where to forward to: host name, IPv4 or IPv6 address "
                                                           "(resolved once, at start)")
    p.add_argument("port", type=port, metavar="PORT", help="port number or service name to forward to")
    family(p)
    p.add_argument("-u", "--udp", action="store_true",
                   help="forward UDP: each client address gets an upstream socket of its own, the replies go back "
                        "to it; a session ends after -i seconds without traffic (default 60)")
    p.add_argument("-w", "--timeout", type=seconds, metavar="SEC",
                   help="give up connecting to the upstream after SEC (the client is closed; the others go on)")
    p.add_argument("-i", "--idle-timeout", type=seconds, metavar="SEC",
                   help="close a connection that moved no data either way for SEC seconds (UDP: end the session; "
                        "default 60 with -u)")
    p.add_argument("--max-clients", type=int_range(1, 1_000_000), metavar="N",
                   help="at most N clients at once; more are closed at once, with a warning")
    p.add_argument("--dump", metavar="FILE",
                   help="write a timestamped hex dump of both directions to FILE (> client to upstream, "
                        "< upstream to client), as socat -x; copies through the process instead of splice(2)")
    access_options(p)
    proxy_options(p)
    common(p)
