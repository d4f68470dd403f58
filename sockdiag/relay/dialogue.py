"""Request/response over one connection: --frame-mode ascii-ack and listen --exec-each.

The stream relay (relay.stream) moves both directions independently. Some tutorial protocols
cannot be spoken that way: in the "simple SSH" of the socket tutorials the sender of a reply
writes its length in decimal, waits for the receiver's acknowledgement (`ok`), and only then
writes the body; and a command server answers each message with one reply. A Dialogue does one
exchange at a time on a blocking socket:

  connect: for each stdin line (without its terminator, as the tutorials' input() gives it):
           send it, then read one reply and print it; after stdin EOF the write side stays open
           until the last reply has been acknowledged and read.
  listen:  for each message received: print it and answer with the next stdin line, or with
           --exec-each, run CMD with the message on its stdin and answer with its output.

A message is framed as the --frame options say (FrameSpec: length, json or ascii-ack; --frame-dir
says which way), or raw: sent as it is, and received as what one recv() returns, which is how the
tutorial programs read (they loop on recv(1024) and treat each read as one message).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading

from sockdiag import platform
from sockdiag.core import framing
from sockdiag.core.errors import SockdiagError, TimeoutFailure
from sockdiag.core.framing import FrameError, FrameSpec
from sockdiag.platform.errnos import from_connection_error, from_oserror

RAW_CHUNK = 65536
_DIGITS_MAX = 20  # a decimal length longer than this is not a length


class Dialogue:
    """One connection, one exchange at a time. Raises FrameError for a malformed message and
    SockdiagError for a connection that fails; returns None from receive() at the peer's EOF."""

    def __init__(self, sock: socket.socket, spec: FrameSpec, peer: str, idle: float | None = None,
                 on_header=None):
        self.sock, self.spec, self.peer, self.on_header = sock, spec, peer, on_header
        sock.setblocking(True)
        sock.settimeout(idle)
        self.idle = idle
        self._buffer = bytearray()
        self.bytes_in = self.bytes_out = 0

    # --- sending ----------------------------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        """Send one message, framed if this side sends frames."""
        if not self.spec.sends_frames:
            self._sendall(payload)
        elif self.spec.mode == "ascii-ack":
            if len(payload) > self.spec.max_frame:
                raise FrameError(f"message of {len(payload)} bytes is larger than the maximum of "
                                 f"{self.spec.max_frame}")
            self._sendall(str(len(payload)).encode("ascii"))
            ack = self._read_exactly(len(self.spec.ack), "acknowledgement")
            if ack is None:
                raise SockdiagError(f"receive from {self.peer}: connection closed before the acknowledgement")
            if ack != self.spec.ack:
                raise FrameError(f"expected the acknowledgement {self.spec.ack!r}, got {ack!r}")
            self._sendall(payload)
        else:
            self._sendall(self.spec.encode(payload))

    def finish_sending(self) -> None:
        """Half-close: no more messages from this side."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    # --- receiving --------------------------------------------------------------------------------

    def receive(self) -> bytes | None:
        """One message as it should be printed (a length-mode frame as a line), or None at EOF."""
        if not self.spec.reads_frames:
            return self._receive_raw()
        if self.spec.mode == "ascii-ack":
            return self._receive_ascii_ack()
        header = self._read_exactly(self.spec.header.size, "frame header")
        if header is None:
            return None
        decoder = self.spec.decoder()
        items = decoder.frames(header)
        while not items:  # read exactly what the frame needs, never past it
            data = self._read_exactly(decoder.needed, "frame")
            if data is None:
                decoder.close()  # raises: the stream ended inside the frame
                return None
            items = decoder.frames(data)
        data, meta = self.spec.printable(items[0])
        if meta is not None and self.on_header is not None:
            self.on_header(meta)
        return data

    def _receive_raw(self) -> bytes | None:
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            return data
        data = self._recv(RAW_CHUNK)
        return data or None

    def _receive_ascii_ack(self) -> bytes | None:
        text = self._buffer[:] if self._buffer else b""
        self._buffer.clear()
        if not text:
            text = self._recv(_DIGITS_MAX + 1)
            if not text:
                return None
        if not (len(text) <= _DIGITS_MAX and bytes(text).isdigit()):
            raise FrameError(f"expected a decimal length, got {bytes(text[:_DIGITS_MAX])!r}")
        length = int(text)
        if length > self.spec.max_frame:
            raise FrameError(f"announced length {length} is more than the maximum of {self.spec.max_frame}")
        self._sendall(self.spec.ack)
        body = self._read_exactly(length, "message") if length else b""
        if body is None:
            raise FrameError(f"stream ended inside a message of {length} bytes")
        return body

    # --- socket primitives ------------------------------------------------------------------------

    def _read_exactly(self, size: int, what: str) -> bytes | None:
        while len(self._buffer) < size:
            data = self._recv(max(size - len(self._buffer), 1))
            if not data:
                if self._buffer:
                    raise FrameError(f"stream ended inside a {what} ({len(self._buffer)} of {size} bytes)")
                return None
            self._buffer += data
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def _recv(self, size: int) -> bytes:
        try:
            data = self.sock.recv(size)
        except TimeoutError:
            raise TimeoutFailure(f"connection with {self.peer} idle for {self.idle:g} s (-i): closed") from None
        except OSError as exc:
            raise from_oserror(f"receive from {self.peer}", exc) from None
        self.bytes_in += len(data)
        return data

    def _sendall(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise TimeoutFailure(f"connection with {self.peer} idle for {self.idle:g} s (-i): closed") from None
        except OSError as exc:
            raise from_connection_error(f"send to {self.peer}", exc, self.sock) from None
        self.bytes_out += len(data)


def header_note(peer: str, env):
    """The -v line for a json-mode header."""
    return lambda meta: env.info(f"frame header from {peer}: {json.dumps(meta)}")


# --- the client side: connect ---------------------------------------------------------------------

def converse(dialogue: Dialogue, env) -> None:
    """connect: each stdin line is one request, each reply is printed before the next request."""
    stdin = env.stdin
    splitter = framing.LineSplitter(dialogue.spec.max_frame, what="stdin line")
    done = False
    while not done:
        _wait_for_stdin(env, dialogue)
        chunk = stdin.read1(RAW_CHUNK) if hasattr(stdin, "read1") else stdin.read(RAW_CHUNK)
        lines = splitter.feed(chunk) if chunk else []
        if not chunk:
            last = splitter.finish()
            lines += [last] if last is not None else []
            done = True
        for line in lines:
            dialogue.send(line.removesuffix(b"\r"))
            reply = dialogue.receive()
            if reply is None:
                return  # the peer closed: nothing more will be answered
            env.write(reply)
            env.flush()
    env.flush()
    if dialogue.spec.reads_frames:
        # Every request has had its reply: the session is over. No half-close first: a framed
        # reply may need our acknowledgement, and a tutorial server that loops on the empty read
        # would announce another reply we could not acknowledge.
        return
    dialogue.finish_sending()
    while (reply := dialogue.receive()) is not None:  # raw replies: what the peer still says
        env.write(reply)
    env.flush()


def _wait_for_stdin(env, dialogue: Dialogue) -> None:
    """-i counts while we wait for the next request on stdin too (a terminal, a slow pipe)."""
    if dialogue.idle is None or not env.real_fds:
        return
    import select

    try:
        fd = env.stdin.fileno()
    except (OSError, ValueError, AttributeError):
        return
    try:
        ready, _, _ = select.select([fd], [], [], dialogue.idle)
    except (OSError, ValueError):
        return  # not selectable (Windows console): no idle limit while reading stdin
    if not ready:
        raise TimeoutFailure(f"connection with {dialogue.peer} idle for {dialogue.idle:g} s (-i): closed")


# --- the server side: listen ----------------------------------------------------------------------

class EachCommand:
    """--exec-each: CMD once per message, the message on its stdin, stdout (and stderr) the reply.
    Each run leads its own process group; the ones still running when the server stops are
    stopped with it (SIGTERM, then SIGKILL)."""

    def __init__(self, argv, with_stderr: bool, env_vars: dict | None = None):
        self.argv, self.with_stderr, self.env_vars = argv, with_stderr, env_vars
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def run(self, message: bytes, extra_env: dict) -> bytes:
        proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT if self.with_stderr else None,
                                env=dict(os.environ, **extra_env), **platform.child_group_options())
        with self._lock:
            self._running.add(proc)
        try:
            out, _ = proc.communicate(message)
        finally:
            with self._lock:
                self._running.discard(proc)
        return out

    def stop_all(self) -> None:
        from sockdiag.relay.children import stop_group

        with self._lock:
            running = list(self._running)
        for proc in running:
            stop_group(proc.pid)


def answer(dialogue: Dialogue, env, command: EachCommand | None, extra_env: dict) -> None:
    """listen: print each message and answer it (the next stdin line, or --exec-each's output)."""
    replies = _stdin_lines(env, dialogue.spec.max_frame) if command is None else None
    while (message := dialogue.receive()) is not None:
        if command is not None:
            dialogue.send(command.run(message, extra_env))
            continue
        env.write(message)
        env.flush()
        reply = next(replies, None)
        if reply is None:
            break
        dialogue.send(reply)
    dialogue.finish_sending()


def _stdin_lines(env, max_line: int):
    splitter = framing.LineSplitter(max_line, what="stdin line")
    stdin = env.stdin
    while True:
        chunk = stdin.read1(RAW_CHUNK) if hasattr(stdin, "read1") else stdin.read(RAW_CHUNK)
        if not chunk:
            last = splitter.finish()
            if last is not None:
                yield last
            return
        yield from splitter.feed(chunk)


def serve_dialogues(listener: socket.socket, env, spec: FrameSpec, acl, *, keep_open: bool,
                    max_clients: int | None, idle: float | None, command: EachCommand | None,
                    accept_timeout: float | None = None, tls=None) -> int:
    """listen with a dialogue: one client (the listener then closes), or with -k one thread per
    client (a dialogue blocks between messages; --max-clients bounds the threads). `tls`
    (relay.tlsrelay.ServerTls, --tls): each client's dialogue runs over the plain end of its
    TLS bridge, as listen's other servers do; the command's environment keeps the TCP addresses."""
    from sockdiag.core.status import ExitStatus
    from sockdiag.relay.access import peer_parts
    from sockdiag.relay.acceptor import accept_one

    if not keep_open:
        conn, peer = accept_one(listener, env, acl, accept_timeout)
        listener.close()
        addresses = _env_of(conn, peer_parts)
        if tls is not None:
            conn = tls.wrap(conn, conn.getpeername())  # the handshake, at once: a failure ends the listen
        with conn:
            env.info(f"connection from {peer}")
            try:
                answer(Dialogue(conn, spec, peer, idle, header_note(peer, env)), env, command, addresses)
            finally:
                if command is not None:
                    command.stop_all()
                if tls is not None:
                    tls.close()
        return ExitStatus.OK
    active: set[socket.socket] = set()
    lock = threading.Lock()

    def serve_one(conn: socket.socket, peer: str, addresses: dict) -> None:
        try:
            with conn:
                answer(Dialogue(conn, spec, peer, idle, header_note(peer, env)), env, command, addresses)
            env.info(f"closed {peer}")
        except SockdiagError as exc:
            env.warn(f"{peer}: {exc.message}")
        finally:
            with lock:
                active.discard(conn)

    try:
        while True:
            conn, peer = accept_one(listener, env, acl)
            with lock:
                full = max_clients is not None and len(active) >= max_clients
                if not full:
                    active.add(conn)
            if full:
                env.warn(f"too many clients (--max-clients {max_clients}): closed connection from {peer}")
                conn.close()
                continue
            env.info(f"connection from {peer}")
            addresses = _env_of(conn, peer_parts)
            if tls is not None:  # the handshake runs in the bridge's thread: no client holds up accept()
                plain = tls.wrap(conn, conn.getpeername())
                with lock:
                    active.discard(conn)
                    active.add(plain)
                conn = plain
            threading.Thread(target=serve_one, args=(conn, peer, addresses), daemon=True,
                             name="sockdiag-dialogue").start()
    finally:
        if command is not None:
            command.stop_all()
        with lock:
            for conn in list(active):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if tls is not None:
            tls.close()


def _env_of(conn: socket.socket, peer_parts) -> dict:
    local_host, local_port = peer_parts(conn.getsockname())
    remote_host, remote_port = peer_parts(conn.getpeername())
    return {"SOCKDIAG_REMOTE_ADDR": remote_host, "SOCKDIAG_REMOTE_PORT": str(remote_port),
            "SOCKDIAG_LOCAL_ADDR": local_host, "SOCKDIAG_LOCAL_PORT": str(local_port),
            "SOCKDIAG_PROTO": "unix" if conn.family == getattr(socket, "AF_UNIX", None) else "tcp"}
