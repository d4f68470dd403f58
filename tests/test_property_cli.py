"""Every command survives hostile command lines built from the parser's own option table.

build_parser() is walked for each command in cli.COMMANDS: its options (flags, how many values
they take, choices, the value type) and its positionals. Hypothesis builds argv from them with
valid values and hostile ones (huge, negative, zero, empty, whitespace, non-ASCII, nan/inf/1e308,
70000, reversed ranges, random text, values that look like options), runs main(argv, env)
in-process with an empty stdin and BytesIO stdout/stderr, and checks the contract all commands
share: main() returns (no exception, no traceback), with a documented exit status, at most two
lines on stderr, no "internal error" (a bug cli.main turned into one line), and a usage error in
the one shape `sockdiag CMD: error: ...` + `Try 'sockdiag CMD --help'.`.

Never a hang and never the network beyond loopback:
- getaddrinfo answers only localhost and loopback literals: any other name is EAI_NONAME, so no
  DNS query leaves the machine, and connect/listen/bindcheck/--allow reach loopback only;
- probe connects to address literals without getaddrinfo, so a probe line that parses is run
  only when its targets are loopback; ports another process on this machine listens on (or has
  bound for UDP) are never connected to or probed;
- bounds are appended after the generated options (argparse keeps the last value of an option
  but still checks every earlier one, so a bad generated value is still a usage error):
  connect -w/-i/--wait, probe -t (and --rate/--workers when the generated ones would be slow);
- listen gets `-b 127.0.0.1` (`-b ::1` with -6) when the generated line binds nothing; once its
  listener is up a client connects (or sends a datagram), and whatever still runs is ended with
  a Ctrl-C (the documented 130). `states --watch` is ended the same way;
- bindcheck runs as it is: it binds throw-away sockets (loopback with -b, else the wildcard)
  and closes them at once, never listening;
- a SIGALRM watchdog turns anything still running after HANG_SECONDS into a test failure.

-v/--verbose and --debug are not generated: they are documented to add stderr lines (events,
tracebacks), which is what properties 1 and 3 forbid.
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import os
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

from sockdiag import cli, cmdline
from sockdiag.cli import COMMANDS, build_parser, main
from sockdiag.cmdline import OUTPUT_STREAMS, ParserExit
from sockdiag.core.errors import SockdiagError
from sockdiag.core.targets import parse_targets
from sockdiag.states.options import STATE_NAMES, state_name
from tests.conftest import make_env

DOCUMENTED_STATUSES = frozenset({0, 1, 2, 3, 4, 129, 130, 143})
# Examples per command: 5 commands x 420 = 2,100. SOCKDIAG_CLI_EXAMPLES raises it for a long run.
EXAMPLES = int(os.environ.get("SOCKDIAG_CLI_EXAMPLES", "420"))
HANG_SECONDS = 8.0  # main() still running after this is a hang: the test fails
INTERRUPT_AFTER = 0.1  # a server (listen -k, --echo, --exec, -u) or states --watch gets Ctrl-C
MAX_PROBE_ATTEMPTS = 256  # host x port pairs; loopback answers in microseconds each
NOT_GENERATED = {"verbose", "debug", "help"}  # see the module docstring; -h/--help come as values

# Placeholders for this run's loopback ports and files (strategies are built at import time).
REFUSED, OPEN, RULES, EMPTY_FILE = "@REFUSED@", "@OPEN@", "@RULES@", "@EMPTY@"


# --- the parser's own option table --------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    """One argparse action of a command: an option (flags) or a positional (no flags)."""

    command: str
    flags: tuple[str, ...]
    dest: str
    nargs: object
    choices: tuple[str, ...] | None
    kind: object  # the argparse type function, or None

    @property
    def takes_value(self) -> bool:
        return self.nargs != 0

    @property
    def long_flag(self) -> str:
        return max(self.flags, key=len)


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def option_table(command: str, parser: argparse.ArgumentParser) -> tuple[list[Option], list[Option]]:
    """(options, positionals) of one command, read from its argparse actions."""
    optionals, positionals = [], []
    for action in parser._actions:
        if action.dest in NOT_GENERATED or isinstance(action, argparse._HelpAction):
            continue
        choices = tuple(str(c) for c in action.choices) if action.choices else None
        option = Option(command, tuple(action.option_strings), action.dest, action.nargs, choices, action.type)
        (optionals if option.flags else positionals).append(option)
    return optionals, positionals


PARSER = build_parser()  # for the test's own look at a line (main() builds its own)
TABLE = {name: option_table(name, sub) for name, sub in command_parsers().items()}


def find(command: str, dest: str) -> Option | None:
    return next((o for o in TABLE[command][0] if o.dest == dest), None)


def flag_of(command: str, dest: str) -> str:
    option = find(command, dest)
    assert option is not None, f"{command} has no option with dest {dest!r} any more: update this test"
    return option.long_flag


def int_bounds(kind) -> tuple[int, int] | None:
    """(minimum, maximum) of a cmdline.int_range type, read from its closure."""
    code, closure = getattr(kind, "__code__", None), getattr(kind, "__closure__", None)
    if code is None or not closure:
        return None
    cells = dict(zip(code.co_freevars, (cell.cell_contents for cell in closure)))
    low, high = cells.get("minimum"), cells.get("maximum")
    return (low, high) if isinstance(low, int) and isinstance(high, int) else None


# Values that bound a run, appended after the generated options: (command, dest) -> value.
BOUNDS = {("connect", "timeout"): "0.5", ("connect", "idle_timeout"): "0.2", ("connect", "wait"): "0.05",
          ("probe", "timeout"): "0.05", ("ping", "count"): "2", ("ping", "interval"): "0",
          ("ping", "timeout"): "0.05", ("wait", "timeout"): "0.3", ("forward", "timeout"): "0.5"}


def bounding_suffix(command: str) -> list[str]:
    suffix = []
    for (name, dest), value in BOUNDS.items():
        if name == command:
            suffix += [flag_of(command, dest), value]
    return suffix


# --- values -------------------------------------------------------------------------------------

HOSTS = ("127.0.0.1", "::1", "localhost", "[::1]", "127.0.0.2", "LOCALHOST")
HOSTILE = (
    "", " ", "\t", " \n ", "0", "-0", "00", "-1", "-65535", "+1", "1.5", "0.0", "1e308", "-1e308", "1e400",
    "1e-400", "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "9" * 40, "18446744073709551616",
    "-" + "9" * 30, "0x10", "1_000", "1e10", "2200000", "1000001", "70000", "65536", "65535", "10-5", "5-",
    "-5", "1-", "-", "1-2-3", ",", "1,,2", "80,", "0-0", "65535-65536", "1:2", "ssh,", "no-such-service",
    "http ", "999.1.1.1", "1.2.3", "256.0.0.1", "::g", "[::1", "::1]", "[]", "127.0.0.1:80", "[::1]:80",
    "127.0.0.0/8", "127.0.0.1/33", "10.0.0.0/8", "0.0.0.0/0", "a" * 300, "no.such.host.invalid",
    "\u00fcn\u00efc\u00f8d\u00e9", "\u65e5\u672c", "\u0661\u0662\u0663", "\uff11\uff12", "\u00a0", "\u200b",
    "x\u0301", os.fsdecode(b"\xff\xfe"), "-w", "-i", "-t", "-4", "-6", "-h", "--help", "--", "---", "--wait",
    "--timeout=1", "-w0.1", "--bogus", "'", '"', "a b", "$(true)", "*", "[", "\\", "/", "/nonexistent/file",
)
RANDOM_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=16)
NUMBERS = st.one_of(st.integers(-(2**70), 2**70).map(str), st.floats().map(str),
                    st.from_regex(r"\A[0-9]{0,6}-[0-9]{0,6}\Z"))
HOSTILE_VALUES = st.one_of(st.sampled_from(HOSTILE), RANDOM_TEXT, NUMBERS)

SECONDS_OK = st.one_of(st.sampled_from(("0.05", "1", "0.5", "1e-3", "1000000", "2.5", " 3 ", "+1")),
                       st.floats(1e-3, 1e6).map(repr))
PORTS_OK = st.one_of(st.sampled_from((REFUSED, OPEN, "echo", "discard", "ssh", "http", " 80")),
                     st.integers(1, 65535).map(str))
BYTES_OK = st.sampled_from(("1", "65536", "64K", "16M", "1G", "64k", "1m", " 2K ", "4KiB", "1GB", "512b"))
STATES_OK = st.sampled_from(STATE_NAMES + ("time-wait", "estab", "Listening", "fin-wait-1", "unconn", " listen "))
FREE_TEXT_OK = {  # options without a type: what a user would give
    "allow": ("127.0.0.1", "127.0.0.0/8", "::1", "localhost", "10.0.0.0/8", "127.0.0.1,::1", "::ffff:127.0.0.1"),
    "deny": ("127.0.0.2", "::1", "localhost", "192.0.2.0/24", "127.0.0.1"),
    "allowfile": (RULES, EMPTY_FILE),
    "denyfile": (RULES, EMPTY_FILE),
    "exec_cmd": ("true", "cat", "/bin/true"),
    "sh_exec": ("true", "exit 0", "cat"),
    "process": ("python*", "init", "*", "[ps]ython?", "sockdiag"),
    "exclude": ("127.0.0.2", "127.0.0.0/30", "127.0.0.1-2", "::1", "localhost"),
    "excludefile": (RULES, EMPTY_FILE),
    "exclude_ports": ("1-4", "7,9", "ssh", "1-65535"),
    "input_file": ("-",),
    "proxy": (f"127.0.0.1:{REFUSED}", f"127.0.0.1:{OPEN}", f"[::1]:{REFUSED}", f"localhost:{OPEN}"),
    "proxy_auth": ("alice:s3cret", "alice", "u:p:q", "u:"),
    "dump": (EMPTY_FILE,),  # forward --dump: only the test's own file is ever written (plan())
}
SAFE_EXEC = {"true", "cat", "/bin/true", "exit 0"}  # a client may connect only when --exec is one of these
PROBE_TARGETS = ("127.0.0.1", "::1", "localhost", "[::1]", "127.0.0.2", "127.0.0.0/30", "::1/127", "::1/128",
                 "no-such-host.invalid", "x.invalid", "LOCALHOST")
UNRESOLVED_NAMES = st.from_regex(r"\A[a-z][a-z0-9-]{0,8}\.invalid\Z")  # EAI_NONAME from the resolver patch
PROBE_HOSTS = st.one_of(st.sampled_from(PROBE_TARGETS),
                        st.lists(st.one_of(st.sampled_from(PROBE_TARGETS), UNRESOLVED_NAMES), min_size=2,
                                 max_size=5).map(",".join))
PROBE_PORT_ITEMS = ("1-4", REFUSED, OPEN, f"{OPEN}-{OPEN}", "echo", "discard", "ssh", "7", "9", "13", "1-64", "-3")
PROBE_PORTS = st.one_of(st.sampled_from(PROBE_PORT_ITEMS),
                        st.lists(st.sampled_from(PROBE_PORT_ITEMS), min_size=2, max_size=4).map(",".join))
# comma lists with a hostile item among valid ones: the parser must name the bad part
PROBE_LISTS_HOSTILE = {"host": st.lists(st.one_of(st.sampled_from(PROBE_TARGETS), HOSTILE_VALUES), min_size=2,
                                        max_size=4).map(",".join),
                       "ports": st.lists(st.one_of(st.sampled_from(PROBE_PORT_ITEMS), HOSTILE_VALUES), min_size=2,
                                         max_size=4).map(",".join)}


def valid_values(option: Option) -> st.SearchStrategy[str]:
    kind = option.kind
    if option.choices:
        return st.sampled_from(option.choices)
    if kind is cmdline.seconds:
        return SECONDS_OK
    if kind is cmdline.port:
        return PORTS_OK
    if kind is cmdline.port_or_zero:
        return st.one_of(st.just("0"), PORTS_OK)
    if kind is cmdline.host:
        return st.sampled_from(HOSTS)
    if kind is cmdline.bytes_size:
        return BYTES_OK
    if kind is state_name:
        return STATES_OK
    bounds = int_bounds(kind)
    if bounds:
        low, high = bounds
        return st.one_of(st.integers(low, min(high, low + 1000)).map(str), st.sampled_from((str(low), str(high))))
    if (option.command, option.dest) == ("probe", "host"):
        return PROBE_HOSTS
    if (option.command, option.dest) == ("probe", "ports"):
        return PROBE_PORTS
    if option.dest in FREE_TEXT_OK:
        return st.sampled_from(FREE_TEXT_OK[option.dest])
    return st.sampled_from(("1", "0.5", "64K", "127.0.0.1", "text"))  # an option this test does not know yet


def hostile_values(option: Option) -> st.SearchStrategy[str]:
    """The shared hostile pool plus values just outside this option's own limits."""
    extra: list[str] = []
    bounds = int_bounds(option.kind)
    if bounds:
        low, high = bounds
        extra += [str(low - 1), str(high + 1), f" {low} ", f"+{high}", f"{high}0", f"{low}.0"]
    if option.kind is cmdline.seconds:
        extra += [str(cmdline.MAX_SECONDS + 1), f"{cmdline.MAX_SECONDS}.001", "5e-324", "0e0", "-0.0"]
    if option.kind is cmdline.bytes_size:
        extra += ["0", "0K", "2G", "1T", "1025M", "K", "1.5M", "-1K", "64 K"]
    for choice in option.choices or ():
        extra += [choice.upper(), choice[:-1], choice + " ", " " + choice]
    pool = st.sampled_from(HOSTILE + tuple(extra))
    if option.command == "probe" and option.dest in PROBE_LISTS_HOSTILE:
        return st.one_of(pool, pool, RANDOM_TEXT, NUMBERS, PROBE_LISTS_HOSTILE[option.dest])
    return st.one_of(pool, pool, RANDOM_TEXT, NUMBERS)


