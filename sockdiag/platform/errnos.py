"""errno and getaddrinfo codes by symbolic name, per OS, and the messages made from them.

Compare errors by name through here: Windows reports 10061 where Linux says 111 and macOS 61."""

from __future__ import annotations

import errno as _errno
import os
import socket

from sockdiag.core.errors import SockdiagError, TimeoutFailure, status_for_errno_name
from sockdiag.platform.system import DARWIN, LINUX, SYSTEM, WINDOWS

# errno numbers for the names sockdiag reasons about, per OS. Linux and macOS values come from
# <asm-generic/errno.h> and <sys/errno.h>; Windows sockets report WSA* codes (winsock2.h,
# 10000 + BSD number), which Python's errno module also uses for these names on Windows.
# So connect_ex() says "refused" as 111 on Linux, 61 on macOS and 10061 on Windows.
_ERRNO_TABLES: dict[str, dict[str, int]] = {
    LINUX: {
        "EPERM": 1, "EINTR": 4, "EACCES": 13, "EINVAL": 22, "ENFILE": 23, "EMFILE": 24,
        "EPIPE": 32, "EAGAIN": 11, "EAFNOSUPPORT": 97, "EADDRINUSE": 98, "EADDRNOTAVAIL": 99,
        "ENETDOWN": 100, "ENETUNREACH": 101, "ECONNABORTED": 103, "ECONNRESET": 104,
        "ENOBUFS": 105, "EISCONN": 106, "ENOTCONN": 107, "ETIMEDOUT": 110,
        "ECONNREFUSED": 111, "EHOSTDOWN": 112, "EHOSTUNREACH": 113, "EALREADY": 114,
        "EINPROGRESS": 115,
    },
    DARWIN: {
        "EPERM": 1, "EINTR": 4, "EACCES": 13, "EINVAL": 22, "ENFILE": 23, "EMFILE": 24,
        "EPIPE": 32, "EAGAIN": 35, "EINPROGRESS": 36, "EALREADY": 37, "EAFNOSUPPORT": 47,
        "EADDRINUSE": 48, "EADDRNOTAVAIL": 49, "ENETDOWN": 50, "ENETUNREACH": 51,
        "ECONNABORTED": 53, "ECONNRESET": 54, "ENOBUFS": 55, "EISCONN": 56, "ENOTCONN": 57,
        "ETIMEDOUT": 60, "ECONNREFUSED": 61, "EHOSTDOWN": 64, "EHOSTUNREACH": 65,
    },
    WINDOWS: {
        "EPERM": 1, "EPIPE": 32,
        "EINTR": 10004, "EACCES": 10013, "EINVAL": 10022, "EMFILE": 10024,
        "EWOULDBLOCK": 10035, "EINPROGRESS": 10036, "EALREADY": 10037,
        "EAFNOSUPPORT": 10047, "EADDRINUSE": 10048, "EADDRNOTAVAIL": 10049,
        "ENETDOWN": 10050, "ENETUNREACH": 10051, "ECONNABORTED": 10053, "ECONNRESET": 10054,
        "ENOBUFS": 10055, "EISCONN": 10056, "ENOTCONN": 10057, "ETIMEDOUT": 10060,
        "ECONNREFUSED": 10061, "EHOSTDOWN": 10064, "EHOSTUNREACH": 10065,
    },
}
_NAMES_BY_CODE = {system: {code: name for name, code in table.items()}
                  for system, table in _ERRNO_TABLES.items()}
# Windows' C runtime also has small errno values (EACCES 13, EINVAL 22) next to the WSA ones.
_NAMES_BY_CODE[WINDOWS].update({13: "EACCES", 22: "EINVAL", 24: "EMFILE", 4: "EINTR"})

# A non-blocking connect that has started but not finished: Linux/macOS say EINPROGRESS,
# Windows says WSAEWOULDBLOCK; EALREADY and EAGAIN appear on a repeated connect_ex.
IN_PROGRESS = frozenset({"EINPROGRESS", "EWOULDBLOCK", "EAGAIN", "EALREADY"})
UNREACHABLE = frozenset({"EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENETDOWN"})

_DESCRIPTIONS = {
    "ECONNREFUSED": "connection refused",
    "ECONNRESET": "connection reset by peer",
    "ECONNABORTED": "connection aborted",
    "ETIMEDOUT": "timed out",
    "EHOSTUNREACH": "host unreachable",
    "ENETUNREACH": "network unreachable",
    "EHOSTDOWN": "host is down",
    "ENETDOWN": "network is down",
    "EADDRINUSE": "address already in use",
    "EADDRNOTAVAIL": "address not available on this host",
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
    "EPIPE": "broken pipe (peer closed the connection)",
    "EMFILE": "too many open files",
    "ENFILE": "too many open files in system",
    "EAFNOSUPPORT": "address family not supported",
    "EINVAL": "invalid argument",
    "ENOBUFS": "no buffer space available",
}


def errno_name(code: int, system: str | None = None) -> str:
    """The symbolic name of an errno value as `system` reports it (EWOULDBLOCK/EAGAIN alike)."""
    system = system or SYSTEM
    name = _NAMES_BY_CODE.get(system, {}).get(code)
    if name is None and system == SYSTEM:
        name = _errno.errorcode.get(code)
        if name and name.startswith("WSA"):
            name = name[3:]
    return name or f"errno {code}"


