"""probe at network scale (issue 16): many hosts, silent hosts, --host-timeout, --rate, vs nmap -sT.

Usage (root: it creates a network namespace with an nftables table in it, removed at the end,
also on Ctrl-C or SIGTERM):

    python benchmarks/probe_hosts.py [ROUNDS] [--quick]

The test network is 127.0.1.1-127.0.1.254 on the namespace's loopback. One listener process
binds a fixed pseudo-random set of (address, port) pairs among ports 1-1000 on 30 of the hosts
(it accepts and closes). nftables drops all TCP to 20 of the hosts (the silent hosts), drops
1000 of ports 1-5000 on 127.0.2.1, and counts the SYNs sent to 127.0.2.2 (a stateless counter:
no conntrack, whose table would fill up at these connection rates). The bars:

1. The 234 answering hosts x ports 1-1000: median wall time at most 0.5x
   `nmap -sT -n -Pn -p1-1000`, the right open set in every run (default order and
   `--no-randomize`).
2. All 254 hosts, 20 silent: at most 0.3x nmap; with `--host-timeout 2` at most 0.15x (nmap's
   `--host-timeout 2s` shown for reference); peak RSS under 96 MiB.
3. 5000 ports of one host, 1000 dropped, `-w 1`: at most 1.05x the timeout, every port right.
4. `--rate 2000` over 20,000 attempts: the SYN rate counted by nftables (sampled every 0.5 s,
   the slope of the steady phase) within +-10% of 2000/s.

Commands alternate in every round (the order rotates), ROUNDS rounds (default 3): medians and
ranges. A row whose option `sockdiag probe --help` does not list yet shows "n/a (flag missing)"
and its bar is N/A, not FAIL. `--quick` runs a small network (30 hosts, 4 silent, ports 1-200,
1 round) to check that the script works; its figures prove nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import have, median, peak_rss_mib, ratio, run_timed, sockdiag_argv, table
from probe import LISTENER_CODE

HERE = Path(__file__).resolve().parent
PREFIX = "127.0.1."
FILTER_HOST = "127.0.2.1"  # the 5000-port test: 1000 ports dropped
RATE_HOST = "127.0.2.2"  # the --rate test: every port closed, SYNs counted
TABLE = "sdhosts"
TIMEOUT = 1.0
HOST_TIMEOUT = 2
RATE = 2000
SAMPLE_EVERY = 0.5
RUN_LIMIT = 1800.0  # seconds; nmap -Pn on silent hosts is slow, but never this slow


class Plan:
    """The sizes of one run: the issue's (full) or a small smoke run (quick). Fixed seeds."""

    def __init__(self, quick: bool):
        self.quick = quick
        n, silent, listening, self.ports = (30, 4, 6, 200) if quick else (254, 20, 30, 1000)
        self.filter_ports, dropped, filter_listeners = (1000, 200, 5) if quick else (5000, 1000, 25)
        self.rate_attempts = 4000 if quick else 20000
        rng = random.Random(16)
        self.hosts = [f"{PREFIX}{i}" for i in range(1, n + 1)]
        self.silent = sorted(rng.sample(self.hosts, silent), key=_ip_key)
        self.answering = [h for h in self.hosts if h not in self.silent]
        self.listeners = sorted({(host, port) for host in rng.sample(self.answering, listening)
                                 for port in rng.sample(range(1, self.ports + 1), rng.randint(1, 6))},
                                key=lambda hp: (_ip_key(hp[0]), hp[1]))
        self.dropped = sorted(rng.sample(range(1, self.filter_ports + 1), dropped))
        rest = sorted(set(range(1, self.filter_ports + 1)) - set(self.dropped))
        self.filter_listeners = sorted(rng.sample(rest, filter_listeners))


def _ip_key(host: str) -> tuple[int, ...]:
    return tuple(map(int, host.split(".")))


# --- the namespace's network: nftables and the listeners ----------------------------------------

