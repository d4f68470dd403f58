"""`sockdiag probe HOST PORTS`: the concurrent connect scanner (like nmap -sT, nc -z).

This module takes what to scan from probe.selection (targets, exclusions, ports), sizes the
engine (probe.scanner) from the open-file limit and the CPUs, and prints results in job order
(per host, ports ascending) as they become final, whatever order the attempts ran in.
"""

from __future__ import annotations

import time

from sockdiag import __version__, platform
from sockdiag.core import grepable
from sockdiag.core.errors import UsageError
from sockdiag.probe.scanner import (ERROR, FILTERED, HOST_TIMEOUT, OPEN, OPEN_FILTERED, STATES, UNREACHABLE, Host, Jobs,
                                    ScanConfig)
from sockdiag.probe.jobs import GROUP_JOBS, HOST_TIMEOUT_GROUP_JOBS
from sockdiag.probe.pool import Scanner
from sockdiag.probe.topports import common_ports
from sockdiag.core import banners, udppayloads
from sockdiag.core.rtt import INITIAL_TIMEOUT
from sockdiag.core.status import ExitStatus
from sockdiag.probe import selection, tlscheck

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
    if args.tcp and args.udp:
        raise UsageError("-t (TCP) and -u (UDP) exclude each other")
    tlscheck.check_options(args)  # before any name is resolved: a usage error is the only line
    host_text, port_words = selection.split_positionals(args)
    ports = selection.choose_ports(args, port_words, proto)
    specs = selection.target_specs(args, host_text, env)
    hosts = selection.resolve(specs, args.family, env, selection.exclusions(args, env))
    group_jobs = GROUP_JOBS if getattr(args, "host_timeout", None) is None else HOST_TIMEOUT_GROUP_JOBS
    first = common_ports(proto) if not args.no_randomize else ()
    jobs = Jobs(hosts, ports, randomize=not args.no_randomize, group_jobs=group_jobs, first=first)
    config, shards = plan(args, jobs, env)
    out = Output(args, env, proto, hosts, ports)
    if getattr(args, "tls", False):  # a second phase after the scan: TLS on the open ports
        out = tlscheck.TlsPhase(out, args, specs, env)
    return _scan(jobs, config, shards, out, env)


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
    host_timeout = getattr(args, "host_timeout", None)
    once = frozenset()
    if host_timeout is not None and not args.all:  # Output warns about the host: its first row will do
        report, once = report | {HOST_TIMEOUT}, frozenset({HOST_TIMEOUT})
    close = args.close or ("fin" if args.banner else "rst")  # a banner read ends with FIN unless asked
    config = ScanConfig(udp=args.udp, timeout=args.timeout or INITIAL_TIMEOUT, retries=args.retries,
                        concurrency=concurrency, rate=args.rate, banner=args.banner,
                        banner_wait=getattr(args, "banner_wait", 1.0), banner_bytes=BANNER_BYTES, report=report,
                        close=close, adaptive=args.timeout is None and not args.udp, host_timeout=host_timeout,
                        udp_payloads=udppayloads.payloads(jobs.ports) if args.udp else None,
                        report_once=once)
    timeout = "adaptive timeouts" if config.adaptive else f"timeout {config.timeout:g} s"
    env.info(f"{jobs.total} attempts, {concurrency} in flight at most, {shards} scanner thread(s), "
             f"{timeout}, {args.retries} retries", level=2)
    return config, shards


# --- output -------------------------------------------------------------------------------------

def printable(data: bytes) -> str:
    """Bytes as one line of printable ASCII (core.banners.escape), trailing line ends dropped."""
    return banners.escape(data.rstrip(b"\r\n\0"))


