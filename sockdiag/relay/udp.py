"""connect -u and listen -u: datagrams <-> stdin/stdout, one datagram never merged with another.

connect -u uses a *connected* UDP socket, so the kernel delivers an ICMP port unreachable for
our datagrams as ECONNREFUSED on the next recv/send: reported as `connection refused`, exit 1
(nc -u stays silent). Each stdin line is one datagram without its "\\n" or "\\r\\n", as the
tutorials' clients send input(); --raw sends each read chunk as read. --reply-wait sends one
datagram and waits for its reply before the next (the tutorials' request/response loop).

Received datagrams are printed one per line: a "\\n" follows each one that does not end with
one, so two datagrams never run together. listen -u -o json prints one JSON object per datagram.
listen -u still sends stdin lines to the last peer as they are (newline included).
"""

from __future__ import annotations

import base64
import select
import selectors
import socket
from collections import deque

from sockdiag import platform
from sockdiag.core import framing
from sockdiag.core.errors import SockdiagError, TimeoutFailure
from sockdiag.core.portspec import format_hostport
from sockdiag.core.render import json_line
from sockdiag.core.status import ExitStatus
from sockdiag.platform.errnos import from_oserror
from sockdiag.relay.access import format_peer, peer_parts
from sockdiag.relay.endpoints import bind_source, listen_candidates, open_listener, resolve, source_addresses
from sockdiag.relay.stdio import StdoutSink, open_stdin

MAX_DATAGRAM = 65507  # the largest UDP payload over IPv4 (65535 - 8 UDP - 20 IP header bytes)
RECEIVE_SIZE = 65535
_LINE = "stdin line (one UDP datagram)"
_JSON_KEYS = ("from", "port", "size", "data")
_JSON_KEYS_B64 = ("from", "port", "size", "data_b64")


# --- stdin -> datagrams -------------------------------------------------------------------------

class _LineDatagrams:
    """connect -u: stdin bytes -> one datagram per line, without its "\\n" or "\\r\\n". An empty
    line is an empty datagram; a last line without a newline is sent at end of input."""

    def __init__(self) -> None:
        # +1: a line's "\r" is counted before it is stripped; _checked() has the last word
        self._lines = framing.LineSplitter(MAX_DATAGRAM + 1, what=_LINE)

    def feed(self, data: bytes) -> list[bytes]:
        try:
            lines = self._lines.feed(data)
        except framing.FrameError:  # longer than MAX_DATAGRAM + 1 already: say the real maximum
            raise self._too_long() from None
        return [self._checked(line[:-1] if line.endswith(b"\r") else line) for line in lines]

    def finish(self) -> bytes | None:
        tail = self._lines.finish()
        return None if tail is None else self._checked(tail)

    @classmethod
    def _checked(cls, datagram: bytes) -> bytes:
        if len(datagram) > MAX_DATAGRAM:
            raise cls._too_long()
        return datagram

    @staticmethod
    def _too_long() -> framing.FrameError:
        return framing.FrameError(f"{_LINE} longer than the maximum of {MAX_DATAGRAM} bytes")


def _datagrams(splitter, data: bytes) -> list[bytes]:
    return [data] if splitter is None else splitter.feed(data)


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


# --- datagrams -> stdout ------------------------------------------------------------------------

def _as_text(datagram: bytes) -> bytes:
    """A datagram as printed: a "\\n" added unless it ends with one (an empty datagram is an empty line)."""
    return datagram if datagram.endswith(b"\n") else datagram + b"\n"


def _as_json(datagram: bytes, sockaddr) -> bytes:
    """One JSON Lines object for a datagram: data as text when it is UTF-8, else data_b64."""
    host, port = peer_parts(sockaddr)
    row = {"from": host, "port": port, "size": len(datagram)}
    try:
        row["data"] = datagram.decode("utf-8")
        keys = _JSON_KEYS
    except UnicodeDecodeError:
        row["data_b64"] = base64.b64encode(datagram).decode("ascii")
        keys = _JSON_KEYS_B64
    return (json_line(row, keys) + "\n").encode("utf-8")


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
        return run_connected(sock, env, args, peer)


def run_connected(sock: socket.socket, env, args, peer: str) -> int:
    """connect -u's work on a connected datagram socket (UDP, or a unix datagram socket)."""
    sock.setblocking(False)
    env.info(f"sending to {peer} ({_kind(sock)}) from {format_peer(sock.getsockname())}")
    client = _Client(sock, env, args, peer)
    client.run()
    env.info(f"closed, {client.bytes_in} bytes in, {client.bytes_out} bytes out")
    return ExitStatus.OK


def _kind(sock: socket.socket) -> str:
    return "unix datagram" if sock.family == getattr(socket, "AF_UNIX", None) else "udp"


