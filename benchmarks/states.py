"""The socket table at ~20,000 TCP sockets: `sockdiag states -t` vs ss, netstat and lsof.

Two helper processes hold 10,000 connected loopback pairs (one holds the listener and the
accepted ends, the other the client ends, so neither needs more than ~10,000 descriptors).
Then, alternating in one run, the median wall time, the median CPU time (user + system, the
process and its children, from wait4) and the peak RSS of:
  sockdiag states -t | ss -tanp | netstat -tanp | lsof -nP -iTCP | sockdiag states -t --summary
  | sockdiag states -ti | ss -tani | ss -tanpi | sockdiag states --summary -o prometheus
Bars (issue 5): states -t at most 1.5x `ss -tanp` and faster than `netstat -tanp`; peak RSS
under 96 MiB; --summary no slower than the full listing. Issue 13: states -t at most 0.8x
`ss -tanp`, states -ti at most 1.0x `ss -tani`, --summary -o prometheus at most 0.5x
`ss -tanp`, peak RSS under 64 MiB. The bars are on wall time; on a machine that is busy with
other work, the CPU ratios (same run) are the steadier figure and are printed beside them.

For reference it also times `-o json`, `ss -tanpi` (ss -i with owners, what states -ti shows)
and a bare psutil.net_connections('tcp') (no process names).

Usage: python benchmarks/states.py [ROUNDS] [PAIRS]     (defaults 10 and 10000; Linux, loopback only)
"""

from __future__ import annotations

import os
import resource
import socket
import struct
import subprocess
import sys
import time

from _bench import have, median, peak_rss_mib, ratio, sockdiag_argv, table



def hold(role: str, pairs: int, port: int = 0) -> int:
    """Holder process: the listener + accepted ends ("server") or the client ends ("client").
    Prints the listening port / "ready", then holds the sockets until stdin closes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = pairs + 64
    if hard != resource.RLIM_INFINITY and hard < need:
        print(f"RLIMIT_NOFILE hard limit {hard} < {need}: use fewer pairs", file=sys.stderr)
        return 1
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    held = []
    if role == "server":
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4096)
        held.append(listener)
        print(listener.getsockname()[1], flush=True)
        held += [listener.accept()[0] for _ in range(pairs)]
    else:
        held += [socket.create_connection(("127.0.0.1", port)) for _ in range(pairs)]
    print("ready", flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin (or exits)
    # Abortive close (RST): no 10,000 TIME_WAIT sockets left behind to skew the next run.
    linger = struct.pack("ii", 1, 0)
    for sock in held:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        sock.close()
    return 0


def start_holders(pairs: int) -> list[subprocess.Popen]:
    def spawn(*args):
        return subprocess.Popen([sys.executable, __file__, "--hold", *args], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)

    server = spawn("server", str(pairs))
    port = server.stdout.readline().strip()
    client = spawn("client", str(pairs), port)
    for proc in (client, server):
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("socket holder failed to start")
    return [server, client]


def stop_holders(holders: list[subprocess.Popen]) -> None:
    for proc in holders:
        proc.stdin.close()
    for proc in holders:
        proc.wait(timeout=60)


def run_cpu(argv: list[str], timeout: float = 600.0) -> tuple[float, float, int]:
    """(wall seconds, user + system CPU seconds, exit status) of one run. The CPU time comes from
    wait4() on the child: it counts the child and what it waited for (its threads too)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime, proc.returncode


