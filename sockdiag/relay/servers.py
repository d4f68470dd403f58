"""listen's servers: -k (many clients at once), --echo, --exec/--sh-exec, and --allow/--deny.

One thread, one poll loop, non-blocking sockets. Chosen over a thread per client (Python's
socketserver.ThreadingMixIn) because memory stays bounded by one 64 KiB buffer per busy client
instead of a thread stack and buffer each, two cores are not fought over by 200 threads and
the GIL, and there is no shutdown race: Ctrl-C ends one loop. Chosen over asyncio because the
loop is small and asyncio adds start-up time and a layer of buffering that backpressure would
have to see through. A client that cannot take more output is not read from (echo) or stops
stdin from being read (relay), so no buffer grows without bound.

This module is the loop and the entry points; the parts it dispatches to are:
  relay.acceptor   accepting: --allow/--deny, --max-clients, accept() errors (and accept_one)
  relay.clients    the client table: per-client sockets, outgoing buffers, closing
  relay.broadcast  -k relay: stdin to every client
  relay.children   --exec/--sh-exec: spawning, copying, reaping the child processes
  relay.report     the -v notes and warnings
"""

from __future__ import annotations

import json
import selectors
import socket

from sockdiag import platform
from sockdiag.core import framing
from sockdiag.core.errors import TimeoutFailure
from sockdiag.core.status import ExitStatus
from sockdiag.relay.acceptor import Acceptor, accept_one
from sockdiag.relay.access import AccessList
from sockdiag.relay.broadcast import BACKLOG_GRACE, STDIN_HIGH_WATER, StdinBroadcast
from sockdiag.relay.children import Children
from sockdiag.relay.clients import CLIENT_CHUNK, Client, ClientLost, ClientTable
from sockdiag.relay.report import ServerReport
from sockdiag.relay.stdio import StdoutSink

# -k --frame: partial frames held for all clients together, at most max(2 x --max-frame, 4 MiB)
# (plus one receive per client). Past it only the client holding the most is read, so its frame
# completes and frees the budget; the others wait (backpressure), never clients x --max-frame.
MIN_FRAME_BUDGET = 4 * 1024 * 1024

__all__ = ["CLIENT_CHUNK", "STDIN_HIGH_WATER", "ServerConfig", "accept_one", "serve"]


class ServerConfig:
    """What serve() does with each client: mode is 'relay', 'echo' or 'exec'."""

    def __init__(self, *, mode: str, acl: AccessList, keep_open: bool, command=None, max_clients: int | None = None,
                 idle: float | None = None, frames=None, max_backlog: int = STDIN_HIGH_WATER,
                 accept_timeout: float | None = None, tls=None):
        self.mode, self.acl, self.keep_open, self.command = mode, acl, keep_open, command
        self.tls = tls  # relay.tlsrelay.ServerTls with --tls: wrap() gives each client's plain socket
        self.max_clients, self.idle, self.frames, self.max_backlog = max_clients, idle, frames, max_backlog
        self.accept_timeout = accept_timeout  # listen -w: the first client must come within this


def serve(listener: socket.socket, env, config: ServerConfig) -> int:
    """Run the server until interrupted (-k) or until its one client is done."""
    server = _Server(listener, env, config)
    try:
        return server.run()
    finally:
        server.close()


