"""listen -k with a client that never reads: two readers get 64 MiB each byte-exact, the third
never reads; the server's peak RSS (VmHWM) must stay under 64 MiB.

    python benchmarks/slow_client.py [--size-mib 64] [--runs 3]

Loopback only. Prints, per run: whether both readers got every byte (sha256), the wall time,
when the non-reader was dropped, and the server's peak RSS. No peer tool has this mode (nc -k
and ncat --broker either block on the slow client or buffer without bound), so there is no ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import median, sockdiag_argv  # noqa: E402


def _vm_hwm_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        match = re.search(r"VmHWM:\s+(\d+) kB", f.read())
    return int(match.group(1)) / 1024 if match else float("nan")


def _reader(sock: socket.socket, size: int, out: dict, key: int) -> None:
    h, got = hashlib.sha256(), 0
    while got < size:
        chunk = sock.recv(min(1 << 20, size - got))
        if not chunk:
            break
        h.update(chunk)
        got += len(chunk)
    out[key] = (got, h.hexdigest())


def one_run(size: int) -> dict:
    data = os.urandom(size)
    want = (size, hashlib.sha256(data).hexdigest())
    server = subprocess.Popen(sockdiag_argv() + ["listen", "-k", "-v", "-b", "127.0.0.1", "0"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = bytearray()
    threading.Thread(target=lambda: [err.extend(line) for line in server.stderr], daemon=True).start()
    deadline = time.monotonic() + 10
    while not re.search(rb"listening on 127\.0\.0\.1:(\d+)", err) and time.monotonic() < deadline:
        time.sleep(0.01)
    port = int(re.search(rb"listening on 127\.0\.0\.1:(\d+)", err).group(1))
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    while err.count(b"connection from") < 3:
        time.sleep(0.01)
    got: dict = {}
    readers = [threading.Thread(target=_reader, args=(socks[i], size, got, i)) for i in range(2)]
    start = time.monotonic()
    for t in readers:
        t.start()

    def feed():
        server.stdin.write(data)
        server.stdin.close()

    threading.Thread(target=feed, daemon=True).start()
    for t in readers:
        t.join(300)
    elapsed = time.monotonic() - start
    dropped = b"dropped 127.0.0.1:" in err
    peak = _vm_hwm_mib(server.pid)
    server.send_signal(signal.SIGINT)
    server.wait(10)
    for s in socks:
        s.close()
    return {"exact": got == {0: want, 1: want}, "seconds": elapsed, "dropped": dropped, "peak_mib": peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = [one_run(args.size_mib * 1024 * 1024) for _ in range(args.runs)]
    for i, r in enumerate(results, 1):
        print(f"run {i}: byte-exact={r['exact']} dropped-non-reader={r['dropped']} "
              f"wall={r['seconds']:.2f}s peak-rss={r['peak_mib']:.1f} MiB")
    peak = max(r["peak_mib"] for r in results)
    ok = all(r["exact"] and r["dropped"] for r in results) and peak < 64
    print(f"median wall {median([r['seconds'] for r in results]):.2f} s; max peak RSS {peak:.1f} MiB "
          f"(bar: < 64 MiB): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
