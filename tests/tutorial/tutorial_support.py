"""Helpers for the tutorial-peer tests (no tests here): the tutorial programs of this folder and
sockdiag, each run as a user would run it, and the command lines README documents for them.

Every case runs a command line exactly as README's "Talking to tutorial-style servers" writes
it, with two substitutions: the address (README writes 127.0.0.1; the IPv6 cases use ::1) and
the port (README writes 8000; a listener gets 0 and the test reads the port it bound from the
socket table, a client gets the tutorial server's port).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, has_ipv6_loopback, wait_until
from tests.test_relay_support import Background, module_env

PEERS = Path(__file__).resolve().parent
README = ROOT / "README.md"
SECTION = "#### Talking to tutorial-style servers"
TIMEOUT = 20  # seconds any one program may take; past it the test fails and the program is killed
README_HOST, README_PORT = "127.0.0.1", "8000"
_SERVING = re.compile(rb"serving on \S+ port (\d+)")

HOSTS = [pytest.param("127.0.0.1", id="ipv4"),
         pytest.param("::1", id="ipv6", marks=pytest.mark.skipif(not has_ipv6_loopback(),
                                                                 reason="::1 cannot be bound on this host"))]
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="the command servers run /bin/sh")


def readme_section() -> str:
    """The README section that documents the command lines (up to the next heading of its level
    or above)."""
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = re.search(r"^#{1,4} ", text[start + len(SECTION):], re.MULTILINE)
    return text[start:start + len(SECTION) + end.start()] if end else text[start:]


def documented(line: str, host: str, port: int) -> list[str]:
    """The argv after `sockdiag` of a command line README documents, for `host` and `port`."""
    shown = {text.split("  #")[0].strip() for text in readme_section().splitlines()}
    assert line in shown, f"README's {SECTION!r} does not show the line: {line}"
    words = shlex.split(line)
    assert words[0] == "sockdiag"
    return [{README_HOST: host, README_PORT: str(port)}.get(word, word) for word in words[1:]]


# --- running programs -------------------------------------------------------------------------------

class Program(Background):
    """A program in the background (see Background)."""

    wait_timeout = TIMEOUT
    join_timeout = TIMEOUT

class TutorialServer(Program):
    """`python tests/tutorial/NAME PORT HOST ARGS...` with port 0; port() reads the one it printed."""

    def __init__(self, name: str, host: str, *args):
        super().__init__([sys.executable, str(PEERS / name), "0", host, *map(str, args)])

    def port(self) -> int:
        found = wait_until(lambda: _SERVING.search(self._out) or self.popen.poll() is not None, timeout=TIMEOUT)
        assert found is not True, f"exited before serving: {self.err}"
        return int(found.group(1))


class Sockdiag(Program):
    """`python -m sockdiag ARGS` (the working tree's sockdiag, as tests/test_relay_support runs it)."""

    def __init__(self, args: list[str], stdin=subprocess.DEVNULL):
        super().__init__([sys.executable, "-m", "sockdiag", *args], stdin=stdin, env=module_env())

    def bound_port(self, kind: str = "tcp") -> int:
        """The port this sockdiag listens on (TCP) or is bound to (UDP), from the socket table:
        the documented command lines have no -v to say it."""
        found = wait_until(lambda: _bound_port(self.popen.pid, kind) or self.popen.poll() is not None,
                           timeout=TIMEOUT)
        assert found is not True, f"exited before listening: {self.err}"
        return found


def _bound_port(pid: int, kind: str) -> int | None:
    try:
        conns = psutil.Process(pid).net_connections(kind=kind)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    for conn in conns:
        if conn.laddr and conn.laddr.port and (kind == "udp" or conn.status == psutil.CONN_LISTEN):
            return conn.laddr.port
    return None


def run_sockdiag(args: list[str], stdin: bytes) -> tuple[int | None, bytes, str]:
    """sockdiag to the end with `stdin` (then EOF): status (None: killed after TIMEOUT), stdout, stderr."""
    try:
        done = subprocess.run([sys.executable, "-m", "sockdiag", *args], input=stdin, capture_output=True,
                              timeout=TIMEOUT, env=module_env())
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed it
        return None, exc.stdout or b"", (exc.stderr or b"").decode("utf-8", "replace")
    return done.returncode, done.stdout, done.stderr.decode("utf-8", "replace")


def run_client(name: str, host: str, port: int, stdin: bytes) -> tuple[int | None, bytes, str]:
    """A tutorial client to the end with `stdin`: status (None: killed after TIMEOUT), stdout, stderr."""
    try:
        done = subprocess.run([sys.executable, str(PEERS / name), str(port), host], input=stdin,
                              capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        return None, exc.stdout or b"", (exc.stderr or b"").decode("utf-8", "replace")
    return done.returncode, done.stdout, done.stderr.decode("utf-8", "replace")
