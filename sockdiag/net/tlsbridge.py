"""A TLS connection as a plain socket: one thread moves bytes between a TLS session (net.tls,
memory BIOs over the TCP socket) and one end of a socketpair; the relay engines get the other end.

Why a bridge: an SSL socket cannot be spliced, handed to an --exec child or polled for data that
OpenSSL has already buffered, so every engine (splice, -k, --echo, --exec, --frame) would need a
TLS variant. Through a socketpair they run unchanged, and the copying runs beside them on the
other core: OpenSSL releases the GIL while it encrypts. One thread does both directions,
because an SSL object must not be read and written by two threads at once.

End of stream maps both ways: EOF on the plain end sends close_notify (TLS's half-close) and
shuts the TCP write side; the peer's close_notify (or its bare FIN) shuts the plain end's write
side. When the engine closes its end entirely (POLLHUP), the TLS connection closes too.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from collections.abc import Callable

CHUNK = 256 * 1024  # per direction and for socket reads: one read holds many 16 KiB records
SERVER_CHUNK = 64 * 1024  # listen -k, --echo, --exec: one bridge per client, so a smaller footprint
HANDSHAKE_LIMIT = 10.0  # seconds a bridged (listen -k) client has to complete its handshake


class PlainEnd(socket.socket):
    """The engines' end of the bridge. Its addresses are the TLS connection's (so --exec sets
    SOCKDIAG_LOCAL_ADDR and -v names the client as for plain TCP)."""

    _tcp: tuple | None = None  # (family, local, remote) once set_addresses() has run

    def set_addresses(self, family: int, local, remote) -> None:
        self._tcp = (family, local, remote)

    def getsockname(self):
        return self._tcp[1] if self._tcp else super().getsockname()

    def getpeername(self):
        return self._tcp[2] if self._tcp else super().getpeername()

    @property
    def family(self):
        return socket.AddressFamily(self._tcp[0]) if self._tcp else super().family


class TlsBridge:
    """Copies between `session` (a net.tls.TlsSession, its handshake done unless `handshake` is
    given) and `plain`. `handshake(session)` runs first in the thread (listen -k); if it raises,
    the plain end sees EOF. `error` holds what ended the TLS side. With `owns_socket` the thread
    closes the TCP socket at the end (listen -k: nobody else holds it)."""

    def __init__(self, session, handshake: Callable[[object], None] | None = None, owns_socket: bool = False,
                 chunk: int = CHUNK):
        self.session, self.chunk = session, chunk
        sock = session.sock
        inner, outer = socket.socketpair()
        self.plain = PlainEnd(outer.family, outer.type, outer.proto, fileno=outer.detach())
        try:
            self.plain.set_addresses(sock.family, sock.getsockname(), sock.getpeername())
        except OSError:
            pass
        self._inner = inner
        self._stop_r, self._stop_w = socket.socketpair()
        self._handshake, self._owns_socket = handshake, owns_socket
        self.error: BaseException | None = None
        for end in (inner, self._stop_r, self._stop_w):
            end.setblocking(False)
        for end in (inner, outer):
            for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                try:
                    end.setsockopt(socket.SOL_SOCKET, option, chunk)
                except OSError:
                    pass
        self.thread = threading.Thread(target=self._run, name="sockdiag-tls", daemon=True)
        self.thread.start()

    def close(self, grace: float = 0.0) -> None:
        """Give the thread `grace` seconds to pass on what it holds, then stop it; `plain` stays
        the caller's to close (closing it first is what tells the thread to finish)."""
        if self._stop_w.fileno() == -1:
            return  # closed already
        self.thread.join(grace)
        try:
            self._stop_w.send(b"x")
        except OSError:
            pass
        self.thread.join(5.0)
        self._stop_w.close()

    def _run(self) -> None:
        try:
            if self._handshake is not None:
                self._handshake(self.session)
            self.session.sock.setblocking(False)
            _Pump(self).run()
        except BaseException as exc:  # noqa: BLE001 - the owner reads it from .error
            self.error = exc
        finally:
            ends = [self._inner, self._stop_r] + ([self.session.sock] if self._owns_socket else [])
            for end in ends:
                try:
                    end.close()
                except OSError:
                    pass


