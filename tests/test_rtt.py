"""core.rtt (pure): RFC 6298 smoothed RTT and variation, within nmap's bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockdiag.core.rtt import INITIAL_TIMEOUT, MAX_TIMEOUT, MIN_TIMEOUT, Rtt, RttTable


def test_before_any_sample_the_initial_timeout():
    assert Rtt().timeout == INITIAL_TIMEOUT == 1.0
    assert Rtt(2.5).timeout == 2.5


def test_first_sample_sets_srtt_and_half_of_it_as_variation():
    est = Rtt()
    est.sample(0.4)
    assert (est.srtt, est.rttvar) == (0.4, 0.2)
    assert est.timeout == pytest.approx(0.4 + 4 * 0.2)


def test_later_samples_follow_rfc_6298():
    est = Rtt()
    est.sample(0.4)
    est.sample(0.8)
    rttvar = 0.75 * 0.2 + 0.25 * abs(0.4 - 0.8)  # with the old srtt
    srtt = 0.875 * 0.4 + 0.125 * 0.8
    assert (est.rttvar, est.srtt) == (pytest.approx(rttvar), pytest.approx(srtt))
    assert est.timeout == pytest.approx(srtt + 4 * rttvar)


@pytest.mark.parametrize("rtt, timeout", [
    pytest.param(0.00005, MIN_TIMEOUT, id="loopback-at-the-floor"),
    pytest.param(30.0, MAX_TIMEOUT, id="satellite-at-the-ceiling"),
])
def test_bounds(rtt, timeout):
    est = Rtt()
    for _ in range(20):
        est.sample(rtt)
    assert est.timeout == timeout


def test_a_host_without_samples_uses_the_estimate_over_all_hosts():
    table = RttTable()
    assert table.timeout("a") == INITIAL_TIMEOUT
    for _ in range(10):
        table.sample("a", 0.001)
    assert table.timeout("a") == MIN_TIMEOUT
    assert table.timeout("silent") == MIN_TIMEOUT  # as nmap's group timing
    for _ in range(10):
        table.sample("far", 0.5)
    assert table.timeout("far") > table.timeout("a")


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=1, max_size=50))
def test_timeout_always_within_bounds(samples):
    est = Rtt()
    for rtt in samples:
        assert MIN_TIMEOUT <= est.sample(rtt) <= MAX_TIMEOUT
