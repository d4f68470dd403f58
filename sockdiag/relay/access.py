"""Who may connect and how peers are named: --allow/--deny (the rules are core.addrset; names
and rule files are read here, once, at start), the --exec safety rule, and IPv4-mapped
addresses shown as IPv4."""

from __future__ import annotations

import shutil
import socket

from sockdiag import platform
from sockdiag.core.addrset import AddressSet, canonical_address, split_entries
from sockdiag.core.errors import SockdiagError, UsageError
from sockdiag.core.portspec import format_hostport
from sockdiag.platform.errnos import from_oserror


def peer_parts(sockaddr) -> tuple[str, int]:
    """(host, port) of a socket address; an IPv4-mapped IPv6 address is shown as IPv4; a unix
    socket address is (its path or @name, 0)."""
    if isinstance(sockaddr, (str, bytes)):
        from sockdiag.relay.unix import display

        return display(sockaddr), 0
    host, port = sockaddr[0], sockaddr[1]
    if host.lower().startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, port


def format_peer(sockaddr) -> str:
    """127.0.0.1:51234, [::1]:51234, or a unix socket's path (@name, unix-client)."""
    if isinstance(sockaddr, (str, bytes)):
        return peer_parts(sockaddr)[0]
    return format_hostport(*peer_parts(sockaddr))


def is_loopback(host: str) -> bool:
    """Whether `host` (an address literal) is a loopback address: 127.0.0.0/8, ::1, ::ffff:127.x."""
    address = canonical_address(host)
    return address is not None and address.is_loopback


def resolve_all(name: str) -> list[str]:
    """Every address of a host name in an --allow/--deny rule, both families, resolved once."""
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SockdiagError(f"resolve {name}: {platform.describe_gaierror(exc)}") from None
    except (UnicodeError, ValueError):
        raise UsageError(f"not a valid host name: {name!r}") from None
    return sorted({info[4][0] for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)})


def _read_rules(option: str, path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [f.read()]
    except OSError as exc:
        raise from_oserror(f"{option} {path}", exc) from None


class AccessList:
    """--allow/--allowfile and --deny/--denyfile, as ncat has them: deny wins; once any allow rule
    is given (even an empty file), only the hosts it names pass. Rules and peers are compared in
    canonical form (core.addrset), so an IPv4 client matches the same rules whether it arrives
    as 127.0.0.2 or as ::ffff:127.0.0.2."""

    def __init__(self, allow: AddressSet, deny: AddressSet, allow_given: bool | None = None):
        self.allow, self.deny = allow, deny
        self.allow_given = bool(allow) if allow_given is None else allow_given

    @classmethod
    def parse(cls, allow: list[str], deny: list[str], allowfiles: list[str] = (), denyfiles: list[str] = (),
              resolve=resolve_all) -> "AccessList":
        for option, values in (("--allow", allow), ("--deny", deny)):
            for value in values:
                if not split_entries([value]):
                    raise UsageError(f"{option}: empty value (give an address, CIDR block or host name)")
        allow_texts = split_entries(allow) + [e for path in allowfiles for e in split_entries(
            _read_rules("--allowfile", path))]
        deny_texts = split_entries(deny) + [e for path in denyfiles for e in split_entries(
            _read_rules("--denyfile", path))]
        return cls(AddressSet.parse("--allow", allow_texts, resolve),
                   AddressSet.parse("--deny", deny_texts, resolve),
                   allow_given=bool(allow or allowfiles))

    def permits(self, host: str) -> bool:
        if canonical_address(host) is None:  # not an IP peer (a unix socket): only rule-free
            return not self.allow_given
        if host in self.deny:
            return False
        return not self.allow_given or host in self.allow


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
