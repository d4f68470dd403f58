"""Who may connect and how peers are named: --allow/--deny, the --exec safety rule, and
IPv4-mapped addresses shown as IPv4. Pure apart from shutil.which for the --exec check."""

from __future__ import annotations

import ipaddress
import shutil

from sockdiag import platform
from sockdiag.core.errors import UsageError
from sockdiag.core.portspec import format_hostport


def peer_parts(sockaddr) -> tuple[str, int]:
    """(host, port) of a socket address; an IPv4-mapped IPv6 address is shown as IPv4."""
    host, port = sockaddr[0], sockaddr[1]
    if host.lower().startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, port


def format_peer(sockaddr) -> str:
    """127.0.0.1:51234 or [::1]:51234."""
    return format_hostport(*peer_parts(sockaddr))


def _ip(host: str):
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback(host: str) -> bool:
    """Whether `host` (an address literal) is a loopback address: 127.0.0.0/8, ::1."""
    address = _ip(host)
    return address is not None and address.is_loopback


class AccessList:
    """--allow / --deny CIDR filters. Deny wins; with any --allow, only those networks pass."""

    def __init__(self, allow: list, deny: list):
        self.allow, self.deny = allow, deny

    @classmethod
    def parse(cls, allow: list[str], deny: list[str]) -> "AccessList":
        def networks(option: str, values: list[str]):
            out = []
            for text in values:
                try:
                    out.append(ipaddress.ip_network(text.strip(), strict=False))
                except ValueError:
                    raise UsageError(f"{option} {text!r}: not an address or CIDR block (e.g. 10.0.0.0/8, ::1)") from None
            return out

        return cls(networks("--allow", allow), networks("--deny", deny))

    def permits(self, host: str) -> bool:
        address = _ip(host)
        if address is None:
            return not self.allow
        if any(address in net for net in self.deny if net.version == address.version):
            return False
        return not self.allow or any(address in net for net in self.allow if net.version == address.version)


def exec_command(args) -> list[str] | str | None:
    """The argv for --exec / --sh-exec, checked before listening (a missing command is a usage
    error now, not a surprise per connection). None when neither is given."""
    if args.sh_exec:
        return platform.shell_argv(args.sh_exec)
    if not args.exec_cmd:
        return None
    try:
        argv = platform.split_command(args.exec_cmd)
    except ValueError as exc:
        raise UsageError(f"--exec {args.exec_cmd!r}: {exc}") from None
    if isinstance(argv, list):
        if not argv:
            raise UsageError("--exec: empty command")
        if shutil.which(argv[0]) is None:
            raise UsageError(f"--exec: command not found: {argv[0]}")
    return argv


def check_exec_safety(bind_host: str, acl: AccessList) -> None:
    """--exec hands a command to whoever connects: only on loopback, or with --allow."""
    if not acl.allow and not is_loopback(bind_host):
        raise UsageError("--exec/--sh-exec would give a command to anyone who can connect: bind to a "
                         "loopback address (-b 127.0.0.1) or name the clients with --allow CIDR")
