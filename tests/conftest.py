"""Shared test helpers: run the CLI in-process with captured streams."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from sockdiag.cli import main
from sockdiag.env import Env

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    status: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "replace")


def make_env(stdin: bytes = b"", **flags) -> Env:
    return Env(stdin=io.BytesIO(stdin), stdout=io.BytesIO(), stderr=io.BytesIO(), **flags)


def run_main(argv: list[str], stdin: bytes = b"", **flags) -> Result:
    """main(argv, env) in-process; returns status, stdout bytes and stderr text."""
    env = make_env(stdin, **flags)
    status = main(argv, env)
    return Result(int(status), env.stdout.getvalue(), env.stderr.getvalue().decode("utf-8", "replace"))


@pytest.fixture
def cli():
    return run_main


def run_module(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """`python -m sockdiag ARGS` as a user would run it."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("timeout", 60)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "sockdiag", *args], env=env, **kwargs)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.01):
    """Poll `predicate` until it returns a truthy value or the deadline passes (no blind sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


def has_ipv6_loopback() -> bool:
    """Whether this host can bind ::1 (CI containers often have IPv6 disabled)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def free_tcp_port() -> int:
    """A port that was free a moment ago (bound to port 0 and read back, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def udp_peer():
    """A UDP socket on 127.0.0.1 owned by the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(20)  # test_relay_support.TIMEOUT
        yield sock


@pytest.fixture
def scanner_sockets(monkeypatch) -> list:
    """Every socket the probe scanner creates, in order (its socket factory, counted)."""
    from sockdiag.probe import scanner

    made = []

    class Counting(socket.socket):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(scanner, "_raw_socket", Counting)
    return made
