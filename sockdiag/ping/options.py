"""The options of `sockdiag ping` (argparse; no side effects)."""

from __future__ import annotations

from sockdiag.cmdline import common


def add_ping(sub) -> None:
    p = sub.add_parser("ping", help="(being written)", description="(being written)")
    common(p)
