"""The options of `sockdiag states` (argparse; no side effects), and the state names it accepts."""

from __future__ import annotations

import argparse

from sockdiag.cmdline import common, family, int_range, port, seconds

# The valid --state names: every state `states` and `bindcheck` print (psutil's CONN_* constants
# and UNCONN). UNCONN: a UDP or unix socket bound but neither listening nor connected (ss's word);
# BOUND (psutil on Windows/BSD) and NONE (psutil's word for "no state") select the same sockets.
# DELETE_TCB and IDLE exist only on Windows/BSD.
STATE_NAMES = ("ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
               "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "UNCONN", "BOUND", "NONE", "DELETE_TCB", "IDLE")
# Spellings ss and netstat users type (ss: fin-wait-1, estab; Windows netstat: LISTENING, SYN_RECEIVED).
_STATE_ALIASES = {"FIN_WAIT_1": "FIN_WAIT1", "FIN_WAIT_2": "FIN_WAIT2", "ESTAB": "ESTABLISHED",
                  "LISTENING": "LISTEN", "CLOSED": "CLOSE", "SYN_RECEIVED": "SYN_RECV",
                  "NEW_SYN_RECV": "SYN_RECV"}


def state_name(text: str) -> str:
    """A socket state, any case, '-' or '_': time-wait, TIME_WAIT -> 'TIME_WAIT'."""
    name = text.strip().upper().replace("-", "_").replace(" ", "_")
    name = _STATE_ALIASES.get(name, name)
    if name not in STATE_NAMES:
        raise argparse.ArgumentTypeError(f"unknown state {text!r} (valid: {', '.join(STATE_NAMES)})")
    return name


def port_set(text: str) -> frozenset:
    """--sport/--dport: a port list as probe takes it ('22,80-90,https')."""
    from sockdiag.core.portspec import PortSpecError, parse_ports
    from sockdiag.platform import service_port  # lazy: socket import only when parsing a name

    try:
        return frozenset(parse_ports(text, service_port))
    except PortSpecError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def network(text: str):
    """--src/--dst: an address or CIDR block ('10.0.0.0/8', '::1', '[fe80::1]'), host bits allowed."""
    import ipaddress

    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    address, slash, prefix = body.partition("/")
    try:
        return ipaddress.ip_network(address.split("%", 1)[0] + slash + prefix, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address or CIDR block: {text!r} (e.g. 10.0.0.0/8, ::1)") from None


def add_states(sub) -> None:
    p = sub.add_parser("states", help="list sockets with state and process (like netstat -an / ss)",
                       description="List the machine's sockets with their states and owning processes, "
                                   "like 'netstat -anp' or 'ss -anp'. Without -t, -u or -x, TCP, UDP and "
                                   "unix sockets are all listed. Filters combine.")
    p.add_argument("-t", "--tcp", action="store_true", help="TCP sockets")
    p.add_argument("-u", "--udp", action="store_true", help="UDP sockets")
    p.add_argument("-x", "--unix", action="store_true", help="Unix domain sockets")
    family(p)
    p.add_argument("-l", "--listening", action="store_true", help="listening (and bound UDP) sockets only")
    p.add_argument("-a", "--all", action="store_true",
                   help="accepted for ss/netstat: every state is listed unless -l or --state narrows it")
    p.add_argument("-n", "--numeric", action="store_true",
                   help="accepted for ss/netstat: addresses and ports are always numeric")
    p.add_argument("-p", "--processes", action="store_true",
                   help="accepted for ss/netstat: owning processes are always shown")
    p.add_argument("--state", action="append", type=state_name, metavar="NAME",
                   help="only sockets in state NAME (repeatable; any case, time-wait = TIME_WAIT): "
                        + ", ".join(STATE_NAMES))
    p.add_argument("--port", type=port, metavar="N", help="local or remote port N")
    p.add_argument("--sport", type=port_set, metavar="PORTS",
                   help="local port in PORTS (as probe takes them: 22,80-90,https)")
    p.add_argument("--dport", type=port_set, metavar="PORTS", help="remote port in PORTS")
    p.add_argument("--src", action="append", type=network, metavar="CIDR",
                   help="local address in CIDR (an address or block; repeatable, any matches; "
                        "IPv4-mapped IPv6 addresses count as IPv4)")
    p.add_argument("--dst", action="append", type=network, metavar="CIDR", help="remote address in CIDR (as --src)")
    p.add_argument("--uid", type=int_range(0, 2**32 - 1), metavar="UID",
                   help="sockets of user UID (Linux: the socket's uid, as ss -e; elsewhere its process's)")
    p.add_argument("--pid", type=int_range(1, 2**32 - 1), metavar="PID",
                   help="sockets of process PID (one of their owners)")
    p.add_argument("--process", metavar="NAME",
                   help="sockets of processes named NAME (any case; * ? [ ] as in the shell)")
    p.add_argument("--owners", action="store_true",
                   help="list every process holding each socket in the Process column, as ss -p: "
                        "users:((\"nginx\",pid=1,fd=6),...); without it PID shows the first owner "
                        "and +N when N more share the socket (a forked or prefork server)")
    p.add_argument("-i", "--info", action="store_true",
                   help="TCP internals per socket, as ss -i: rtt/rttvar, cwnd, ssthresh, retransmits, bytes "
                        "acked/received (Linux: sock_diag netlink; elsewhere not available); JSON adds "
                        "\"tcp_info\"")
    p.add_argument("--timers", action="store_true",
                   help="a Timer column: on (retransmit), keepalive, timewait or persist, and the seconds "
                        "left (ss -o; Linux only, '-' elsewhere); JSON always has \"timer\"")
    p.add_argument("--sort", choices=("local", "remote", "state", "pid"), help="sort rows by this column")
    p.add_argument("--summary", action="store_true",
                   help="counts per protocol and state, and the ports with most TIME_WAIT/ESTABLISHED")
    p.add_argument("--watch", type=seconds, metavar="SEC", help="redraw every SEC seconds, marking changes")
    p.add_argument("-o", "--output", choices=("text", "json", "csv", "prometheus"), default="text",
                   help="output format: aligned text (default), JSON Lines, CSV, or with --summary "
                        "prometheus (the text exposition format, for node_exporter's textfile collector)")
    p.add_argument("--close-wait-threshold", type=int_range(1, 1_000_000), default=10, metavar="N",
                   help="--summary: name the processes holding at least N CLOSE_WAIT sockets (default 10)")
    common(p)
