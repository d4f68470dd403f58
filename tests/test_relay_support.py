"""Helpers shared by the relay tests (no tests here): sockdiag subprocesses that report their
port on stderr, main() in a thread, and one-connection loopback servers run by the test."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager

from sockdiag.cli import main
from tests.conftest import ROOT, make_env, wait_until

TIMEOUT = 20  # seconds: any subprocess or thread still running after this is a failed test
_LISTENING = re.compile(rb"listening on (?:\[[^\]]*\]|[^ :]+):(\d+)")


def module_env(**extra: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("SOCKDIAG_NO_ZEROCOPY", None)
    env.update(extra)
    return env


class Proc:
    """`python -m sockdiag ARGS` with stderr collected by a thread (so it never blocks)."""

    def __init__(self, args: list[str], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, **env_extra: str):
        self.popen = subprocess.Popen([sys.executable, "-m", "sockdiag", *args], stdin=stdin, stdout=stdout,
                                      stderr=subprocess.PIPE, env=module_env(**env_extra))
        self._err = bytearray()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        for line in self.popen.stderr:
            self._err += line

    @property
    def stderr(self) -> str:
        return bytes(self._err).decode("utf-8", "replace")

    def port(self) -> int:
        match = wait_until(lambda: _LISTENING.search(bytes(self._err)) or self.popen.poll() is not None,
                           timeout=TIMEOUT)
        assert match is not True and match, f"no listening line; stderr: {self.stderr}"
        return int(match.group(1))

    def wait(self, timeout: float = TIMEOUT) -> int:
        status = self.popen.wait(timeout)
        self._reader.join(timeout)
        return status

    def interrupt(self) -> int:
        self.popen.send_signal(signal.SIGINT)
        return self.wait()

    def __enter__(self) -> "Proc":
        return self

    def __exit__(self, *exc) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(TIMEOUT)
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                stream.close()


class ThreadedMain:
    """main(argv, env) in a thread with BytesIO streams; port() reads the -v listening line."""

    def __init__(self, argv: list[str], stdin: bytes = b"", env=None, **flags):
        self.env = env if env is not None else make_env(stdin, **flags)
        self.status: int | None = None
        self.thread = threading.Thread(target=self._run, args=(argv,), daemon=True)
        self.thread.start()

    def _run(self, argv) -> None:
        self.status = main(argv, self.env)

    @property
    def out(self) -> bytes:
        return self.env.stdout.getvalue()

    @property
    def err(self) -> str:
        return self.env.stderr.getvalue().decode("utf-8", "replace")

    def port(self) -> int:
        match = wait_until(lambda: _LISTENING.search(self.env.stderr.getvalue()) or not self.thread.is_alive(),
                           timeout=TIMEOUT)
        assert match is not True and match, f"no listening line; stderr: {self.err}"
        return int(match.group(1))

    def result(self, timeout: float = TIMEOUT) -> int:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"main() still running; stderr: {self.err}"
        return self.status


@contextmanager
def one_connection_server(handler, family=socket.AF_INET, host="127.0.0.1"):
    """A loopback listener that runs handler(conn) for one client in a thread. Yields
    (port, box): box["result"] is what the handler returned, box["error"] what it raised."""
    box: dict = {}
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((host, 0))
    listener.listen(8)
    listener.settimeout(TIMEOUT)

    def serve():
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                box["result"] = handler(conn)
        except BaseException as exc:  # reported by the test
            box["error"] = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], box
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "server thread still running"
        if "error" in box:
            raise box["error"]
    finally:
        listener.close()


def recv_all(conn: socket.socket) -> bytes:
    """Everything until EOF."""
    chunks = []
    while data := conn.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def recv_exactly(conn: socket.socket, size: int) -> bytes:
    chunks, have = [], 0
    while have < size:
        data = conn.recv(min(65536, size - have))
        if not data:
            break
        chunks.append(data)
        have += len(data)
    return b"".join(chunks)


class Background:
    """A program in the background; threads collect its stdout and stderr as they come, so a test
    can wait on what it said. Killed on leaving the `with` block if still running. Subclasses set
    the timeouts (how long wait() waits, how long reader threads get to finish)."""

    wait_timeout: float = TIMEOUT
    join_timeout: float = TIMEOUT

    def __init__(self, argv: list[str], stdin=subprocess.DEVNULL, env: dict | None = None):
        self.argv = argv
        self.popen = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self._out, self._err = bytearray(), bytearray()
        self._extra_threads: list[threading.Thread] = []
        self._readers = [threading.Thread(target=self._collect, args=(stream, buf), daemon=True)
                         for stream, buf in ((self.popen.stdout, self._out), (self.popen.stderr, self._err))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(stream, buf: bytearray) -> None:
        while data := stream.read1(65536):
            buf += data

    @property
    def out(self) -> bytes:
        return bytes(self._out)

    @property
    def err(self) -> str:
        return bytes(self._err).decode("utf-8", "replace")

    def write(self, data: bytes) -> None:
        """A little to stdin (less than a pipe holds, so it never blocks)."""
        self.popen.stdin.write(data)
        self.popen.stdin.flush()

    def close_stdin(self) -> None:
        self.popen.stdin.close()

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit status, or None (and the program killed) when it has not ended in time."""
        try:
            status = self.popen.wait(self.wait_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            status = None
        for thread in [*self._readers, *self._extra_threads]:
            thread.join(self.join_timeout)
        return status

    def interrupt(self) -> int | None:
        """Ctrl-C, as a user ends a server."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
        return self.wait()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(self.join_timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except BrokenPipeError:
                pass
