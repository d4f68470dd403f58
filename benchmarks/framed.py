"""Framed relay throughput (issue 12): `--frame` with 1 KiB and 64 KiB messages, side by side with
a plain-Python length-prefix peer.

    python benchmarks/framed.py [RUNS]          (default 5; Linux: readiness from /proc/net/tcp)

- sockdiag: `sockdiag listen --frame -b 127.0.0.1 PORT > out` and
  `sockdiag connect --frame 127.0.0.1 PORT < lines`: each stdin line is one frame (4-byte
  big-endian length, then the bytes), each received frame is printed as one line.
- the peer: this file, `framed.py send PORT` and `framed.py recv PORT`, written the way the
  tutorials write it: the sender sendall()s struct.pack("!I", len(line)) + line for each stdin
  line; the receiver reads the 4-byte header, then the body, with recv() loops, and writes each
  body and a newline to a buffered stdout.

The same input for both: MESSAGES lines of SIZE bytes each (a seeded random pattern, no
newline inside), from a file in the page cache; the output goes to a file in /dev/shm (or the
temporary directory) and must equal the input byte for byte. The listener is started first and
waited for (its port in /proc/net/tcp); the time runs from starting the sender until both have
exited, so it includes both start-ups (~15 ms for Python, ~30 ms for sockdiag). Tools alternate
in every round; medians. Reports messages/s, MiB/s (payload) and the ratio sockdiag / peer
(above 1.00x: sockdiag is faster), and the load average before, during and after.
"""

from __future__ import annotations

import filecmp
import os
import platform
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import median, sockdiag_argv, table  # noqa: E402
from relay import free_port, wait_listening  # noqa: E402

MIB = 1024**2
CASES = [(1024, 131072), (65536, 4096)]  # (message bytes, messages): 128 MiB and 256 MiB of payload
HEADER = struct.Struct("!I")


# --- the plain-Python peer ------------------------------------------------------------------------

def peer_send(port: int) -> None:
    """Each stdin line (without its newline) as one length-prefixed message, then EOF."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for line in sys.stdin.buffer:
            message = line[:-1] if line.endswith(b"\n") else line
            sock.sendall(HEADER.pack(len(message)) + message)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # the receiver's close: everything has arrived


def recv_exactly(conn: socket.socket, size: int) -> bytes:
    chunks, have = [], 0
    while have < size:
        chunk = conn.recv(min(size - have, 65536))
        if not chunk:
            raise SystemExit(f"stream ended inside a message ({have} of {size} bytes)")
        chunks.append(chunk)
        have += len(chunk)
    return b"".join(chunks)


def peer_recv(port: int) -> None:
    """One client: each message written as one line, until its EOF. stdout is an ordinary
    buffered file whatever PYTHONUNBUFFERED says (the machine's environment sets it)."""
    with open(sys.stdout.fileno(), "wb", closefd=False) as out, socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen(1)
        conn, _ = server.accept()
        with conn:
            while header := conn.recv(HEADER.size):
                if len(header) < HEADER.size:
                    header += recv_exactly(conn, HEADER.size - len(header))
                (length,) = HEADER.unpack(header)
                out.write(recv_exactly(conn, length) + b"\n")


# --- the benchmark --------------------------------------------------------------------------------

def commands(port: int) -> dict[str, tuple[list[str], list[str]]]:
    sd, me, p = sockdiag_argv(), [sys.executable, os.path.abspath(__file__)], str(port)
    return {
        "sockdiag --frame": (sd + ["listen", "--frame", "-b", "127.0.0.1", p],
                             sd + ["connect", "--frame", "127.0.0.1", p]),
        "plain Python": (me + ["recv", p], me + ["send", p]),
    }


def make_input(directory: Path, size: int, count: int) -> Path:
    """`count` lines of `size` bytes (no newline inside), in the page cache."""
    rng = random.Random(size)
    alphabet = bytes(b for b in range(256) if b != 0x0A)
    block = bytes(rng.choice(alphabet) for _ in range(size))
    path = directory / f"framed-{size}.lines"
    with open(path, "wb") as out:
        for i in range(count):
            cut = i % size
            out.write(block[cut:] + block[:cut] + b"\n")  # each line differs: reordering would show
    with open(path, "rb") as warm:
        while warm.read(16 * MIB):
            pass
    return path


def transfer(listen_argv: list[str], send_argv: list[str], port: int, data: Path, out: Path) -> tuple[float, bool]:
    with open(out, "wb") as sink:
        listener = subprocess.Popen(listen_argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.PIPE)
    sender = None
    try:
        wait_listening(port, listener)
        with open(data, "rb") as source:
            start = time.perf_counter()
            sender = subprocess.Popen(send_argv, stdin=source, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, send_err = sender.communicate(timeout=300)
            _, listen_err = listener.communicate(timeout=300)
            elapsed = time.perf_counter() - start
    finally:
        for proc in (listener, sender):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    ok = sender.returncode == 0 and listener.returncode == 0 and filecmp.cmp(data, out, shallow=False)
    if not ok:
        print(f"  failed: {' '.join(send_argv[-3:])}: sender {sender.returncode} {send_err[-200:]!r}, "
              f"receiver {listener.returncode} {listen_err[-200:]!r}", file=sys.stderr)
    return elapsed, ok


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    load_before = os.getloadavg()
    scratch = Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(tempfile.gettempdir())
    rows, failed, load_peak = [], False, load_before[0]
    with tempfile.TemporaryDirectory(dir=scratch, prefix="sockdiag-framed-") as tmp:
        directory = Path(tmp)
        for size, count in CASES:
            data, out = make_input(directory, size, count), directory / "out"
            times: dict[str, list[float]] = {}
            exact: dict[str, int] = {}
            for _ in range(runs):
                for name in commands(0):
                    port = free_port()
                    listen_argv, send_argv = commands(port)[name]
                    elapsed, ok = transfer(listen_argv, send_argv, port, data, out)
                    times.setdefault(name, []).append(elapsed)
                    exact[name] = exact.get(name, 0) + ok
                    failed |= not ok
                    load_peak = max(load_peak, os.getloadavg()[0])
            payload_mib = size * count / MIB
            peer = median(times["plain Python"])
            for name, samples in times.items():
                seconds = median(samples)
                rows.append([f"{size // 1024} KiB x {count}", name, f"{seconds:.3f}",
                             f"{min(samples):.2f}-{max(samples):.2f}", f"{count / seconds:,.0f}",
                             f"{payload_mib / seconds:,.0f}", f"{peer / seconds:.2f}x",
                             f"{exact[name]}/{runs}"])
    load_after = os.getloadavg()
    print(f"framed relay over 127.0.0.1, {runs} runs each, alternating; {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in load_before)}; "
          f"after: {' '.join(f'{v:.2f}' for v in load_after)}; highest 1-min figure seen: {load_peak:.2f} "
          f"(the benchmark's own two processes count in it)")
    print()
    print(table(rows, ["messages", "sender -> receiver", "median s", "min-max s", "messages/s", "MiB/s",
                       "speed vs peer", "byte-exact"]))
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("send", "recv"):
        (peer_send if sys.argv[1] == "send" else peer_recv)(int(sys.argv[2]))
    else:
        sys.exit(main())
