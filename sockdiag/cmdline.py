"""What every command's options share: the parser class that writes to the Env's streams and
never exits, the value types that turn bad values into usage errors, and the common options.

Each command package defines its own options (relay/options.py, probe/options.py, ...);
cli.build_parser() puts them together. Kept out of cli.py so that `sockdiag --version` answers
without importing argparse (which pulls in re, enum and gettext: most of a bare interpreter's
start-up time again).
"""

from __future__ import annotations

import argparse
import contextvars
import functools
import os
import sys

from sockdiag.core.portspec import (
    PortSpecError,
    host_syntax_error,
    parse_hostport,
    parse_port,
)

PROG = "sockdiag"

# (stdout, stderr) that argparse's own messages (usage, --help, errors) go to while main() runs.
OUTPUT_STREAMS: contextvars.ContextVar = contextvars.ContextVar("sockdiag_streams", default=None)


class ParserExit(Exception):
    """argparse wanted to exit (after --help, --version or a usage error) with `status`."""

    def __init__(self, status: int):
        self.status = status


class CompletionRequested(Exception):
    """--print-completion SHELL was given: cli.main prints the script (shtab) instead of running."""

    def __init__(self, shell: str):
        self.shell = shell


class PrintCompletion(argparse.Action):
    """--print-completion bash|zsh, answered before a command is required (like --version)."""

    def __call__(self, parser, namespace, values, option_string=None):
        raise CompletionRequested(values)


@functools.cache
def help_width() -> int:
    """What argparse's HelpFormatter finds itself (shutil.get_terminal_size().columns - 2: COLUMNS,
    else the terminal on stdout, else 80), found once per process. argparse asks for a formatter
    at every add_argument, and shutil's import (with bz2, lzma and fnmatch) plus 30-odd terminal
    queries cost about 5 ms of every run's start-up."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


class Parser(argparse.ArgumentParser):
    """ArgumentParser that writes to the Env's streams and never calls sys.exit()."""

    def _get_formatter(self):
        return self.formatter_class(prog=self.prog, width=help_width())

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

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but unknown arguments are reported by the subcommand they follow."""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(namespace, "command", None)
            prog = f"{self.prog} {command}" if command else self.prog
            self.exit(2, usage_error_lines(prog, f"unrecognized arguments: {' '.join(extras)}"))
        return namespace

    def error(self, message):
        """A usage error in the one shape every command uses: `sockdiag CMD: error: ...`, one hint
        line, exit 2 (argparse's default prints the whole usage block first)."""
        self.exit(2, usage_error_lines(self.prog, message))


def usage_error_lines(prog: str, message: str) -> str:
    """`PROG: error: MESSAGE` and the hint line, as the Parser and cli print usage errors."""
    return f"{prog}: error: {' '.join(message.split())}\nTry '{prog} --help'.\n"


# --- argument types: turn bad values into usage errors naming the bad part ----------------------

def host(text: str) -> str:
    """A host name or address: an empty one, or dotted numbers that are no IPv4 address
    (999.1.1.1), is a usage error here rather than a resolver failure later."""
    problem = host_syntax_error(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def frame_header(text: str):
    """--frame-header: a struct format with exactly one integer code (!I, i, <H, >Q)."""
    from sockdiag.core.framing import HeaderFormat

    try:
        return HeaderFormat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def ack_bytes(text: str) -> bytes:
    """--ack: the acknowledgement, as UTF-8 bytes (not empty)."""
    if not text:
        raise argparse.ArgumentTypeError("empty acknowledgement")
    return text.encode("utf-8", "surrogateescape")


def port(text: str) -> int:
    from sockdiag.platform import service_port  # lazy: socket import only when parsing a name

    try:
        return parse_port(text, service_port)
    except PortSpecError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def port_or_zero(text: str) -> int:
    from sockdiag.platform import service_port

    try:
        return parse_port(text, service_port, allow_zero=True)
    except PortSpecError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


# Every duration and size has a ceiling, checked here, so no value reaches a system call that
# overflows: poll(2) takes int milliseconds (at most ~24.8 days), select() and socket timeouts
# a C double that must fit a timeval, and a size turns into an allocation bound.
MAX_SECONDS = 1_000_000  # about 11.6 days
MAX_COUNT = 2**31 - 1
MAX_BYTES = 1024**3  # 1 GiB: a frame is held in memory whole


def seconds(text: str) -> float:
    """A duration: a number of seconds, more than 0 and at most MAX_SECONDS (nan, inf refused)."""
    allowed = f"allowed: more than 0 and at most {MAX_SECONDS} seconds"
    try:
        value = float(text) if text.isascii() else float("nan")
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r} ({allowed})") from None
    if not 0 < value <= MAX_SECONDS:  # also false for nan
        raise argparse.ArgumentTypeError(f"out of range: {text!r} ({allowed})")
    return value


def seconds_or_zero(text: str) -> float:
    """A duration that may be 0 (nc -q 0: at once)."""
    if text.strip() in ("0", "0.0"):
        return 0.0
    return seconds(text)


def int_range(minimum: int, maximum: int = MAX_COUNT):
    """An argparse type: a whole number from `minimum` to `maximum` (ASCII digits only)."""

    def whole_number(text: str) -> int:
        allowed = f"allowed: {minimum} to {maximum}"
        body = text.strip()
        digits = body[1:] if body[:1] in "+-" else body
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 30:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r} ({allowed})")
        value = int(body)
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"out of range: {text!r} ({allowed})")
        return value

    return whole_number


