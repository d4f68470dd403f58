"""The options of `sockdiag wait` (argparse; no side effects)."""

from __future__ import annotations

import argparse

from sockdiag.cmdline import common, host, port, seconds
from sockdiag.core.portspec import PortSpecError, parse_hostport

DEFAULT_INTERVAL = 0.5  # seconds between rounds of attempts (see add_wait's --interval help)
JSON_KEYS = ("target", "kind", "ready", "seconds", "attempts", "error")

_EPILOG = """\
targets:
  HOST:PORT     ready when it accepts a TCP connection (any of the name's addresses; the
                connection is closed at once). A name is resolved again at every attempt: one
                that does not resolve yet is not ready yet. IPv6 as [ADDR]:PORT.
  -U PATH       ready when a stream unix socket at PATH accepts a connection
  --bindable P  ready when a plain bind of port P (no SO_REUSEADDR, on -b ADDR or the dual-stack
                wildcard, as 'sockdiag listen' binds) would succeed: no listener, no TIME_WAIT
                left. A throw-away socket, closed at once, never listening. A privileged port
                that may not be bound at all ends the wait with exit 4.
  --closed      HOST:PORT and -U targets are ready when nothing listens any more: every
                address refuses the connection (a unix socket: refused, or the file is gone).
                An unresolvable name or a timeout is not "closed".

Without -w the wait has no end (as wait-for-it -t 0): stop it with Ctrl-C (exit 130).
Each connect attempt times out after 1 s (or what is left of -w); a name lookup that takes
longer is waited for again at the next attempt, never started twice.

output (-o json: one object per target, in the order given, when the wait ends):
  target    the target as named in messages: HOST:PORT, the unix socket path, or the bind
            address and port ([::]:8080)
  kind      "tcp", "unix" or "bind"
  ready     true when the target reached the awaited state (accepting; closed with --closed;
            bindable), false when -w expired (or another target won with --any)
  seconds   from the start of the wait until it was ready, or until the wait ended
  attempts  connect (or bind) attempts made on it
  error     why it was not ready at its last attempt: an errno or EAI name (ECONNREFUSED,
            ETIMEDOUT, EAI_NONAME, EADDRINUSE), "accepting" (--closed), "resolving" (the
            name lookup had not finished); null when ready
-o csv: the same keys, after a header row.

exit status: 0 every target ready (one with --any), 1 -b ADDR does not resolve, 2 bad target or
option, 3 -w expired (one line naming what was not ready), 4 --bindable on a port this user may
not bind, 130 Ctrl-C.

examples:
  sockdiag wait -w 30 db:5432 redis:6379 && exec ./server
  sockdiag wait -w 10 -U /run/app.sock
  sockdiag wait --closed -w 20 127.0.0.1:8080 && sockdiag wait --bindable 8080 -w 120
"""


def hostport(text: str) -> tuple[str, int]:
    """A HOST:PORT or [IPv6]:PORT target; a malformed one is a usage error naming the bad part."""
    from sockdiag.platform import service_port  # lazy: socket only when parsing

    try:
        name, number = parse_hostport(text, service_port)
    except PortSpecError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return host(name), number


def unix_path(text: str) -> str:
    """A unix socket path: not empty, no NUL byte (the OS could not take it)."""
    if not text:
        raise argparse.ArgumentTypeError("empty unix socket path")
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"NUL byte in unix socket path {text!r}")
    return text


def add_wait(sub) -> None:
    p = sub.add_parser(
        "wait", help="block until ports accept, unix sockets answer, ports close or become bindable",
        description="Block until every target is ready, as wait-for-it.sh or 'dockerize -wait' do: HOST:PORT\n"
                    "accepts a TCP connection, a unix socket accepts one (-U), nothing listens any more\n"
                    "(--closed), or a port can be bound again (--bindable). Exit 0 when ready, 3 when -w\n"
                    "expires. Quiet on stdout unless -o is given; -v reports each target on stderr.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="*", type=hostport, metavar="HOST:PORT",
                   help="TCP targets: name or address and port ([ADDR]:PORT for IPv6); give them together, "
                        "before or after the options")
    p.add_argument("-U", "--unix", action="append", default=[], type=unix_path, metavar="PATH",
                   help="wait for a unix socket at PATH to accept a connection (repeatable)")
    p.add_argument("--bindable", action="append", default=[], type=port, metavar="PORT",
                   help="wait until a plain TCP bind of PORT would succeed (repeatable)")
    p.add_argument("-b", "--bind", type=host, metavar="ADDR",
                   help="with --bindable: the address to bind (default: all interfaces, dual-stack '::')")
    p.add_argument("--closed", action="store_true",
                   help="wait until HOST:PORT and -U targets refuse connections (nothing listens)")
    p.add_argument("--any", action="store_true", help="end when one target is ready (default: all of them)")
    p.add_argument("-w", "--timeout", type=seconds, metavar="SEC",
                   help="give up after SEC seconds in all, exit 3 (default: wait forever)")
    p.add_argument("--interval", type=seconds, default=DEFAULT_INTERVAL, metavar="SEC",
                   help=f"pause between rounds of attempts (default {DEFAULT_INTERVAL}: a script goes on at "
                        "most half a second after its service came up; a refused attempt costs next to nothing)")
    p.add_argument("-o", "--output", choices=("json", "csv"),
                   help="print one row per target when the wait ends: JSON Lines or CSV (keys below)")
    common(p)
