"""Adaptive per-host timeouts: RFC 6298's smoothed round-trip time and its variation, with
nmap's bounds (--min-rtt-timeout 100 ms, --max-rtt-timeout 10 s, --initial-rtt-timeout 1 s).

The samples are handshakes that completed (a port open, or refused: the RST came back); the
timeout for a host is srtt + 4 * rttvar, within the bounds. A host with no sample yet uses the
estimate over all hosts (as nmap's group timing does), and before any sample the initial value.
"""

from __future__ import annotations

MIN_TIMEOUT, MAX_TIMEOUT, INITIAL_TIMEOUT = 0.1, 10.0, 1.0
_ALPHA, _BETA, _K = 1 / 8, 1 / 4, 4  # RFC 6298 2.3


class Rtt:
    """One estimator: sample(seconds) updates srtt/rttvar and the bounded `timeout`."""

    __slots__ = ("_high", "_low", "rttvar", "samples", "srtt", "timeout")

    def __init__(self, initial: float = INITIAL_TIMEOUT, low: float = MIN_TIMEOUT, high: float = MAX_TIMEOUT):
        self.srtt = self.rttvar = None
        self.timeout = initial
        self.samples = 0
        self._low, self._high = low, high

    def sample(self, rtt: float) -> float:
        """Take one measured round trip (seconds); return the new timeout."""
        rtt = max(0.0, rtt)
        if self.srtt is None:  # RFC 6298 2.2: the first measurement
            self.srtt, self.rttvar = rtt, rtt / 2
        else:  # RFC 6298 2.3: rttvar first, with the old srtt
            self.rttvar = (1 - _BETA) * self.rttvar + _BETA * abs(self.srtt - rtt)
            self.srtt = (1 - _ALPHA) * self.srtt + _ALPHA * rtt
        self.samples += 1
        self.timeout = min(self._high, max(self._low, self.srtt + _K * self.rttvar))
        return self.timeout


class RttTable:
    """Estimators per host (any hashable key) and one over all hosts, for hosts not heard from."""

    def __init__(self, initial: float = INITIAL_TIMEOUT, low: float = MIN_TIMEOUT, high: float = MAX_TIMEOUT):
        self.initial, self.low, self.high = initial, low, high
        self.overall = Rtt(initial, low, high)
        self.hosts: dict = {}

    def sample(self, host, rtt: float) -> None:
        est = self.hosts.get(host)
        if est is None:
            est = self.hosts[host] = Rtt(self.initial, self.low, self.high)
        est.sample(rtt)
        self.overall.sample(rtt)

    def timeout(self, host) -> float:
        """The timeout for the next attempt on `host`."""
        est = self.hosts.get(host)
        return (est or self.overall).timeout
