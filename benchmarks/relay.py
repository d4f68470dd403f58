"""connect/listen (issue 3): 1 GiB over loopback, and the -k echo server under 200 clients.

1. Throughput: a 1 GiB file on the sender's stdin, /dev/null on the receiver's stdout, through
   `sockdiag connect` -> `sockdiag listen`, OpenBSD `nc -N` -> `nc -l` and `socat -u`, alternating,
   median of RUNS. Timed from starting the sender until both ends have exited (the listener is
   started first and waited for). Bars: sockdiag at least as fast as nc (aim 1.3x), peak RSS of
   each side under 64 MiB. `sockdiag (copy loop)` is the portable path (SOCKDIAG_NO_ZEROCOPY=1).
2. Echo: 200 concurrent clients, each sending 1 MiB and reading it back, against
   `sockdiag listen -k --echo` and `socat TCP-LISTEN:..,fork PIPE` (a process per client).
   Bar: every byte of every client matches; peak RSS of the sockdiag server under 64 MiB.

Linux only (readiness is read from /proc/net/tcp). Usage: python benchmarks/relay.py [RUNS]
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import have, median, ratio, sockdiag_argv, table

GIB = 1024**3
MIB = 1024**2
RSS_BAR_MIB = 64
ECHO_CLIENTS = 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something listens on `port` (state 0A in /proc/net/tcp*), without connecting:
    a connect would use up a one-shot listener."""
    needle = f":{port:04X} "
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as table_file:
                for line in table_file:
                    fields = line.split()
                    if len(fields) > 3 and (fields[1] + " ").endswith(needle) and fields[3] == "0A":
                        return True
        except OSError:
            pass
    return False


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"listener on port {port} did not start")
        time.sleep(0.002)


class Measured:
    """A command run under GNU time for its peak RSS. Not os.wait4: a child forked (or vforked)
    from this Python starts with the parent's peak RSS in ru_maxrss, which would hide the real
    figure; GNU time is small, so its child's figure is the command's own (plus its children)."""

    def __init__(self, argv: list[str], **popen_args):
        self.rss_file = tempfile.NamedTemporaryFile(prefix="sockdiag-rss-", delete=False)
        self.rss_file.close()
        wrapper = [TIME, "-q", "-f", "%M", "-o", self.rss_file.name] if TIME else []
        self.proc = subprocess.Popen(wrapper + argv, start_new_session=True, **popen_args)

    def wait(self, timeout: float) -> tuple[int, float | None]:
        """Exit status and peak RSS in MiB (None without GNU time); killed after `timeout`."""
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            status = self.proc.wait()
        try:
            text = Path(self.rss_file.name).read_text().split()
            rss = int(text[-1]) / 1024 if text else None
        except (OSError, ValueError):
            rss = None
        os.unlink(self.rss_file.name)
        return status, rss

    def signal(self, signum: int) -> None:
        """To the whole group: GNU time ignores SIGINT itself and passes on only the exit status."""
        try:
            os.killpg(self.proc.pid, signum)
        except OSError:
            pass


TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


# --- 1. throughput --------------------------------------------------------------------------------

def throughput_commands(port: int, data: Path) -> dict[str, tuple[list[str], list[str], dict]]:
    sd = sockdiag_argv()
    p = str(port)
    commands = {
        "sockdiag": (sd + ["listen", "-b", "127.0.0.1", p], sd + ["connect", "127.0.0.1", p], {}),
        "sockdiag (copy loop)": (sd + ["listen", "-b", "127.0.0.1", p], sd + ["connect", "127.0.0.1", p],
                                 {"SOCKDIAG_NO_ZEROCOPY": "1"}),
    }
    if have("nc"):
        commands["nc -N -> nc -l"] = (["nc", "-l", "127.0.0.1", p], ["nc", "-N", "127.0.0.1", p], {})
    if have("socat"):
        commands["socat -u"] = (["socat", "-u", f"TCP-LISTEN:{p},bind=127.0.0.1,reuseaddr", "STDOUT"],
                                ["socat", "-u", "STDIN", f"TCP:127.0.0.1:{p}"], {})
    return commands


