"""`sockdiag ping HOST PORT`: TCP connect latency (or a UDP reply time), ping-style.

Resolve once, print ping's header, run one attempt per interval (ping.attempts), print a line
per attempt and, at the end of -c or on Ctrl-C, ping's statistics block (ping.stats). The exit
status is ping(8)'s: 0 when anything answered, else 1, Ctrl-C included.
"""

from __future__ import annotations

import socket
import time

from sockdiag.core.errors import Terminated, UsageError
from sockdiag.core.portspec import format_hostport, unbracket
from sockdiag.core.status import ExitStatus
from sockdiag.net.resolve import resolve
from sockdiag.ping.attempts import TcpAttempt, UdpAttempt
from sockdiag.ping.options import DEFAULT_PAYLOAD
from sockdiag.ping.stats import SUMMARY_KEYS, Tally, summary_lines, summary_record

ATTEMPT_KEYS = ("seq", "address", "port", "connected", "rtt_ms", "error")

# The wait between attempts; a module attribute so tests can inject one (e.g. raising Ctrl-C).
_sleep = time.sleep


def run(args, env) -> int:
    """Ping until -c attempts or Ctrl-C; the summary either way; 0 if any attempt answered, else 1."""
    udp = bool(args.udp)
    if not udp and args.payload is not None:
        raise UsageError("--payload goes with -u (UDP): a TCP attempt sends nothing")
    if udp and args.close is not None:
        raise UsageError("--close is for TCP: a UDP attempt has no connection to close")
    proto = "udp" if udp else "tcp"
    name = unbracket(args.host)
    addresses = resolve(args.host, args.port, args.family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    family, sockaddr = addresses[0]
    address = sockaddr[0]
    if name != address:
        others = sorted({sa[0] for _, sa in addresses[1:]} - {address})
        env.info(f"{name} is {address}" + (f" (not used: {', '.join(others)})" if others else ""))
    payload = DEFAULT_PAYLOAD if args.payload is None else args.payload
    attempt = (UdpAttempt(family, sockaddr, args.timeout, payload) if udp
               else TcpAttempt(family, sockaddr, args.timeout, args.close or "rst"))
    report = Report(env, args.output, proto, address, args.port)
    target = format_hostport(name, args.port)
    if args.output == "text":
        extra = f", {len(payload)}-byte payload" if udp else ""
        env.print(f"PING {target} ({address}) over {proto}{extra}")
        env.flush()

    tally = Tally()
    start = env.clock()
    try:
        _loop(attempt, report, tally, args.count, args.interval, env.clock)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how ping usually ends: the summary, then the status by result
    except Terminated:  # SIGTERM/SIGHUP: still the summary, then cli's 128 + signum
        report.summary(tally, target, _elapsed_ms(env.clock, start))
        raise
    report.summary(tally, target, _elapsed_ms(env.clock, start))
    return ExitStatus.OK if tally.succeeded() else ExitStatus.FAILURE


def _elapsed_ms(clock, start: float) -> int:
    return int((clock() - start) * 1000)


def _loop(attempt, report: Report, tally: Tally, count: int | None, interval: float, clock) -> None:
    """Attempts `interval` seconds apart, start to start (right after a slower one: never two at
    once), until `count` of them. The hot path with -i 0 is attempt, tally, one line."""
    sleep = _sleep
    add, line = tally.add, report.attempt
    seq = 0
    next_start = 0.0
    while count is None or seq < count:
        if interval:
            if seq:
                delay = next_start - clock()
                if delay > 0:
                    sleep(delay)
            next_start = clock() + interval
        seq += 1
        outcome = attempt()
        add(outcome[0])
        line(seq, outcome)


class Report:
    """Per-attempt lines and the summary, as ping-style text or JSON Lines; flushed per line, so a
    person (or a pipe) sees each attempt as it ends."""

    def __init__(self, env, fmt: str, proto: str, address: str, port: int):
        self.env, self.fmt, self.proto = env, fmt, proto
        self.address, self.port = address, port
        self.peer = format_hostport(address, port)
        if fmt == "json":  # lazily: json costs start-up time the text output does not need
            from sockdiag.core.render import json_line

            self._json_line = json_line
            self.attempt = self._json_attempt
        self._write, self._flush = env.write, env.flush

    def attempt(self, seq: int, outcome) -> None:
        rtt, _error, text, size = outcome
        if rtt is None:
            line = f"{self.peer}: seq={seq} {text}\n"
        elif size is None:
            line = f"connected to {self.peer}: seq={seq} time={rtt / 1e6:.3f} ms\n"
        else:
            line = f"{size} bytes from {self.peer}: seq={seq} time={rtt / 1e6:.3f} ms\n"
        self._write(line)
        self._flush()

    def _json_attempt(self, seq: int, outcome) -> None:
        rtt, error, _text, _size = outcome
        row = {"seq": seq, "address": self.address, "port": self.port, "connected": rtt is not None,
               "rtt_ms": None if rtt is None else round(rtt / 1e6, 3), "error": error}
        self._write(self._json_line(row, ATTEMPT_KEYS) + "\n")
        self._flush()

    def summary(self, tally: Tally, target: str, elapsed_ms: int) -> None:
        if self.fmt == "json":
            self._write(self._json_line(summary_record(tally, elapsed_ms), SUMMARY_KEYS) + "\n")
        else:
            self._write("\n" + "\n".join(summary_lines(tally, target, self.proto, elapsed_ms)) + "\n")
        self._flush()