def values(option: Option, hostile: bool) -> st.SearchStrategy[str]:
    return hostile_values(option) if hostile else valid_values(option)


# --- command lines ------------------------------------------------------------------------------

def _value_count(nargs) -> st.SearchStrategy[int]:
    if nargs is None:
        return st.just(1)
    if isinstance(nargs, int):
        return st.just(nargs)
    return {"?": st.integers(0, 1), "*": st.integers(0, 2), "+": st.integers(1, 2)}.get(nargs, st.just(1))


@st.composite
def option_tokens(draw, option: Option, hostile: bool) -> list[str]:
    """One use of an option: `-w 1`, `--timeout=1`, `-w1`; hostile: also a missing value, or a value
    given to a flag that takes none."""
    flag = draw(st.sampled_from(option.flags))
    long = flag.startswith("--")
    if not option.takes_value:
        if hostile and long and draw(st.booleans()):
            return [f"{flag}={draw(st.sampled_from(('1', '', 'yes')))}"]
        return [flag]
    count = draw(_value_count(option.nargs))
    given_values = [draw(values(option, hostile)) for _ in range(count)]
    forms = ["separate", "separate", "equals" if long else "attached"] + (["missing"] if hostile else [])
    form = draw(st.sampled_from(forms)) if count == 1 else "separate"
    if form == "missing":
        return [flag]
    if form == "equals":
        return [f"{flag}={given_values[0]}"]
    if form == "attached":
        return [f"{flag}{given_values[0]}"]
    return [flag, *given_values]