positive_int = int_range(1)
count = int_range(0)


def bytes_size(text: str) -> int:
    """A byte count with an optional K/M/G suffix (powers of 1024): 65536, 64K, 16M; at most 1G."""
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
    allowed = "allowed: 1 to 1G, e.g. 65536, 64K, 16M"
    body = text.strip().upper().removesuffix("B").removesuffix("I")
    suffix = body[-1:] if body[-1:] in ("K", "M", "G") else ""
    number = body[: len(body) - len(suffix)]
    if not (number.isascii() and number.isdigit()) or len(number) > 30:
        raise argparse.ArgumentTypeError(f"not a byte count: {text!r} ({allowed})")
    value = int(number) * units[suffix]
    if not 1 <= value <= MAX_BYTES:
        raise argparse.ArgumentTypeError(f"out of range: {text!r} ({allowed})")
    return value


# --- the parser ---------------------------------------------------------------------------------

def common(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """-v and --debug, accepted before and after the subcommand name."""
    default = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("-v", "--verbose", action="count", help="report events on stderr (repeat for more)",
                        **({"default": 0} if top else default))
    parser.add_argument("--debug", action="store_true", help="print a traceback on errors",
                        **({"default": False} if top else default))


def output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=("text", "json", "csv"), default="text",
                        help="output format: aligned text (default), JSON Lines (one object per line) or CSV")


def family(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-4", dest="family", action="store_const", const=4, help="IPv4 only")
    group.add_argument("-6", dest="family", action="store_const", const=6, help="IPv6 only")


def access_options(parser: argparse.ArgumentParser, allow_note: str = "") -> None:
    """--allow/--deny and their file forms, as ncat has them (listen, forward). `allow_note` ends
    --allow's help with what else it permits for that command."""
    parser.add_argument("--allow", action="append", default=[], metavar="HOSTS",
                        help="accept only these clients: addresses, CIDR blocks or host names, comma-separated "
                             f"(repeatable){allow_note}")
    parser.add_argument("--allowfile", action="append", default=[], metavar="FILE",
                        help="like --allow, one entry per line from FILE ('#' starts a comment)")
    parser.add_argument("--deny", action="append", default=[], metavar="HOSTS",
                        help="refuse these clients (repeatable); deny wins over allow")
    parser.add_argument("--denyfile", action="append", default=[], metavar="FILE",
                        help="like --deny, one entry per line from FILE")


def proxy_address(text: str) -> tuple[str, int | None]:
    """-x: HOST, HOST:PORT, [IPv6] or [IPv6]:PORT -> (host, port or None for the type's default).
    A bare IPv6 address needs brackets, as the port would be ambiguous."""
    from sockdiag.platform import service_port

    item = text.strip()
    if item.startswith("[") and item.endswith("]"):
        host_text, port_number = item[1:-1], None
    elif item.count(":") == 0:
        host_text, port_number = item, None
    elif item.count(":") > 1 and not item.startswith("["):
        raise argparse.ArgumentTypeError(f"bad proxy address {text!r}: write an IPv6 address as [ADDR] or "
                                         "[ADDR]:PORT")
    else:
        try:
            host_text, port_number = parse_hostport(item, service_port)
        except PortSpecError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None
    return host(host_text), port_number


def proxy_credentials(text: str) -> tuple[str, str]:
    """--proxy-auth USER:PASS, split at the first colon (a bare USER has an empty password).
    At most 255 bytes each (RFC 1929's limit); no NUL, CR or LF (they would end the field)."""
    user, _, password = text.partition(":")
    if not user:
        raise argparse.ArgumentTypeError("empty user name (expected USER:PASS)")
    if any(ch in "\x00\r\n" for ch in text):
        raise argparse.ArgumentTypeError("a NUL, CR or LF in the credentials")
    if len(user.encode("utf-8", "surrogateescape")) > 255 or len(password.encode("utf-8", "surrogateescape")) > 255:
        raise argparse.ArgumentTypeError("user and password are at most 255 bytes each")
    return user, password


def proxy_kind(text: str) -> str:
    """-X: 5, 4 or connect; ncat's names socks5, socks4 and http are taken too."""
    return {"socks5": "5", "socks4": "4", "socks4a": "4", "http": "connect"}.get(text, text)


def proxy_options(parser: argparse.ArgumentParser) -> None:
    """-x/-X/--proxy-auth: reach the target through a SOCKS or HTTP CONNECT proxy (as nc -x/-X)."""
    parser.add_argument("-x", "--proxy", type=proxy_address, metavar="HOST[:PORT]",
                        help="connect through the proxy at HOST (port 1080 for SOCKS, 3128 for connect by "
                             "default); the target name is resolved by the proxy, not here")
    parser.add_argument("-X", "--proxy-type", type=proxy_kind, choices=("5", "4", "connect"), default="5",
                        help="the proxy protocol: 5 (SOCKS5, the default), 4 (SOCKS4a) or connect (HTTP CONNECT)")
    parser.add_argument("--proxy-auth", type=proxy_credentials, metavar="USER:PASS",
                        help="proxy credentials: SOCKS5 username/password, HTTP Basic Proxy-Authorization; "
                             "with -X 4 give USER only (sent as the SOCKS4 user id)")
