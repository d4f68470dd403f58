"""forward: sockdiag forward side by side with socat's forking forwarder, alternating, in one run.

    socat TCP-LISTEN:FPORT,bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:UPORT

1. Throughput: 1 GiB from `sockdiag connect` (sendfile) through the forwarder into `sockdiag
   listen` (splice to /dev/null): the same fast ends for both forwarders, so the forwarder is what
   is measured. Timed from starting the sender until both ends have exited; median of RUNS.
   Bar: sockdiag forward at least as fast as socat. `sockdiag forward (copy loop)` is the
   portable path (SOCKDIAG_NO_ZEROCOPY=1, as --dump uses).
2. Short connections: 1,000 connections, 20 at a time, each sending 64 bytes, half-closing and
   reading the echo (the upstream is `sockdiag listen -k --echo` for both). Bar: at least as many
   connections per second as socat (which forks one process per connection).
3. Concurrency: 200 clients at once, each 1 MiB through the forwarder to the echo upstream and
   back. Bars: every byte of every client matches; peak RSS of the forwarder under 64 MiB
   (GNU time's %M; for socat the largest of its processes).

Linux only (readiness is read from /proc/net/tcp). Usage: python benchmarks/forward.py [RUNS] [--smoke]
(--smoke: 64 MiB, 200 short connections, 50 x 256 KiB; a check that everything runs, no verdicts).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import have, median, ratio, sockdiag_argv, table
from relay import TIME, Measured, echo_clients, free_port, wait_listening

MIB = 1024**2
RSS_BAR_MIB = 64


class Sizes:
    def __init__(self, smoke: bool):
        self.transfer = 64 * MIB if smoke else 1024 * MIB
        self.short, self.short_parallel = (200, 20) if smoke else (1000, 20)
        self.clients, self.client_bytes = (50, 256 * 1024) if smoke else (200, MIB)


def forwarders(fport: int, uport: int) -> dict[str, tuple[list[str], dict]]:
    sd = sockdiag_argv()
    out = {
        "sockdiag forward": (sd + ["forward", "-4", str(fport), "127.0.0.1", str(uport)], {}),
        "sockdiag forward (copy loop)": (sd + ["forward", "-4", str(fport), "127.0.0.1", str(uport)],
                                         {"SOCKDIAG_NO_ZEROCOPY": "1"}),
    }
    if have("socat"):
        out["socat fork"] = (["socat", f"TCP-LISTEN:{fport},bind=127.0.0.1,reuseaddr,fork,backlog=512",
                              f"TCP:127.0.0.1:{uport}"], {})
    return out


def start_forwarder(argv: list[str], extra_env: dict, fport: int) -> Measured:
    env = {key: value for key, value in os.environ.items() if key != "SOCKDIAG_NO_ZEROCOPY"}
    env.update(extra_env)
    proc = Measured(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_listening(fport, proc.proc)
    return proc


def stop(proc: Measured) -> float | None:
    """SIGINT (then SIGKILL for stragglers: socat's children); the peak RSS in MiB or None."""
    proc.signal(signal.SIGINT)
    _, peak = proc.wait(10)
    proc.signal(signal.SIGKILL)
    return peak


# --- 1. throughput ------------------------------------------------------------------------------

def make_data(directory: str, size: int) -> Path:
    path = Path(directory) / "forward-data.bin"
    block = random.Random(3).randbytes(MIB)
    with open(path, "wb") as out:
        out.writelines(block for _ in range(size // MIB))
    with open(path, "rb") as warm:  # into the page cache, so the disk is not measured
        while warm.read(16 * MIB):
            pass
    return path


def transfer_once(name: str, data: Path) -> tuple[float, float | None, bool]:
    fport, uport = free_port(), free_port()
    argv, extra_env = forwarders(fport, uport)[name]
    sd = sockdiag_argv()
    clean = {k: v for k, v in os.environ.items() if k != "SOCKDIAG_NO_ZEROCOPY"}
    sink = subprocess.Popen(sd + ["listen", "-b", "127.0.0.1", str(uport)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean)
    wait_listening(uport, sink)
    forwarder = start_forwarder(argv, extra_env, fport)
    with open(data, "rb") as source:
        start = time.perf_counter()
        sender = subprocess.Popen(sd + ["connect", "127.0.0.1", str(fport)], stdin=source,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean)
        ok = sender.wait(600) == 0 and sink.wait(600) == 0
        elapsed = time.perf_counter() - start
    return elapsed, stop(forwarder), ok


def bench_throughput(runs: int, sizes: Sizes, data: Path) -> tuple[str, list[str]]:
    names = list(forwarders(0, 0))
    times = {name: [] for name in names}
    rss = {name: 0.0 for name in names}
    failures = {name: 0 for name in names}
    for _ in range(runs):
        for name in names:
            elapsed, peak, ok = transfer_once(name, data)
            print(f"  {name}: {elapsed:.2f} s", file=sys.stderr)
            times[name].append(elapsed)
            rss[name] = max(rss[name], peak or 0.0)
            failures[name] += not ok
    mib = sizes.transfer / MIB
    socat = median(times["socat fork"]) if "socat fork" in times else None
    rows = [[name, f"{median(t):.3f}", f"{mib / median(t):,.0f}", f"{socat / median(t):.2f}x" if socat else "n/a",
             f"{rss[name]:.1f}", "ok" if not failures[name] else f"{failures[name]} failed"]
            for name, t in times.items()]
    text = table(rows, ["forwarder", "median s", "MiB/s", "speed vs socat", "peak RSS MiB", "exit"])
    verdicts = []
    if socat:
        speed = socat / median(times["sockdiag forward"])
        verdicts.append(f"throughput >= socat fork (speed {speed:.2f}x): {'PASS' if speed >= 1.0 else 'FAIL'}")
    verdicts.append(f"every transfer exited 0: {'PASS' if not failures['sockdiag forward'] else 'FAIL'}")
    return text, verdicts


# --- 2 and 3: clients through the forwarder to an echo upstream -----------------------------------

def bench_clients(runs: int, total: int, parallel: int, size: int) -> dict[str, list]:
    """Per forwarder: [times, matched, failed, peak RSS]."""
    results = {name: [[], 0, 0, 0.0] for name in forwarders(0, 0)}
    for _ in range(runs):
        for name, entry in results.items():
            fport, uport = free_port(), free_port()
            argv, extra = forwarders(fport, uport)[name]
            echo = subprocess.Popen(sockdiag_argv() + ["listen", "-k", "--echo", "-b", "127.0.0.1", str(uport)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_listening(uport, echo)
                forwarder = start_forwarder(argv, extra, fport)
                elapsed, matched, failed = echo_clients(fport, total, size, parallel, timeout=300)
                peak = stop(forwarder)
            finally:
                echo.send_signal(signal.SIGINT)
                echo.wait(10)
            print(f"  {name}: {elapsed:.2f} s, {matched} byte-exact, {failed} failed", file=sys.stderr)
            entry[0].append(elapsed)
            entry[1] += matched
            entry[2] += failed
            entry[3] = float("nan") if peak is None or entry[3] != entry[3] else max(entry[3], peak)
    return results


def bench_short(runs: int, sizes: Sizes) -> tuple[str, list[str]]:
    results = bench_clients(runs, sizes.short, sizes.short_parallel, 64)
    rate = {name: sizes.short / median(r[0]) for name, r in results.items()}
    socat = rate.get("socat fork")
    rows = [[name, f"{rate[name]:,.0f}", f"{rate[name] / socat:.2f}x" if socat else "n/a",
             f"{r[1]}/{runs * sizes.short}"] for name, r in results.items()]
    text = table(rows, ["forwarder", "connections/s", "vs socat", "byte-exact"])
    verdicts = []
    if socat:
        verdicts.append(f"short connections/s >= socat fork ({rate['sockdiag forward'] / socat:.2f}x): "
                        f"{'PASS' if rate['sockdiag forward'] >= socat else 'FAIL'}")
    ours = results["sockdiag forward"]
    verdicts.append(f"every short connection byte-exact: {'PASS' if not ours[2] else 'FAIL'}")
    return text, verdicts


def bench_concurrency(runs: int, sizes: Sizes) -> tuple[str, list[str]]:
    results = bench_clients(runs, sizes.clients, sizes.clients, sizes.client_bytes)
    base = median(results["sockdiag forward"][0])
    rows = [[name, f"{median(r[0]):.3f}", ratio(median(r[0]), base), f"{r[1]}/{runs * sizes.clients}",
             f"{r[3]:.1f}"] for name, r in results.items()]
    text = table(rows, ["forwarder", "median s", "time vs sockdiag", "clients byte-exact",
                        "forwarder peak RSS MiB (largest process)"])
    ours = results["sockdiag forward"]
    exact = "PASS" if ours[1] == runs * sizes.clients and not ours[2] else "FAIL"
    memory = "NOT MEASURED" if not TIME or ours[3] != ours[3] else "PASS" if ours[3] < RSS_BAR_MIB else "FAIL"
    verdicts = [f"{sizes.clients} concurrent clients x {sizes.client_bytes // 1024} KiB, every byte matching: {exact}",
                f"forwarder peak RSS < {RSS_BAR_MIB} MiB ({ours[3]:.1f} MiB): {memory}"]
    return text, verdicts


def main() -> int:
    smoke = "--smoke" in sys.argv
    numbers = [a for a in sys.argv[1:] if a.isdigit()]
    runs = int(numbers[0]) if numbers else (1 if smoke else 5)
    if not sys.platform.startswith("linux"):
        print("benchmarks/forward.py needs Linux (/proc/net/tcp)")
        return 2
    sizes = Sizes(smoke)
    with tempfile.TemporaryDirectory(prefix="sockdiag-bench-") as directory:
        data = make_data(directory, sizes.transfer)
        throughput, verdicts = bench_throughput(runs, sizes, data)
    short, short_verdicts = bench_short(runs, sizes)
    concurrency, concurrency_verdicts = bench_concurrency(max(1, (runs + 1) // 2), sizes)
    print(f"## forward: {sizes.transfer // MIB} MiB through the forwarder, median of {runs} alternating runs, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs{' (SMOKE RUN: sizes reduced)' if smoke else ''}")
    print()
    print(throughput)
    print()
    print(f"## short connections: {sizes.short}, {sizes.short_parallel} at a time, 64 bytes echoed each")
    print()
    print(short)
    print()
    print(f"## concurrency: {sizes.clients} clients at once x {sizes.client_bytes // 1024} KiB echoed each")
    print()
    print(concurrency)
    print()
    everything = verdicts + short_verdicts + concurrency_verdicts
    for line in everything:
        print(f"- {line}")
    return 0 if all("PASS" in line for line in everything) else 1


if __name__ == "__main__":
    sys.exit(main())
