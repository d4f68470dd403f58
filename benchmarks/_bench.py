"""Shared helpers for the benchmarks: time a command, read its peak memory, report ratios.

Every benchmark runs sockdiag and the peer tool side by side in one run, alternating, and
reports medians and the ratio sockdiag / peer (below 1.0 means sockdiag is faster).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None  # Debian package `time`


@dataclass
class Run:
    seconds: float
    returncode: int


def sockdiag_argv() -> list[str]:
    """The installed console script next to this interpreter, else `python -m sockdiag`."""
    script = Path(sys.executable).with_name("sockdiag")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "sockdiag"]


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def run_timed(argv: list[str], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
              stderr=subprocess.DEVNULL, timeout: float = 600.0) -> Run:
    """Run argv to completion; its wall time and exit status. (Peak memory: peak_rss_mib.)"""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr)
    deadline = start + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.0005)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(elapsed, proc.returncode)


def peak_rss_mib(argv: list[str], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL) -> tuple[float, float] | None:
    """(peak RSS MiB, user+sys CPU seconds) of one run, from GNU time's %M (KiB), or None without it.

    Not from os.wait4 on our own child: Python starts children with vfork, and Linux carries the
    parent's RSS high-water mark across exec into the child's ru_maxrss, so every tool would seem
    as large as the benchmark script itself.
    """
    if GNU_TIME is None:
        return None
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run([GNU_TIME, "-f", "%M %U %S", "-o", out.name, *argv], stdin=stdin, stdout=stdout,
                       stderr=stderr)
        rss, user, system = out.read().split()[-3:]
    return int(rss) / 1024, float(user) + float(system)


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs > 0 else "n/a"


def table(rows: list[list[str]], header: list[str]) -> str:
    """A Markdown table, ready to paste into benchmarks/README.md."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