def errno_code(name: str, system: str | None = None) -> int | None:
    """The number `system` uses for errno `name`, or None when it has no such error."""
    system = system or SYSTEM
    table = _ERRNO_TABLES.get(system, {})
    if name in table:
        return table[name]
    if name == "EWOULDBLOCK" and "EAGAIN" in table:
        return table["EAGAIN"]
    return getattr(_errno, name, None) if system == SYSTEM else None


def errno_is(code: int | None, name: str, system: str | None = None) -> bool:
    """Whether `code` is errno `name` on `system`: compare by name, never by Linux numbers."""
    return code is not None and errno_name(code, system) == name


def connect_in_progress(code: int, system: str | None = None) -> bool:
    """Whether a non-blocking connect_ex() result means "started, not finished"."""
    return errno_name(code, system) in IN_PROGRESS


def describe(code: int, system: str | None = None) -> str:
    """A one-line description naming the errno symbolically: `connection refused (ECONNREFUSED)`."""
    name = errno_name(code, system)
    text = _DESCRIPTIONS.get(name)
    if text is None:
        text = os.strerror(code).lower() if (system or SYSTEM) == SYSTEM else "error"
    return f"{text} ({name})"


# A transfer that fails with one of these lost its peer (reset, or a write after the peer left);
# Windows adds ECONNABORTED for a connection its own stack dropped.
CONNECTION_LOST = frozenset({"ECONNRESET", "EPIPE", "ECONNABORTED", "ENOTCONN", "ETIMEDOUT", "ESHUTDOWN"})

# accept() failures that concern one client or a passing shortage, never the listener itself:
# a client that reset while queued (ECONNABORTED; Linux may also pass on network errors), or
# the descriptor table / buffers being full (EMFILE, ENFILE, ENOBUFS).
ACCEPT_TRANSIENT = frozenset({"ECONNABORTED", "ECONNRESET", "EPROTO", "EPERM", "EINTR", "EMFILE", "ENFILE",
                              "ENOBUFS", "ENOMEM", "EHOSTUNREACH", "ENETUNREACH", "ENETDOWN", "ETIMEDOUT"})


# getaddrinfo() reports its own EAI_* codes (negative on Linux, positive elsewhere), not errno.
_GAI_DESCRIPTIONS = {
    "EAI_NONAME": "name or service not known",
    "EAI_AGAIN": "temporary failure in name resolution",
    "EAI_FAIL": "name server failure",
    "EAI_NODATA": "no address for this name",
    "EAI_ADDRFAMILY": "no address in the requested family",
    "EAI_FAMILY": "address family not supported",
    "EAI_SERVICE": "service not known for this socket type",
    "EAI_MEMORY": "out of memory",
    "EAI_SYSTEM": "system error",
}


def gai_error_name(code: int | None) -> str:
    """The symbolic name of a getaddrinfo() error code (socket.EAI_* as this OS defines them)."""
    for name in _GAI_DESCRIPTIONS:
        if code is not None and getattr(socket, name, None) == code:
            return name
    return f"EAI {code}"


def describe_gaierror(exc: OSError) -> str:
    """`name or service not known (EAI_NONAME)` for a socket.gaierror."""
    name = gai_error_name(exc.errno)
    return f"{_GAI_DESCRIPTIONS.get(name, 'name resolution failed')} ({name})"


def from_oserror(action: str, exc: OSError) -> SockdiagError:
    """Turn an OSError into a one-line SockdiagError: `ACTION: description (ENAME)`."""
    if exc.errno is None:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            return TimeoutFailure(f"{action}: timed out")
        return SockdiagError(f"{action}: {text}")
    name = errno_name(exc.errno)
    return SockdiagError(f"{action}: {describe(exc.errno)}", status_for_errno_name(name))


# EPIPE from a send on a TCP connection is the peer's reset, not a pipe: the kernel has dropped the
# connection. Linux's tcp_reset() reports a RST that arrives in CLOSE_WAIT (after the peer's FIN) as
# EPIPE instead of ECONNRESET, and every later send on the dead socket says EPIPE too; macOS and the
# BSDs check "can send no more" before the pending error, so any send after a reset says EPIPE there.
# (Windows sockets report WSAECONNRESET.) The one EPIPE that is no reset is a send after this side's
# own shutdown(SHUT_WR): that socket still has its peer, a reset one has none (getpeername: ENOTCONN).
_RESET_AS_EPIPE = {LINUX: "connection reset by peer after its FIN"}
_OWN_SHUTDOWN = "this side had already shut down sending"


def _has_peer(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


def describe_connection_error(code: int, sock: socket.socket | None = None, system: str | None = None) -> str:
    """describe() for an error of a connected TCP socket, naming what the kernel did: EPIPE there is
    `connection reset by peer after its FIN (EPIPE)` on Linux, unless `sock` still has its peer
    (then this side had shut down sending). Without `sock`, EPIPE is taken for the reset."""
    name = errno_name(code, system)
    if name != "EPIPE":
        return describe(code, system)
    if sock is not None and _has_peer(sock):
        return f"{_OWN_SHUTDOWN} ({name})"
    return f"{_RESET_AS_EPIPE.get(system or SYSTEM, 'connection reset by peer')} ({name})"


def from_connection_error(action: str, exc: OSError, sock: socket.socket | None = None) -> SockdiagError:
    """from_oserror() for a send or receive on a connected TCP socket (see describe_connection_error):
    `send to 127.0.0.1:9000: connection reset by peer after its FIN (EPIPE)`."""
    if exc.errno is None:
        return from_oserror(action, exc)
    return SockdiagError(f"{action}: {describe_connection_error(exc.errno, sock)}",
                         status_for_errno_name(errno_name(exc.errno)))