class _Server:
    """The poll loop: waits on the listener, the clients, stdin (relay) and the exec children's
    wakeup, hands each ready one to its part, and runs the timers (accept pause, -i idle)."""

    def __init__(self, listener: socket.socket, env, config: ServerConfig):
        self.env, self.config = env, config
        self.idle_peer: str | None = None  # the last client -i closed
        self.started = env.clock()
        framed = config.mode == "relay" and config.frames is not None and config.frames.reads_frames
        self.frame_budget = max(2 * config.frames.max_frame, MIN_FRAME_BUDGET) if framed else None
        self.selector = platform.relay_selector()
        report = self.report = ServerReport(env)
        self.clients = ClientTable(self.selector, report, env.clock, on_left=self._client_left,
                                   max_backlog=config.max_backlog)
        relay = config.mode == "relay"
        self.sink = StdoutSink(env) if relay else None
        self.broadcast = StdinBroadcast(env, self.selector, self.clients, config.frames) if relay else None
        self.children = Children(report, config.command, config.keep_open, on_left=self._client_left,
                                 idle=config.idle, clock=env.clock)
        self.acceptor = Acceptor(listener, self.selector, report, env.clock, acl=config.acl,
                                 keep_open=config.keep_open, max_clients=config.max_clients,
                                 active=lambda: len(self.clients) + len(self.children), admit=self._admit)
        self.selector.register(self.children.wakeup, selectors.EVENT_READ, "wakeup")

    def close(self) -> None:
        self.clients.close_all()
        self.selector.close()
        self.children.close()
        if self.broadcast is not None:
            self.broadcast.close()
        if self.config.tls is not None:
            self.config.tls.close()

    def run(self) -> int:
        while True:
            if not self.config.keep_open and self.acceptor.served and not self.clients and not self.children:
                idle_peer = self.idle_peer or self.children.idle_peer
                if idle_peer is not None:  # one client, ended by -i: status 3, as the plain relay
                    raise TimeoutFailure(f"connection with {idle_peer} idle for {self.config.idle:g} s (-i): closed")
                return ExitStatus.OK
            if self.broadcast is not None:
                self.broadcast.update_interest()
            if self.frame_budget is not None:
                self._apply_frame_budget()
            for key, mask in self.selector.select(self._timeout()):
                if key.data == "listener":
                    self.acceptor.accept()
                elif key.data == "wakeup":
                    self.children.reap()
                elif key.data == "stdin":
                    self.broadcast.read()
                else:
                    self._client_event(key.data, mask)
            self._housekeeping()

    def _admit(self, conn: socket.socket, addr) -> None:
        """A connection got past --allow/--deny and --max-clients: start serving it."""
        if self.config.tls is not None:
            conn = self.config.tls.wrap(conn, addr)
        if self.config.mode == "exec":
            self.children.spawn(conn, addr)
            return
        decoder = None
        if self.frame_budget is not None:
            decoder = self.config.frames.decoder()
        self.clients.add(conn, addr, decoder)

    def _apply_frame_budget(self) -> None:
        held = self.clients.buffered_frames()
        over = sum(size for size, _ in held) >= self.frame_budget
        leader = max(held, key=lambda item: item[0])[1] if over and held else None
        for _size, client in held:
            self.clients.set_paused(client, over and client is not leader)

    def _client_left(self) -> None:
        self.acceptor.client_left()

    # --- client I/O ---------------------------------------------------------------------------------

    def _client_event(self, client: Client, mask: int) -> None:
        try:
            if mask & selectors.EVENT_WRITE:
                self.clients.flush(client)
            if mask & selectors.EVENT_READ and client in self.clients and not client.eof:
                self._receive(client)
        except ClientLost as lost:
            self.clients.drop(client, lost.error)
        except framing.FrameError as exc:
            self.report.bad_frame(client, exc.message)
            self.clients.close(client)

    def _receive(self, client: Client) -> None:
        data = self.clients.receive(client)
        if data is None:
            return
        if not data:  # EOF
            if client.decoder is not None:
                client.decoder.close()
            self.clients.finish(client)  # finish what we owe, then close
        elif self.config.mode == "echo":
            self.clients.echo(client, data)
        elif client.decoder is not None:
            for item in client.decoder.frames(data.tobytes()):
                payload, meta = self.config.frames.printable(item)
                if meta is not None:
                    self.env.info(f"frame header from {client.peer}: {json.dumps(meta)}")
                self.sink.write(payload)
        else:
            self.sink.write(data)

    # --- timers -------------------------------------------------------------------------------------

    def _timeout(self) -> float | None:
        deadlines = []
        if self.acceptor.paused_until is not None:
            deadlines.append(self.acceptor.paused_until)
        if self.config.idle is not None and self.clients:
            deadlines.append(min(c.last_active for c in self.clients) + self.config.idle)
        first_client_due = None
        if self.config.accept_timeout is not None and not self.acceptor.served:
            first_client_due = self.started + self.config.accept_timeout
        for deadline in (self.children.next_deadline(), self.clients.next_stall_deadline(BACKLOG_GRACE),
                         first_client_due):
            if deadline is not None:
                deadlines.append(deadline)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - self.env.clock())

    def _housekeeping(self) -> None:
        now = self.env.clock()
        self.acceptor.tick(now)
        if (self.config.accept_timeout is not None and not self.acceptor.served
                and now - self.started >= self.config.accept_timeout):
            raise TimeoutFailure(f"no connection within {self.config.accept_timeout:g} s (-w)")
        self.children.tick(now)
        for client in self.clients.stalled(now, BACKLOG_GRACE):
            self.report.stalled(client, len(client.pending), BACKLOG_GRACE)
            self.clients.close(client, quiet=True)
        if self.config.idle is not None:
            for client in [c for c in self.clients if now - c.last_active >= self.config.idle]:
                self.report.idle(client, self.config.idle)
                self.idle_peer = client.peer
                self.clients.close(client, quiet=True)