class Output:
    """Writes result rows as text (`HOST PORT PROTO STATE SERVICE [DETAIL]`), JSON Lines or CSV."""

    def __init__(self, args, env, proto: str, hosts: list[Host], ports=None):
        self.env, self.proto, self.fmt, self.banner = env, proto, args.output, args.banner
        self.nports = len(ports) if ports else 1
        self.addresses = sum(host.count for host in hosts)
        self._grep = grepable.HostLines() if self.fmt == "grep" else None
        if self._grep is not None:  # nmap -oG's comment line first
            env.print(grepable.header(__version__, time.strftime(grepable.DATE_FORMAT), self.addresses,
                                      self.nports, proto))
        self.keys = KEYS + (("banner", "banner_b64") if args.banner else ()) + tlscheck.keys(args)
        self.tls = None  # probe.tlscheck.TlsPhase with --tls, once it has checked: the rows' TLS fields
        self.all, self._timed_out = args.all, set()  # --host-timeout: hosts warned about
        self._plain_keys = len(KEYS) + (2 if args.banner else 0)  # more: --tls columns, filled in later
        self._early: dict[int, str] = {}  # job index -> its line, formatted by prepare()
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

    def prepare(self, results) -> None:
        """Format results that are final but still wait for earlier jobs (the scan is mostly idle
        by then, waiting for silent ports), so the end of a scan only writes them: a 1000-port
        tail of JSON rows costs tens of ms. Not for -o grep or --tls rows, completed later."""
        if self._grep is not None or len(self.keys) != self._plain_keys:
            return
        early = self._early
        for result in results:
            if result[0] not in early:
                early[result[0]] = self._row_line(result[1:])

    def rows(self, results) -> None:
        write = self.env.write
        lines = []
        early = self._early
        for index, ip, port, state, rtt, errno_name, banner in results:
            if early:
                line = early.pop(index, None)
                if line is not None:
                    if line:
                        lines.append(line)
                    continue
            if state == HOST_TIMEOUT and not self._host_timed_out(ip):
                continue
            if self._grep is not None:  # -o grep: one line per host, written once the host is done
                version = banners.text(banner) if self.banner and banner else None
                entry = grepable.port_entry(port, state, self.proto, self.service(port), version)
                lines.append(self._grep.add(index // self.nports, ip, entry))
                continue
            row = self._row(ip, port, state, rtt, errno_name, banner)
            if self.tls is not None:
                row.update(self.tls.fields(ip, port, self.fmt))
            lines.append(self._line(row))
        if lines:
            self.env.progress_done()  # a terminal shows stdout and stderr on one screen
            write("".join(lines))
            self.env.flush()

    def _row(self, ip: str, port: int, state: str, rtt, errno_name, banner) -> dict:
        row = {"host": ip, "port": port, "proto": self.proto, "state": state, "service": self.service(port),
               "rtt_ms": None if rtt is None else round(rtt * 1000.0, 3), "errno": errno_name}
        if self.banner:  # text: one escaped, cut line; JSON/CSV: exact (see core.banners.fields)
            if self.fmt == "text":
                row["banner"] = banners.text(banner)
            else:
                row["banner"], row["banner_b64"] = banners.fields(banner)
        return row

    def _row_line(self, result) -> str:
        """One result's line for prepare(): '' when it is not printed (host-timeout without -a)."""
        ip, port, state, rtt, errno_name, banner = result
        if state == HOST_TIMEOUT and not self._host_timed_out(ip):
            return ""
        return self._line(self._row(ip, port, state, rtt, errno_name, banner))

    def _host_timed_out(self, ip: str) -> bool:
        """A host-timeout row: warn once per host; print it with -a only."""
        if ip not in self._timed_out:
            self._timed_out.add(ip)
            self.env.progress_done()
            self.env.warn(f"{ip}: host timeout: its ports not decided by then are not scanned")
        return self.all

    def hosts_done(self, mark: int) -> None:
        """-o grep: write the host being collected once every job below `mark` is final and its
        jobs all lie below it (the host is finished), without waiting for the next host's rows."""
        grep = self._grep
        if grep is not None and grep.key is not None and mark >= (grep.key + 1) * self.nports:
            self.env.progress_done()
            self.env.write(grep.flush())
            self.env.flush()

    def finish(self, elapsed: float, interrupted: bool = False) -> None:
        """-o grep: the last host's line and nmap's closing comment line."""
        if self._grep is not None:
            self.env.write(self._grep.flush())
            self.env.print(grepable.footer(time.strftime(grepable.DATE_FORMAT), self.addresses, self._grep.shown,
                                           elapsed, interrupted))

    def _line(self, row: dict) -> str:
        if self.fmt == "json":
            return self._json_line(row, self.keys) + "\n"
        if self.fmt == "csv":
            return self._csv_lines([row], self.keys, header=False)[0] + "\n"
        detail = " ".join(filter(None, (row.get("tls_text"), row.get("banner")))) or (
            row["errno"] if row["state"] in (ERROR, UNREACHABLE) else None)
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


def _watermark(scanner: Scanner) -> int:
    """Every job below it is final (read before Scanner.ready, which drains up to its own)."""
    return min((shard.watermark for shard in scanner.shards), default=0)


def _progress(scanner: Scanner, jobs: Jobs, elapsed: float, mark: int, env) -> None:
    """`probe: 12/254 hosts, 30480/254000 (12%), 3 open, 0 filtered, 4 s, ETA 25 s`, redrawn on
    a terminal only (Env.progress); hosts count as done once all their ports are final."""
    if not env.stderr_isatty:
        return
    done, total = scanner.done, max(1, jobs.total)
    counts = scanner.counts()
    hosts = min(jobs.host_count, mark // max(1, len(jobs.ports)))
    eta = f", ETA {elapsed * (jobs.total - done) / done:.0f} s" if done and elapsed >= 1 else ""
    env.progress(f"probe: {hosts}/{jobs.host_count} hosts, {done}/{jobs.total} ({100 * done // total}%), "
                 f"{counts[OPEN]} open, {counts[FILTERED]} filtered, {elapsed:.0f} s{eta}")


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
            mark = _watermark(scanner)
            out.rows(scanner.ready())
            out.hosts_done(mark)
            if finished:
                break
            out.prepare(scanner.waiting())
            _progress(scanner, jobs, clock() - started, mark, env)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        rest = scanner.stop()
        env.progress_done()
    out.rows(rest)  # empty after a complete scan; what was found so far after Ctrl-C or an error
    out.finish(clock() - started, interrupted)
    if interrupted:
        _summary(scanner, jobs, clock() - started, out.proto, env)
        env.note("interrupted")
        return ExitStatus.INTERRUPTED
    scanner.check()
    _summary(scanner, jobs, clock() - started, out.proto, env)
    return ExitStatus.OK if scanner.counts()[OPEN] else ExitStatus.FAILURE