class _Pump:
    """The copy loop. Each turn does all it can without blocking (send what is owed, decrypt
    what arrived, encrypt what the engine wrote), then polls for exactly what it waits for."""

    def __init__(self, bridge: TlsBridge):
        session = bridge.session
        self.obj, self.incoming, self.outgoing = session.obj, session.incoming, session.outgoing
        self.raw, self.inner, self.stop = session.sock, bridge._inner, bridge._stop_r
        self.chunk = chunk = bridge.chunk
        self.raw_buf = memoryview(bytearray(chunk))
        self.raw_out = memoryview(b"")  # encrypted, not yet sent
        self.raw_eof = False
        self.fin_due = False  # close_notify queued: shut the TCP write side once it is out
        self.down_buf = memoryview(bytearray(chunk))  # TLS -> engine
        self.down_pending = memoryview(b"")
        self.down_open, self.down_eof = True, False
        self.drained = True  # no complete record waits in `incoming` (so close_notify may go)
        self.up_buf = memoryview(bytearray(chunk))  # engine -> TLS
        self.up_open, self.notify_due = True, False
        self.hangup = False

    def run(self) -> None:
        poller = select.poll()
        raw_fd, inner_fd, stop_fd = self.raw.fileno(), self.inner.fileno(), self.stop.fileno()
        poller.register(stop_fd, select.POLLIN)
        registered = {raw_fd: 0, inner_fd: 0}
        while self.down_open or self.up_open or self.raw_out or self.fin_due or self.notify_due:
            if self._step():
                continue
            # poll() reports HUP and ERR even for no events: an fd nobody waits on is unregistered
            wanted = {raw_fd: 0, inner_fd: 0 if self.hangup else select.POLLHUP}
            if self.raw_out:
                wanted[raw_fd] |= select.POLLOUT
            if self.down_open and not self.down_pending and not self.down_eof and not self.raw_eof:
                wanted[raw_fd] |= select.POLLIN
            if self.down_pending:
                wanted[inner_fd] |= select.POLLOUT
            if self.up_open and not self.raw_out:
                wanted[inner_fd] |= select.POLLIN
            for fd, mask in wanted.items():
                if registered[fd] != mask:
                    if mask:
                        poller.register(fd, mask)  # register() of a known fd modifies it
                    else:
                        poller.unregister(fd)
                    registered[fd] = mask
            ready = dict(poller.poll())
            if stop_fd in ready:
                return
            if ready.get(inner_fd, 0) & select.POLLHUP and not self.hangup:
                # the engine closed its end: read what it left, relay nothing more to it
                self.hangup = True
                self.down_open, self.down_pending = False, memoryview(b"")
        self._shutdown(self.inner)

    def _step(self) -> bool:
        moved = self._send_raw()
        if self.down_pending:
            moved |= self._to_engine()
        elif self.down_eof and self.down_open:
            self.down_open = False
            self._shutdown(self.inner)
            moved = True
        if self.down_open and not self.down_pending and not self.down_eof:
            moved |= self._decrypt()
        if self.up_open and not self.raw_out:
            moved |= self._encrypt()
        if self.notify_due and (self.drained or not self.down_open):
            self._close_notify()
            moved = True
        return moved

    # --- TLS -> engine --------------------------------------------------------------------------------

    def _decrypt(self) -> bool:
        """Decrypt what `incoming` holds (reading the socket while it has more) into down_buf."""
        filled, moved = 0, False
        while filled < self.chunk:
            try:
                count = self.obj.read(self.chunk - filled, self.down_buf[filled:])
            except ssl.SSLWantReadError:
                self.drained = True
                if self.raw_eof or not self._read_raw():
                    break
                moved = True
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):  # close_notify, or a bare FIN
                count = 0
            if count == 0:
                self.down_eof = True
                moved = True
                break
            filled += count
        else:
            self.drained = False  # the buffer filled up: more may be waiting
        self._queue_outgoing()  # what reading produced (a TLS 1.3 key update's answer)
        if filled:
            self.down_pending = self.down_buf[:filled]
        return moved or bool(filled)

    def _read_raw(self) -> bool:
        try:
            count = self.raw.recv_into(self.raw_buf)
        except BlockingIOError:
            return False
        if count == 0:
            self.raw_eof = True
            self.incoming.write_eof()
        else:
            self.incoming.write(self.raw_buf[:count])
            self.drained = False
        return True

    def _to_engine(self) -> bool:
        try:
            sent = self.inner.send(self.down_pending)
        except BlockingIOError:
            return False
        except (BrokenPipeError, ConnectionResetError):  # the engine is gone: nobody to tell
            self.down_open, self.down_pending = False, memoryview(b"")
            return True
        self.down_pending = self.down_pending[sent:]
        return sent > 0

    # --- engine -> TLS --------------------------------------------------------------------------------

    def _encrypt(self) -> bool:
        try:
            count = self.inner.recv_into(self.up_buf)
        except BlockingIOError:
            return False
        if count == 0:
            self.up_open, self.notify_due = False, True
            return True
        self.obj.write(self.up_buf[:count])  # into a memory BIO: never blocks
        self._queue_outgoing()
        return True

    def _close_notify(self) -> None:
        """The engine's EOF: close_notify, then FIN; reading goes on (half-close). Only when no
        whole record waits unread: OpenSSL's shutdown throws away the data records it reads."""
        self.notify_due = False
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass  # sent; the peer's close_notify comes (or not) through read() as usual
        except ssl.SSLError:
            pass
        self._queue_outgoing()
        self.fin_due = True

    def _queue_outgoing(self) -> None:
        data = self.outgoing.read()
        if data:
            self.raw_out = memoryview(bytes(self.raw_out) + data) if self.raw_out else memoryview(data)

    def _send_raw(self) -> bool:
        moved = False
        if self.raw_out:
            try:
                sent = self.raw.send(self.raw_out)
            except BlockingIOError:
                sent = 0
            self.raw_out = self.raw_out[sent:]
            moved = sent > 0
        if not self.raw_out and self.fin_due:
            self.fin_due = False
            self._shutdown(self.raw)
            moved = True
        return moved

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
