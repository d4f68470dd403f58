"""The options of `sockdiag states` (argparse; no side effects), and the state names it accepts."""

from __future__ import annotations

import argparse

from sockdiag.cmdline import common, family, int_range, output, port, seconds

# The valid --state names: psutil's CONN_* constants. DELETE_TCB, IDLE and BOUND exist only on
# Windows/BSD; NONE selects sockets without a state (UDP, unix).
STATE_NAMES = ("ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
               "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NONE", "DELETE_TCB", "IDLE", "BOUND")
# Spellings ss and netstat users type (ss: fin-wait-1, estab; Windows netstat: LISTENING, SYN_RECEIVED).
_STATE_ALIASES = {"FIN_WAIT_1": "FIN_WAIT1", "FIN_WAIT_2": "FIN_WAIT2", "ESTAB": "ESTABLISHED",
                  "LISTENING": "LISTEN", "CLOSED": "CLOSE", "SYN_RECEIVED": "SYN_RECV", "UNCONN": "NONE"}


def state_name(text: str) -> str:
    """A socket state, any case, '-' or '_': time-wait, TIME_WAIT -> 'TIME_WAIT'."""
    name = text.strip().upper().replace("-", "_").replace(" ", "_")
    name = _STATE_ALIASES.get(name, name)
    if name not in STATE_NAMES:
        raise argparse.ArgumentTypeError(f"unknown state {text!r} (valid: {', '.join(STATE_NAMES)})")
    return name


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
    p.add_argument("--pid", type=int_range(1, 2**32 - 1), metavar="PID", help="sockets of process PID")
    p.add_argument("--process", metavar="NAME",
                   help="sockets of processes named NAME (any case; * ? [ ] as in the shell)")
    p.add_argument("--sort", choices=("local", "remote", "state", "pid"), help="sort rows by this column")
    p.add_argument("--summary", action="store_true",
                   help="counts per protocol and state, and the ports with most TIME_WAIT/ESTABLISHED")
    p.add_argument("--watch", type=seconds, metavar="SEC", help="redraw every SEC seconds, marking changes")
    output(p)
    common(p)
