"""ForwardConfig: what the TCP and UDP loops need from the command line, checked and resolved."""

from __future__ import annotations

from sockdiag.net.access import AccessList


class ForwardConfig:
    """What the loop needs from the command line, checked and resolved."""

    def __init__(self, *, targets: list[tuple], target_name: str, acl: AccessList, max_clients: int | None,
                 connect_timeout: float | None, idle: float | None, zero_copy: bool, dump=None, proxy=None):
        self.targets, self.target_name, self.acl = targets, target_name, acl
        self.max_clients, self.connect_timeout, self.idle = max_clients, connect_timeout, idle
        self.zero_copy, self.dump = zero_copy, dump
        self.proxy = proxy  # a callable(timeout) -> connected socket, or None
