"""What forward says on stderr: with -v one line when a connection opens and one when it closes
(client, upstream, duration, bytes each way), in the style of listen's server notes; a failed
upstream connect is a warning even without -v (the client was turned away)."""

from __future__ import annotations

from typing import Protocol


class Session(Protocol):
    """What the closing line needs from a TCP connection or a UDP session."""

    ident: int
    client_name: str
    upstream_name: str
    started: float
    to_upstream: int
    to_client: int


class ForwardReport:
    """The forwarder's messages, one method per event."""

    def __init__(self, env, udp: bool = False):
        self.env = env
        self.what = "udp session" if udp else "connection"

    def listening(self, where: str, target: str, udp: bool) -> None:
        self.env.info(f"listening on {where}{' (udp)' if udp else ''}, forwarding to {target}")

    def opened(self, s: Session) -> None:
        self.env.info(f"{self.what} {s.ident} from {s.client_name} to {s.upstream_name}")

    def closed(self, s: Session, now: float, reason: str | None = None) -> None:
        why = f" ({reason})" if reason else ""
        self.env.info(f"closed {self.what} {s.ident} from {s.client_name} to {s.upstream_name}{why} after "
                      f"{now - s.started:.3f} s, {s.to_upstream} bytes to upstream, {s.to_client} bytes to client")

    def connect_failed(self, ident: int, client: str, message: str) -> None:
        self.env.warn(f"{self.what} {ident} from {client}: {message}; client closed")

    def refused(self, peer: str) -> None:
        self.env.info(f"refused {self.what} from {peer} (--allow/--deny)")

    def too_many(self, peer: str, limit: int) -> None:
        self.env.warn(f"too many clients (--max-clients {limit}): closed {self.what} from {peer}")

    def accept_failed(self, description: str) -> None:
        self.env.info(f"accept: {description}")

    def accept_paused(self, description: str) -> None:
        self.env.warn(f"accept: {description}; pausing new connections")
