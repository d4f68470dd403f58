"""connect -u and listen -u: datagrams <-> stdin/stdout.

connect -u uses a *connected* UDP socket, so the kernel delivers an ICMP port unreachable for
our datagrams as ECONNREFUSED on the next recv/send: reported as `connection refused`, exit 1
(nc -u stays silent). Each stdin line (newline included) is one datagram; --raw sends each read
chunk instead. Received datagrams are written to stdout unchanged.
"""

from __future__ import annotations

import select
import selectors
import socket

from sockdiag import platform
from sockdiag.core import framing
from sockdiag.core.errors import SockdiagError, TimeoutFailure
from sockdiag.platform.errnos import from_oserror
from sockdiag.core.portspec import format_hostport
from sockdiag.relay.endpoints import bind_source, listen_candidates, open_listener, resolve, source_addresses
from sockdiag.relay.stdio import StdoutSink, open_stdin
from sockdiag.relay.access import format_peer, peer_parts
from sockdiag.core.status import ExitStatus

MAX_DATAGRAM = 65507  # the largest UDP payload over IPv4 (65535 - 8 UDP - 20 IP header bytes)
RECEIVE_SIZE = 65535


class _Counters:
    def __init__(self) -> None:
        self.bytes_in = self.bytes_out = 0


def _datagrams(splitter, data: bytes) -> list[bytes]:
    return [data] if splitter is None else splitter.feed(data)


def _splitter(args):
    if args.raw:
        return None
    return framing.LineSplitter(MAX_DATAGRAM, keep_newline=True, what="stdin line (one UDP datagram)")


def _send(sock: socket.socket, data: bytes, peer: str, address=None) -> None:
    while True:
        try:
            if address is None:
                sock.send(data)
            else:
                sock.sendto(data, address)
            return
        except BlockingIOError:  # the send buffer is full (rare for UDP): wait for room
            select.select([], [sock], [], 1.0)
        except OSError as exc:
            raise from_oserror(f"send to {peer} (udp)", exc) from None


# --- connect -u ---------------------------------------------------------------------------------

def run_udp_connect(args, env) -> int:
    targets = resolve(args.host, args.port, args.family, socket.SOCK_DGRAM)
    sources = source_addresses(args, socket.SOCK_DGRAM)
    if sources:
        targets = [t for t in targets if t[0] in sources]
        if not targets:
            raise SockdiagError(f"connect {args.host}: no address in the family of source {args.source}")
    af, sockaddr = targets[0]  # nothing answers a UDP connect, so there is no failing over
    peer = format_peer(sockaddr)
    with socket.socket(af, socket.SOCK_DGRAM) as sock:
        if sources:
            bind_source(sock, sources[af], reuse=False)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            raise from_oserror(f"connect {peer} (udp)", exc) from None
        sock.setblocking(False)
        env.info(f"sending to {peer} (udp) from {format_peer(sock.getsockname())}")
        counters = _connect_loop(sock, env, args, peer)
    env.info(f"closed, {counters.bytes_in} bytes in, {counters.bytes_out} bytes out")
    return ExitStatus.OK


def _connect_loop(sock: socket.socket, env, args, peer: str) -> _Counters:
    counters, sink, splitter = _Counters(), StdoutSink(env), _splitter(args)
    stdin = open_stdin(env)
    deadline = None  # after stdin EOF: quit when no datagram arrived for --wait seconds
    last_active = env.clock()
    try:
        with platform.relay_selector() as selector:
            selector.register(stdin.fd, selectors.EVENT_READ, "stdin")
            selector.register(sock, selectors.EVENT_READ, "sock")
            while True:
                now = env.clock()
                limits = [t for t in (deadline, last_active + args.idle_timeout if args.idle_timeout else None)
                          if t is not None]
                events = selector.select(max(0.0, min(limits) - now) if limits else None)
                if not events:
                    if deadline is not None and env.clock() >= deadline:
                        return counters
                    if args.idle_timeout and env.clock() - last_active >= args.idle_timeout:
                        raise TimeoutFailure(f"udp {peer}: idle for {args.idle_timeout:g} s (-i): closed")
                    continue
                for key, _mask in events:
                    if key.data == "sock":
                        received = _receive_all(sock, sink, peer)
                        if received:
                            counters.bytes_in += received
                            last_active = env.clock()
                            if deadline is not None:
                                deadline = last_active + args.wait
                        continue
                    data = stdin.read(MAX_DATAGRAM if args.raw else 65536)
                    datagrams = _datagrams(splitter, data) if data else []
                    if not data:
                        tail = splitter.finish() if splitter is not None else None
                        datagrams = [tail] if tail else []
                        selector.unregister(stdin.fd)
                        deadline = env.clock() + args.wait
                    for datagram in datagrams:
                        _send(sock, datagram, peer)
                        counters.bytes_out += len(datagram)
                    last_active = env.clock()
    finally:
        stdin.close()


