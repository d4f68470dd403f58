"""`sockdiag probe HOST PORTS`: the concurrent connect scanner (like nmap -sT, nc -z).

This module parses and resolves targets, sizes the engine (probe.scanner) from the open-file
limit and the CPUs, and prints results in job order as they become final.
"""

from __future__ import annotations

import socket

from sockdiag import platform
from sockdiag.core.errors import SockdiagError, UsageError
from sockdiag.core.portspec import parse_ports
from sockdiag.probe.scanner import ERROR, FILTERED, OPEN, OPEN_FILTERED, STATES, UNREACHABLE, Host, Jobs, ScanConfig
from sockdiag.probe.pool import Scanner
from sockdiag.core.status import ExitStatus
from sockdiag.core.targets import TargetSpec, parse_targets

KEYS = ("host", "port", "proto", "state", "service", "rtt_ms", "errno")
BANNER_BYTES = 512
AUTO_CONCURRENCY = 8192  # sockets in flight by default, when the open-file limit allows
FD_HEADROOM = 64  # descriptors kept free for stdio, pollers and the interpreter
MAX_AUTO_SHARDS = 4  # beyond this the GIL-bound Python part dominates (benchmarks/README.md)
MIN_JOBS_PER_SHARD = 2048  # smaller scans finish in milliseconds on one thread
_TICK = 0.1  # seconds between output flushes and progress redraws


def run(args, env) -> int:
    """Scan, print results in order, return 0 if any port is open, else 1 (130 on Ctrl-C)."""
    proto = "udp" if args.udp else "tcp"
    spec = "-" if "-" in args.ports else ",".join(args.ports)  # probe HOST 80 443 = probe HOST 80,443
    if args.tcp and args.udp:
        raise UsageError("-t (TCP) and -u (UDP) exclude each other")
    ports = parse_ports(spec, lambda name: platform.service_port(name, proto))
    specs = parse_targets(args.host, args.family, args.force)
    hosts = resolve(specs, args.family, env)
    jobs = Jobs(hosts, ports)
    config, shards = plan(args, jobs, env)
    out = Output(args, env, proto, hosts)
    return _scan(jobs, config, shards, out, env)


# --- targets ------------------------------------------------------------------------------------

def resolve(specs: list[TargetSpec], family: int | None, env) -> list[Host]:
    """TargetSpecs -> Hosts. Names go through getaddrinfo; with neither -4 nor -6 a name's first
    IPv4 address is scanned (as nmap does), else its first IPv6 one. A name that does not
    resolve is skipped with a warning when other targets remain, else an error (exit 1)."""
    hosts: list[Host] = []
    seen: set[tuple] = set()
    failures = []
    for spec in specs:
        try:
            host = _resolve_one(spec, family, env)
        except socket.gaierror as exc:
            failures.append(f"{spec.text}: {platform.describe_gaierror(exc)}")
            continue
        key = (host.family, str(host.addresses if host.count > 1 else host.address(0)), host.scope_id)
        if key not in seen:
            seen.add(key)
            hosts.append(host)
    if failures and not hosts:
        raise SockdiagError(failures[0] if len(failures) == 1 else "no target resolved: " + "; ".join(failures))
    if failures:  # one line however many names failed: stderr stays readable in a pipeline
        env.warn("not scanned: " + "; ".join(failures))
    return hosts


