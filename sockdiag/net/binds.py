"""Bind attempts on throw-away sockets: which address a server would bind (the dual-stack wildcard
by default, as `sockdiag listen` binds), and whether a bind of a port there succeeds now.

Shared by the commands that ask "could a server bind this port?" (`wait --bindable`, and
bindcheck's attempts). A socket made here is bound and closed at once: it never listens, so it
never takes a connection or a datagram meant for the port's holder.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence

from sockdiag import platform
from sockdiag.core.bindverdict import Target
from sockdiag.core.errors import PermissionFailure, SockdiagError, UsageError
from sockdiag.platform.errnos import from_oserror

__all__ = ["PLAIN", "Target", "bind_sockaddr", "resolve_target", "run_attempts", "try_bind"]

PLAIN = "plain"  # the bind with no reuse option: what TIME_WAIT and every holder block
_WILDCARD_V6 = ipaddress.IPv6Address("::")


def resolve_target(bind: str | None, udp: bool = False) -> Target:
    """The address to bind: all interfaces by default (dual-stack '::' where the OS can, as
    `sockdiag listen` binds, else 0.0.0.0), or `bind` (a literal, or a name resolved once)."""
    if bind is None:
        if platform.dualstack_supported():
            return Target("::", socket.AF_INET6, True, 0, ":: (all interfaces, IPv4 and IPv6: dual-stack, "
                                                          "as 'sockdiag listen' binds)")
        return Target("0.0.0.0", socket.AF_INET, False, 0, "0.0.0.0 (all IPv4 interfaces)")
    text = bind.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text:
        raise UsageError("empty address for -b")
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    try:
        infos = socket.getaddrinfo(text, None, socket.AF_UNSPEC, kind, 0, socket.AI_PASSIVE | socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        try:
            infos = socket.getaddrinfo(text, None, socket.AF_UNSPEC, kind, 0, socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise SockdiagError(f"resolve {text}: {platform.describe_gaierror(exc)}") from None
        except UnicodeError:
            raise UsageError(f"not a valid host name: {text!r}") from None
    family, _, _, _, sockaddr = infos[0]
    address = sockaddr[0]
    scope = sockaddr[3] if family == socket.AF_INET6 else 0
    dualstack = family == socket.AF_INET6 and _is_v6_wildcard(address) and platform.dualstack_supported()
    label = address if address == text else f"{address} ({text})"
    if dualstack:
        label += " (all interfaces, IPv4 and IPv6: dual-stack)"
    elif address == "0.0.0.0":
        label += " (all IPv4 interfaces)"
    return Target(address, family, dualstack, scope, label)


def _is_v6_wildcard(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.partition("%")[0]) == _WILDCARD_V6
    except ValueError:
        return False


def bind_sockaddr(target: Target, port: int) -> tuple:
    """The sockaddr bind() takes for `target` and `port` (with the IPv6 scope, if any)."""
    if target.family == socket.AF_INET6:
        return (target.address, port, 0, target.scope_id)
    return (target.address, port)


def try_bind(target: Target, port: int, sock_type: int, option: str = PLAIN) -> dict:
    """Bind a throw-away socket with `option` (one of platform.bind_attempt_options()), close it at
    once: {option, ok, errno} with errno as a symbolic name (EADDRINUSE), None when the bind
    succeeded. Never listens. A socket the OS refuses to create at all is an error: exit 4 when
    not permitted, else a one-line SockdiagError."""
    try:
        sock = socket.socket(target.family, sock_type)
    except OSError as exc:
        name = platform.errno_name(exc.errno) if exc.errno else ""
        if name in ("EACCES", "EPERM"):
            raise PermissionFailure(f"not permitted to create a socket: {platform.describe(exc.errno)}") \
                from None
        raise from_oserror(f"socket for {target.address}", exc) from None
    with sock:
        try:
            if target.dualstack:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            platform.set_bind_option(sock, option)
            sock.bind(bind_sockaddr(target, port))
        except OSError as exc:
            return {"option": option, "ok": False,
                    "errno": platform.errno_name(exc.errno) if exc.errno else type(exc).__name__}
    return {"option": option, "ok": True, "errno": None}


def run_attempts(target: Target, port: int, udp: bool, options: Sequence[str],
                 bind: Callable[[Target, int, int, str], dict] = try_bind) -> list[dict]:
    """Every bind variant in turn. On UDP, when the plain bind meets a holder, the reuse variants are
    not tried: a UDP socket joins the port at bind() and could take datagrams meant for the holder."""
    sock_type = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    attempts = [bind(target, port, sock_type, options[0])]
    for option in options[1:]:
        if udp and not attempts[0]["ok"]:
            attempts.append({"option": option, "ok": None, "errno": None})
        else:
            attempts.append(bind(target, port, sock_type, option))
    return attempts
