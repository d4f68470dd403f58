"""One ping attempt: a timed TCP connect, or a timed UDP datagram and its reply.

Each attempt gets a socket of its own, so a late answer to an earlier attempt (a reply that
missed its timeout) reaches a closed socket and is never taken for the current one. The path is
kept lean: everything is looked up once in __init__, and only connect() (or send + recv) sits
between the two perf_counter_ns() readings.
"""

from __future__ import annotations

import socket
from time import perf_counter_ns

from sockdiag import platform
from sockdiag.platform.errnos import from_oserror

RECEIVE_SIZE = 65535
_DRAIN_READS = 8

# An attempt's outcome: (rtt_ns or None, errno name or None, failure text or None, reply bytes or None)
Outcome = tuple


def _failure(exc: OSError, udp: bool = False) -> Outcome:
    """An attempt's OSError as an outcome. The socket timeout (-w) is a TimeoutError without an
    errno; the kernel's own ETIMEDOUT (SYN retries exhausted) has one and is named as such."""
    if exc.errno is None:
        return None, "ETIMEDOUT", "timed out", None
    name = platform.errno_name(exc.errno)
    if udp and name == "ECONNRESET":
        # UDP has no connection to reset: this is how Windows reports the ICMP port unreachable
        # that Linux and the BSDs report as ECONNREFUSED (WSAECONNRESET on a UDP socket).
        code = platform.errno_code("ECONNREFUSED")
        if code is not None:
            return None, "ECONNREFUSED", platform.describe(code), None
    return None, name, platform.describe(exc.errno), None


_SELF_CONNECT = (None, "ECONNREFUSED", "connection refused (self-connect: nothing listens on the port)", None)


class TcpAttempt:
    """A blocking connect with a timeout, timed; closed with RST (SO_LINGER 0) or FIN."""

    def __init__(self, family: int, sockaddr: tuple, timeout: float, close: str):
        self.family, self.sockaddr, self.timeout = family, sockaddr, timeout
        self._key = sockaddr[:2]
        self._linger = platform.linger_rst_value() if close == "rst" else None
        self._rst = platform.linger_rst_value()

    def __call__(self) -> Outcome:
        try:
            sock = socket.socket(self.family, socket.SOCK_STREAM)
        except OSError as exc:  # about this host, not the peer: no use trying again
            raise from_oserror("socket (tcp)", exc) from None
        try:
            sock.settimeout(self.timeout)
            start = perf_counter_ns()
            try:
                sock.connect(self.sockaddr)
            except OSError as exc:
                return _failure(exc)
            rtt = perf_counter_ns() - start
            try:
                if sock.getsockname()[:2] == self._key:
                    # Linux loopback: a connect from ephemeral port P to P with nothing listening
                    # meets its own SYN (simultaneous open, RFC 793 3.4) and "connects" to itself.
                    # The kernel hands out P only when nothing is bound to it: the port is closed.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, self._rst)
                    return _SELF_CONNECT
                if self._linger is not None:
                    # RST instead of FIN: this side keeps no TIME_WAIT socket per attempt
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, self._linger)
                else:
                    _drain(sock)
            except OSError:
                pass  # the peer reset already: nothing left to close gracefully
            return rtt, None, None, None
        finally:
            sock.close()


def _drain(sock: socket.socket) -> None:
    """--close fin: read what a greeting service already sent, so close() sends FIN (closing with
    unread data sends RST: RFC 2525 2.17). Non-blocking; ends at the first EAGAIN or EOF."""
    sock.setblocking(False)
    for _ in range(_DRAIN_READS):
        try:
            if not sock.recv(RECEIVE_SIZE):
                return
        except (BlockingIOError, InterruptedError):
            return


class UdpAttempt:
    """One datagram on a connected UDP socket and the first reply to it, timed from send to recv.

    Connected, so the kernel drops datagrams from anyone else and reports an ICMP port unreachable
    for ours as ECONNREFUSED on recv."""

    def __init__(self, family: int, sockaddr: tuple, timeout: float, payload: bytes):
        self.family, self.sockaddr, self.timeout, self.payload = family, sockaddr, timeout, payload

    def __call__(self) -> Outcome:
        try:
            sock = socket.socket(self.family, socket.SOCK_DGRAM)
        except OSError as exc:
            raise from_oserror("socket (udp)", exc) from None
        try:
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.sockaddr)  # sends nothing: fixes the peer
                start = perf_counter_ns()
                sock.send(self.payload)
                size = len(sock.recv(RECEIVE_SIZE))
            except OSError as exc:
                return _failure(exc, udp=True)
            return perf_counter_ns() - start, None, None, size
        finally:
            sock.close()