def abbreviations(command: str) -> tuple[str, ...]:
    """Unknown options, and prefixes of real long options (argparse accepts unique ones)."""
    longs = [f for o in TABLE[command][0] for f in o.flags if f.startswith("--")]
    return ("--bogus", "-Z", "--no-such-option=1", "-") + tuple(f[:k] for f in longs for k in range(3, len(f)))


@st.composite
def command_lines(draw, command: str) -> list[str]:
    """argv for `command`: options from its table, its positionals, in any order. Most lines have
    exactly one hostile value; some are all valid (they reach the command), some are chaos."""
    optionals, positionals = TABLE[command]
    style = draw(st.sampled_from(("one hostile",) * 5 + ("all valid",) * 3 + ("chaos",) * 2))
    chosen = draw(st.lists(st.sampled_from(optionals), max_size=5)) if optionals else []
    slots = len(chosen) + len(positionals)
    bad = draw(st.integers(0, slots - 1)) if style == "one hostile" and slots else -1

    def hostile(index: int) -> bool:
        return index == bad or (style == "chaos" and draw(st.booleans()))

    groups = [draw(option_tokens(option, hostile(i))) for i, option in enumerate(chosen)]
    given_values = [draw(values(option, hostile(len(chosen) + j))) for j, option in enumerate(positionals)]
    change = draw(st.sampled_from((None,) * 8 + ("drop", "extra")))  # a positional missing or extra
    if change == "drop" and given_values:
        given_values.pop()
    elif change == "extra":
        given_values.append(draw(HOSTILE_VALUES))
    if draw(st.integers(0, 9)) == 0:
        groups.insert(draw(st.integers(0, len(groups))), [draw(st.sampled_from(abbreviations(command)))])
    if given_values and draw(st.integers(0, 9)) == 0:  # after "--" option-like values reach their parsers
        return [command, *(t for g in groups for t in g), "--", *given_values]
    places = sorted(draw(st.lists(st.integers(0, len(groups)), min_size=len(given_values),
                                  max_size=len(given_values))))
    argv = [command]
    for index in range(len(groups) + 1):
        argv += [v for place, v in zip(places, given_values) if place == index]
        if index < len(groups):
            argv += groups[index]
    return argv