def nft(ruleset: str | None = None, *args: str) -> str:
    """`nft -f -` with a ruleset, or `nft ARGS`; its stdout."""
    argv = ["nft", "-f", "-"] if ruleset is not None else ["nft", *args]
    return subprocess.run(argv, input=ruleset, capture_output=True, text=True, check=True).stdout


def nft_setup(plan: Plan) -> None:
    silent = ", ".join(plan.silent)
    dropped = ", ".join(map(str, plan.dropped))
    nft(f"""table inet {TABLE} {{
  counter ratesyn {{ }}
  chain input {{
    type filter hook input priority 0; policy accept;
    iif "lo" ip daddr {{ {silent} }} ip protocol tcp drop
    iif "lo" ip daddr {FILTER_HOST} tcp dport {{ {dropped} }} drop
  }}
  chain output {{
    type filter hook output priority 0; policy accept;
    oif "lo" ip daddr {RATE_HOST} tcp flags & (syn | ack) == syn counter name "ratesyn"
  }}
}}
""")


def syn_count() -> int:
    return int(re.search(r"packets (\d+)", nft(None, "list", "counter", "inet", TABLE, "ratesyn")).group(1))


class Listeners:
    """One child process listening on every (host, port), accepting and closing each connection
    (so repeated scans never fill an accept queue); ends when its stdin closes."""

    def __init__(self, pairs: list[tuple[str, int]]):
        self.proc = subprocess.Popen([sys.executable, "-c", LISTENER_CODE, *(f"{h}:{p}" for h, p in pairs)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if self.proc.stdout.readline().strip() != b"ready":
            self.close()
            raise RuntimeError("the listener process did not start")

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _outcome(host: str, port: int, timeout: float = 0.5) -> str:
    with socket.socket() as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            return "open"
        except ConnectionRefusedError:
            return "closed"
        except TimeoutError:
            return "filtered"
        except OSError as exc:
            return f"error {exc.errno}"


def self_test(plan: Plan) -> None:
    """The network is what the bars assume: drops drop, listeners listen, the counter counts."""
    listening = set(plan.listeners)
    quiet_host = next(h for h in plan.answering if all((h, p) not in listening for p in (1, 2)))
    before = syn_count()
    checks = [(plan.silent[0], 1, "filtered"), (plan.silent[-1], 1, "filtered"), (quiet_host, 1, "closed"),
              (FILTER_HOST, plan.dropped[0], "filtered"), (RATE_HOST, 1, "closed"),
              (FILTER_HOST, next(p for p in range(1, plan.filter_ports + 1)
                                 if p not in plan.dropped and p not in plan.filter_listeners), "closed")]
    checks += [(h, p, "open") for h, p in plan.listeners] + [(FILTER_HOST, p, "open") for p in plan.filter_listeners]
    wrong = [(h, p, want, got) for h, p, want in checks if (got := _outcome(h, p)) != want]
    counted = syn_count() - before
    if wrong or counted != 1:
        raise RuntimeError(f"the test network is not as planned: {wrong[:5]}, {counted} SYN(s) counted "
                           f"to {RATE_HOST} (expected 1)")


# --- running and parsing the tools --------------------------------------------------------------

def timed(argv: list[str], timeout: float = RUN_LIMIT):
    """Run argv; (Run, stdout text, first stderr line)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        result = run_timed(argv, stdout=out, stderr=err, timeout=timeout)
        out.seek(0)
        err.seek(0)
        lines = err.read().decode("utf-8", "replace").strip().splitlines()
        return result, out.read().decode("utf-8", "replace"), lines[0] if lines else ""


def open_sockdiag(text: str) -> set[tuple[str, int]]:
    found = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[3] == "open":
            found.add((parts[0], int(parts[1])))
    return found


def open_nmap(text: str) -> set[tuple[str, int]]:
    """nmap -oG -: `Host: 127.0.1.5 ()	Ports: 22/open/tcp//ssh///, ...`."""
    found = set()
    for line in text.splitlines():
        if line.startswith("Host:") and "Ports:" in line:
            host = line.split()[1]
            found.update((host, int(port)) for port in re.findall(r"(\d+)/open/tcp", line))
    return found


class Features:
    """What this sockdiag accepts: options from `probe --help`, target forms by a tiny trial scan."""

    def __init__(self, sd: list[str], workdir: str):
        self.help = subprocess.run(sd + ["probe", "--help"], check=False, capture_output=True, text=True).stdout
        self.flags = {flag for flag in ("--no-randomize", "--host-timeout", "-iL") if flag in self.help}
        self.range = self._range_syntax()
        trial = Path(workdir, "trial.txt")
        trial.write_text(f"{PREFIX}1\n")
        self.input_list = "-iL" in self.flags and self._accepts(sd + ["probe", "-w", "0.2", "-iL", str(trial), "1"])

    @staticmethod
    def _range_syntax() -> bool:
        """Whether `127.0.1.1-2` is an address range to sockdiag's own (pure) target parser. Not by a
        trial scan: a sockdiag without ranges would look the text up as a host name."""
        try:
            from sockdiag.core.errors import SockdiagError
            from sockdiag.core.targets import parse_targets
        except ImportError:
            return False
        try:
            specs = parse_targets(f"{PREFIX}1-2")
        except SockdiagError:  # refused: no range syntax
            return False
        return all(getattr(spec, "name", None) is None for spec in specs)

    @staticmethod
    def _accepts(argv: list[str]) -> bool:
        return subprocess.run(argv, check=False, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode != 2

    def has(self, flag: str | None) -> bool:
        return flag is None or flag in self.flags

    def targets(self, hosts: list[str], listfile: str) -> tuple[list[str], str]:
        """sockdiag's argv for `hosts` and how they were given: a range, -iL FILE or a comma list."""
        last = int(hosts[-1].rsplit(".", 1)[1])
        if self.range and hosts == [f"{PREFIX}{i}" for i in range(1, last + 1)]:
            return [f"{PREFIX}1-{last}"], "range"
        if self.input_list:
            Path(listfile).write_text("\n".join(hosts) + "\n")
            return ["-iL", listfile], "-iL FILE"
        return [",".join(hosts)], "comma list"


class Cmd:
    """A row: a name, its argv (None when sockdiag lacks `needs`), and its output parser."""

    def __init__(self, name: str, argv: list[str] | None, parse=None, rss: bool = True):
        self.name, self.argv, self.parse, self.rss = name, argv, parse, rss


def measure(cmds: list[Cmd], rounds: int, expected) -> dict[str, dict]:
    """Alternate the commands (the order rotates every round); times, exact runs, peak RSS."""
    live = [c for c in cmds if c.argv is not None]
    stats = {c.name: {"times": [], "exact": 0, "usage": None} for c in live}
    for r in range(rounds):
        for c in live[r % len(live):] + live[:r % len(live)]:
            result, out, err = timed(c.argv)
            stats[c.name]["times"].append(result.seconds)
            found = c.parse(out)
            stats[c.name]["exact"] += found == expected
            if found != expected:
                print(f"  {c.name}: exit {result.returncode}, wrong open set: {len(found - expected)} extra "
                      f"{sorted(found - expected)[:3]}, {len(expected - found)} missing "
                      f"{sorted(expected - found)[:3]} {err[:120]}", flush=True)
    for c in live:
        if c.rss:
            stats[c.name]["usage"] = peak_rss_mib(c.argv)
    return stats


def scan_table(cmds: list[Cmd], stats: dict, rounds: int, base: str) -> str:
    rows = []
    nmap = median(stats[base]["times"]) if base in stats else None
    for c in cmds:
        if c.name not in stats:
            rows.append([c.name, "n/a (flag missing)", "", "", "", "", ""])
            continue
        s = stats[c.name]
        m = median(s["times"])
        rss, cpu = s["usage"] or (None, None)
        rows.append([c.name, f"{m:.3f}", f"{min(s['times']):.2f}-{max(s['times']):.2f}",
                     ratio(m, nmap) if nmap else "n/a", "-" if cpu is None else f"{cpu:.2f}",
                     "-" if rss is None else f"{rss:.1f}", f"{s['exact']}/{rounds}"])
    return table(rows, ["command", "median s", "min-max s", "vs nmap", "CPU s (user+sys)", "peak RSS MiB",
                        "open set exact"])


def ratio_bar(label: str, stats: dict, ours: str, base: str, limit: float, rounds: int) -> list[tuple[str, str]]:
    if ours not in stats:
        return [(f"{label}: n/a (flag missing)", "N/A")]
    if base not in stats:
        return [(f"{label}: n/a (no nmap)", "N/A")]
    r = median(stats[ours]["times"]) / median(stats[base]["times"])
    exact = stats[ours]["exact"]
    return [(f"{label}: {r:.2f}x nmap's wall time (bar <= {limit:.2f}x)", "PASS" if r <= limit else "FAIL"),
            (f"{label}: right open set in {exact}/{rounds} runs", "PASS" if exact == rounds else "FAIL")]


# --- the four tests -----------------------------------------------------------------------------

def answering_hosts(plan: Plan, feats: Features, rounds: int, workdir: str) -> list[tuple[str, str]]:
    sd = sockdiag_argv() + ["probe"]
    hostfile = os.path.join(workdir, "answering.txt")
    Path(hostfile).write_text("\n".join(plan.answering) + "\n")
    targets, form = feats.targets(plan.answering, os.path.join(workdir, "answering-sd.txt"))
    ports = f"1-{plan.ports}"
    n = len(plan.answering)
    cmds = [Cmd(f"sockdiag probe HOSTS {ports}", sd + targets + [ports], open_sockdiag),
            Cmd(f"sockdiag probe --no-randomize HOSTS {ports}",
                sd + ["--no-randomize"] + targets + [ports] if feats.has("--no-randomize") else None, open_sockdiag),
            Cmd(f"nmap -sT -n -Pn -p{ports} -iL HOSTS", ["nmap", "-sT", "-n", "-Pn", f"-p{ports}", "-oG", "-",
                                                        "-iL", hostfile] if have("nmap") else None, open_nmap)]
    stats = measure(cmds, rounds, set(plan.listeners))
    print(f"\n{n} answering hosts x ports {ports} ({len(plan.listeners)} listeners on "
          f"{len({h for h, _ in plan.listeners})} hosts), sockdiag's targets as a {form}; "
          f"median of {rounds} alternating rounds")
    print(scan_table(cmds, stats, rounds, cmds[2].name))
    label = f"{n} answering hosts x {plan.ports} ports"
    bars = ratio_bar(label, stats, cmds[0].name, cmds[2].name, 0.5, rounds)
    if cmds[1].name in stats:
        exact = stats[cmds[1].name]["exact"]
        bars.append((f"{label}, --no-randomize: right open set in {exact}/{rounds} runs",
                     "PASS" if exact == rounds else "FAIL"))
    else:
        bars.append((f"{label}, --no-randomize: n/a (flag missing)", "N/A"))
    return bars


def all_hosts(plan: Plan, feats: Features, rounds: int, workdir: str) -> list[tuple[str, str]]:
    sd = sockdiag_argv() + ["probe"]
    targets, form = feats.targets(plan.hosts, os.path.join(workdir, "all-sd.txt"))
    ports = f"1-{plan.ports}"
    block = f"{PREFIX}1-{len(plan.hosts)}"
    nmap = ["nmap", "-sT", "-n", "-Pn", f"-p{ports}", "-oG", "-"] if have("nmap") else None
    ht = feats.has("--host-timeout")
    cmds = [Cmd(f"sockdiag probe {block} {ports}", sd + targets + [ports], open_sockdiag),
            Cmd(f"sockdiag probe --host-timeout {HOST_TIMEOUT} {block} {ports}",
                sd + ["--host-timeout", str(HOST_TIMEOUT)] + targets + [ports] if ht else None, open_sockdiag),
            Cmd(f"nmap -sT -n -Pn -p{ports} {block}", nmap and nmap + [block], open_nmap, rss=False),
            Cmd(f"nmap -sT -n -Pn -p{ports} --host-timeout {HOST_TIMEOUT}s {block}",
                nmap and nmap + ["--host-timeout", f"{HOST_TIMEOUT}s", block], open_nmap, rss=False)]
    stats = measure(cmds, rounds, set(plan.listeners))
    print(f"\nAll {len(plan.hosts)} hosts x ports {ports}, {len(plan.silent)} silent (all TCP dropped), "
          f"sockdiag's targets as a {form}; median of {rounds} alternating rounds (peak RSS: sockdiag only)")
    print(scan_table(cmds, stats, rounds, cmds[2].name))
    label = f"all {len(plan.hosts)} hosts, {len(plan.silent)} silent"
    bars = ratio_bar(label, stats, cmds[0].name, cmds[2].name, 0.3, rounds)
    bars += ratio_bar(f"{label}, --host-timeout {HOST_TIMEOUT} (vs nmap without it)", stats, cmds[1].name, cmds[2].name, 0.15, rounds)
    usage = stats[cmds[0].name]["usage"]
    if usage is None:
        bars.append((f"{label}: peak RSS n/a (no GNU time)", "N/A"))
    else:
        bars.append((f"{label}: peak RSS {usage[0]:.1f} MiB (bar < 96 MiB)", "PASS" if usage[0] < 96 else "FAIL"))
    return bars


def filtered(plan: Plan, rounds: int) -> list[tuple[str, str]]:
    ports = f"1-{plan.filter_ports}"
    ours = f"sockdiag probe -w {TIMEOUT:g} {FILTER_HOST} {ports}"
    peer = f"nmap -sT -n -Pn --max-retries 0 -p{ports} {FILTER_HOST}"
    commands = {ours: sockdiag_argv() + ["probe", "--all", "-o", "json", "-w", f"{TIMEOUT:g}", FILTER_HOST, ports]}
    if have("nmap"):
        commands[peer] = ["nmap", "-sT", "-n", "-Pn", "--max-retries", "0", f"-p{ports}", FILTER_HOST]
    expected = dict.fromkeys(range(1, plan.filter_ports + 1), "closed")
    expected.update(dict.fromkeys(plan.dropped, "filtered"))
    expected.update(dict.fromkeys(plan.filter_listeners, "open"))
    closed = plan.filter_ports - len(plan.dropped) - len(plan.filter_listeners)
    times = {name: [] for name in commands}
    right = dict.fromkeys(commands, 0)
    names = list(commands)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            result, text, _ = timed(commands[name])
            times[name].append(result.seconds)
            if name == ours:
                try:
                    states = {row["port"]: row["state"] for row in map(json.loads, text.splitlines())}
                except ValueError:
                    states = {}
                right[name] += states == expected
            else:  # nmap's normal output: open ports listed, the others counted ("Not shown")
                opened = {int(p) for p in re.findall(r"^(\d+)/tcp\s+open\b", text, re.MULTILINE)}
                shown = re.search(r"Not shown: (\d+) closed tcp ports.*?, (\d+) filtered", text)
                counts = (int(shown.group(1)), int(shown.group(2))) if shown else None
                right[name] += opened == set(plan.filter_listeners) and counts == (closed, len(plan.dropped))
    rows = [[name, f"{median(t):.3f}", f"{min(t):.2f}-{max(t):.2f}", f"{median(t) / TIMEOUT:.2f}x",
             f"{right[name]}/{rounds}"] for name, t in times.items()]
    print(f"\nPorts {ports} of {FILTER_HOST}, {len(plan.dropped)} dropped by nftables, "
          f"{len(plan.filter_listeners)} listening; median of {rounds} alternating rounds")
    print(table(rows, ["command", "median s", "min-max s", "vs the 1 s timeout", "every port right"]))
    m = median(times[ours])
    label = f"{plan.filter_ports} ports, {len(plan.dropped)} dropped, -w {TIMEOUT:g}"
    return [(f"{label}: {m:.3f} s = {m / TIMEOUT:.2f}x the timeout (bar <= 1.05x)",
             "PASS" if m <= 1.05 * TIMEOUT else "FAIL"),
            (f"{label}: every port right in {right[ours]}/{rounds} runs", "PASS" if right[ours] == rounds else "FAIL")]


def sampled_run(argv: list[str]) -> tuple[float, int, list[tuple[float, int]], int]:
    """Run argv, reading the SYN counter every SAMPLE_EVERY s: (wall s, SYNs, samples, exit status)."""
    base = syn_count()
    samples: list[tuple[float, int]] = []
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        due = start + SAMPLE_EVERY
        while True:
            try:
                proc.wait(max(0.0, due - time.perf_counter()))
                break
            except subprocess.TimeoutExpired:
                pass
            before = time.perf_counter()
            count = syn_count() - base
            samples.append(((before + time.perf_counter()) / 2 - start, count))
            due += SAMPLE_EVERY
        wall = time.perf_counter() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return wall, syn_count() - base, samples, proc.returncode


def steady_rate(samples: list[tuple[float, int]], total: int) -> float | None:
    """Least-squares slope (SYNs/s) of the samples taken while the scan was under way."""
    points = [(t, c) for t, c in samples if 0 < c < total]
    if len(points) < 3:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_c = sum(c for _, c in points) / len(points)
    num = sum((t - mean_t) * (c - mean_c) for t, c in points)
    den = sum((t - mean_t) ** 2 for t, _ in points)
    return num / den if den else None


def rate(plan: Plan, rounds: int) -> list[tuple[str, str]]:
    ports = f"1-{plan.rate_attempts}"
    ours = f"sockdiag probe --rate {RATE} {RATE_HOST} {ports}"
    peer = f"nmap -sT -n -Pn --min-rate {RATE} --max-rate {RATE} -p{ports} {RATE_HOST}"
    commands = {ours: sockdiag_argv() + ["probe", "--rate", str(RATE), RATE_HOST, ports]}
    if have("nmap"):
        commands[peer] = ["nmap", "-sT", "-n", "-Pn", "--min-rate", str(RATE), "--max-rate", str(RATE),
                          f"-p{ports}", RATE_HOST]
    runs: dict[str, list] = {name: [] for name in commands}
    names = list(commands)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            runs[name].append(sampled_run(commands[name]))
    rows, errors = [], []
    for name, results in runs.items():
        steady = [steady_rate(samples, total) for _, total, samples, _ in results]
        known = [s for s in steady if s is not None]
        if name == ours:
            errors = [s / RATE - 1 for s in known] if len(known) == len(steady) else []
        err = [s / RATE - 1 for s in known]
        rows.append([name, f"{median([w for w, *_ in results]):.2f}",
                     "/".join(str(total) for _, total, _, _ in results),
                     f"{median(known):.0f}" if known else "n/a",
                     f"{min(err):+.1%} to {max(err):+.1%}" if err else "n/a",
                     f"{median([total / w for w, total, _, _ in results]):.0f}"])
    print(f"\n--rate {RATE}: {plan.rate_attempts} attempts to closed ports of {RATE_HOST}; SYNs counted by "
          f"nftables, sampled every {SAMPLE_EVERY} s; {rounds} round(s)")
    print(table(rows, ["command", "median wall s", "SYNs counted", "steady rate /s (median)", "error range",
                       "SYNs / wall time"]))
    if not errors:
        return [(f"--rate {RATE}: the steady rate could not be measured (too few samples)", "FAIL")]
    worst = max(errors, key=abs)
    text = (f"--rate {RATE}: steady rate {RATE * (1 + median(errors)):.0f}/s, worst error {worst:+.1%} over "
            f"{rounds} run(s) (bar within +-10%)")
    return [(text, "PASS" if abs(worst) <= 0.10 else "FAIL")]


# --- inside and outside the namespace -----------------------------------------------------------

def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def inside(rounds: int, quick: bool) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # so every finally runs
    plan = Plan(quick)
    print(f"start: {_load()}", flush=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    listeners = None
    with tempfile.TemporaryDirectory(prefix="sdhosts") as workdir:
        try:
            nft_setup(plan)
            listeners = Listeners(plan.listeners + [(FILTER_HOST, p) for p in plan.filter_listeners])
            self_test(plan)
            feats = Features(sockdiag_argv(), workdir)
            print("sockdiag probe accepts: "
                  f"{', '.join(sorted(feats.flags)) or 'none of --no-randomize, --host-timeout, -iL'}; "
                  f"range targets (127.0.1.1-254): {'yes' if feats.range else 'no'}", flush=True)
            bars = answering_hosts(plan, feats, rounds, workdir)
            bars += all_hosts(plan, feats, rounds, workdir)
            bars += filtered(plan, max(3, rounds) if not quick else 1)
            bars += rate(plan, rounds)
        except KeyboardInterrupt:
            print("interrupted: cleaning up", file=sys.stderr)
            return 130
        except RuntimeError as exc:  # the test network is not as planned: no figure would mean anything
            print(f"ERROR: {exc}", file=sys.stderr)
            return 1
        finally:
            if listeners is not None:
                listeners.close()
            subprocess.run(["nft", "delete", "table", "inet", TABLE], check=False, stderr=subprocess.DEVNULL)
    print(f"\nend: {_load()}")
    for text, verdict in bars:
        print(f"BAR {verdict}: {text}")
    if quick:
        print("(--quick: a smoke run of a small network; the bars hold for the full run only)")
    return 1 if any(verdict == "FAIL" for _, verdict in bars) else 0


def _sweep(namespace: str) -> None:
    """End whatever still runs in our namespace (only processes this benchmark started), by pid."""
    pids = subprocess.run(["ip", "netns", "pids", namespace], check=False, capture_output=True,
                          text=True).stdout.split()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in map(int, pids):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if os.path.exists(f"/proc/{p}")]
            time.sleep(0.05)
        if not pids:
            return


def outside(argv: list[str]) -> int:
    if os.geteuid() != 0 or not (have("ip") and have("nft")):
        print("SKIP: needs root, ip and nft (it creates a network namespace with nftables rules)")
        return 2
    namespace = f"sdhosts{os.getpid()}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    signal.signal(signal.SIGTERM, _interrupt)
    child = None
    try:
        nmap = subprocess.run(["nmap", "--version"], check=False, capture_output=True, text=True).stdout.splitlines()[0] \
            if have("nmap") else "no nmap"
        print(f"probe_hosts benchmark in network namespace {namespace}; {os.cpu_count()} CPUs; "
              f"Python {sys.version.split()[0]}; {nmap}", flush=True)
        child = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, str(Path(__file__).resolve()),
                                  *argv, "--inside"])
        return child.wait()
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        if child is not None and child.poll() is None:
            try:  # a terminal's Ctrl-C reached it too; a SIGTERM to us did not
                child.send_signal(signal.SIGINT)
                child.wait(15)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                child.kill()
                child.wait()
        _sweep(namespace)
        subprocess.run(["ip", "netns", "del", namespace], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rounds", nargs="?", type=int, default=3, metavar="ROUNDS")
    parser.add_argument("--quick", action="store_true", help="a small smoke run (30 hosts, ports 1-200, 1 round)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rounds = 1 if args.quick else max(1, args.rounds)
    if args.inside:
        return inside(rounds, args.quick)
    return outside([str(rounds)] + (["--quick"] if args.quick else []))


if __name__ == "__main__":
    sys.exit(main())
