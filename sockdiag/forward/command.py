"""sockdiag forward: check the options, resolve the target, open the listeners (loopback by
default), run the TCP loop (forward.server) or the UDP one (forward.datagrams), and close every
socket, pipe and file on the way out, whatever ends the run (Ctrl-C, SIGTERM, an error)."""

from __future__ import annotations

import socket

from sockdiag import platform
from sockdiag.core.errors import SockdiagError, UsageError
from sockdiag.core.portspec import format_hostport, unbracket
from sockdiag.forward.config import ForwardConfig
from sockdiag.forward.datagrams import UdpForwarder
from sockdiag.forward.dump import Dump
from sockdiag.forward.report import ForwardReport
from sockdiag.forward.server import TcpForwarder
from sockdiag.net.access import AccessList
from sockdiag.net.listeners import ListenFailure, open_listener
from sockdiag.net.proxy import proxy_from_args
from sockdiag.net.resolve import resolve
from sockdiag.platform.errnos import from_oserror

_PORT_ZERO_TRIES = 5  # LPORT 0: the port 127.0.0.1 got may be taken on ::1; pick again this often
_NO_FAMILY = frozenset({"EAFNOSUPPORT", "EADDRNOTAVAIL"})
_DESCRIPTORS = 65536  # per connection: two sockets and two pipes; raise the soft limit toward this


def run(args, env) -> int:
    socktype = socket.SOCK_DGRAM if args.udp else socket.SOCK_STREAM
    acl = AccessList.parse(args.allow, args.deny, args.allowfile, args.denyfile)
    proxy = proxy_from_args(args)
    target_name = format_hostport(_unbracket(args.host), args.port)
    if proxy is not None:
        if args.udp:
            raise UsageError("-x/--proxy carries TCP only: not with -u")
        targets = []  # the proxy resolves the target's name, as nc -x does

        def via_proxy(timeout):
            return proxy.open(args.host, args.port, timeout)
    else:
        targets = resolve(args.host, args.port, args.family, socktype)
        via_proxy = None
    platform.raise_open_file_limit(_DESCRIPTORS)
    dump = _open_dump(args.dump) if args.dump else None
    listeners: list[socket.socket] = []
    forwarder = None
    try:
        listeners = _open_listeners(args, socktype)
        config = ForwardConfig(targets=targets, target_name=target_name, acl=acl, max_clients=args.max_clients,
                               connect_timeout=args.timeout, idle=args.idle_timeout,
                               zero_copy=dump is None and platform.zero_copy_supported(), dump=dump,
                               proxy=via_proxy)
        report = ForwardReport(env)
        via = f" through {proxy.label}" if proxy is not None else ""
        for sock in listeners:
            report.listening(format_hostport(*sock.getsockname()[:2]), target_name + via, args.udp)
        forwarder = (UdpForwarder if args.udp else TcpForwarder)(listeners, env, config)
        return forwarder.run()
    finally:
        if forwarder is not None:
            forwarder.close()
        for sock in listeners:
            sock.close()
        if dump is not None:
            dump.close()


def _unbracket(host: str) -> str:
    return unbracket(host)


def _open_dump(path: str) -> Dump:
    try:
        return Dump(open(path, "wb"))  # closed by run()'s finally
    except OSError as exc:
        raise from_oserror(f"--dump {path}", exc) from None


def listen_addresses(args, socktype: int) -> list[tuple]:
    """(family, sockaddr, v6only, optional) to bind, in order. Default: 127.0.0.1 and ::1, as
    ssh -L; ::1 is optional (skipped on a host without IPv6). LADDR: each address it names."""
    port = args.lport
    if args.laddr is not None:
        found = resolve(args.laddr, port, args.family, socktype, passive=True)
        return [(af, sockaddr, args.family == 6, False) for af, sockaddr in found]
    out = []
    if args.family != 6:
        out.append((socket.AF_INET, ("127.0.0.1", port), False, False))
    if args.family != 4:
        out.append((socket.AF_INET6, ("::1", port, 0, 0), True, args.family is None))
    return out


def _open_listeners(args, socktype: int) -> list[socket.socket]:
    """Bind every address of listen_addresses() on one port (with LPORT 0, the one the first got)."""
    addresses = listen_addresses(args, socktype)
    for attempt in range(_PORT_ZERO_TRIES):
        socks: list[socket.socket] = []
        try:
            for af, sockaddr, v6only, optional in addresses:
                if socks:  # LPORT 0: the same port everywhere
                    sockaddr = (sockaddr[0], socks[0].getsockname()[1], *sockaddr[2:])
                try:
                    socks.append(open_listener([(af, sockaddr, v6only)], socktype))
                except ListenFailure as failure:
                    if optional and failure.errno_name in _NO_FAMILY:
                        continue
                    raise
            if not socks:
                raise SockdiagError("listen: no address to bind")
            return socks
        except ListenFailure as failure:
            for sock in socks:
                sock.close()
            if not (args.lport == 0 and socks and failure.errno_name == "EADDRINUSE"
                    and attempt + 1 < _PORT_ZERO_TRIES):
                raise
        except BaseException:
            for sock in socks:
                sock.close()
            raise
    raise SockdiagError("listen: no address to bind")
