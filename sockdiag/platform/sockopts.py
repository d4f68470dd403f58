"""Socket options whose meaning or spelling differs per OS: address reuse, dual stack, linger."""

from __future__ import annotations

import socket

from sockdiag.platform.system import DARWIN, LINUX, SYSTEM, WINDOWS

def server_reuse_option(system: str | None = None) -> str:
    """The option a server should set before bind so a restart is not blocked.

    POSIX: SO_REUSEADDR lets a new listener bind while old connections sit in TIME_WAIT.
    Windows: SO_REUSEADDR lets *another* socket bind a port already in use (port hijacking),
    so servers set SO_EXCLUSIVEADDRUSE instead; TIME_WAIT does not block a bind there anyway.
    """
    return "SO_EXCLUSIVEADDRUSE" if (system or SYSTEM) == WINDOWS else "SO_REUSEADDR"


def set_server_reuse(sock: socket.socket) -> None:
    """Apply server_reuse_option() to a socket that is about to bind."""
    option = server_reuse_option()
    if option == "SO_EXCLUSIVEADDRUSE":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined]
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)


def has_reuseport(system: str | None = None) -> bool:
    """Whether SO_REUSEPORT exists: Linux 3.9+ (load-balancing groups) and macOS/BSD (multicast-
    style sharing); Windows has no such option."""
    system = system or SYSTEM
    if system == WINDOWS:
        return False
    if system == SYSTEM:
        return hasattr(socket, "SO_REUSEPORT")
    return system in (LINUX, DARWIN)


REUSEADDR_NOTES = {
    LINUX: "SO_REUSEADDR lets a listener bind past TIME_WAIT sockets only if the sockets that "
           "left them had SO_REUSEADDR set too; it never allows two listeners on one port",
    DARWIN: "SO_REUSEADDR lets a listener bind past TIME_WAIT sockets; it never allows two "
            "listeners on one exact address and port",
    WINDOWS: "SO_REUSEADDR on Windows lets another socket bind a port that is in use (even by "
             "another process): a server should set SO_EXCLUSIVEADDRUSE instead",
}


def reuseaddr_note(system: str | None = None) -> str:
    """One line on what SO_REUSEADDR does on `system`."""
    return REUSEADDR_NOTES.get(system or SYSTEM, REUSEADDR_NOTES[DARWIN])


def dualstack_supported() -> bool:
    """Whether one AF_INET6 socket bound to :: with IPV6_V6ONLY off also accepts IPv4."""
    return socket.has_ipv6 and socket.has_dualstack_ipv6()


def v6only_default(system: str | None = None) -> bool:
    """IPV6_V6ONLY's default: off on Linux (net.ipv6.bindv6only=0) and macOS, on for Windows.
    Listeners set it explicitly rather than trust the default."""
    return (system or SYSTEM) == WINDOWS


def set_v6only(sock: socket.socket, v6only: bool) -> None:
    """Set IPV6_V6ONLY explicitly on an AF_INET6 listener: the default differs (off on Linux and
    macOS, on for Windows), and a dual-stack listener needs it off."""
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if v6only else 0)


def linger_rst_value(system: str | None = None) -> bytes:
    """SO_LINGER {on, 0 s}: close() then sends RST instead of FIN, so a scan leaves no TIME_WAIT
    behind. struct linger is two ints on POSIX but two u_shorts in winsock2.h."""
    import struct

    return struct.pack("HH" if (system or SYSTEM) == WINDOWS else "ii", 1, 0)


def bind_attempt_options(system: str | None = None) -> tuple[str, ...]:
    """The binds bindcheck tries, in order. POSIX: plain, SO_REUSEADDR (what servers set) and
    SO_REUSEPORT where it exists. Windows: SO_EXCLUSIVEADDRUSE instead, because a Windows
    SO_REUSEADDR bind would succeed on a port that is really in use (see reuseaddr_note)."""
    if (system or SYSTEM) == WINDOWS:
        return ("plain", "SO_EXCLUSIVEADDRUSE")
    return ("plain", "SO_REUSEADDR") + (("SO_REUSEPORT",) if has_reuseport(system) else ())


def set_bind_option(sock: socket.socket, option: str) -> None:
    """Set one of bind_attempt_options() on a socket about to bind ("plain" sets nothing)."""
    if option != "plain":
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, option), 1)


# --- unix domain sockets ----------------------------------------------------------------------------

def unix_sockets_supported() -> bool:
    """AF_UNIX exists on POSIX, and on Windows 10 1803+ (stream only) where Python exposes it."""
    import socket as _socket

    return hasattr(_socket, "AF_UNIX")


def abstract_unix_supported(system: str | None = None) -> bool:
    """Abstract unix socket names (@name: no file, gone with the socket) are a Linux feature."""
    return (system or SYSTEM) == LINUX
