"""`sockdiag wait` (being written)."""

from __future__ import annotations

from sockdiag.core.errors import SockdiagError


def run(args, env) -> int:
    raise SockdiagError("not implemented yet")
