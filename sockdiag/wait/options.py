"""The options of `sockdiag wait` (argparse; no side effects)."""

from __future__ import annotations

from sockdiag.cmdline import common


def add_wait(sub) -> None:
    p = sub.add_parser("wait", help="(being written)", description="(being written)")
    common(p)