# --- loopback only ------------------------------------------------------------------------------

_real_getaddrinfo = socket.getaddrinfo


def loopback_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    """getaddrinfo that never asks DNS: localhost and loopback literals resolve (numerically),
    every other name is EAI_NONAME. Names are IDNA-encoded first, as the real one does."""
    if host is None:
        return _real_getaddrinfo(host, port, family, type, proto, flags)
    text = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    if isinstance(host, str):
        host.encode("idna")  # UnicodeError for a name no resolver could take, as the real one
    numeric = flags | socket.AI_NUMERICHOST
    if text.lower() in ("localhost", "localhost."):
        found = []
        for address in ("127.0.0.1", "::1"):
            try:
                found += _real_getaddrinfo(address, port, family, type, proto, numeric)
            except socket.gaierror:
                pass
        if found:
            return found
    else:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            address = None
        if address is not None and address.is_loopback:
            return _real_getaddrinfo(host, port, family, type, proto, numeric)
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def foreign_ports() -> set[int]:
    """Ports another process of this machine listens on (TCP) or has bound (UDP): never touched."""
    ports: set[int] = set()
    if Path("/proc/net/tcp").exists():
        for name, state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", None), ("udp6", None)):
            try:
                lines = Path("/proc/net", name).read_text().splitlines()[1:]
            except OSError:
                continue
            for fields in (line.split() for line in lines):
                if len(fields) > 3 and (state is None or fields[3] == state):
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    else:  # not Linux: psutil, a sockdiag dependency
        import psutil

        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and (conn.status == psutil.CONN_LISTEN or conn.type == socket.SOCK_DGRAM):
                ports.add(conn.laddr.port)
    return ports - LOOPBACK.ours