def count_lines(argv: list[str]) -> int:
    return subprocess.run(argv, capture_output=True, timeout=120).stdout.count(b"\n")


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    pairs = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    sockdiag = sockdiag_argv()
    commands = {
        "sockdiag states -t": sockdiag + ["states", "-t"],
        "ss -tanp": ["ss", "-tanp"],
        "netstat -tanp": ["netstat", "-tanp"],
        "lsof -nP -iTCP": ["lsof", "-nP", "-iTCP"],
        "sockdiag states -t --summary": sockdiag + ["states", "-t", "--summary"],
        "sockdiag states -t -o json": sockdiag + ["states", "-t", "-o", "json"],
        # issue 13: TCP internals (sock_diag) against ss -tani, and the Prometheus summary.
        "sockdiag states -ti": sockdiag + ["states", "-ti"],
        "ss -tani": ["ss", "-tani"],
        "ss -tanpi": ["ss", "-tanpi"],
        "sockdiag states --summary -o prometheus": sockdiag + ["states", "--summary", "-o", "prometheus"],
        # Not a bar: what psutil's generic Linux path costs for the same table (why procnet exists).
        "psutil.net_connections('tcp')": [sys.executable, "-c", "import psutil; psutil.net_connections('tcp')"],
    }
    commands = {name: argv for name, argv in commands.items() if have(argv[0]) or argv[0] in (sockdiag[0], sys.executable)}
    holders = start_holders(pairs)
    try:
        rows = count_lines(sockdiag + ["states", "-t"]) - 1
        print(f"{rows} TCP sockets listed by sockdiag ({pairs} connected loopback pairs held)")
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        rss: dict[str, list[float]] = {name: [] for name in commands}
        for argv in commands.values():  # warm the page cache and .pyc files
            run_cpu(argv)
        for _ in range(rounds):
            for name, argv in commands.items():
                wall, used, status = run_cpu(argv)
                if status != 0:
                    raise SystemExit(f"{name} exited with {status}")
                times[name].append(wall)
                cpu[name].append(used)
        for name, argv in commands.items():
            measured = peak_rss_mib(argv)
            rss[name].append(measured[0] if measured else float("nan"))
    finally:
        stop_holders(holders)

    ss = median(times["ss -tanp"]) if "ss -tanp" in times else 0.0
    ss_cpu = median(cpu["ss -tanp"]) if "ss -tanp" in cpu else 0.0
    out = [[name, f"{median(t) * 1000:.0f}", f"{median(cpu[name]) * 1000:.0f}", f"{max(rss[name]):.1f}",
            ratio(median(t), ss), ratio(median(cpu[name]), ss_cpu)] for name, t in times.items()]
    print(f"\nsocket table, {rows} TCP sockets, median of {rounds} alternating rounds, "
          f"Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}")
    print(table(out, ["command", "median ms", "median CPU ms", "peak RSS MiB", "vs ss -tanp", "CPU vs ss -tanp"]))

    ours = median(times["sockdiag states -t"])
    summary = median(times["sockdiag states -t --summary"])
    peak = max(rss["sockdiag states -t"] + rss["sockdiag states -t --summary"])
    def cpu_ratio(name: str, peer: str) -> str:
        return f"CPU {ratio(median(cpu[name]), median(cpu[peer]))}" if peer in cpu else ""

    bars = [("states -t <= 1.5x ss -tanp", ss > 0 and ours <= 1.5 * ss, ratio(ours, ss))]
    if "netstat -tanp" in times:
        netstat = median(times["netstat -tanp"])
        bars.append(("states -t faster than netstat -tanp", ours < netstat, ratio(ours, netstat)))
    bars.append(("peak RSS < 96 MiB", peak < 96, f"{peak:.1f} MiB"))
    bars.append(("--summary no slower than the listing", summary <= ours, ratio(summary, ours)))
    # issue 13's bars (every owner and the queues are in states -t now)
    bars.append(("issue 13: states -t <= 0.8x ss -tanp", ss > 0 and ours <= 0.8 * ss,
                 f"{ratio(ours, ss)} ({cpu_ratio('sockdiag states -t', 'ss -tanp')})"))
    if "ss -tani" in times and "sockdiag states -ti" in times:
        tani, ti = median(times["ss -tani"]), median(times["sockdiag states -ti"])
        figure = (f"{ratio(ti, tani)} ({cpu_ratio('sockdiag states -ti', 'ss -tani')}; "
                  f"vs ss -tanpi {ratio(ti, median(times['ss -tanpi']))})")
        bars.append(("issue 13: states -ti <= 1.0x ss -tani", ti <= tani, figure))
    prom = median(times["sockdiag states --summary -o prometheus"])
    bars.append(("issue 13: --summary -o prometheus <= 0.5x ss -tanp", prom <= 0.5 * ss,
                 f"{ratio(prom, ss)} ({cpu_ratio('sockdiag states --summary -o prometheus', 'ss -tanp')})"))
    bars.append(("issue 13: peak RSS < 64 MiB", peak < 64, f"{peak:.1f} MiB"))
    print()
    for name, ok, figure in bars:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {figure}")
    return 0 if all(ok for _, ok, _ in bars) else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--hold":
        sys.exit(hold(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 0))
    sys.exit(main())
