"""`sockdiag wait HOST:PORT... [-U PATH] [--bindable PORT]`: block until the targets are ready
(what wait-for-it.sh and `dockerize -wait` do), bounded by -w, then exit 0 (3 when -w expired).

Rounds of attempts, one per pending target, an --interval pause between rounds; each step (a
name lookup, one connect, one bind) gets at most CONNECT_TIMEOUT or what is left of -w. The
targets themselves live in wait.targets.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence

from sockdiag.core import render
from sockdiag.core.errors import TimeoutFailure, UsageError
from sockdiag.core.status import ExitStatus
from sockdiag.net import binds
from sockdiag.wait.options import JSON_KEYS
from sockdiag.wait.targets import BindTarget, Outcome, TcpTarget, UnixTarget, WaitTarget

# One connect attempt's limit: ample on loopback and a LAN (a dropped SYN is retried after 1 s by
# the kernel anyway), short enough that a filtered port does not stall the other targets' turns.
CONNECT_TIMEOUT = 1.0
_PROGRESS_WIDTH = 79  # a redrawn line must not wrap, or "\r" no longer erases it


class State:
    """One target's record: attempts so far, whether (and after how long) it was ready, and the
    last reason it was not."""

    def __init__(self, target: WaitTarget):
        self.target = target
        self.attempts = 0
        self.ready = False
        self.seconds: float | None = None
        self.last: Outcome | None = None

    def row(self, elapsed: float) -> dict:
        return {"target": self.target.label, "kind": self.target.kind, "ready": self.ready,
                "seconds": round(self.seconds if self.ready else elapsed, 3), "attempts": self.attempts,
                "error": None if self.ready or self.last is None else self.last.error}


def run(args, env) -> int:
    """Wait; print the -o rows; exit 0 when ready, raise TimeoutFailure (exit 3) when -w expired."""
    targets = build_targets(args)
    waiter = Waiter(targets, env, closed=args.closed, want_all=not args.any, total=args.timeout,
                    interval=args.interval)
    states, elapsed = waiter.run()
    if args.output:
        rows = [state.row(elapsed) for state in states]
        lines = ([render.json_line(row, JSON_KEYS) for row in rows] if args.output == "json"
                 else render.csv_lines(rows, JSON_KEYS))
        env.write("".join(line + "\n" for line in lines))
        env.flush()
    if not waiter.finished(states):
        raise TimeoutFailure(_timeout_line(states, args.timeout, args.any, args.closed))
    return ExitStatus.OK


def build_targets(args) -> list[WaitTarget]:
    """The targets in the order HOST:PORT..., -U PATH..., --bindable PORT...; semantic checks
    argparse cannot make are usage errors (exit 2)."""
    if not (args.targets or args.unix or args.bindable):
        raise UsageError("nothing to wait for: give HOST:PORT, -U PATH or --bindable PORT")
    if args.bind is not None and not args.bindable:
        raise UsageError("-b ADDR is the address for --bindable PORT, and no --bindable was given")
    if args.unix and not hasattr(socket, "AF_UNIX"):  # a capability, not an OS name: old Windows builds
        raise UsageError("-U: this system has no unix sockets")
    targets: list[WaitTarget] = [TcpTarget(host, port) for host, port in args.targets]
    targets += [UnixTarget(path) for path in args.unix]
    if args.bindable:
        where = binds.resolve_target(args.bind)  # a local address: resolved once, at the start
        targets += [BindTarget(where, port) for port in args.bindable]
    return targets


class Waiter:
    """Rounds of attempts until every target (one with want_all=False) is ready or the deadline
    passes. Tells -v about each target's changes and draws a progress line on a terminal."""

    def __init__(self, targets: Sequence[WaitTarget], env, *, closed: bool = False, want_all: bool = True,
                 total: float | None = None, interval: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep):
        self.targets, self.env, self.closed, self.want_all = list(targets), env, closed, want_all
        self.total, self.interval, self.sleep = total, interval, sleep
        self.start = 0.0
        self.deadline: float | None = None

    def finished(self, states: Sequence[State]) -> bool:
        ready = [state.ready for state in states]
        return all(ready) if self.want_all else any(ready)

    def remaining(self) -> float | None:
        """Seconds left before -w expires (None without -w); never below 0."""
        return None if self.deadline is None else max(0.0, self.deadline - self.env.clock())

    def budget(self) -> float | None:
        """The time the next blocking step may take: CONNECT_TIMEOUT, or less near the deadline;
        None once the deadline has passed."""
        left = self.remaining()
        if left is None:
            return CONNECT_TIMEOUT
        return min(CONNECT_TIMEOUT, left) if left > 0 else None

    def run(self) -> tuple[list[State], float]:
        """Wait. Returns each target's State and the seconds the wait took."""
        self.start = self.env.clock()
        self.deadline = None if self.total is None else self.start + self.total
        states = [State(target) for target in self.targets]
        names = ", ".join(self._describe(state) for state in states)
        limit = f"up to {self.total:g} s" if self.total else "no time limit"
        self._say(f"waiting for {names} ({'all' if self.want_all else 'any'}; {limit})")
        try:
            while not self._round(states):
                left = self.remaining()
                if left == 0:
                    break
                self._progress(states)
                self.sleep(self.interval if left is None else min(self.interval, left))
        finally:
            if self.env.verbosity:
                self.env.progress_done()
        return states, self.env.clock() - self.start

    def _round(self, states: list[State]) -> bool:
        """One attempt on each pending target; True when the wait is over (ready, or out of time)."""
        for state in states:
            if state.ready:
                continue
            if self.budget() is None:
                return True
            outcome = state.target.attempt(self.budget, self.closed)
            state.attempts += 1
            self._record(state, outcome)
            if state.ready and not self.want_all:
                return True
        return self.finished(states)

    def _record(self, state: State, outcome: Outcome) -> None:
        verb = state.target.verb(self.closed)
        if outcome.ready:
            state.ready, state.seconds = True, self.env.clock() - self.start
            self._say(f"{state.target.label} {verb} after {state.seconds:.1f} s")
            return
        changed = state.last is None or state.last.reason != outcome.reason
        state.last = outcome
        line = f"{state.target.label} not {verb}: {outcome.reason}"
        if changed:  # -v: each new reason once; -vv: every attempt
            self._say(line)
        else:
            self._say(f"{line} (attempt {state.attempts})", level=2)

    def _describe(self, state: State) -> str:
        target = state.target
        if isinstance(target, BindTarget):
            return f"{target.label} to be bindable"
        if isinstance(target, UnixTarget):
            return f"unix socket {target.label}"
        return target.label

    def _say(self, message: str, level: int = 1) -> None:
        if self.env.verbosity >= level:
            self.env.progress_done()  # the event line must not land on a half-drawn progress line
            self.env.info(message, level)

    def _progress(self, states: list[State]) -> None:
        if not self.env.verbosity:
            return
        elapsed = self.env.clock() - self.start
        done = sum(state.ready for state in states)
        limit = f"/{self.total:g}" if self.total else ""
        text = f"waiting {elapsed:.1f}{limit} s: {done}/{len(states)} ready"
        pending = next((state for state in states if not state.ready and state.last is not None), None)
        if pending is not None:
            text += f"; {pending.target.label}: {pending.last.error}"
        self.env.progress(text[:_PROGRESS_WIDTH])


def _timeout_line(states: Sequence[State], total: float, any_one: bool, closed: bool) -> str:
    """`timed out after 5 s waiting for 127.0.0.1:5432 (connect ...: connection refused (ECONNREFUSED))`."""
    pending = [state for state in states if not state.ready]
    parts = [f"{state.target.label} to be {state.target.verb(closed)} "
             f"({state.last.reason if state.last else 'not tried before the deadline'})" for state in pending]
    return f"timed out after {total:g} s waiting for {'any of ' if any_one and len(parts) > 1 else ''}" \
           + "; ".join(parts)