def ephemeral_ports() -> range:
    """The ports the OS hands out for port 0 (where tests' "free port" helpers find theirs)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 65535
    return range(low, high + 1)


class LoopbackPorts:
    """A port that refuses (bound, never listening) and one that answers (a banner, then close)."""

    def __init__(self) -> None:
        self.ours: set[int] = set()
        self._refuser = self._server = None

    def start(self, tmp: Path) -> None:
        self._refuser = socket.socket()
        self._refuser.bind(("127.0.0.1", 0))
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(128)
        self._server.settimeout(0.2)
        self.refused, self.open = self._refuser.getsockname()[1], self._server.getsockname()[1]
        self.ours = {self.open}
        self.rules, self.empty = tmp / "rules.txt", tmp / "empty.txt"
        self.rules.write_text("# clients\n127.0.0.1\n::1, 127.0.0.0/8\nlocalhost\n")
        self.empty.write_text("")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="banner-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(b"sockdiag-test ready\r\n")
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()
        self._refuser.close()

    def substitute(self, argv: list[str]) -> list[str]:
        pairs = ((REFUSED, str(self.refused)), (OPEN, str(self.open)), (RULES, str(self.rules)),
                 (EMPTY_FILE, str(self.empty)))
        out = []
        for token in argv:
            for placeholder, value in pairs:
                token = token.replace(placeholder, value)
            out.append(token)
        return out


LOOPBACK = LoopbackPorts()


# --- the watchdog -------------------------------------------------------------------------------

class Hang(BaseException):
    """Raised in main() by the watchdog: the command was still running after HANG_SECONDS."""


_MAIN_CODE = cli.main.__code__
_DISPATCH_CODE = getattr(cli, "_dispatch", cli._run).__code__  # where a Ctrl-C is the command's to handle


def _on_stack(frame, code) -> bool:
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


class Watchdog:
    """SIGALRM in the main thread: a Ctrl-C (KeyboardInterrupt) for servers and --watch, and a
    Hang for anything still running HANG_SECONDS after it started. Only ever raised in main()."""

    def __init__(self) -> None:
        self.mode = "off"
        self.deadline = 0.0
        self.client = False  # whether a client may come to the listener
        self.threads: list[threading.Thread] = []

    def start(self, interrupt: float | None, client: bool) -> None:
        self.deadline, self.client = time.monotonic() + HANG_SECONDS, client
        if interrupt is None:
            self.arm(HANG_SECONDS, "hang")
        else:
            self.arm(interrupt, "interrupt")

    def handler(self, signum, frame) -> None:
        if self.mode == "off" or not _on_stack(frame, _MAIN_CODE):
            return
        if time.monotonic() >= self.deadline:
            signal.setitimer(signal.ITIMER_REAL, 1.0)  # again, should something swallow it
            raise Hang
        if self.mode == "interrupt":
            if not _on_stack(frame, _DISPATCH_CODE):  # in cli's code around the command: soon again
                signal.setitimer(signal.ITIMER_REAL, 0.02)
                return
            self.arm(HANG_SECONDS, "hang")
            raise KeyboardInterrupt
        self.arm(HANG_SECONDS, "hang")

    def arm(self, seconds: float, mode: str) -> None:
        self.mode = mode
        signal.setitimer(signal.ITIMER_REAL, max(0.001, min(seconds, self.deadline - time.monotonic())))

    def disarm(self) -> None:
        self.mode = "off"
        signal.setitimer(signal.ITIMER_REAL, 0)
        for thread in self.threads:
            thread.join(2)
        self.threads.clear()

    def listener_ready(self, sock: socket.socket, socktype: int) -> None:
        """Called (in main's thread) with each listener sockdiag opens: a client comes, then Ctrl-C."""
        if self.mode == "off":
            return
        if self.client:
            thread = threading.Thread(target=_client, args=(sock.family, socktype, sock.getsockname()), daemon=True)
            thread.start()
            self.threads.append(thread)
        self.arm(INTERRUPT_AFTER, "interrupt")


def _client(family: int, socktype: int, address) -> None:
    """Connect, send a line, half-close, read to the end (TCP); or send one datagram (UDP)."""
    try:
        with socket.socket(family, socktype) as sock:
            sock.settimeout(0.5)
            if socktype == socket.SOCK_DGRAM:
                sock.sendto(b"ping\n", address)
                return
            sock.connect(address)
            sock.sendall(b"ping\n")
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
    except OSError:
        pass


WATCHDOG = Watchdog()


def _watched(real):
    def open_listener(*args, **kwargs):
        sock = real(*args, **kwargs)
        WATCHDOG.listener_ready(sock, sock.type)
        return sock

    return open_listener


@pytest.fixture(scope="module", autouse=True)
def loopback_only(tmp_path_factory):
    """The module's loopback world: the resolver patch, the ports, the watchdog, listener hooks."""
    import sockdiag.forward.command
    import sockdiag.relay.command
    import sockdiag.relay.udp

    LOOPBACK.start(tmp_path_factory.mktemp("property_cli"))
    previous = signal.signal(signal.SIGALRM, WATCHDOG.handler)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "getaddrinfo", loopback_getaddrinfo)
        for module in (sockdiag.relay.command, sockdiag.relay.udp, sockdiag.forward.command):
            if hasattr(module, "open_listener"):
                mp.setattr(module, "open_listener", _watched(module.open_listener))
        try:
            yield LOOPBACK
        finally:
            WATCHDOG.disarm()
            signal.signal(signal.SIGALRM, previous)
            LOOPBACK.stop()