def transfer_once(listen_argv, connect_argv, extra_env: dict, data: Path, port: int):
    env = dict(os.environ, **extra_env)
    listener = Measured(listen_argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, env=env)
    wait_listening(port, listener.proc)
    with open(data, "rb") as source:
        start = time.perf_counter()
        sender = Measured(connect_argv, stdin=source, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        sender_status, sender_rss = sender.wait(300)
        listener_status, listener_rss = listener.wait(300)
        elapsed = time.perf_counter() - start
    ok = sender_status == 0 and listener_status == 0
    return elapsed, listener_rss, sender_rss, ok


def make_data(directory: str) -> Path:
    """1 GiB: one seeded random MiB repeated (deterministic; content does not change speed)."""
    path = Path(directory) / "relay-1gib.bin"
    block = random.Random(3).randbytes(MIB)
    with open(path, "wb") as out:
        for _ in range(GIB // MIB):
            out.write(block)
    with open(path, "rb") as warm:  # into the page cache, so the disk is not measured
        while warm.read(16 * MIB):
            pass
    return path


def bench_throughput(runs: int, data: Path) -> tuple[str, list[str]]:
    port = free_port()
    commands = throughput_commands(port, data)
    times: dict[str, list[float]] = {name: [] for name in commands}
    rss: dict[str, list[float]] = {name: [0.0, 0.0] for name in commands}
    failures: dict[str, int] = {name: 0 for name in commands}
    for _ in range(runs):
        for name, (listen_argv, connect_argv, extra) in commands.items():
            elapsed, listen_rss, connect_rss, ok = transfer_once(listen_argv, connect_argv, extra, data, port)
            print(f"  {name}: {elapsed:.2f} s", file=sys.stderr)
            times[name].append(elapsed)
            rss[name] = [max(rss[name][0], listen_rss or 0.0), max(rss[name][1], connect_rss or 0.0)]
            failures[name] += not ok
    nc = median(times["nc -N -> nc -l"]) if "nc -N -> nc -l" in times else None
    rows = []
    for name, values in times.items():
        m = median(values)
        rows.append([name, f"{m:.3f}", f"{GIB / MIB / m:,.0f}", ratio(m, nc) if nc else "n/a",
                     f"{nc / m:.2f}x" if nc else "n/a", f"{rss[name][0]:.1f}", f"{rss[name][1]:.1f}",
                     "ok" if not failures[name] else f"{failures[name]} failed"])
    text = table(rows, ["sender -> receiver", "median s", "MiB/s", "time vs nc", "speed vs nc",
                        "listen peak RSS MiB", "connect peak RSS MiB", "exit"])
    verdicts = []
    if nc:
        speed = nc / median(times["sockdiag"])
        verdicts.append(f"throughput >= nc (speed {speed:.2f}x, aim 1.3x): "
                        f"{'PASS' if speed >= 1.0 else 'FAIL'}{' (aim met)' if speed >= 1.3 else ''}")
    peak = max(rss["sockdiag"] + rss["sockdiag (copy loop)"])
    verdicts.append(f"peak RSS of either side < {RSS_BAR_MIB} MiB ({peak:.1f} MiB): "
                    f"{'NOT MEASURED (needs GNU time)' if not TIME else 'PASS' if peak < RSS_BAR_MIB else 'FAIL'}")
    verdicts.append(f"every transfer exited 0: {'PASS' if not failures['sockdiag'] else 'FAIL'}")
    return text, verdicts


# --- 2. echo under 200 concurrent clients --------------------------------------------------------

def echo_clients(port: int, total: int, size: int, parallel: int | None = None,
                 timeout: float = 120.0) -> tuple[float, int, int]:
    """`total` connections, `parallel` at a time (default: all at once), each sending `size` bytes
    (a different rotation of one pattern), half-closing and reading the echo back. Gives up after
    `timeout` seconds. Returns (seconds, clients whose echo matched byte for byte, clients that failed)."""
    parallel = total if parallel is None else parallel
    pattern = random.Random(7).randbytes(size)
    doubled = memoryview(pattern + pattern)
    selector = selectors.DefaultSelector()
    state: dict = {}
    buffer = memoryview(bytearray(256 * 1024))
    started = matched = failed = 0
    start = time.perf_counter()
    deadline = start + timeout

    def open_one(index: int) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        state[sock] = {"offset": (index * 4099) % size, "sent": 0, "received": 0, "ok": True}
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)

    def finish(sock, good: bool) -> None:
        nonlocal matched, failed
        matched += good
        failed += not good
        selector.unregister(sock)
        sock.close()
        del state[sock]

    while (state or started < total) and time.perf_counter() < deadline:
        while started < total and len(state) < parallel:
            open_one(started)
            started += 1
        for key, mask in selector.select(1.0):
            sock, s = key.fileobj, state[key.fileobj]
            try:
                if mask & selectors.EVENT_WRITE and s["sent"] < size:
                    begin = s["offset"] + s["sent"]
                    s["sent"] += sock.send(doubled[begin:begin + min(65536, size - s["sent"])])
                    if s["sent"] == size:
                        sock.shutdown(socket.SHUT_WR)
                        selector.modify(sock, selectors.EVENT_READ)
                if mask & selectors.EVENT_READ:
                    count = sock.recv_into(buffer)
                    if count:
                        begin = s["offset"] + s["received"]
                        s["ok"] &= buffer[:count] == doubled[begin:begin + count]
                        s["received"] += count
                        continue
                    finish(sock, s["ok"] and s["received"] == size and s["sent"] == size)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                finish(sock, False)
    failed += len(state) + (total - started)
    for sock in state:
        sock.close()
    selector.close()
    return time.perf_counter() - start, matched, failed


def echo_servers(port: int) -> dict[str, list[str]]:
    p = str(port)
    servers = {"sockdiag listen -k --echo": sockdiag_argv() + ["listen", "-k", "--echo", "-b", "127.0.0.1", p]}
    # Not ncat -l -k --exec /bin/cat: ncat ends the connection on the client's half-close before
    # cat has echoed, so no client that sends all and then shuts down gets its bytes back.
    if have("socat"):
        servers["socat fork PIPE"] = ["socat", f"TCP-LISTEN:{p},bind=127.0.0.1,reuseaddr,fork,backlog=512",
                                      "PIPE"]
    return servers


def bench_echo(runs: int) -> tuple[str, list[str]]:
    port = free_port()
    servers = echo_servers(port)
    times: dict[str, list[float]] = {name: [] for name in servers}
    results = {name: [0, 0, 0.0] for name in servers}  # matched, failed, peak RSS (nan: not measured)
    for _ in range(runs):
        for name, argv in servers.items():
            server = Measured(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_listening(port, server.proc)
            elapsed, matched, failed = echo_clients(port, ECHO_CLIENTS, MIB)
            print(f"  {name}: {elapsed:.2f} s, {matched} byte-exact, {failed} failed", file=sys.stderr)
            server.signal(signal.SIGINT)
            _, peak = server.wait(10)
            server.signal(signal.SIGKILL)  # forked children, if any are left
            times[name].append(elapsed)
            results[name][0] += matched
            results[name][1] += failed
            # A server that missed SIGINT's deadline is SIGKILLed, and GNU time then writes nothing:
            # that round's memory is unknown, never 0.
            prev = results[name][2]
            results[name][2] = float("nan") if peak is None or prev != prev else max(prev, peak)
    base = median(times["sockdiag listen -k --echo"])
    rows = [[name, f"{median(t):.3f}", ratio(median(t), base), f"{results[name][0]}/{runs * ECHO_CLIENTS}",
             f"{results[name][2]:.1f}"] for name, t in times.items()]
    text = table(rows, ["echo server", "median s", "time vs sockdiag", "clients byte-exact",
                        "server peak RSS MiB (largest process)"])
    ours = results["sockdiag listen -k --echo"]
    verdicts = [
        f"{ECHO_CLIENTS} concurrent clients x 1 MiB, every byte matching: "
        f"{'PASS' if ours[0] == runs * ECHO_CLIENTS and not ours[1] else 'FAIL'}",
        f"echo server peak RSS < {RSS_BAR_MIB} MiB ({ours[2]:.1f} MiB): "
        f"{'NOT MEASURED' if not TIME or ours[2] != ours[2] else 'PASS' if ours[2] < RSS_BAR_MIB else 'FAIL'}",
    ]
    return text, verdicts


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    if not sys.platform.startswith("linux"):
        print("benchmarks/relay.py needs Linux (/proc/net/tcp, wait4)")
        return 2
    with tempfile.TemporaryDirectory(prefix="sockdiag-bench-") as directory:
        data = make_data(directory)
        throughput, verdicts = bench_throughput(runs, data)
    echo, echo_verdicts = bench_echo(max(1, (runs + 1) // 2))
    print(f"## relay: 1 GiB over loopback, median of {runs} alternating runs, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs")
    print()
    print(throughput)
    print()
    print(f"## echo: {ECHO_CLIENTS} concurrent clients x 1 MiB each, median of {max(1, (runs + 1) // 2)} runs")
    print()
    print(echo)
    print()
    for line in verdicts + echo_verdicts:
        print(f"- {line}")
    return 0 if all("PASS" in line for line in verdicts + echo_verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
