"""listen's servers: -k (many clients at once), --echo, --exec/--sh-exec, and --allow/--deny.

One thread, one poll loop, non-blocking sockets. Chosen over a thread per client (Python's
socketserver.ThreadingMixIn) because memory stays bounded by one 64 KiB buffer per busy client
instead of a thread stack and buffer each, two cores are not fought over by 200 threads and
the GIL, and there is no shutdown race: Ctrl-C ends one loop. Chosen over asyncio because the
loop is small and asyncio adds start-up time and a layer of buffering that backpressure would
have to see through. A client that cannot take more output is not read from (echo) or stops
stdin from being read (relay), so no buffer grows without bound.
"""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import threading

from sockdiag import platform
from sockdiag.core import framing
from sockdiag.platform.errnos import from_oserror
from sockdiag.relay.access import AccessList, format_peer, peer_parts
from sockdiag.relay.stdio import StdoutSink, open_stdin
from sockdiag.core.status import ExitStatus

CLIENT_CHUNK = 64 * 1024  # one recv per ready client; also the most an echo client may owe
STDIN_HIGH_WATER = 1024 * 1024  # stop reading stdin while a client owes more than this
_ACCEPT_BURST = 64


def accept_one(listener: socket.socket, env, acl: AccessList) -> tuple[socket.socket, str]:
    """Block until one permitted client connects (others are closed, logged with -v)."""
    listener.setblocking(True)
    while True:
        try:
            conn, addr = listener.accept()
        except OSError as exc:
            if exc.errno is not None and platform.errno_name(exc.errno) in platform.ACCEPT_TRANSIENT:
                env.info(f"accept: {platform.describe(exc.errno)}")
                continue
            raise from_oserror("accept", exc) from None
        host, _ = peer_parts(addr)
        if acl.permits(host):
            return conn, format_peer(addr)
        env.info(f"refused connection from {format_peer(addr)} (--allow/--deny)")
        conn.close()


class ServerConfig:
    """What serve() does with each client: mode is 'relay', 'echo' or 'exec'."""

    def __init__(self, *, mode: str, acl: AccessList, keep_open: bool, command=None, max_clients: int | None = None,
                 idle: float | None = None, max_frame: int | None = None):
        self.mode, self.acl, self.keep_open, self.command = mode, acl, keep_open, command
        self.max_clients, self.idle, self.max_frame = max_clients, idle, max_frame