def _resolve_one(spec: TargetSpec, family: int | None, env) -> Host:
    if spec.network is not None:
        net = spec.network
        return Host(socket.AF_INET if net.version == 4 else socket.AF_INET6, net, count=net.num_addresses)
    if spec.address is not None:
        address = spec.address
        if address.version == 4:
            return Host(socket.AF_INET, [str(address)])
        scope = _scope_id(spec, getattr(address, "scope_id", None))
        return Host(socket.AF_INET6, [str(address).partition("%")[0]], scope_id=scope, label=str(address))
    wanted = {4: socket.AF_INET, 6: socket.AF_INET6}.get(family, socket.AF_UNSPEC)
    infos = socket.getaddrinfo(spec.name, None, wanted, socket.SOCK_STREAM)
    addresses = [(fam, sockaddr) for fam, _, _, _, sockaddr in infos if fam in (socket.AF_INET, socket.AF_INET6)]
    if not addresses:
        raise socket.gaierror(getattr(socket, "EAI_NODATA", getattr(socket, "EAI_NONAME", -2)), "no address")
    v4 = [item for item in addresses if item[0] == socket.AF_INET]
    fam, sockaddr = v4[0] if (v4 and wanted == socket.AF_UNSPEC) else addresses[0]
    others = sorted({sa[0] for _, sa in addresses} - {sockaddr[0]})
    env.info(f"{spec.name} is {sockaddr[0]}" + (f" (not scanned: {', '.join(others)})" if others else ""))
    scope = sockaddr[3] if fam == socket.AF_INET6 else 0
    return Host(fam, [sockaddr[0].partition("%")[0]], scope_id=scope, label=sockaddr[0])


def _scope_id(spec: TargetSpec, scope: str | None) -> int:
    """An IPv6 zone ('fe80::1%eth0', '%2') as an interface index."""
    if not scope:
        return 0
    if scope.isascii() and scope.isdigit():
        return int(scope)
    try:
        return socket.if_nametoindex(scope)
    except (OSError, AttributeError):
        raise UsageError(f"bad address {spec.text!r}: no interface named {scope!r}") from None


# --- sizing -------------------------------------------------------------------------------------

