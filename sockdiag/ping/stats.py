"""PURE: ping's tally and its summary lines, as ping(8) words them. No sockets, no I/O.

Times arrive as integer nanoseconds and the sums stay integers, so mdev (ping's
sqrt(mean(x^2) - mean(x)^2)) is computed from an exact, never negative, numerator.
"""

from __future__ import annotations

import math


class Tally:
    """Attempts and the round-trip times of the successful ones."""

    __slots__ = ("connected", "max_ns", "min_ns", "probes", "sum_ns", "sum_sq_ns")

    def __init__(self) -> None:
        self.probes = self.connected = 0
        self.min_ns: int | None = None
        self.max_ns: int | None = None
        self.sum_ns = self.sum_sq_ns = 0

    def add(self, rtt_ns: int | None) -> None:
        """Count one attempt: `rtt_ns` for a success, None for a failure (refused, timed out...)."""
        self.probes += 1
        if rtt_ns is None:
            return
        self.connected += 1
        self.sum_ns += rtt_ns
        self.sum_sq_ns += rtt_ns * rtt_ns
        if self.min_ns is None or rtt_ns < self.min_ns:
            self.min_ns = rtt_ns
        if self.max_ns is None or rtt_ns > self.max_ns:
            self.max_ns = rtt_ns

    @property
    def loss_pct(self) -> float | None:
        """Percent of attempts that did not succeed; None before the first attempt."""
        if not self.probes:
            return None
        return (self.probes - self.connected) * 100.0 / self.probes

    def rtt_ms(self) -> tuple[float, float, float, float] | None:
        """(min, avg, max, mdev) in milliseconds, or None when nothing succeeded."""
        n = self.connected
        if not n or self.min_ns is None or self.max_ns is None:
            return None
        # mean(x^2) - mean(x)^2 == (n*sum(x^2) - sum(x)^2) / n^2, exact in integers
        mdev_ns = math.sqrt(n * self.sum_sq_ns - self.sum_ns * self.sum_ns) / n
        return self.min_ns / 1e6, self.sum_ns / n / 1e6, self.max_ns / 1e6, mdev_ns / 1e6

    def succeeded(self) -> bool:
        """ping(8)'s exit rule: success when at least one attempt got its answer."""
        return self.connected > 0


def summary_lines(tally: Tally, target: str, proto: str, elapsed_ms: int) -> list[str]:
    """ping's closing block: `--- TARGET PROTO ping statistics ---`, the counts, the rtt line.

    Like ping: no loss or time before the first attempt, no rtt line without a success.
    """
    answered = "connected" if proto == "tcp" else "replied"
    counts = f"{tally.probes} probes, {tally.connected} {answered}"
    loss = tally.loss_pct
    if loss is not None:
        counts += f", {loss:g}% loss, time {elapsed_ms}ms"
    lines = [f"--- {target} {proto} ping statistics ---", counts]
    rtt = tally.rtt_ms()
    if rtt is not None:
        lines.append("rtt min/avg/max/mdev = {:.3f}/{:.3f}/{:.3f}/{:.3f} ms".format(*rtt))
    return lines


SUMMARY_KEYS = ("summary", "probes", "connected", "loss_pct", "time_ms",
                "rtt_min_ms", "rtt_avg_ms", "rtt_max_ms", "rtt_mdev_ms")


def summary_record(tally: Tally, elapsed_ms: int) -> dict:
    """The summary as one JSON object's fields (SUMMARY_KEYS); rtt fields null without a success."""
    loss = tally.loss_pct
    rtt = tally.rtt_ms() or (None, None, None, None)
    record = {"summary": True, "probes": tally.probes, "connected": tally.connected,
              "loss_pct": None if loss is None else round(loss, 3), "time_ms": elapsed_ms}
    for key, value in zip(SUMMARY_KEYS[5:], rtt):
        record[key] = None if value is None else round(value, 3)
    return record