# --- one run ------------------------------------------------------------------------------------

@dataclass
class Result:
    status: int
    out: bytes
    err: str


class Unsafe(Exception):
    """The line would reach beyond loopback, a foreign port, or take too long: not run."""


def preparse(argv: list[str]) -> argparse.Namespace | None:
    """The namespace main() will see, or None when argparse refuses the line (nothing runs)."""
    token = OUTPUT_STREAMS.set((io.BytesIO(), io.BytesIO()))
    try:
        return PARSER.parse_args(argv)
    except ParserExit:
        return None
    finally:
        OUTPUT_STREAMS.reset(token)


def _insert(argv: list[str], extra: list[str]) -> list[str]:
    """`extra` options at the end, but before a "--" (after it they would be positionals)."""
    at = argv.index("--") if "--" in argv else len(argv)
    return argv[:at] + extra + argv[at:]


def _check_probe(args) -> list[str]:
    """Probe lines run only against loopback, a few hundred attempts, no foreign port."""
    from sockdiag.probe import selection

    input_file = getattr(args, "input_file", None)
    if input_file not in (None, "-") and os.path.exists(input_file):
        raise Unsafe("targets from a file this test did not write")  # -iL '-' reads the empty stdin
    try:
        host_text, words = selection.split_positionals(args)
        ports = selection.choose_ports(args, words, "udp" if args.udp else "tcp")
        specs = [] if host_text is None else parse_targets(host_text, args.family, args.force)
    except SockdiagError:  # a usage error: probe stops before it resolves or scans anything
        return []
    except Exception:  # noqa: BLE001 - a bug (test_probe_targets owns those) or a changed API: not run
        raise Unsafe("targets not checkable") from None
    loopback4, loopback6 = ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")
    for spec in specs:
        if spec.network is not None and not (spec.network.subnet_of(loopback4) if spec.network.version == 4
                                             else spec.network.subnet_of(loopback6)):
            raise Unsafe("not loopback")
        if spec.address is not None and not spec.address.is_loopback:
            raise Unsafe("not loopback")
    attempts = sum(len(spec) for spec in specs) * len(ports)
    if attempts > MAX_PROBE_ATTEMPTS:
        raise Unsafe("too many attempts")
    if set(ports) & foreign_ports():
        raise Unsafe("a port another process holds")
    extra = []
    rate, workers = find("probe", "rate"), find("probe", "workers")
    if rate and args.rate and attempts / args.rate > 0.05:
        extra += [rate.long_flag, str(int_bounds(rate.kind)[1])]
    if workers and args.workers and args.workers > 2:
        extra += [workers.long_flag, "2"]
    return extra