def plan(args, jobs: Jobs, env) -> tuple[ScanConfig, int]:
    """The engine's settings: sockets in flight (from -c or the open-file limit, raised toward
    the hard limit), and scanner threads (one per CPU up to MAX_AUTO_SHARDS for big TCP scans)."""
    wanted = args.concurrency or AUTO_CONCURRENCY
    soft, _hard = platform.raise_open_file_limit(wanted + FD_HEADROOM)
    concurrency = max(1, min(wanted, soft - FD_HEADROOM))
    if args.concurrency and concurrency < args.concurrency:
        env.warn(f"-c {args.concurrency} exceeds the open-file limit ({soft}); using {concurrency}")
    concurrency = min(concurrency, max(1, jobs.total))
    shards = getattr(args, "workers", None)
    if not shards:
        shards = 1
        if not args.udp and not args.rate and jobs.total >= 2 * MIN_JOBS_PER_SHARD:
            shards = max(1, min(platform.usable_cpus(), MAX_AUTO_SHARDS, jobs.total // MIN_JOBS_PER_SHARD))
    cap = platform.probe_max_concurrency()
    if cap is not None:
        concurrency = min(concurrency, cap * shards)
    shards = min(shards, concurrency)
    report = frozenset(STATES) if args.all else frozenset({OPEN, OPEN_FILTERED} if args.udp else {OPEN})
    config = ScanConfig(udp=args.udp, timeout=args.timeout, retries=args.retries, concurrency=concurrency,
                        rate=args.rate, banner=args.banner, banner_wait=args.timeout, banner_bytes=BANNER_BYTES,
                        report=report, close=args.close)
    env.info(f"{jobs.total} attempts, {concurrency} in flight at most, {shards} scanner thread(s), "
             f"timeout {args.timeout:g} s, {args.retries} retries", level=2)
    return config, shards


# --- output -------------------------------------------------------------------------------------

def printable(data: bytes) -> str:
    """Bytes as one line of printable ASCII: \\r \\n \\t \\\\ and \\xNN escapes; trailing line
    ends dropped (an SSH or SMTP banner ends with CRLF)."""
    out = []
    for byte in data.rstrip(b"\r\n\0"):
        if byte == 0x5C:
            out.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        elif byte in (0x0A, 0x0D, 0x09):
            out.append({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}[byte])
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


class Output:
    """Writes result rows as text (`HOST PORT PROTO STATE SERVICE [DETAIL]`), JSON Lines or CSV."""

    def __init__(self, args, env, proto: str, hosts: list[Host]):
        self.env, self.proto, self.fmt, self.banner = env, proto, args.output, args.banner
        self.keys = KEYS + (("banner",) if args.banner else ())
        self._services: dict[int, str | None] = {}
        self.host_width = max((host.width() for host in hosts), default=1)
        shown = STATES if args.all else ((OPEN, OPEN_FILTERED) if args.udp else (OPEN,))
        self.state_width = max(len(state) for state in shown)
        # banners and errno names line up after the service names (most are under 12 characters)
        self.detail_column = self.host_width + 2 + 5 + 2 + 3 + 2 + self.state_width + 2 + 12
        if self.fmt != "text":  # lazily: json, csv and typing cost start-up time text output does not need
            from sockdiag.core.render import csv_lines, json_line

            self._csv_lines, self._json_line = csv_lines, json_line
        if self.fmt == "csv":
            env.print(csv_lines([], self.keys)[0])

    def service(self, port: int) -> str | None:
        if port not in self._services:
            self._services[port] = platform.service_name(port, self.proto)
        return self._services[port]

    def rows(self, results) -> None:
        write = self.env.write
        lines = []
        for _, ip, port, state, rtt, errno_name, banner in results:
            row = {"host": ip, "port": port, "proto": self.proto, "state": state, "service": self.service(port),
                   "rtt_ms": None if rtt is None else round(rtt * 1000.0, 3), "errno": errno_name}
            if self.banner:
                row["banner"] = printable(banner) if banner else None
            lines.append(self._line(row))
        if lines:
            self.env.progress_done()  # a terminal shows stdout and stderr on one screen
            write("".join(lines))
            self.env.flush()

    def _line(self, row: dict) -> str:
        if self.fmt == "json":
            return self._json_line(row, self.keys) + "\n"
        if self.fmt == "csv":
            return self._csv_lines([row], self.keys, header=False)[0] + "\n"
        detail = row.get("banner") or (row["errno"] if row["state"] in (ERROR, UNREACHABLE) else None)
        text = (f"{row['host']:<{self.host_width}}  {row['port']:<5}  {self.proto}  "
                f"{row['state']:<{self.state_width}}  {row['service'] or '-'}")
        if detail:
            text = f"{text:<{self.detail_column}}  {detail}"
        return text + "\n"


def _summary(scanner: Scanner, jobs: Jobs, elapsed: float, proto: str, env) -> None:
    counts = scanner.counts()
    parts = [f"{counts[state]} {state}" for state in STATES if counts[state]] or ["nothing scanned"]
    hosts = f"{jobs.host_count} host" + ("s" if jobs.host_count != 1 else "")
    line = f"{scanner.done} {proto} ports on {hosts} in {elapsed:.2f} s: " + ", ".join(parts)
    if scanner.self_connects:
        line += f" ({scanner.self_connects} loopback self-connect(s) counted as closed)"
    env.info(line)


def _progress(scanner: Scanner, jobs: Jobs, elapsed: float, env) -> None:
    done, total = scanner.done, max(1, jobs.total)
    counts = scanner.counts()
    env.progress(f"probe: {done}/{jobs.total} ({100 * done // total}%), {counts[OPEN]} open, "
                 f"{counts[FILTERED]} filtered, {elapsed:.0f} s")


# --- the scan -----------------------------------------------------------------------------------

def _scan(jobs: Jobs, config: ScanConfig, shards: int, out: Output, env) -> int:
    clock = env.clock
    started = clock()
    scanner = Scanner(jobs, config, shards, clock=clock)
    interrupted = False
    try:
        scanner.start()
        while True:
            finished = scanner.wait(_TICK)
            out.rows(scanner.ready())
            if finished:
                break
            _progress(scanner, jobs, clock() - started, env)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        rest = scanner.stop()
        env.progress_done()
    out.rows(rest)  # empty after a complete scan; what was found so far after Ctrl-C or an error
    if interrupted:
        _summary(scanner, jobs, clock() - started, out.proto, env)
        env.note("interrupted")
        return ExitStatus.INTERRUPTED
    scanner.check()
    _summary(scanner, jobs, clock() - started, out.proto, env)
    return ExitStatus.OK if scanner.counts()[OPEN] else ExitStatus.FAILURE

