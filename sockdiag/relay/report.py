"""What listen's servers say on stderr: the -v notes (connections, closes with their byte counts,
exits) and the few warnings shown without -v. Kept in one place so the wording stays the same
across accepting, clients and exec children (scripts and tests match on it)."""

from __future__ import annotations

import socket
from typing import Protocol

from sockdiag import platform
from sockdiag.platform.errnos import describe_connection_error


class Session(Protocol):
    """What a closing note needs from a client."""

    peer: str
    bytes_in: int
    bytes_out: int


class Connected(Session, Protocol):
    """A client whose socket failed: its socket tells a reset from this side's own shutdown."""

    sock: socket.socket


class ServerReport:
    """The servers' messages, one method per event."""

    def __init__(self, env):
        self.env = env

    # --- accepting ----------------------------------------------------------------------------------

    def connected(self, peer: str) -> None:
        self.env.info(f"connection from {peer}")

    def refused(self, peer: str) -> None:
        self.env.info(f"refused connection from {peer} (--allow/--deny)")

    def too_many(self, peer: str, limit: int) -> None:
        self.env.warn(f"too many clients (--max-clients {limit}): closed connection from {peer}")

    def accept_failed(self, code: int) -> None:
        self.env.info(f"accept: {platform.describe(code)}")

    def accept_paused(self, code: int) -> None:
        self.env.warn(f"accept: {platform.describe(code)}; pausing new connections")

    # --- clients ------------------------------------------------------------------------------------

    def closed(self, client: Session) -> None:
        self.env.info(f"closed {client.peer}, {_traffic(client)}")

    def lost(self, client: Connected, exc: OSError) -> None:
        reason = describe_connection_error(exc.errno, client.sock) if exc.errno is not None else str(exc)
        self.env.info(f"{client.peer}: {reason}, {_traffic(client)}")

    def idle(self, client: Session, seconds: float) -> None:
        self.env.info(f"{client.peer}: idle for {seconds:g} s (-i): closed")

    def bad_frame(self, client: Session, message: str) -> None:
        self.env.warn(f"{client.peer}: {message}; connection closed")

    # --- exec children ------------------------------------------------------------------------------

    def exec_failed(self, message: str) -> None:
        self.env.warn(message)

    def stalled(self, client: Session, owed: int, seconds: float) -> None:
        self.env.info(f"dropped {client.peer}: it read nothing for {seconds:g} s with {owed} bytes owed "
                      f"(--max-backlog); the other clients go on")

    def exec_idle(self, peer: str, seconds: float) -> None:
        self.env.info(f"{peer}: no data for {seconds:g} s, stopping its command")

    def exited(self, peer: str, status: int) -> None:
        self.env.info(f"closed {peer}, command exited with status {status}")


def _traffic(client: Session) -> str:
    return f"{client.bytes_in} bytes in, {client.bytes_out} bytes out"