def plan(argv: list[str]) -> tuple[list[str], float | None, bool]:
    """(the argv to run, when to send Ctrl-C, whether a client may come to a listener), or Unsafe."""
    command = argv[0]
    argv = _insert(argv, bounding_suffix(command))
    args = preparse(argv)
    if args is None:
        return argv, None, False
    extra: list[str] = []
    interrupt, client = None, False
    if command == "connect" and args.port in foreign_ports():
        raise Unsafe("a port another process holds")
    if command == "connect" and getattr(args, "proxy", None) is not None:
        from sockdiag.core.proxyproto import DEFAULT_PORTS

        if (args.proxy[1] or DEFAULT_PORTS.get(args.proxy_type, 1080)) in foreign_ports():
            raise Unsafe("a proxy port another process holds")
    if command == "probe":
        extra = _check_probe(args)
    if command == "listen":
        from sockdiag.core.errors import UsageError
        from sockdiag.relay.command import _listen_where

        try:
            _listen_where(args)  # PORT, ADDR PORT or -p PORT: where listen would bind
        except UsageError:
            return argv, None, False  # a usage error before any socket
        if args.port not in (0, LOOPBACK.refused, LOOPBACK.open) and args.port in ephemeral_ports():
            raise Unsafe("ephemeral port")  # another test's "free port a moment ago" may be it
        if args.bind is None:
            extra = ["-b", "::1" if args.family == 6 else "127.0.0.1"]
        commands = {c for c in (args.exec_cmd, args.sh_exec, getattr(args, "exec_each", None)) if c is not None}
        client = not commands - SAFE_EXEC
        interrupt = 1.0  # shortened to INTERRUPT_AFTER once the listener is up
    if command == "forward":  # a server: loopback (the resolver patch), no client, then Ctrl-C
        if args.lport not in (0, LOOPBACK.refused, LOOPBACK.open) and args.lport in ephemeral_ports():
            raise Unsafe("ephemeral port")
        if args.dump is not None and args.dump != str(LOOPBACK.empty):
            raise Unsafe("a dump file outside the test's directory")
        interrupt = 1.0  # shortened to INTERRUPT_AFTER once the listener is up
    if command == "states" and getattr(args, "watch", None):
        interrupt = INTERRUPT_AFTER
    argv = _insert(argv, extra)
    args = preparse(argv)
    if args is None:
        return argv, None, False
    for (name, dest), value in BOUNDS.items():
        if name == command and getattr(args, dest) != float(value):
            raise Unsafe("unbounded")
    return argv, interrupt, client


def run_guarded(argv: list[str], interrupt: float | None = None, client: bool = False) -> Result:
    """main(argv, env) with an empty stdin and BytesIO streams, under the watchdog."""
    env = make_env(b"")
    WATCHDOG.start(interrupt, client)
    try:
        status = main(argv, env)
    except Hang:
        raise AssertionError(f"main({argv!r}) still running after {HANG_SECONDS} s") from None
    except KeyboardInterrupt:
        raise AssertionError(f"main({argv!r}) let a Ctrl-C escape") from None
    except Exception as exc:
        raise AssertionError(f"main({argv!r}) raised {type(exc).__name__}: {exc}") from exc
    finally:
        WATCHDOG.disarm()
    return Result(status, env.stdout.getvalue(), env.stderr.getvalue().decode("utf-8", "replace"))


def check_contract(command: str, argv: list[str], result: Result) -> None:
    err = result.err
    assert "Traceback" not in err, f"traceback for {argv!r}:\n{err}"
    assert isinstance(result.status, int) and result.status in DOCUMENTED_STATUSES, \
        f"undocumented exit status {result.status!r} for {argv!r}; stderr: {err!r}"
    lines = err.splitlines()
    assert len(lines) <= 2, f"{len(lines)} stderr lines for {argv!r}:\n{err}"
    assert not any("internal error" in line for line in lines), f"a bug reported for {argv!r}: {err!r}"
    if result.status == 2:
        check_usage_error(command, err)


def check_usage_error(command: str, err: str) -> None:
    """`sockdiag CMD: error: MESSAGE` and `Try 'sockdiag CMD --help'.`: two lines, nothing else."""
    assert err.endswith("\n"), repr(err)
    lines = err[:-1].split("\n")
    assert len(lines) == 2, repr(err)
    assert re.fullmatch(rf"sockdiag {command}: error: \S.*", lines[0]), repr(err)
    assert lines[1] == f"Try 'sockdiag {command} --help'.", repr(err)


# --- the property -------------------------------------------------------------------------------

@pytest.mark.parametrize("command", sorted(COMMANDS))
@settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(data=st.data())
def test_hostile_command_lines(command, data):
    argv = LOOPBACK.substitute(data.draw(command_lines(command), label="generated argv"))
    try:
        argv, interrupt, client = plan(argv)
    except Unsafe as why:
        event(f"not run: {why}")
        assume(False)
    note(f"argv run: {argv!r}")
    result = run_guarded(argv, interrupt, client)
    event(f"exit {result.status}")
    check_contract(command, argv, result)


