"""The argparse definition of every subcommand and option, and the value types behind them.

Kept out of cli.py so that `sockdiag --version` answers without importing argparse (which
pulls in re, enum and gettext: most of a bare interpreter's start-up time again).
"""

from __future__ import annotations

import argparse
import contextvars
import sys

from sockdiag import __version__
from sockdiag.portspec import PortSpecError, parse_port
from sockdiag.status import EXIT_STATUS_HELP

PROG = "sockdiag"
SUBCOMMANDS = ("listen", "connect", "probe", "states", "bindcheck")

_EPILOG = "exit status:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_STATUS_HELP) + (
    "\n\nRun 'sockdiag COMMAND --help' for a command's options; 'man sockdiag' for examples."
)

# (stdout, stderr) that argparse's own messages (usage, --help, errors) go to while main() runs.
OUTPUT_STREAMS: contextvars.ContextVar = contextvars.ContextVar("sockdiag_streams", default=None)


class ParserExit(Exception):
    """argparse wanted to exit (after --help, --version or a usage error) with `status`."""

    def __init__(self, status: int):
        self.status = status


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that writes to the Env's streams and never calls sys.exit()."""

    def _print_message(self, message, file=None):
        streams = OUTPUT_STREAMS.get()
        if not message:
            return
        if streams is None:
            super()._print_message(message, file)
            return
        out, err = streams
        target = out if file is None or file is sys.stdout else err
        try:
            target.write(message.encode("utf-8", "replace"))
            target.flush()
        except (OSError, ValueError):
            pass  # the reader went away (`sockdiag bogus 2>&1 | head -1`): the status still tells

    def exit(self, status=0, message=None):
        if message:
            self._print_message(message, sys.stderr)
        raise ParserExit(status)


# --- argument types: turn bad values into usage errors naming the bad part ----------------------

def _port(text: str) -> int:
    from sockdiag.platform import service_port  # lazy: socket import only when parsing a name

    try:
        return parse_port(text, service_port)
    except PortSpecError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _port_or_zero(text: str) -> int:
    from sockdiag.platform import service_port

    try:
        return parse_port(text, service_port, allow_zero=True)
    except PortSpecError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be a positive number: {text!r}")
    return value


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < minimum:
        rule = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
        raise argparse.ArgumentTypeError(f"{rule}: {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _count(text: str) -> int:
    return _whole_number(text, 0)


def _bytes_size(text: str) -> int:
    """A byte count with an optional K/M/G suffix (powers of 1024): 65536, 64K, 16M."""
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
    body = text.strip().upper().removesuffix("B").removesuffix("I")
    suffix = body[-1:] if body[-1:] in ("K", "M", "G") else ""
    number = body[: len(body) - len(suffix)]
    if not (number.isascii() and number.isdigit()) or int(number) < 1:
        raise argparse.ArgumentTypeError(f"not a positive byte count: {text!r} (e.g. 65536, 64K, 16M)")
    return int(number) * units[suffix]


# --- the parser ---------------------------------------------------------------------------------

def _common(parser: argparse.ArgumentParser, top: bool) -> None:
    """-v and --debug, accepted before and after the subcommand name."""
    default = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("-v", "--verbose", action="count", help="report events on stderr (repeat for more)",
                        **({"default": 0} if top else default))
    parser.add_argument("--debug", action="store_true", help="print a traceback on errors",
                        **({"default": False} if top else default))


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=("text", "json", "csv"), default="text",
                        help="output format: aligned text (default), JSON Lines (one object per line) or CSV")


