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
import sys

from sockdiag.core.portspec import PortSpecError, parse_port

PROG = "sockdiag"

# (stdout, stderr) that argparse's own messages (usage, --help, errors) go to while main() runs.
OUTPUT_STREAMS: contextvars.ContextVar = contextvars.ContextVar("sockdiag_streams", default=None)


class ParserExit(Exception):
    """argparse wanted to exit (after --help, --version or a usage error) with `status`."""

    def __init__(self, status: int):
        self.status = status


class Parser(argparse.ArgumentParser):
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


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be a positive number: {text!r}")
    return value


def whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < minimum:
        rule = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
        raise argparse.ArgumentTypeError(f"{rule}: {text!r}")
    return value


def positive_int(text: str) -> int:
    return whole_number(text, 1)


def count(text: str) -> int:
    return whole_number(text, 0)


def bytes_size(text: str) -> int:
    """A byte count with an optional K/M/G suffix (powers of 1024): 65536, 64K, 16M."""
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
    body = text.strip().upper().removesuffix("B").removesuffix("I")
    suffix = body[-1:] if body[-1:] in ("K", "M", "G") else ""
    number = body[: len(body) - len(suffix)]
    if not (number.isascii() and number.isdigit()) or int(number) < 1:
        raise argparse.ArgumentTypeError(f"not a positive byte count: {text!r} (e.g. 65536, 64K, 16M)")
    return int(number) * units[suffix]


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
