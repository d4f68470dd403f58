"""The --exec safety rule and --exec/--exec-each command lines. Who may connect (--allow/--deny)
and how peers are named live in net.access (forward uses them too); they are re-exported here."""

from __future__ import annotations

import shutil

from sockdiag import platform
from sockdiag.core.errors import UsageError
from sockdiag.net.access import (  # noqa: F401
    AccessList,
    format_peer,
    is_loopback,
    peer_parts,
    resolve_all,
)


def exec_command(args) -> list[str] | str | None:
    """The argv for --exec / --sh-exec, checked before listening (a missing command is a usage
    error now, not a surprise per connection). None when neither is given."""
    for option, value in (("--exec", args.exec_cmd), ("--sh-exec", args.sh_exec)):
        if value is not None and not value.strip():
            raise UsageError(f"{option}: empty command")
    if args.sh_exec:
        return platform.shell_argv(args.sh_exec)
    if not args.exec_cmd:
        return None
    return command_argv("--exec", args.exec_cmd)


def command_argv(option: str, command: str) -> list[str] | str:
    """CMD of --exec or --exec-each, split without a shell and checked before listening: an
    empty or missing command is a usage error now, not a surprise per connection."""
    if not command.strip():
        raise UsageError(f"{option}: empty command")
    try:
        argv = platform.split_command(command)
    except ValueError as exc:
        raise UsageError(f"{option} {command!r}: {exc}") from None
    if isinstance(argv, list):
        if not argv:
            raise UsageError(f"{option}: empty command")
        if shutil.which(argv[0]) is None:
            raise UsageError(f"{option}: command not found: {argv[0]}")
    return argv


def check_exec_safety(bind_host: str, acl: AccessList) -> None:
    """--exec hands a command to whoever connects: only on loopback, or with --allow."""
    if not acl.allow_given and not is_loopback(bind_host):
        raise UsageError("--exec/--sh-exec would give a command to anyone who can connect: bind to a "
                         "loopback address (-b 127.0.0.1) or name the clients with --allow CIDR")
