"""What `sockdiag wait` waits for, one attempt at a time: a TCP HOST:PORT, a unix socket, a
bindable port. Each attempt is bounded by the time it is given and reports an Outcome; only a
problem that waiting cannot cure (a privileged port, a path the OS cannot take) raises."""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Callable
from typing import NamedTuple

from sockdiag import platform
from sockdiag.core.errors import PermissionFailure, SockdiagError, UsageError
from sockdiag.core.portspec import format_hostport
from sockdiag.net import binds
from sockdiag.net.resolve import resolve

# The time the next blocking step (a lookup, one connect) may take, or None when none is left.
Budget = Callable[[], "float | None"]

# Refused, or no socket file at all: nothing listens there (what --closed waits for).
_NOTHING_LISTENS = frozenset({"ECONNREFUSED", "ENOENT"})
_GAI_NAME = re.compile(r"\((EAI_[A-Z]+)\)$")
_AF_UNIX = getattr(socket, "AF_UNIX", None)  # absent on some Windows builds (the command checks first)


class Outcome(NamedTuple):
    """One attempt's answer: whether the target was ready, else why not (a line for people and
    the errno / EAI name for -o json)."""

    ready: bool
    reason: str | None = None
    error: str | None = None


READY = Outcome(True)
NO_TIME = Outcome(False, "not tried before the deadline", "ETIMEDOUT")


def _failure(action: str, exc: OSError) -> Outcome:
    """An OSError as an Outcome: `connect ADDR: connection refused (ECONNREFUSED)`."""
    if exc.errno is None:  # a socket timeout carries no errno
        if isinstance(exc, TimeoutError):
            return Outcome(False, f"{action}: timed out", "ETIMEDOUT")
        return Outcome(False, f"{action}: {exc or type(exc).__name__}", type(exc).__name__)
    return Outcome(False, f"{action}: {platform.describe(exc.errno)}", platform.errno_name(exc.errno))


def _connect(family: int, address, timeout: float, action: str) -> Outcome:
    """Connect a throw-away stream socket to `address` and close it at once (a normal close: a
    reset would read as an error in the server's log)."""
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:  # no IPv6 stack, out of descriptors: try again next time
        return _failure(action, exc)
    with sock:
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            if family != _AF_UNIX and sock.getsockname()[:2] == sock.getpeername()[:2]:
                # TCP simultaneous open: a connect to a free local port in the ephemeral range can
                # pick that very port as its source and "connect" to itself. Nothing listens.
                return Outcome(False, f"{action}: connection refused (connected to itself: nothing listens)",
                               "ECONNREFUSED")
        except OSError as exc:
            if exc.errno is None and not isinstance(exc, TimeoutError) and family == _AF_UNIX:
                raise UsageError(f"-U {address}: {exc}") from None  # "AF_UNIX path too long": never cured
            return _failure(action, exc)
    return READY


class Lookup:
    """net.resolve.resolve for one HOST:PORT, run in a daemon thread so that a resolver that hangs
    (an unreachable DNS server: 5 s per try, several tries) cannot hold the wait past -w. A lookup
    that has not finished in the time given is waited for again by the next attempt, never
    started twice. Address literals are resolved in place (getaddrinfo answers them at once)."""

    def __init__(self, host: str, port: int, resolver=resolve):
        self.host, self.port, self._resolver = host, port, resolver
        self._literal = _is_literal(host)
        self._done: threading.Event | None = None
        self._box: dict = {}

    def addresses(self, budget: Budget) -> list[tuple] | Outcome:
        """[(family, sockaddr)] in the resolver's order, or the Outcome saying why not (yet)."""
        if self._literal:
            return self._call()
        timeout = budget()
        if timeout is None:
            return NO_TIME
        if self._done is None:
            self._box, self._done = {}, threading.Event()
            threading.Thread(target=self._work, args=(self._box, self._done), daemon=True,
                             name=f"sockdiag-wait-resolve-{self.host}").start()
        if not self._done.wait(timeout):
            return Outcome(False, f"resolve {self.host}: no answer yet (still resolving)", "resolving")
        box, self._done = self._box, None
        if "bug" in box:
            raise box["bug"]
        return box["result"]

    def _work(self, box: dict, done: threading.Event) -> None:
        try:
            box["result"] = self._call()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the waiting thread (a bug, not a name problem)
            box["bug"] = exc
        finally:
            done.set()

    def _call(self) -> list[tuple] | Outcome:
        try:
            return self._resolver(self.host, self.port, None, socket.SOCK_STREAM)
        except SockdiagError as exc:
            # net.resolve words the failure `resolve HOST: ... (EAI_NONAME)`; the name is the key for -o json
            match = _GAI_NAME.search(exc.message)
            return Outcome(False, exc.message, match.group(1) if match else "unresolved")


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    return True


