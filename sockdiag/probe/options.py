"""The options of `sockdiag probe` (argparse; no side effects)."""

from __future__ import annotations


from sockdiag.cmdline import common, family, int_range, output, seconds

def add_probe(sub) -> None:
    p = sub.add_parser("probe", help="scan TCP (or UDP) ports with concurrent connects (like nmap -sT)",
                       description="Scan PORTS on HOST with concurrent non-blocking connects, like "
                                   "'nmap -sT' or 'nc -z'. Prints one line per open port: HOST PORT PROTO STATE SERVICE.")
    p.add_argument("host", metavar="HOST",
                   help="name, IPv4/IPv6 address, comma list of those, or CIDR block (at most /16 without --force)")
    p.add_argument("ports", nargs="+", metavar="PORTS",
                   help="e.g. 22,80,443 or 1-1024 or ssh,https; '-' for 1-65535; several may follow (80 443)")
    family(p)
    p.add_argument("-t", "--tcp", action="store_true", help="TCP connect scan (the default)")
    p.add_argument("-c", "--concurrency", type=int_range(1, 1_000_000), metavar="N",
                   help="connects in flight at once (default: from the open-file limit)")
    p.add_argument("-w", "--timeout", type=seconds, default=1.0, metavar="SEC",
                   help="per-attempt timeout (default 1.0; -t before version 0.2)")
    p.add_argument("--retries", type=int_range(0, 100), default=0, metavar="N",
                   help="extra attempts for ports that did not answer within the timeout (default 0, as nc -z; "
                        "add some on lossy links)")
    p.add_argument("--rate", type=int_range(1, 10_000_000), metavar="N", help="at most N attempts per second")
    p.add_argument("--workers", type=int_range(1, 64), metavar="N",
                   help="scanner threads, each with its own share of the sockets (default: one per CPU, "
                        "at most 4, for TCP scans of 4096 attempts or more; 1 with --rate or -u)")
    p.add_argument("-u", "--udp", action="store_true", help="UDP probe: reply=open, ICMP unreachable=closed")
    p.add_argument("-a", "--all", action="store_true", help="also print closed, filtered and unreachable ports")
    p.add_argument("--banner", action="store_true",
                   help="read and show what each open service sends first (up to 512 bytes, within --timeout)")
    p.add_argument("--close", choices=("rst", "fin"), default="rst",
                   help="how an open probe is closed: rst (default, as nmap -sT: no TIME_WAIT left) or fin, a "
                        "normal close for fragile servers that crash on a reset")
    p.add_argument("--force", action="store_true", help="allow target blocks larger than /16")
    output(p)
    common(p)