# --- the table and bounds the property relies on ------------------------------------------------

VALID_POSITIONALS = {"connect": ["127.0.0.1", REFUSED], "probe": ["127.0.0.1", REFUSED], "listen": ["0"],
                     "bindcheck": [REFUSED], "states": [], "ping": ["127.0.0.1", REFUSED],
                     "wait": [f"127.0.0.1:{REFUSED}"], "forward": ["127.0.0.1", "0", "127.0.0.1", REFUSED]}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_option_table_covers_the_command(command):
    """Each command has a table with its positionals, and the bounds this test appends still parse
    (a renamed -w would otherwise turn every generated line into a usage error, silently)."""
    optionals, positionals = TABLE[command]
    assert command in VALID_POSITIONALS, f"new command {command}: give it valid positionals here"
    assert len(positionals) == len(VALID_POSITIONALS[command]), [p.dest for p in positionals]
    assert optionals, command
    argv = LOOPBACK.substitute([command, *VALID_POSITIONALS[command]])
    argv, _interrupt, _client = plan(argv)
    assert preparse(argv) is not None, argv


# --- known-bad inputs: exit 2 in the one usage-error shape --------------------------------------

KNOWN_BAD = [
    ["connect", "127.0.0.1", "70000"],
    ["listen", "70000"],
    ["bindcheck", "70000"],
    ["probe", "127.0.0.1", "70000"],
    ["states", "--port", "70000"],
    ["probe", "127.0.0.1", "10-5"],
    ["connect", "", REFUSED],
    ["listen", "-b", "", "0"],
    ["probe", "", REFUSED],
    ["connect", "999.1.1.1", REFUSED],
    ["bindcheck", "-b", "999.1.1.1", REFUSED],
    ["probe", "999.1.1.1", REFUSED],
    ["connect", "-i", "2200000", "127.0.0.1", REFUSED],
    ["listen", "-i", "2200000", "0"],
    ["connect", "--wait", "1e10", "127.0.0.1", REFUSED],
    ["connect", "-w", "1e10", "127.0.0.1", REFUSED],
    ["probe", "-w", "1e10", "127.0.0.1", REFUSED],
    ["states", "--watch", "1e10"],
    ["connect", "-w", "nan", "127.0.0.1", REFUSED],
    ["probe", "-w", "nan", "127.0.0.1", REFUSED],
    ["states", "--watch", "nan"],
    ["connect", "--wait", "inf", "127.0.0.1", REFUSED],
    ["listen", "-i", "inf", "0"],
    ["states", "--watch", "inf"],
    ["connect", "-w", "-1", "127.0.0.1", REFUSED],
    ["connect", "--timeout=-1", "127.0.0.1", REFUSED],
    ["connect", "127.0.0.1", "-1"],
    ["listen", "--", "-1"],
    ["states", "--pid=-1"],
    ["probe", "--retries=-1", "127.0.0.1", REFUSED],
]


def _id(argv: list[str]) -> str:
    return " ".join(repr(a) if not a or a.isspace() else a for a in argv)


@pytest.mark.parametrize("argv", [pytest.param(a, id=_id(a)) for a in KNOWN_BAD])
def test_known_bad_input_is_a_usage_error(argv):
    result = run_guarded(LOOPBACK.substitute(argv))
    assert result.status == 2, result
    assert result.out == b""
    check_usage_error(argv[0], result.err)


# --- found by the property ----------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    pytest.param(["probe", "127.0.0.1,a.invalid,b.invalid,c.invalid", "1-4"], id="three-unresolved-names"),
    pytest.param(["probe", "-c", "1000000", "127.0.0.1,a.invalid,b.invalid", "1-4"], id="and-a-c-warning"),
])
def test_probe_unresolved_names_stay_within_two_lines(argv):
    """The property's first find: probe warned once per target name that did not resolve, so
    three such names (or two and the -c warning) made three stderr lines."""
    result = run_guarded([*argv, "-w", "0.05"])
    assert result.status in DOCUMENTED_STATUSES and "Traceback" not in result.err
    assert len(result.err.splitlines()) <= 2, result.err


def test_plan_bounds_a_slow_rate_with_several_port_specs():
    """Found in CI: with PORTS a list (probe HOST 80 443), the plan computed no attempts and let
    `--rate 1` over 64 ports run for a minute into the watchdog."""
    argv, _interrupt, _client = plan(["probe", "--rate", "1", "--", "127.0.0.1", "1-32", "33-64"])
    args = preparse(argv)
    assert args.rate > 1
