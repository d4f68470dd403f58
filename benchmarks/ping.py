"""ping's per-attempt overhead: `sockdiag ping -c N -i 0` vs a bare Python connect loop, on loopback.

Usage: python benchmarks/ping.py [ROUNDS] [ATTEMPTS]      (defaults: 5 rounds of 2000 attempts)

Both sides make the same system calls per attempt: socket(), a connect with a timeout (poll),
SO_LINGER 0, close() (RST: no TIME_WAIT piles up over the run). The listener is a child process
that accepts and closes every connection. Rounds alternate bare / sockdiag.

1. In-process (the bar): sockdiag runs through cli.main() with a stdout that stamps each write
   with perf_counter_ns() and writes it to /dev/null (one write(2) per line, as the real
   line-flushed stdout does). The gaps between consecutive attempt lines are sockdiag's
   per-attempt cycle time: connect, tally, format, write. The bare loop stamps each iteration's
   start. Bar (issue 14): median(sockdiag) - median(bare) at most 0.1 ms. The median handshake
   time each side measured is shown too: sockdiag's own figure must not be inflated.
2. End to end, for reference: wall time of `sockdiag ping -c N -i 0` as a process vs the bare
   loop as a `python -c` process, each less its start-up (`sockdiag ping -c 1`, `python -c pass`).

-i 0 is what makes this measurable: with ping's 1 s default a run of 2000 would take half an hour.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import struct
import subprocess
import sys
import time

from _bench import ROOT, median, ratio, run_timed, sockdiag_argv, table

sys.path.insert(0, str(ROOT))

from sockdiag.cli import main as sockdiag_main
from sockdiag.env import Env

BAR_MS = 0.1
TIMEOUT = 2.0  # sockdiag ping's default -w, used by both sides

LISTENER_CODE = r"""
import socket, sys, threading
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4096)
print(s.getsockname()[1], flush=True)
def serve():
    while True:
        conn, _ = s.accept()
        conn.close()
threading.Thread(target=serve, daemon=True).start()
sys.stdin.read()  # ends when the benchmark closes our stdin
"""

BARE_CODE = r"""
import socket, struct, sys
addr, n = ("127.0.0.1", int(sys.argv[1])), int(sys.argv[2])
rst = struct.pack("ii", 1, 0)
for _ in range(n):
    s = socket.socket()
    s.settimeout(2.0)
    s.connect(addr)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, rst)
    s.close()
