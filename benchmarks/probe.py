"""probe vs nmap -sT and OpenBSD nc -z, side by side, in a network namespace of its own.

Usage (root: it creates a network namespace and nftables rules in it, removed at the end):

    python benchmarks/probe.py [ROUNDS]

1. Full range: 40 listeners on 127.0.0.1 (fixed pseudo-random ports, accepting and closing),
   `sockdiag probe 127.0.0.1 -` vs `nmap -sT -p- -n -Pn 127.0.0.1` vs `nc -z 127.0.0.1 1-65535`,
   alternating, ROUNDS rounds (default 5). Bars: median wall time at most 0.5x nmap's (aim 0.3x)
   with the identical open set in every run; peak RSS under 64 MiB.
2. Filtered: ports 1-5000 with 1000 of them dropped by an nftables rule (never answered) and 25
   listeners among the rest. Bar: `sockdiag probe -w 1` (default: no retries) within 1.5x the
   timeout, every dropped port `filtered`, every other port right. `--retries 1` and
   `nmap -sT --max-retries 0` are shown for reference.

The namespace makes the run deterministic: no other process's listeners, no other traffic.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from _bench import have, median, peak_rss_mib, ratio, run_timed, sockdiag_argv, table

HERE = Path(__file__).resolve().parent
FULL_LISTENERS = sorted(random.Random(4).sample(range(1, 65536), 40))
_rng = random.Random(5)
DROPPED = sorted(_rng.sample(range(1, 5001), 1000))
FILTER_LISTENERS = sorted(_rng.sample(sorted(set(range(1, 5001)) - set(DROPPED)), 25))
TIMEOUT = 1.0

# The listener child (Listeners here, and probe_hosts.py's): host:port items as arguments.
LISTENER_CODE = r"""
import selectors, signal, socket, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # ends when its stdin closes, whatever killed the parent
sel = selectors.DefaultSelector()
for item in sys.argv[1:]:
    host, port = item.rsplit(":", 1)
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port))); s.listen(1024); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
sel.register(sys.stdin, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        if key.fileobj is sys.stdin:
            sys.exit(0)
        try:
            conn, _ = key.fileobj.accept()
            conn.close()
        except OSError:
            pass
"""


class Listeners:
    """A child process listening on `ports` of 127.0.0.1, accepting and closing every connection
    (so repeated scans never fill an accept queue); ends when its stdin closes."""

    def __init__(self, ports: list[int]):
        self.proc = subprocess.Popen([sys.executable, "-c", LISTENER_CODE, *(f"127.0.0.1:{port}" for port in ports)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout.readline().strip() == b"ready"

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


def timed(argv: list[str], capture: str = "stdout"):
    """Run argv; return (Run, captured text of stdout or stderr)."""
    with tempfile.TemporaryFile() as f:
        kwargs = {capture: f}
        result = run_timed(argv, **kwargs)
        f.seek(0)
        return result, f.read().decode("utf-8", "replace")


def open_ports_sockdiag(text: str) -> set[int]:
    return {int(line.split()[1]) for line in text.splitlines() if line.strip()}


def open_ports_nmap(text: str) -> set[int]:
    return {int(port) for port in re.findall(r"(\d+)/open/tcp", text)}


def open_ports_nc(text: str) -> set[int]:
    return {int(port) for port in re.findall(r"Connection to \S+ (\d+) port \S+ succeeded", text)}


def full_range(rounds: int) -> list[tuple[str, bool]]:
    sd = sockdiag_argv() + ["probe"]
    commands = {
        "sockdiag probe 127.0.0.1 -": (sd + ["127.0.0.1", "-"], "stdout", open_ports_sockdiag),
        "sockdiag probe --workers 1 127.0.0.1 -": (sd + ["--workers", "1", "127.0.0.1", "-"], "stdout",
                                                   open_ports_sockdiag),
        "nmap -sT -p- -n -Pn 127.0.0.1": (["nmap", "-sT", "-p-", "-n", "-Pn", "-oG", "-", "127.0.0.1"], "stdout",
                                          open_ports_nmap),
        "nc -z 127.0.0.1 1-65535": (["nc", "-z", "-v", "127.0.0.1", "1-65535"], "stderr", open_ports_nc),
    }
    commands = {name: c for name, c in commands.items() if have(c[0][0]) or c[0][0] == sd[0]}
    expected = set(FULL_LISTENERS)
    times = {name: [] for name in commands}
    exact = {name: 0 for name in commands}
    listeners = Listeners(FULL_LISTENERS)
    try:
        for name, (argv, capture, _) in commands.items():  # warm-up: page cache, .pyc files
            timed(argv, capture)
        for _ in range(rounds):
            for name, (argv, capture, parse) in commands.items():
                result, text = timed(argv, capture)
                times[name].append(result.seconds)
                found = parse(text)
                exact[name] += found == expected
                if found != expected:
                    print(f"  {name}: wrong open set: extra {sorted(found - expected)}, "
                          f"missing {sorted(expected - found)}")
        usage = {name: peak_rss_mib(argv) for name, (argv, _, _) in commands.items()}
    finally:
        listeners.close()
    nmap = "nmap -sT -p- -n -Pn 127.0.0.1"
    base = median(times[nmap]) if nmap in times else None
    rows = []
    for name in commands:
        m = median(times[name])
        rss, cpu = usage[name] or (None, None)
        rows.append([name, f"{m:.3f}", f"{min(times[name]):.2f}-{max(times[name]):.2f}",
                     ratio(m, base) if base else "n/a", "n/a" if cpu is None else f"{cpu:.2f}",
                     "n/a" if rss is None else f"{rss:.1f}", f"{exact[name]}/{rounds}"])
    print(f"\nFull range, {len(FULL_LISTENERS)} listeners on 127.0.0.1, median of {rounds} alternating rounds")
    print(table(rows, ["command", "median s", "min-max s", "vs nmap", "CPU s (user+sys)", "peak RSS MiB",
                       "open set exact"]))
    ours = "sockdiag probe 127.0.0.1 -"
    bars = []
    if base:
        r = median(times[ours]) / base
        bars.append((f"full range: {r:.2f}x nmap's wall time (bar <= 0.50x, aim 0.30x)", r <= 0.5))
        print(f"(against nmap's fastest run, {min(times[nmap]):.2f} s: {median(times[ours]) / min(times[nmap]):.2f}x; "
              "nmap's time is bimodal: some runs wait about 1 s after a probe it counts as dropped)")
    bars.append((f"full range: identical open set in {exact[ours]}/{rounds} runs", exact[ours] == rounds))
    if usage[ours] is not None:
        bars.append((f"full range: peak RSS {usage[ours][0]:.1f} MiB (bar < 64 MiB)", usage[ours][0] < 64))
    return bars


def nft_drop(ports: list[int]) -> None:
    ruleset = ("table inet sdprobe {\n chain input {\n  type filter hook input priority 0; policy accept;\n"
               f"  tcp dport {{ {', '.join(map(str, ports))} }} drop\n }}\n}}\n")
    subprocess.run(["nft", "-f", "-"], input=ruleset.encode(), check=True)


def filtered(rounds: int) -> list[tuple[str, bool]]:
    nft_drop(DROPPED)
    sd = sockdiag_argv() + ["probe", "--all", "-o", "json", "-w", f"{TIMEOUT:g}"]
    commands = {
        "sockdiag probe -w 1 (default --retries 0)": sd + ["127.0.0.1", "1-5000"],
        "sockdiag probe -w 1 --retries 1": sd + ["--retries", "1", "127.0.0.1", "1-5000"],
        "nmap -sT -p1-5000 -n -Pn --max-retries 0": ["nmap", "-sT", "-p1-5000", "-n", "-Pn", "--max-retries", "0",
                                                     "127.0.0.1"],
    }
    if not have("nmap"):
        commands.pop("nmap -sT -p1-5000 -n -Pn --max-retries 0")
    expected = {port: "closed" for port in range(1, 5001)}
    expected.update(dict.fromkeys(DROPPED, "filtered"))
    expected.update(dict.fromkeys(FILTER_LISTENERS, "open"))
    times = {name: [] for name in commands}
    right = {name: 0 for name in commands}
    listeners = Listeners(FILTER_LISTENERS)
    try:
        for _ in range(rounds):
            for name, argv in commands.items():
                result, text = timed(argv)
                times[name].append(result.seconds)
                if name.startswith("sockdiag"):
                    states = {row["port"]: row["state"] for row in map(json.loads, text.splitlines())}
                    right[name] += states == expected
                else:  # nmap's normal output: open ports listed, the others counted ("Not shown")
                    opened = {int(p) for p in re.findall(r"^(\d+)/tcp\s+open\b", text, re.M)}
                    shown = re.search(r"Not shown: (\d+) closed tcp ports.*?, (\d+) filtered", text)
                    counts = (int(shown.group(1)), int(shown.group(2))) if shown else None
                    right[name] += opened == set(FILTER_LISTENERS) and counts == (
                        5000 - len(DROPPED) - len(FILTER_LISTENERS), len(DROPPED))
    finally:
        listeners.close()
    rows = [[name, f"{median(t):.3f}", f"{median(t) / TIMEOUT:.2f}x", f"{right[name]}/{rounds}"]
            for name, t in times.items()]
    print(f"\nPorts 1-5000 of 127.0.0.1, {len(DROPPED)} dropped by nftables, {len(FILTER_LISTENERS)} listening; "
          f"median of {rounds} alternating rounds")
    print(table(rows, ["command", "median s", "vs the 1 s timeout", "every port right"]))
    ours = "sockdiag probe -w 1 (default --retries 0)"
    m = median(times[ours])
    return [(f"filtered: {m:.2f} s wall = {m / TIMEOUT:.2f}x the timeout (bar <= 1.5x)", m <= 1.5 * TIMEOUT),
            (f"filtered: every port right in {right[ours]}/{rounds} runs", right[ours] == rounds)]


def inside(rounds: int) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    bars = full_range(rounds) + filtered(max(3, rounds - 2))
    print()
    for text, ok in bars:
        print(f"BAR {'PASS' if ok else 'FAIL'}: {text}")
    return 0 if all(ok for _, ok in bars) else 1


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 5
    if "--inside" in sys.argv:
        return inside(rounds)
    if os.geteuid() != 0 or not (have("ip") and have("nft")):
        print("SKIP: needs root, ip and nft (it creates a network namespace with nftables drop rules)")
        return 2
    namespace = f"sdprobe{os.getpid()}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        print(f"probe benchmark in network namespace {namespace}; {os.cpu_count()} CPUs; "
              f"Python {sys.version.split()[0]}; {subprocess.run(['nmap', '--version'], capture_output=True, text=True).stdout.splitlines()[0] if have('nmap') else 'no nmap'}")
        return subprocess.run(["ip", "netns", "exec", namespace, sys.executable, str(HERE / "probe.py"), str(rounds),
                               "--inside"]).returncode
    finally:
        subprocess.run(["ip", "netns", "del", namespace])


if __name__ == "__main__":
    sys.exit(main())