def _receive_all(sock: socket.socket, sink: StdoutSink, peer: str) -> int:
    total = 0
    while True:
        try:
            data = sock.recv(RECEIVE_SIZE)
        except BlockingIOError:
            return total
        except OSError as exc:  # ECONNREFUSED: the ICMP port unreachable for an earlier datagram
            raise from_oserror(f"connect {peer} (udp)", exc) from None
        sink.write(data)
        total += len(data)


# --- listen -u ----------------------------------------------------------------------------------

def run_udp_listen(args, env, acl) -> int:
    """Print datagrams from any permitted peer; stdin lines go to the last peer; --echo echoes.
    Runs until interrupted or -i; a terminal's end of input (Ctrl-D) also ends it."""
    sock = open_listener(listen_candidates(args, socket.SOCK_DGRAM), socket.SOCK_DGRAM)
    with sock:
        sock.setblocking(False)
        env.info(f"listening on {format_hostport(*sock.getsockname()[:2])} (udp)")
        return _listen_loop(sock, env, args, acl)


def _listen_loop(sock: socket.socket, env, args, acl) -> int:
    sink, splitter = StdoutSink(env), _splitter(args)
    stdin = open_stdin(env) if not args.echo else None
    last_peer = None
    # -i counts from the bind: a listener nobody ever sends to ends too (it used to wait forever).
    last_active = env.clock()
    stdin_registered = False
    try:
        with platform.relay_selector() as selector:
            selector.register(sock, selectors.EVENT_READ, "sock")
            while True:
                if stdin is not None and last_peer is not None and not stdin_registered:
                    selector.register(stdin.fd, selectors.EVENT_READ, "stdin")  # nobody to send to before
                    stdin_registered = True
                idle = args.idle_timeout
                events = selector.select(max(0.0, last_active + idle - env.clock()) if idle else None)
                if not events:
                    if idle and env.clock() - last_active >= idle:
                        raise TimeoutFailure(f"udp: no datagram for {args.idle_timeout:g} s (-i)")
                    continue
                for key, _mask in events:
                    if key.data == "sock":
                        last_peer = _serve_datagrams(sock, env, args, acl, sink, last_peer)
                        last_active = env.clock()
                        continue
                    data = stdin.read(MAX_DATAGRAM if args.raw else 65536)
                    if not data:
                        selector.unregister(stdin.fd)
                        stdin.close()
                        tail = splitter.finish() if splitter is not None else None
                        if tail:
                            _send(sock, tail, format_peer(last_peer), last_peer)
                        stdin = None
                        if env.stdin_isatty:
                            return ExitStatus.OK
                        continue
                    for datagram in _datagrams(splitter, data):
                        _send(sock, datagram, format_peer(last_peer), last_peer)
                    last_active = env.clock()
    finally:
        if stdin is not None:
            stdin.close()


def _serve_datagrams(sock, env, args, acl, sink: StdoutSink, last_peer):
    while True:
        try:
            data, addr = sock.recvfrom(RECEIVE_SIZE)
        except BlockingIOError:
            return last_peer
        except OSError as exc:
            # ICMP unreachable for an earlier reply (Windows reports it on recvfrom): one peer's
            # problem, never the server's.
            if exc.errno is not None and platform.errno_name(exc.errno) in platform.CONNECTION_LOST | {"ECONNREFUSED"}:
                env.info(f"udp: {platform.describe(exc.errno)}")
                continue
            raise from_oserror("receive (udp)", exc) from None
        host, _ = peer_parts(addr)
        if not acl.permits(host):
            env.info(f"dropped datagram from {format_peer(addr)} (--allow/--deny)")
            continue
        if addr != last_peer:
            env.info(f"datagram from {format_peer(addr)}")
            last_peer = addr
        if args.echo:
            try:
                sock.sendto(data, addr)
            except OSError as exc:
                env.info(f"echo to {format_peer(addr)}: {from_oserror('send', exc).message}")
        else:
            sink.write(data)