class _ClientLost(Exception):
    """A client's socket failed (reset, gone): that client ends, the server goes on. Errors of
    stdout are not wrapped, so a closed stdout still ends the server (quietly, via cli.main)."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


class _Client:
    __slots__ = ("sock", "fd", "peer", "addr", "pending", "bytes_in", "bytes_out", "last_active", "eof",
                 "decoder", "proc", "mask")

    def __init__(self, sock, addr, now: float):
        self.sock, self.addr, self.peer = sock, addr, format_peer(addr)
        self.fd = sock.fileno() if sock is not None else -1
        self.pending = bytearray()  # owed to the client: echo leftovers or stdin broadcast
        self.bytes_in = self.bytes_out = 0
        self.last_active = now
        self.eof = False
        self.decoder = None
        self.proc = None
        self.mask = 0


def serve(listener: socket.socket, env, config: ServerConfig) -> int:
    """Run the server until interrupted (-k) or until its one client is done."""
    server = _Server(listener, env, config)
    try:
        return server.run()
    finally:
        server.close()


class _Server:
    def __init__(self, listener: socket.socket, env, config: ServerConfig):
        self.listener, self.env, self.config = listener, env, config
        listener.setblocking(False)
        self.selector = platform.relay_selector()
        self.clients: dict[int, _Client] = {}
        self.children: list[_Client] = []
        self.buffer = memoryview(bytearray(CLIENT_CHUNK))
        self.accepting = True
        self.accept_paused_until: float | None = None
        self.served = 0
        self.sink = StdoutSink(env) if config.mode == "relay" else None
        self.stdin = open_stdin(env) if config.mode == "relay" else None
        self.stdin_open = self.stdin is not None
        self.stdin_registered = False
        self.splitter = framing.LineSplitter(config.max_frame, what="stdin line") if config.max_frame else None
        self.wakeup_r, self.wakeup_w = socket.socketpair()  # exec waiter threads poke the loop
        self.wakeup_r.setblocking(False)
        self.lock = threading.Lock()
        self.finished: list[_Client] = []
        self.selector.register(listener, selectors.EVENT_READ, "listener")
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "wakeup")

    def close(self) -> None:
        for client in list(self.clients.values()):
            client.sock.close()
        self.clients.clear()
        self.selector.close()
        self.wakeup_r.close()
        self.wakeup_w.close()
        if self.stdin is not None:
            self.stdin.close()

    def run(self) -> int:
        while True:
            if not self.config.keep_open and self.served and not self.clients and not self.children:
                return ExitStatus.OK
            self._update_stdin_interest()
            for key, mask in self.selector.select(self._timeout()):
                if key.data == "listener":
                    self._accept()
                elif key.data == "wakeup":
                    self._reap()
                elif key.data == "stdin":
                    self._read_stdin()
                else:
                    self._client_event(key.data, mask)
            self._housekeeping()

    # --- accepting ----------------------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BURST):
            try:
                conn, addr = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                name = platform.errno_name(exc.errno) if exc.errno is not None else ""
                if name not in platform.ACCEPT_TRANSIENT:
                    raise from_oserror("accept", exc) from None
                if name in ("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"):
                    # The queued client stays readable: pause instead of spinning on the error.
                    self.env.warn(f"accept: {platform.describe(exc.errno)}; pausing new connections")
                    self._pause_accepting(self.env.clock() + 0.5)
                    return
                self.env.info(f"accept: {platform.describe(exc.errno)}")
                continue
            self._admit(conn, addr)
            if not self.accepting:
                return

    def _pause_accepting(self, until: float | None) -> None:
        if self.accepting:
            self.selector.unregister(self.listener)
            self.accepting = False
        self.accept_paused_until = until

    def _admit(self, conn: socket.socket, addr) -> None:
        peer = format_peer(addr)
        host, _ = peer_parts(addr)
        if not self.config.acl.permits(host):
            self.env.info(f"refused connection from {peer} (--allow/--deny)")
            conn.close()
            return
        limit = self.config.max_clients
        if limit is not None and len(self.clients) + len(self.children) >= limit:
            self.env.warn(f"too many clients (--max-clients {limit}): closed connection from {peer}")
            conn.close()
            return
        self.env.info(f"connection from {peer}")
        self.served += 1
        if not self.config.keep_open:  # like nc -l: one client, then the port is free again
            self._pause_accepting(None)
            self.listener.close()
        client = _Client(conn, addr, self.env.clock())
        if self.config.mode == "exec":
            conn.setblocking(True)  # the child expects ordinary blocking stdio (BSDs inherit O_NONBLOCK)
            self._spawn(client)
            return
        conn.setblocking(False)
        if self.config.max_frame and self.config.mode == "relay":
            client.decoder = framing.FrameDecoder(self.config.max_frame)
        self.clients[client.fd] = client
        self._set_mask(client, selectors.EVENT_READ)

    # --- client I/O ---------------------------------------------------------------------------------

    def _set_mask(self, client: _Client, mask: int) -> None:
        if mask == client.mask:
            return
        if not client.mask:
            self.selector.register(client.sock, mask, client)
        elif not mask:
            self.selector.unregister(client.sock)
        else:
            self.selector.modify(client.sock, mask, client)
        client.mask = mask

    def _client_event(self, client: _Client, mask: int) -> None:
        try:
            if mask & selectors.EVENT_WRITE:
                self._send_pending(client)
            if mask & selectors.EVENT_READ and client.fd in self.clients and not client.eof:
                self._receive(client)
        except _ClientLost as lost:
            self._drop(client, lost.error)
        except framing.FrameError as exc:
            self.env.warn(f"{client.peer}: {exc.message}; connection closed")
            self._close_client(client)

    def _receive(self, client: _Client) -> None:
        try:
            count = client.sock.recv_into(self.buffer)
        except BlockingIOError:
            return
        except OSError as exc:
            raise _ClientLost(exc) from None
        client.last_active = self.env.clock()
        if count == 0:
            client.eof = True
            if client.decoder is not None:
                client.decoder.close()
            if client.pending:
                self._set_mask(client, selectors.EVENT_WRITE)  # finish what we owe, then close
            else:
                self._close_client(client)
            return
        client.bytes_in += count
        data = self.buffer[:count]
        if self.config.mode == "echo":
            try:
                sent = client.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise _ClientLost(exc) from None
            client.bytes_out += sent
            if sent < count:
                client.pending += data[sent:]
                self._set_mask(client, selectors.EVENT_WRITE)  # read no more until it took this back
        elif client.decoder is not None:
            for frame in client.decoder.frames(data.tobytes()):
                self.sink.write(frame + b"\n")
        else:
            self.sink.write(data)

    def _send_pending(self, client: _Client) -> None:
        if client.pending:
            try:
                sent = client.sock.send(client.pending)
            except BlockingIOError:
                return
            except OSError as exc:
                raise _ClientLost(exc) from None
            del client.pending[:sent]
            client.bytes_out += sent
            client.last_active = self.env.clock()
        if client.pending:
            return
        if client.eof:
            self._close_client(client)
        else:
            self._set_mask(client, selectors.EVENT_READ)

    def _drop(self, client: _Client, exc: OSError) -> None:
        """A client reset or vanished: log it (-v) and carry on serving the others."""
        reason = platform.describe(exc.errno) if exc.errno is not None else str(exc)
        self.env.info(f"{client.peer}: {reason}, {client.bytes_in} bytes in, {client.bytes_out} bytes out")
        self._close_client(client, quiet=True)

    def _close_client(self, client: _Client, quiet: bool = False) -> None:
        if self.clients.pop(client.fd, None) is None:
            return
        if client.mask:
            self.selector.unregister(client.sock)
        client.sock.close()
        if not quiet:
            self.env.info(f"closed {client.peer}, {client.bytes_in} bytes in, {client.bytes_out} bytes out")
        self._client_left()

    def _client_left(self) -> None:
        if not self.accepting and self.config.keep_open and self.accept_paused_until is not None:
            self._resume_accepting()

    def _resume_accepting(self) -> None:
        if not self.accepting:
            self.selector.register(self.listener, selectors.EVENT_READ, "listener")
            self.accepting = True
        self.accept_paused_until = None

    # --- stdin broadcast (-k relay) -----------------------------------------------------------------

    def _update_stdin_interest(self) -> None:
        wanted = (self.stdin_open and bool(self.clients)
                  and all(len(c.pending) < STDIN_HIGH_WATER for c in self.clients.values()))
        if wanted and not self.stdin_registered:
            self.selector.register(self.stdin.fd, selectors.EVENT_READ, "stdin")
        elif self.stdin_registered and not wanted:
            self.selector.unregister(self.stdin.fd)
        self.stdin_registered = wanted

    def _read_stdin(self) -> None:
        data = self.stdin.read(CLIENT_CHUNK)
        if not data:
            self.stdin_open = False  # clients stay: a server's stdin ending does not end their sessions
            last = self.splitter.finish() if self.splitter is not None else None
            data = framing.encode(last) if last is not None else b""
        elif self.splitter is not None:
            data = b"".join(framing.encode(line) for line in self.splitter.feed(data))
        if not data:
            return
        for client in list(self.clients.values()):
            if not client.eof:
                client.pending += data
                self._set_mask(client, client.mask | selectors.EVENT_WRITE)

    # --- exec ---------------------------------------------------------------------------------------

    def _spawn(self, client: _Client) -> None:
        local_host, local_port = peer_parts(client.sock.getsockname())
        remote_host, remote_port = peer_parts(client.addr)
        child_env = dict(os.environ, SOCKDIAG_REMOTE_ADDR=remote_host, SOCKDIAG_REMOTE_PORT=str(remote_port),
                         SOCKDIAG_LOCAL_ADDR=local_host, SOCKDIAG_LOCAL_PORT=str(local_port))
        try:
            if platform.socket_as_stdio():
                client.proc = subprocess.Popen(self.config.command, stdin=client.sock.fileno(),
                                               stdout=client.sock.fileno(), env=child_env)
                threads = []
            else:
                client.proc = subprocess.Popen(self.config.command, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, env=child_env)
                threads = _bridge(client.sock, client.proc)
        except OSError as exc:
            client.sock.close()
            error = from_oserror(f"exec for {client.peer}", exc)
            if not self.config.keep_open:
                raise error from None
            self.env.warn(error.message)
            return
        if not threads:
            client.sock.close()  # the child holds the connection now
        self.children.append(client)
        threading.Thread(target=self._wait_child, args=(client, threads), daemon=True,
                         name="sockdiag-exec-wait").start()

    def _wait_child(self, client: _Client, threads: list[threading.Thread]) -> None:
        client.proc.wait()
        for thread in threads:
            thread.join()
        if threads:
            client.sock.close()
        with self.lock:
            self.finished.append(client)
        try:
            self.wakeup_w.send(b"x")
        except OSError:
            pass

    def _reap(self) -> None:
        try:
            while self.wakeup_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        with self.lock:
            done, self.finished = self.finished, []
        for client in done:
            self.children.remove(client)
            self.env.info(f"closed {client.peer}, command exited with status {client.proc.returncode}")
            self._client_left()

    # --- timers -------------------------------------------------------------------------------------

    def _timeout(self) -> float | None:
        deadlines = []
        if self.accept_paused_until is not None:
            deadlines.append(self.accept_paused_until)
        if self.config.idle is not None and self.clients:
            deadlines.append(min(c.last_active for c in self.clients.values()) + self.config.idle)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - self.env.clock())

    def _housekeeping(self) -> None:
        now = self.env.clock()
        if self.accept_paused_until is not None and now >= self.accept_paused_until:
            self._resume_accepting()
        if self.config.idle is not None:
            for client in [c for c in self.clients.values() if now - c.last_active >= self.config.idle]:
                self.env.info(f"{client.peer}: idle for {self.config.idle:g} s (-i): closed")
                self._close_client(client, quiet=True)


def _bridge(sock: socket.socket, proc: subprocess.Popen) -> list[threading.Thread]:
    """Copy socket <-> the child's pipes in two threads (where a socket cannot be its stdio)."""

    def inbound():
        try:
            while data := sock.recv(CLIENT_CHUNK):
                proc.stdin.write(data)
                proc.stdin.flush()
        except OSError:
            pass
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    def outbound():
        try:
            while data := proc.stdout.read1(CLIENT_CHUNK):
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threads = [threading.Thread(target=inbound, daemon=True), threading.Thread(target=outbound, daemon=True)]
    for thread in threads:
        thread.start()
    return threads