class TcpTarget:
    """HOST:PORT: ready when one of its addresses accepts a connection; with --closed, when
    every address refuses one."""

    kind = "tcp"

    def __init__(self, host: str, port: int, resolver=resolve):
        self.label = format_hostport(host, port)
        self._lookup = Lookup(host, port, resolver)

    def verb(self, closed: bool) -> str:
        return "closed" if closed else "ready"

    def attempt(self, budget: Budget, closed: bool) -> Outcome:
        addresses = self._lookup.addresses(budget)
        if isinstance(addresses, Outcome):
            return addresses
        last, refused = NO_TIME, 0
        for family, sockaddr in addresses:
            timeout = budget()
            if timeout is None:
                return last
            action = f"connect {format_hostport(sockaddr[0], sockaddr[1])}"
            outcome = _connect(family, sockaddr, timeout, action)
            if outcome.ready:  # one accepting address decides, either way
                return READY if not closed else Outcome(False, f"{action}: accepts connections", "accepting")
            refused += outcome.error == "ECONNREFUSED"
            last = outcome
        if closed and refused == len(addresses):
            return READY
        return last


class UnixTarget:
    """-U PATH: ready when a stream unix socket there accepts a connection; with --closed, when
    it refuses one or the file is gone."""

    kind = "unix"

    def __init__(self, path: str):
        self.label = self.path = path

    def verb(self, closed: bool) -> str:
        return "closed" if closed else "ready"

    def attempt(self, budget: Budget, closed: bool) -> Outcome:
        timeout = budget()
        if timeout is None:
            return NO_TIME
        action = f"connect {self.path}"
        outcome = _connect(_AF_UNIX, self.path, timeout, action)
        if not closed:
            return outcome
        if outcome.ready:
            return Outcome(False, f"{action}: accepts connections", "accepting")
        return READY if outcome.error in _NOTHING_LISTENS else outcome


class BindTarget:
    """--bindable PORT: ready when a plain bind (no reuse option) of PORT on the target address
    succeeds: no listener and no TIME_WAIT left. Permission denied (a privileged port) is an error
    at once: waiting does not give this user the right to bind it."""

    kind = "bind"

    def __init__(self, target: binds.Target, port: int, bind=binds.try_bind):
        self.target, self.port, self._bind = target, port, bind
        self.label = format_hostport(target.address, port)

    def verb(self, closed: bool) -> str:
        return "bindable"

    def attempt(self, budget: Budget, closed: bool) -> Outcome:
        if budget() is None:
            return NO_TIME
        result = self._bind(self.target, self.port, socket.SOCK_STREAM, binds.PLAIN)
        if result["ok"]:
            return READY
        name = result["errno"]
        code = platform.errno_code(name)
        text = platform.describe(code) if code is not None else name
        if name in ("EACCES", "EPERM"):
            start = platform.unprivileged_port_start()
            why = (f"port {self.port} is privileged (to bind it, {platform.privilege_remedy()})"
                   if start is not None and self.port < start else "waiting does not change who may bind it")
            raise PermissionFailure(f"bind {self.label}: {text}; {why}")
        return Outcome(False, f"bind {self.label}: {text}", name)


WaitTarget = TcpTarget | UnixTarget | BindTarget
