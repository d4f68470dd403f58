"""The exit statuses of every sockdiag command, documented in --help and the man page."""

from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit codes. No os.EX_* constants: those exist only on Unix."""

    OK = 0
    FAILURE = 1  # operational: refused, nothing open, port not bindable, peer reset
    USAGE = 2  # bad option, bad port spec, bad value (argparse uses 2 too)
    TIMEOUT = 3
    PERMISSION = 4
    HANGUP = 129  # 128 + SIGHUP: the terminal went away; ended cleanly
    INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
    TERMINATED = 143  # 128 + SIGTERM: ended cleanly (sockets closed, children stopped)


EXIT_STATUS_HELP = (
    ("0", "success (probe: at least one port open; bindcheck: a plain bind succeeds)"),
    ("1", "operational failure: connection refused or reset, unknown host, no open port, port not bindable, "
          "standard output closed or full"),
    ("2", "usage error: unknown option, bad port or port range, bad value"),
    ("3", "timeout"),
    ("4", "permission denied (listening on a privileged port; a check or table not permitted at all)"),
    ("129", "hangup (SIGHUP); the command still ends cleanly"),
    ("130", "interrupted (Ctrl-C)"),
    ("143", "terminated (SIGTERM); the command still ends cleanly"),
)