class _Client:
    """connect -u's loop: stdin -> datagrams out, datagrams in -> stdout.

    Timers: with --reply-wait, `awaiting` is when the wait for the last datagram's reply ends
    (stdin is not read meanwhile); once stdin has ended and no reply is awaited, `deadline` is
    when to quit unless another datagram arrives (--wait); -i counts from the last datagram."""

    def __init__(self, sock: socket.socket, env, args, peer: str):
        self.sock, self.env, self.args, self.peer = sock, env, args, peer
        self.sink = StdoutSink(env)
        self.splitter = None if args.raw else _LineDatagrams()
        self.pending: deque[bytes] = deque()
        self.bytes_in = self.bytes_out = 0
        self.awaiting: float | None = None
        self.deadline: float | None = None
        self.last_active = env.clock()
        self.stdin = None
        self.stdin_open = not args.no_stdin  # -d: send nothing, only print what arrives
        self._stdin_registered = False

    def run(self) -> None:
        self.stdin = open_stdin(self.env) if self.stdin_open else None
        try:
            with platform.relay_selector() as selector:
                selector.register(self.sock, selectors.EVENT_READ, "sock")
                while not self._step(selector):
                    pass
        finally:
            if self.stdin is not None:
                self.stdin.close()

    def _step(self, selector) -> bool:
        """One round of the loop; True when it is over."""
        self._send_pending()
        self._watch_stdin(selector)
        if not self.stdin_open and not self.pending and self.awaiting is None and self.deadline is None:
            self.deadline = self.env.clock() + self.args.wait
        timers = [t for t in (self.awaiting, self.deadline, self._idle_end()) if t is not None]
        events = selector.select(max(0.0, min(timers) - self.env.clock()) if timers else None)
        for key, _mask in events:
            if key.data == "sock":
                self._receive()
            else:
                self._read_stdin()
        return self._timers_expired()

    def _send_pending(self) -> None:
        while self.pending and self.awaiting is None:
            datagram = self.pending.popleft()
            _send(self.sock, datagram, self.peer)
            self.bytes_out += len(datagram)
            self.last_active = self.env.clock()
            if self.args.reply_wait is not None:
                self.awaiting = self.last_active + self.args.reply_wait

    def _watch_stdin(self, selector) -> None:
        """Read stdin only when its datagrams can go out: with --reply-wait, one at a time."""
        wanted = self.stdin_open and not self.pending and self.awaiting is None
        if wanted != self._stdin_registered:
            if wanted:
                selector.register(self.stdin.fd, selectors.EVENT_READ, "stdin")
            else:
                selector.unregister(self.stdin.fd)
            self._stdin_registered = wanted

    def _read_stdin(self) -> None:
        data = self.stdin.read(MAX_DATAGRAM if self.args.raw else 65536)
        self.last_active = self.env.clock()
        if data:
            self.pending.extend(_datagrams(self.splitter, data))
            return
        self.stdin_open = False
        tail = self.splitter.finish() if self.splitter is not None else None
        if tail is not None:
            self.pending.append(tail)

    def _receive(self) -> None:
        datagrams, error = _receive_all(self.sock, self.peer)
        if datagrams:
            self.sink.write(b"".join(_as_text(datagram) for datagram in datagrams))
        if error is not None:
            raise error
        if not datagrams:
            return
        self.bytes_in += sum(map(len, datagrams))
        self.last_active = self.env.clock()
        self.awaiting = None  # the reply came (UDP cannot tell which datagram it answers)
        if self.deadline is not None:
            self.deadline = self.last_active + self.args.wait

    def _idle_end(self) -> float | None:
        return self.last_active + self.args.idle_timeout if self.args.idle_timeout else None

    def _timers_expired(self) -> bool:
        now = self.env.clock()
        if self.awaiting is not None and now >= self.awaiting:
            self.env.info(f"no reply from {self.peer} within {self.args.reply_wait:g} s (--reply-wait)")
            self.awaiting = None
        if self.deadline is not None and now >= self.deadline:
            return True
        if self.args.idle_timeout and now - self.last_active >= self.args.idle_timeout:
            raise TimeoutFailure(f"udp {self.peer}: idle for {self.args.idle_timeout:g} s (-i): closed")
        return False


def _receive_all(sock: socket.socket, peer: str) -> tuple[list[bytes], SockdiagError | None]:
    """Every datagram waiting on the connected socket (an empty one too), and the error that
    ended the reading, if any: the datagrams before it are still printed."""
    datagrams: list[bytes] = []
    while True:
        try:
            datagrams.append(sock.recv(RECEIVE_SIZE))
        except BlockingIOError:
            return datagrams, None
        except OSError as exc:  # ECONNREFUSED: the ICMP port unreachable for an earlier datagram
            return datagrams, from_oserror(f"connect {peer} (udp)", exc)


# --- listen -u ----------------------------------------------------------------------------------

def run_udp_listen(args, env, acl) -> int:
    """Print datagrams from any permitted peer; stdin lines go to the last peer; --echo echoes.
    Runs until interrupted or -i; a terminal's end of input (Ctrl-D) also ends it."""
    sock = open_listener(listen_candidates(args, socket.SOCK_DGRAM), socket.SOCK_DGRAM)
    with sock:
        sock.setblocking(False)
        env.info(f"listening on {format_hostport(*sock.getsockname()[:2])} (udp)")
        return listen_loop(sock, env, args, acl)


def _listen_splitter(args):
    if args.raw:
        return None
    return framing.LineSplitter(MAX_DATAGRAM, keep_newline=True, what=_LINE)


def listen_loop(sock: socket.socket, env, args, acl) -> int:
    """listen -u's work on a bound datagram socket (UDP, or a unix datagram socket)."""
    sink, splitter = StdoutSink(env), _listen_splitter(args)
    stdin = open_stdin(env) if not (args.echo or args.no_stdin) else None
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
            sink.write(_as_json(data, addr) if args.output == "json" else _as_text(data))