"""

LINE = re.compile(rb"^connected to \S+: seq=\d+ time=(\d+\.\d+) ms\n$")


class StampedSink:
    """A binary stdout that records when each write happened, and writes it to /dev/null."""

    def __init__(self) -> None:
        self.fd = os.open(os.devnull, os.O_WRONLY)
        self.stamps: list[int] = []
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.stamps.append(time.perf_counter_ns())
        self.chunks.append(bytes(data))
        return os.write(self.fd, data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        os.close(self.fd)


def sockdiag_round(port: int, attempts: int) -> tuple[list[int], list[float]]:
    """(cycle times ns, handshake times ms) of one in-process `sockdiag ping -c N -i 0`."""
    sink = StampedSink()
    try:
        with open(os.devnull, "rb") as stdin, open(os.devnull, "wb") as stderr:
            env = Env(stdin=stdin, stdout=sink, stderr=stderr)
            status = sockdiag_main(["ping", "-c", str(attempts), "-i", "0", "127.0.0.1", str(port)], env)
    finally:
        sink.close()
    assert status == 0, status
    # write 0 is the PING header, then one write per attempt, then the summary
    lines = sink.chunks[1:attempts + 1]
    rtts = []
    for line in lines:
        match = LINE.match(line)
        assert match, line  # every attempt connected
        rtts.append(float(match.group(1)))
    stamps = sink.stamps[1:attempts + 1]
    return [b - a for a, b in itertools.pairwise(stamps)], rtts


def bare_round(port: int, attempts: int) -> tuple[list[int], list[float]]:
    """(cycle times ns, handshake times ms) of the bare loop: the same calls, nothing else."""
    addr, rst, clock = ("127.0.0.1", port), struct.pack("ii", 1, 0), time.perf_counter_ns
    starts, rtts = [], []
    for _ in range(attempts):
        starts.append(clock())
        s = socket.socket()
        s.settimeout(TIMEOUT)
        t0 = clock()
        s.connect(addr)
        rtts.append((clock() - t0) / 1e6)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, rst)
        s.close()
    starts.append(clock())
    return [b - a for a, b in itertools.pairwise(starts)], rtts


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    attempts = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    load_before = os.getloadavg()
    listener = subprocess.Popen([sys.executable, "-c", LISTENER_CODE], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        port = int(listener.stdout.readline())
        cycles: dict[str, list[int]] = {"bare": [], "sockdiag": []}
        handshakes: dict[str, list[float]] = {"bare": [], "sockdiag": []}
        per_round: dict[str, list[float]] = {"bare": [], "sockdiag": []}
        bare_round(port, 200), sockdiag_round(port, 200)  # warm up: imports, caches
        for _ in range(rounds):
            for name, func in (("bare", bare_round), ("sockdiag", sockdiag_round)):
                gaps, rtts = func(port, attempts)
                cycles[name] += gaps
                handshakes[name] += rtts
                per_round[name].append(median(gaps) / 1e6)

        ping_argv = sockdiag_argv() + ["ping", "-i", "0", "127.0.0.1", str(port), "-c"]
        argvs = {"python -c pass": [sys.executable, "-c", "pass"],
                 "sockdiag ping -c 1": ping_argv + ["1"],
                 "bare": [sys.executable, "-c", BARE_CODE, str(port), str(attempts)],
                 "sockdiag": ping_argv + [str(attempts)]}
        walls: dict[str, list[float]] = {name: [] for name in argvs}
        for _ in range(rounds):
            for name, argv in argvs.items():
                result = run_timed(argv)
                assert result.returncode == 0, (name, result.returncode)
                walls[name].append(result.seconds)
    finally:
        listener.stdin.close()
        listener.wait(10)
    load_after = os.getloadavg()

    print(f"ping per-attempt overhead on loopback, {rounds} alternating rounds x {attempts} attempts, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print()
    base = median(cycles["bare"]) / 1e6
    rows = []
    for name in ("bare", "sockdiag"):
        cycle = median(cycles[name]) / 1e6
        rows.append([name if name == "bare" else "sockdiag ping -i 0 (in-process)", f"{cycle:.4f}",
                     " ".join(f"{x:.4f}" for x in per_round[name]), f"{median(handshakes[name]):.4f}",
                     ratio(cycle, base)])
    print(table(rows, ["loop", "median ms/attempt", "per-round medians", "median handshake ms", "vs bare"]))
    overhead = median(cycles["sockdiag"]) / 1e6 - base
    print()
    print(f"median overhead per attempt: {overhead:.4f} ms  (bar: at most {BAR_MS} ms)  "
          f"{'PASS' if overhead <= BAR_MS else 'FAIL'}")
    print()
    wall = {name: median(times) * 1000 for name, times in walls.items()}
    # per attempt without start-up: the N-attempt run minus the run that starts and does (almost) nothing
    net = {"bare": (wall["bare"] - wall["python -c pass"]) / attempts,
           "sockdiag": (wall["sockdiag"] - wall["sockdiag ping -c 1"]) / (attempts - 1)}
    rows = [["python -c pass", f"{wall['python -c pass']:.1f}", "", ""],
            ["sockdiag ping -c 1 -i 0", f"{wall['sockdiag ping -c 1']:.1f}", "", ""],
            [f"bare loop, {attempts} attempts", f"{wall['bare']:.1f}", f"{net['bare']:.4f}", "1.00x"],
            [f"sockdiag ping -c {attempts} -i 0", f"{wall['sockdiag']:.1f}", f"{net['sockdiag']:.4f}",
             ratio(net["sockdiag"], net["bare"])]]
    print(table(rows, ["process", "median wall ms", "ms/attempt without start-up", "vs bare"]))
    print(f"\nend to end: {net['sockdiag'] - net['bare']:.4f} ms per attempt more than the bare loop; "
          f"start-up {wall['sockdiag ping -c 1'] - wall['python -c pass']:.1f} ms more than python -c pass")
    return 0 if overhead <= BAR_MS else 1


if __name__ == "__main__":
    sys.exit(main())
