"""listen -k: a client that never reads cannot stall the stdin broadcast to the others.

Before: stdin was read only while every client was owed less than 1 MiB, so one client that
never read stopped the broadcast for everyone, forever. Now it is dropped after it read nothing
for the grace period while over --max-backlog; a client that only reads slowly is never dropped.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading

import pytest

from sockdiag.relay.broadcast import BACKLOG_GRACE
from tests.conftest import wait_until
from tests.test_relay_support import Proc

SIZE = 8 * 1024 * 1024  # the benchmark (benchmarks/slow_client.py) moves 64 MiB; a test needs less


def _payload(size: int) -> bytes:
    return os.urandom(size)


def _read_exactly(sock: socket.socket, size: int, digests: dict, key, delay: float = 0.0) -> None:
    h, got = hashlib.sha256(), 0
    while got < size:
        chunk = sock.recv(min(65536, size - got))
        if not chunk:
            break
        h.update(chunk)
        got += len(chunk)
        if delay:
            threading.Event().wait(delay)  # a slow reader: takes a little, often
    digests[key] = (got, h.hexdigest())


def _feed(server: Proc, data: bytes) -> None:
    try:
        server.popen.stdin.write(data)
        server.popen.stdin.close()
    except (BrokenPipeError, OSError):
        pass


@pytest.mark.skipif(sys.platform == "win32", reason="feeds stdin through a pipe")
def test_readers_get_every_byte_while_a_client_that_never_reads_is_dropped():
    data = _payload(SIZE)
    want = (SIZE, hashlib.sha256(data).hexdigest())
    server = Proc(["listen", "-k", "-v", "--max-backlog", "1M", "-b", "127.0.0.1", "0"], stdin=subprocess.PIPE)
    with server:
        port = server.port()
        readers = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(2)]
        slow = socket.create_connection(("127.0.0.1", port), timeout=60)
        idle = socket.create_connection(("127.0.0.1", port), timeout=60)
        idle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once
        try:
            wait_until(lambda: server.stderr.count("connection from") == 4)
            digests: dict = {}
            threads = [threading.Thread(target=_read_exactly, args=(s, SIZE, digests, i)) for i, s in enumerate(readers)]
            threads.append(threading.Thread(target=_read_exactly, args=(slow, SIZE, digests, "slow", 0.002)))
            for t in threads:
                t.start()
            threading.Thread(target=_feed, args=(server, data), daemon=True).start()
            for t in threads:
                t.join(60 + BACKLOG_GRACE)
            assert digests == {0: want, 1: want, "slow": want}
            wait_until(lambda: "dropped 127.0.0.1:" in server.stderr)
            assert server.stderr.count("dropped 127.0.0.1:") == 1  # the idle one, never the slow one
            assert f"dropped 127.0.0.1:{idle.getsockname()[1]}:" in server.stderr
        finally:
            for s in readers + [slow, idle]:
                s.close()
        server.interrupt()
    assert "Traceback" not in server.stderr


def test_max_backlog_is_checked(cli):
    r = cli(["listen", "-k", "--max-backlog", "0", "0"])
    assert r.status == 2 and "--max-backlog" in r.err
