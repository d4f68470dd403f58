"""The options of `sockdiag probe` (argparse; no side effects)."""

from __future__ import annotations


from sockdiag.cmdline import common, family, int_range, seconds

def add_probe(sub) -> None:
    p = sub.add_parser("probe", help="scan TCP (or UDP) ports with concurrent connects (like nmap -sT)",
                       description="Scan PORTS on HOST with concurrent non-blocking connects, like "
                                   "'nmap -sT' or 'nc -z'. Prints one line per open port: HOST PORT PROTO STATE SERVICE.")
    # Two forms: HOST then PORTS, or -iL FILE and PORTS only (argparse's own line shows the first).
    p.usage = "%(prog)s [options] HOST PORTS [PORTS ...]\n       %(prog)s [options] -iL FILE [PORTS ...]"
    host = p.add_argument("host", metavar="HOST",
                          help="name, IPv4/IPv6 address, CIDR block (at most /16 without --force), range "
                               "(127.0.1.1-254 or 127.0.1.1-127.0.1.9), or a comma list of those; absent with -iL, "
                               "where every positional is PORTS")
    ports = p.add_argument("ports", nargs="+", metavar="PORTS",
                           help="e.g. 22,80,443 or 1-1024 or ssh,https; '-' for 1-65535; several may follow (80 443); "
                                "may be left out with --top-ports")
    # Not required for argparse: with -iL the first positional is PORTS, with --top-ports PORTS may
    # be absent; probe.selection checks what is missing (same message). The nargs stay as they
    # were, so `probe HOST -w 1 PORTS` parses as before.
    host.required = ports.required = False
    p.add_argument("-iL", dest="input_file", metavar="FILE",
                   help="read targets from FILE ('-': standard input), separated by newlines, blanks or commas; "
                        "'#' starts a comment (as nmap -iL)")
    p.add_argument("--exclude", metavar="TARGETS",
                   help="never scan these: addresses, names, CIDR blocks or ranges, comma-separated")
    p.add_argument("--excludefile", metavar="FILE", help="like --exclude, the entries read from FILE ('-': stdin)")
    p.add_argument("--top-ports", type=int_range(1, 65535), metavar="N",
                   help="scan the N most common ports (of PORTS, when given, as nmap), from the list shipped "
                        "with sockdiag")
    p.add_argument("--exclude-ports", metavar="PORTS", help="never scan these ports (a port list, as PORTS)")
    p.add_argument("--no-randomize", action="store_true",
                   help="scan hosts and ports in sequence (default: a random order within groups of hosts; "
                        "the output is sorted either way)")
    family(p)
    p.add_argument("-t", "--tcp", action="store_true", help="TCP connect scan (the default)")
    p.add_argument("-c", "--concurrency", type=int_range(1, 1_000_000), metavar="N",
                   help="connects in flight at once (default: from the open-file limit)")
    p.add_argument("-w", "--timeout", type=seconds, metavar="SEC",
                   help="per-attempt timeout, fixed (-t before version 0.2); without -w a TCP scan adapts it per "
                        "host to the round trips seen, from 1 s within 0.1-10 s (as nmap); UDP waits 1 s")
    p.add_argument("--host-timeout", type=seconds, metavar="SEC",
                   help="give a host up once it has not answered for SEC seconds (since its first attempt or "
                        "its latest answer): its undecided ports are reported as host-timeout (with -a), with a "
                        "warning naming the host; in a TCP scan a host not heard from yet has at most 8 attempts in "
                        "flight")
    p.add_argument("--retries", type=int_range(0, 100), default=0, metavar="N",
                   help="extra attempts for ports that did not answer within the timeout (default 0, as nc -z; "
                        "add some on lossy links)")
    p.add_argument("--rate", type=int_range(1, 10_000_000), metavar="N",
                   help="at most N attempts per second, over all scanner threads")
    p.add_argument("--workers", type=int_range(1, 64), metavar="N",
                   help="scanner threads, each with its own share of the sockets (default: one per CPU, "
                        "at most 4, for TCP scans of 4096 attempts or more; 1 with --rate or -u)")
    p.add_argument("-u", "--udp", action="store_true",
                   help="UDP probe: reply=open, ICMP unreachable=closed; ports 53, 123 and 161 get a DNS, NTP or "
                        "SNMP (v2c, public) request, the others an empty datagram")
    p.add_argument("-a", "--all", action="store_true", help="also print closed, filtered and unreachable ports")
    p.add_argument("--banner", action="store_true",
                   help="read and show what each open service sends first (up to 512 bytes); HTTP ports get "
                        "a HEAD / request, redis a PING; closed with FIN unless --close rst is given")
    p.add_argument("--banner-wait", type=seconds, default=1.0, metavar="SEC",
                   help="how long --banner waits for a service's first bytes (default 1)")
    p.add_argument("--close", choices=("rst", "fin"),
                   help="how an open probe is closed: rst (the default, as nmap -sT: no TIME_WAIT left) or fin, "
                        "a normal close for fragile servers that crash on a reset (the default with --banner)")
    p.add_argument("--tls", action="store_true",
                   help="after the scan, try a TLS handshake on each open port (not verified) and show the version, "
                        "the certificate's subject, its days to expiry and whether its names match HOST")
    p.add_argument("--force", action="store_true", help="allow target blocks larger than /16")
    p.add_argument("-o", "--output", choices=("text", "json", "csv", "grep"), default="text",
                   help="output format: aligned text (default), JSON Lines, CSV, or grep: one line per host as "
                        "nmap -oG writes it")
    common(p)