def _family(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-4", dest="family", action="store_const", const=4, help="IPv4 only")
    group.add_argument("-6", dest="family", action="store_const", const=6, help="IPv6 only")


def _stream_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by connect and listen."""
    _family(parser)
    parser.add_argument("-u", "--udp", action="store_true", help="UDP instead of TCP")
    parser.add_argument("-i", "--idle-timeout", type=_seconds, metavar="SEC",
                        help="end a connection that moved no data for SEC seconds")
    parser.add_argument("--no-shutdown", action="store_true",
                        help="keep the write side open after stdin EOF (no half-close)")
    parser.add_argument("--frame", action="store_true",
                        help="message mode: each stdin line is sent as one frame with a 4-byte big-endian "
                             "length prefix; each received frame is printed as one line")
    parser.add_argument("--max-frame", type=_bytes_size, default=16 * 1024 * 1024, metavar="BYTES",
                        help="largest frame accepted in --frame mode (default 16M)")
    parser.add_argument("--raw", action="store_true",
                        help="UDP: send each read chunk of stdin as a datagram instead of each line")


def _add_listen(sub) -> None:
    p = sub.add_parser("listen", help="listen on PORT and relay stdin/stdout (like nc -l)",
                       description="Listen on PORT and relay between the connection and stdin/stdout, "
                                   "like 'nc -l'. Without -k, serve one connection and exit when it ends.")
    p.add_argument("port", type=_port_or_zero, metavar="PORT", help="port to listen on (0: any free port)")
    p.add_argument("-b", "--bind", metavar="ADDR", help="address to bind (default: all interfaces, dual-stack)")
    p.add_argument("-k", "--keep-open", action="store_true", help="serve many clients, concurrently")
    p.add_argument("--max-clients", type=_positive_int, metavar="N", help="with -k: at most N clients at once")
    p.add_argument("--echo", action="store_true", help="echo server: send each client back what it sent")
    p.add_argument("--exec", dest="exec_cmd", metavar="CMD",
                   help="run CMD (no shell) per connection with the socket as its stdin/stdout")
    p.add_argument("--sh-exec", dest="sh_exec", metavar="CMD", help="like --exec, through /bin/sh -c")
    p.add_argument("--allow", action="append", default=[], metavar="CIDR",
                   help="accept clients only from CIDR (repeatable); also permits --exec on a public address")
    p.add_argument("--deny", action="append", default=[], metavar="CIDR", help="refuse clients from CIDR (repeatable)")
    _stream_options(p)
    _common(p, top=False)


def _add_connect(sub) -> None:
    p = sub.add_parser("connect", help="connect to HOST PORT and relay stdin/stdout (like nc HOST PORT)",
                       description="Connect to HOST PORT and relay between the connection and stdin/stdout, "
                                   "like 'nc HOST PORT'. On stdin EOF the write side is shut down and the reply "
                                   "is still printed.")
    p.add_argument("host", metavar="HOST", help="host name, IPv4 or IPv6 address")
    p.add_argument("port", type=_port, metavar="PORT", help="port number or service name")
    p.add_argument("-w", "--timeout", type=_seconds, metavar="SEC", help="connect timeout (exit 3 when it expires)")
    p.add_argument("-s", "--source", metavar="ADDR", help="local address to connect from")
    p.add_argument("-p", "--source-port", type=_port, metavar="PORT", help="local port to connect from")
    p.add_argument("--wait", type=_seconds, default=1.0, metavar="SEC",
                   help="UDP: how long to wait for replies after stdin EOF (default 1)")
    _stream_options(p)
    _common(p, top=False)


def _add_probe(sub) -> None:
    p = sub.add_parser("probe", help="scan TCP (or UDP) ports with concurrent connects (like nmap -sT)",
                       description="Scan PORTS on HOST with concurrent non-blocking connects, like "
                                   "'nmap -sT' or 'nc -z'. Prints one line per open port: HOST PORT PROTO STATE SERVICE.")
    p.add_argument("host", metavar="HOST",
                   help="name, IPv4/IPv6 address, comma list of those, or CIDR block (at most /16 without --force)")
    p.add_argument("ports", metavar="PORTS", help="e.g. 22,80,443 or 1-1024 or ssh,https; '-' for 1-65535")
    _family(p)
    p.add_argument("-c", "--concurrency", type=_positive_int, metavar="N",
                   help="connects in flight at once (default: from the open-file limit)")
    p.add_argument("-t", "--timeout", type=_seconds, default=1.0, metavar="SEC",
                   help="per-attempt timeout (default 1.0)")
    p.add_argument("--retries", type=_count, default=0, metavar="N",
                   help="extra attempts for ports that did not answer within the timeout (default 0, as nc -z; "
                        "add some on lossy links)")
    p.add_argument("--rate", type=_positive_int, metavar="N", help="at most N attempts per second")
    p.add_argument("--workers", type=_positive_int, metavar="N",
                   help="scanner threads, each with its own share of the sockets (default: one per CPU, "
                        "at most 4, for TCP scans of 4096 attempts or more; 1 with --rate or -u)")
    p.add_argument("-u", "--udp", action="store_true", help="UDP probe: reply=open, ICMP unreachable=closed")
    p.add_argument("-a", "--all", action="store_true", help="also print closed, filtered and unreachable ports")
    p.add_argument("--banner", action="store_true",
                   help="read and show what each open service sends first (up to 512 bytes, within --timeout)")
    p.add_argument("--force", action="store_true", help="allow target blocks larger than /16")
    _output(p)
    _common(p, top=False)


# The valid --state names: psutil's CONN_* constants. DELETE_TCB, IDLE and BOUND exist only on
# Windows/BSD; NONE selects sockets without a state (UDP, unix).
STATE_NAMES = ("ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
               "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NONE", "DELETE_TCB", "IDLE", "BOUND")
# Spellings ss and netstat users type (ss: fin-wait-1, estab; Windows netstat: LISTENING, SYN_RECEIVED).
_STATE_ALIASES = {"FIN_WAIT_1": "FIN_WAIT1", "FIN_WAIT_2": "FIN_WAIT2", "ESTAB": "ESTABLISHED",
                  "LISTENING": "LISTEN", "CLOSED": "CLOSE", "SYN_RECEIVED": "SYN_RECV", "UNCONN": "NONE"}


def _state_name(text: str) -> str:
    """A socket state, any case, '-' or '_': time-wait, TIME_WAIT -> 'TIME_WAIT'."""
    name = text.strip().upper().replace("-", "_").replace(" ", "_")
    name = _STATE_ALIASES.get(name, name)
    if name not in STATE_NAMES:
        raise argparse.ArgumentTypeError(f"unknown state {text!r} (valid: {', '.join(STATE_NAMES)})")
    return name


def _add_states(sub) -> None:
    p = sub.add_parser("states", help="list sockets with state and process (like netstat -an / ss)",
                       description="List the machine's sockets with their states and owning processes, "
                                   "like 'netstat -anp' or 'ss -anp'. Without -t, -u or -x, TCP, UDP and "
                                   "unix sockets are all listed. Filters combine.")
    p.add_argument("-t", "--tcp", action="store_true", help="TCP sockets")
    p.add_argument("-u", "--udp", action="store_true", help="UDP sockets")
    p.add_argument("-x", "--unix", action="store_true", help="Unix domain sockets")
    _family(p)
    p.add_argument("-l", "--listening", action="store_true", help="listening (and bound UDP) sockets only")
    p.add_argument("--state", action="append", type=_state_name, metavar="NAME",
                   help="only sockets in state NAME (repeatable; any case, time-wait = TIME_WAIT): "
                        + ", ".join(STATE_NAMES))
    p.add_argument("--port", type=_port, metavar="N", help="local or remote port N")
    p.add_argument("--pid", type=_positive_int, metavar="PID", help="sockets of process PID")
    p.add_argument("--process", metavar="NAME",
                   help="sockets of processes named NAME (any case; * ? [ ] as in the shell)")
    p.add_argument("--sort", choices=("local", "remote", "state", "pid"), help="sort rows by this column")
    p.add_argument("--summary", action="store_true",
                   help="counts per protocol and state, and the ports with most TIME_WAIT/ESTABLISHED")
    p.add_argument("--watch", type=_seconds, metavar="SEC", help="redraw every SEC seconds, marking changes")
    _output(p)
    _common(p, top=False)


def _add_bindcheck(sub) -> None:
    p = sub.add_parser("bindcheck", help="explain why PORT cannot be bound (in use, TIME_WAIT, permission)",
                       description="Try to bind PORT the ways a server would (plain, SO_REUSEADDR, SO_REUSEPORT; "
                                   "SO_EXCLUSIVEADDRUSE on Windows) on throw-away sockets closed at once, list "
                                   "the sockets holding it (with TIME_WAIT timers on Linux), and give a verdict "
                                   "with advice: free, in use, time-wait only, reuseport group, permission or "
                                   "address not available. Exit 0 when a plain bind succeeds, 1 when it does "
                                   "not (whatever the verdict), 4 when not even the check is permitted.")
    p.add_argument("port", type=_port, metavar="PORT", help="port to check")
    p.add_argument("-b", "--bind", metavar="ADDR",
                   help="address to check (default: all interfaces, dual-stack '::' as 'sockdiag listen' binds)")
    p.add_argument("-u", "--udp", action="store_true", help="check a UDP port")
    p.add_argument("-o", "--output", choices=("text", "json", "csv"), default="text",
                   help="output format: a report for people (default), one JSON object, or one CSV row "
                        "after a header row")
    _common(p, top=False)


def build_parser() -> argparse.ArgumentParser:
    """The complete parser. No side effects: argparse-manpage imports this to build the man page."""
    parser = _Parser(prog=PROG, description="Socket diagnostics: a netcat-style relay, a connect scanner, "
                                            "the socket table and a bind/TIME_WAIT diagnosis in one tool.",
                     epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in (_add_listen, _add_connect, _add_probe, _add_states, _add_bindcheck):
        add(sub)
    return parser
