"""The client table of listen's servers: each connected client's socket, its selector interest,
what the server still owes it, its byte counts and idle clock, and closing it.

Every write to a client and every use of its outgoing buffer (`Client.pending`) is a method of
ClientTable, so a limit on that buffer has one home.
"""

from __future__ import annotations

import selectors
import socket
from collections.abc import Callable, Iterator

from sockdiag.relay.access import format_peer
from sockdiag.relay.report import ServerReport

CLIENT_CHUNK = 64 * 1024  # one recv per ready client; also the most an echo client may owe


class ClientLost(Exception):
    """A client's socket failed (reset, gone): that client ends, the server goes on. Errors of
    stdout are not wrapped, so a closed stdout still ends the server (quietly, via cli.main)."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


class Client:
    """One connected client (not used for --exec: the child owns that connection)."""

    __slots__ = ("sock", "fd", "peer", "addr", "pending", "bytes_in", "bytes_out", "last_active", "eof",
                 "decoder", "mask", "want", "paused", "over_since")

    def __init__(self, sock: socket.socket, addr, now: float):
        self.sock, self.addr, self.peer = sock, addr, format_peer(addr)
        self.fd = sock.fileno()
        self.pending = bytearray()  # owed to the client: echo leftovers or stdin broadcast
        self.bytes_in = self.bytes_out = 0
        self.last_active = now
        self.eof = False
        self.decoder = None  # --frame: a FrameDecoder for what the client sends
        self.mask = 0  # the selector events registered for it; 0 = not registered
        self.want = 0  # the events it asks for; `mask` drops EVENT_READ from them while `paused`
        self.paused = False  # not read from (-k --frame: the frame budget is spent)
        self.over_since: float | None = None  # since when it is owed max_backlog or more without taking any


class ClientTable:
    """The open clients by descriptor. Socket errors of a client raise ClientLost; the caller
    decides (drop()) so that one client's failure never ends the server."""

    def __init__(self, selector: selectors.BaseSelector, report: ServerReport, clock: Callable[[], float],
                 on_left: Callable[[], None], max_backlog: int = 4 * 1024 * 1024):
        self._selector, self._report, self._clock, self._on_left = selector, report, clock, on_left
        self.max_backlog = max_backlog
        self._clients: dict[int, Client] = {}
        self._buffer = memoryview(bytearray(CLIENT_CHUNK))  # shared: data is handled before the next recv

    def __len__(self) -> int:
        return len(self._clients)

    def __iter__(self) -> Iterator[Client]:
        return iter(list(self._clients.values()))  # a snapshot: callers may close clients as they go

    def __contains__(self, client: Client) -> bool:
        return client.fd in self._clients

    def add(self, conn: socket.socket, addr, decoder=None) -> Client:
        conn.setblocking(False)
        client = Client(conn, addr, self._clock())
        client.decoder = decoder
        self._clients[client.fd] = client
        self._set_mask(client, selectors.EVENT_READ)
        return client

    # --- reading ------------------------------------------------------------------------------------

    def receive(self, client: Client) -> memoryview | None:
        """What one recv got (valid until the next receive), empty at EOF; None if nothing was there."""
        try:
            count = client.sock.recv_into(self._buffer)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise ClientLost(exc) from None
        client.last_active = self._clock()
        if count == 0:
            client.eof = True
        client.bytes_in += count
        return self._buffer[:count]

    # --- writing: the outgoing buffer ---------------------------------------------------------------

    def echo(self, client: Client, data: memoryview) -> None:
        """Send `data` back; what does not fit is owed, and the client is not read from until it is paid."""
        try:
            sent = client.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise ClientLost(exc) from None
        client.bytes_out += sent
        if sent < len(data):
            client.pending += data[sent:]
            self._set_mask(client, selectors.EVENT_WRITE)  # read no more until it took this back

    def queue(self, client: Client, data: bytes) -> None:
        """Owe `data` to the client (the stdin broadcast); it goes out as the client can take it."""
        client.pending += data
        if client.over_since is None and len(client.pending) >= self.max_backlog:
            client.over_since = self._clock()
        self._set_mask(client, client.want | selectors.EVENT_WRITE)

    def owed_below(self, limit: int | None = None) -> bool:
        """Whether every client is owed less than `limit` (default: max_backlog) bytes: the
        broadcast's backpressure. A client that reads slowly holds stdin back; one that reads
        nothing at all is dropped after the grace (stalled()), so it cannot hold it forever."""
        limit = self.max_backlog if limit is None else limit
        return all(len(c.pending) < limit for c in self._clients.values())

    def stalled(self, now: float, grace: float) -> list[Client]:
        """Clients owed max_backlog or more that took not one byte for `grace` seconds."""
        return [c for c in self._clients.values() if c.over_since is not None and now - c.over_since >= grace]

    def next_stall_deadline(self, grace: float) -> float | None:
        times = [c.over_since for c in self._clients.values() if c.over_since is not None]
        return min(times) + grace if times else None

    def flush(self, client: Client) -> None:
        """The client is writable: send what it is owed; once paid, read again (or close after EOF)."""
        if client.pending:
            try:
                sent = client.sock.send(client.pending)
            except BlockingIOError:
                return
            except OSError as exc:
                raise ClientLost(exc) from None
            del client.pending[:sent]
            client.bytes_out += sent
            client.last_active = self._clock()
            # it took some: a slow reader is never dropped; its stall clock starts again
            client.over_since = client.last_active if len(client.pending) >= self.max_backlog else None
        if client.pending:
            return
        if client.eof:
            self.close(client)
        else:
            self._set_mask(client, selectors.EVENT_READ)

    def finish(self, client: Client) -> None:
        """The client sent EOF: close it once it has what it is owed."""
        if client.pending:
            self._set_mask(client, selectors.EVENT_WRITE)
        else:
            self.close(client)

    # --- closing ------------------------------------------------------------------------------------

    def drop(self, client: Client, exc: OSError) -> None:
        """A client reset or vanished: log it (-v) and carry on serving the others."""
        self._report.lost(client, exc)
        self.close(client, quiet=True)

    def close(self, client: Client, quiet: bool = False) -> None:
        if self._clients.pop(client.fd, None) is None:
            return
        if client.mask:
            self._selector.unregister(client.sock)
        client.sock.close()
        if not quiet:
            self._report.closed(client)
        self._on_left()

    def close_all(self) -> None:
        """Close every socket without notes (the server is stopping; the selector goes with it)."""
        for client in self._clients.values():
            client.sock.close()
        self._clients.clear()

    def set_paused(self, client: Client, paused: bool) -> None:
        """Stop (or resume) reading from a client, keeping whatever else it waits for."""
        if client.paused != paused:
            client.paused = paused
            self._set_mask(client, client.want)

    def buffered_frames(self) -> list[tuple[int, Client]]:
        """(bytes held in its frame decoder, client) for every client that has a decoder."""
        return [(c.decoder.buffered, c) for c in self._clients.values() if c.decoder is not None]

    def _set_mask(self, client: Client, mask: int) -> None:
        client.want = mask
        if client.paused:
            mask &= ~selectors.EVENT_READ
        if mask == client.mask:
            return
        if not client.mask:
            self._selector.register(client.sock, mask, client)
        elif not mask:
            self._selector.unregister(client.sock)
        else:
            self._selector.modify(client.sock, mask, client)
        client.mask = mask
