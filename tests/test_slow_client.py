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


def _vm_hwm_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the peak RSS from /proc")
def test_frame_mode_holds_partial_frames_within_one_budget_not_one_per_client():
    """20 clients each announce a 4 MiB frame and send most of it before finishing: the server
    reads on (backpressure) within max(2 x --max-frame, 4M) of partial frames, not 20 x 4 MiB,
    and every frame still arrives whole."""
    frame = 4 * 1024 * 1024
    clients = 20
    payloads = [bytes([65 + i]) * frame for i in range(clients)]
    with Proc(["listen", "-k", "--frame", "--max-frame", "4M", "-v", "-b", "127.0.0.1", "0"]) as server:
        port = server.port()
        baseline = _vm_hwm_mib(server.popen.pid)
        socks = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(clients)]
        wait_until(lambda: server.stderr.count("connection from") == clients)

        def send(sock, payload):
            sock.sendall(len(payload).to_bytes(4, "big") + payload)
            sock.shutdown(socket.SHUT_WR)

        out = bytearray()
        reader = threading.Thread(target=lambda: out.extend(server.popen.stdout.read()))
        reader.start()
        senders = [threading.Thread(target=send, args=pair) for pair in zip(socks, payloads)]
        for t in senders:
            t.start()
        for t in senders:
            t.join(120)
        wait_until(lambda: server.stderr.count("closed 127.0.0.1:") == clients, timeout=60)
        peak = _vm_hwm_mib(server.popen.pid)
        for s in socks:
            s.close()
        server.interrupt()
        reader.join(30)
    lines = bytes(out).split(b"\n")[:-1]
    assert sorted(lines) == sorted(payloads)  # every frame whole, one line each
    # 20 x 4 MiB held at once would add 80 MiB; the budget is 8 MiB (plus copies while printing)
    assert peak - baseline < 48, f"peak RSS grew by {peak - baseline:.0f} MiB"
