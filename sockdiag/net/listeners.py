"""Opening a listening (TCP) or bound (UDP) socket on the first address the OS accepts, and
sorting the failures of accept() on it: listen and forward both serve clients from one."""

from __future__ import annotations

import socket

from sockdiag import platform
from sockdiag.core.errors import SockdiagError
from sockdiag.core.portspec import format_hostport
from sockdiag.platform.errnos import from_oserror

# accept() failing with one of these leaves the queued client readable: pause rather than spin.
OUT_OF_RESOURCES = frozenset({"EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"})


class ListenFailure(SockdiagError):
    """open_listener() could not bind: the one-line message, and the errno's name for callers that
    treat some causes differently (forward skips ::1 on a host without IPv6)."""

    def __init__(self, message: str, status, errno_name: str):
        super().__init__(message, status)
        self.errno_name = errno_name


def open_listener(candidates: list[tuple], socktype: int) -> socket.socket:
    """A bound socket (listening, for TCP) on the first candidate the OS accepts. Address in use
    or permission denied is reported at once; a missing IPv6 stack moves on to the next."""
    for index, (af, sockaddr, v6only) in enumerate(candidates):
        sock = None
        try:
            sock = socket.socket(af, socktype)
            if socktype == socket.SOCK_STREAM:
                # Not for UDP: on Linux SO_REUSEADDR would let two UDP servers share the port.
                platform.set_server_reuse(sock)
            if af == socket.AF_INET6:
                platform.set_v6only(sock, v6only)
            sock.bind(sockaddr)
            if socktype == socket.SOCK_STREAM:
                sock.listen(socket.SOMAXCONN)  # a burst of clients must not overflow the queue
            return sock
        except OSError as exc:
            if sock is not None:
                sock.close()
            name = platform.errno_name(exc.errno) if exc.errno is not None else ""
            if index + 1 < len(candidates) and name in ("EAFNOSUPPORT", "EADDRNOTAVAIL"):
                continue
            failure = from_oserror(f"listen {format_hostport(*sockaddr[:2])}", exc)
            raise ListenFailure(failure.message, failure.status, name) from None
        except BaseException:
            if sock is not None:
                sock.close()
            raise
    raise SockdiagError("listen: no address to bind")


def accept_out_of_resources(exc: OSError) -> bool:
    """A failed accept(): True when the process or system ran out of resources (pause accepting),
    False for a failure that concerns one connection (go on); any other failure is raised."""
    name = platform.errno_name(exc.errno) if exc.errno is not None else ""
    if name not in platform.ACCEPT_TRANSIENT:
        raise from_oserror("accept", exc) from None
    return name in OUT_OF_RESOURCES
