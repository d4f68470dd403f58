"""leaks (pure): CLOSE_WAIT per process, ephemeral ports per destination, TIME_WAIT ports, and
the EADDRNOTAVAIL explanation for bindcheck --connect."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockdiag.core import leaks, sockview
from sockdiag.core.leaks import CONNECT_KEYS, LEAK_KEYS, PortRange

RANGE = "40000\t40099"  # 100 ports: small numbers keep the shares readable


def row(proto="tcp", laddr="10.0.0.1", lport=8080, raddr=None, rport=None, state="LISTEN", pid=1, process="srv",
        *extra):
    """A sockview row; `extra` trailing elements stand for columns the row model may gain."""
    family = "inet6" if proto.endswith("6") else "inet"
    return (proto, family, laddr, lport, raddr, rport, state, pid, process, *extra)


def client(lport, raddr="10.0.0.5", rport=5432, state="ESTABLISHED", laddr="10.0.0.1", proto="tcp"):
    owner = (None, None) if state == "TIME_WAIT" else (7, "app")
    return row(proto, laddr, lport, raddr, rport, state, *owner, "trailing")


def close_wait(pid, process, n, lport=8080):
    return [row("tcp", "10.0.0.1", lport, "10.0.0.9", 50000 + i, "CLOSE_WAIT", pid, process) for i in range(n)]


LISTENER = row()


# --- inputs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    pytest.param("32768\t60999", PortRange(32768, 60999), id="proc-tab"),
    pytest.param("1024 65535\n", PortRange(1024, 65535), id="spaces-newline"),
    pytest.param("5000 5000", PortRange(5000, 5000), id="one-port"),
    pytest.param(None, None, id="unknown"),
    pytest.param("", None, id="empty"),
    pytest.param("32768", None, id="one-number"),
    pytest.param("a b", None, id="not-numbers"),
    pytest.param("60999 32768", None, id="reversed"),
    pytest.param("0 100", None, id="port-zero"),
    pytest.param("1 70000", None, id="too-high"),
])
def test_parse_port_range(text, expected):
    assert leaks.parse_port_range(text) == expected


def test_port_range_size_and_membership():
    span = PortRange(32768, 60999)
    assert span.size == 28232
    assert 32768 in span and 60999 in span and 32767 not in span and None not in span


@pytest.mark.parametrize("address, expected", [
    pytest.param("10.0.0.5", "10.0.0.5", id="ipv4"),
    pytest.param("::ffff:10.0.0.5", "10.0.0.5", id="v4-mapped"),
    pytest.param("0:0:0:0:0:0:0:1", "::1", id="v6-compressed"),
    pytest.param("fe80::1%eth0", "fe80::1%eth0", id="v6-zone"),
    pytest.param("/run/x.sock", "/run/x.sock", id="unix-path"),
    pytest.param(None, None, id="none"),
])
def test_normalize_address(address, expected):
    assert leaks.normalize_address(address) == expected


# --- CLOSE_WAIT ---------------------------------------------------------------------------------

@pytest.mark.parametrize("threshold, expected", [
    pytest.param(1, [(2, "java", 12), (None, None, 5), (3, "nginx", 2)], id="all"),
    pytest.param(5, [(2, "java", 12), (None, None, 5)], id="five-or-more"),
    pytest.param(13, [], id="none-piling-up"),
])
def test_close_wait_by_process(threshold, expected):
    rows = [LISTENER, *close_wait(3, "nginx", 2), *close_wait(2, "java", 12), *close_wait(None, None, 5),
            client(40001)]
    assert [tuple(c) for c in leaks.close_wait_by_process(rows, threshold)] == expected


def test_close_wait_ties_sort_by_pid():
    rows = close_wait(9, "b", 3) + close_wait(4, "a", 3)
    assert [c.pid for c in leaks.close_wait_by_process(rows, 1)] == [4, 9]


# --- outgoing connections per destination -------------------------------------------------------

@pytest.mark.parametrize("rows, expected", [
    pytest.param([client(40000), client(40001, state="TIME_WAIT")], [("10.0.0.5", 5432, 2, 2, 1)],
                 id="established-and-time-wait"),
    pytest.param([LISTENER, row("tcp", "10.0.0.1", 8080, "10.0.0.9", 40000, "ESTABLISHED")], [],
                 id="server-side-excluded"),
    pytest.param([row("tcp", "10.0.0.1", 40000, None, None, "LISTEN"),
                  row("tcp", "10.0.0.1", 40000, "10.0.0.9", 1234, "ESTABLISHED")], [],
                 id="listener-in-range-is-server-side"),
    pytest.param([client(39999), client(40100)], [], id="outside-range"),
    pytest.param([client(40000, state="SYN_RECV")], [], id="syn-recv-is-server-side"),
    pytest.param([client(40000, proto="udp")], [], id="udp-ignored"),
    pytest.param([client(40000), client(40001, raddr="::ffff:10.0.0.5", laddr="::ffff:10.0.0.1", proto="tcp6")],
                 [("10.0.0.5", 5432, 2, 2, 0)], id="v4-mapped-same-destination"),
    pytest.param([client(40000), client(40000, laddr="10.0.0.2"), client(40001, laddr="10.0.0.2")],
                 [("10.0.0.5", 5432, 3, 2, 0)], id="busiest-source-address"),
    pytest.param([client(40000), client(40001, rport=80), client(40002, rport=80)],
                 [("10.0.0.5", 80, 2, 2, 0), ("10.0.0.5", 5432, 1, 1, 0)], id="most-ports-first"),
])
def test_outbound_destinations(rows, expected):
    found = leaks.outbound_destinations(rows, RANGE)
    assert [(d.address, d.port, d.sockets, d.ports_used, d.time_wait) for d in found] == expected
    assert all(d.ratio == d.ports_used / 100 for d in found)


def test_outbound_destinations_without_range_counts_every_client_port():
    found = leaks.outbound_destinations([client(39999), client(40100)], None)
    assert [(d.ports_used, d.ratio) for d in found] == [(2, None)]


def test_outbound_destinations_top():
    rows = [client(40000 + i, rport=1000 + i) for i in range(5)]
    assert len(leaks.outbound_destinations(rows, RANGE, top=2)) == 2


def test_time_wait_ports_come_from_sockview_summary():
    rows = [LISTENER, *(row("tcp", "10.0.0.1", 8080, "10.0.0.9", 50000 + i, "TIME_WAIT", None, None)
                        for i in range(3)), client(40000, state="TIME_WAIT")]
    summary = sockview.summarize(rows, {8080})
    expected = [(s["port"], s["count"]) for s in summary if s["section"] == "port" and s["state"] == "TIME_WAIT"]
    assert leaks.time_wait_ports(summary) == expected == [(8080, 3), (5432, 1)]


# --- the report ---------------------------------------------------------------------------------

def _busy_rows(n_clients=85, time_wait_every=2):
    rows = [LISTENER, *close_wait(2, "java", 12)]
    rows += [client(40000 + i, state="TIME_WAIT" if i % time_wait_every else "ESTABLISHED")
             for i in range(n_clients)]
    return rows


def test_leak_rows_have_stable_keys_and_sections():
    found = leaks.find_leaks(_busy_rows(), port_range=RANGE, tcp_tw_reuse="2")
    out = leaks.leak_rows(found)
    assert all(tuple(r) == LEAK_KEYS for r in out)
    assert [r["section"] for r in out] == ["close_wait", "outbound", "time_wait"]
    assert out[0] == dict.fromkeys(LEAK_KEYS) | {"section": "close_wait", "pid": 2, "process": "java",
                                                "count": 12}
    assert out[1]["remote_address"] == "10.0.0.5" and out[1]["ratio"] == 0.85 and out[1]["warning"] is True
    assert out[1]["range_size"] == 100 and out[1]["ports_used"] == 85


@pytest.mark.parametrize("n_clients, warned", [
    pytest.param(85, True, id="85-percent-warns"),
    pytest.param(80, True, id="80-percent-warns"),
    pytest.param(79, False, id="79-percent-quiet"),
])
def test_leak_lines_warn_near_exhaustion(n_clients, warned):
    lines = leaks.leak_lines(leaks.find_leaks(_busy_rows(n_clients), port_range=RANGE, tcp_tw_reuse="2"))
    warnings = [line for line in lines if line.startswith("warning:")]
    assert bool(warnings) is warned
    if warned:
        assert "EADDRNOTAVAIL" in warnings[0] and "net.ipv4.tcp_tw_reuse = 2" in warnings[0]
        assert "10.0.0.5:5432" in warnings[0]


def test_leak_lines_name_the_close_wait_diagnosis():
    lines = leaks.leak_lines(leaks.find_leaks(_busy_rows(), port_range=RANGE))
    assert "CLOSE_WAIT sockets by process (10 or more):" in lines
    assert leaks.CLOSE_WAIT_DIAGNOSIS in lines
    assert any(line.split() == ["2", "java", "12"] for line in lines)


def test_leak_lines_when_nothing_is_wrong():
    lines = leaks.leak_lines(leaks.find_leaks([LISTENER], port_range=None))
    assert lines == ["CLOSE_WAIT sockets by process: none with 10 or more", "",
                     "Outgoing connections by destination (ephemeral ports unknown): none", "",
                     "TIME_WAIT sockets by port: none"]


def test_find_leaks_reuses_a_given_summary():
    summary = [{"section": "port", "proto": None, "state": "TIME_WAIT", "port": 443, "count": 9}]
    assert leaks.find_leaks([], port_range=RANGE, summary=summary).time_wait_ports == [(443, 9)]


# --- bindcheck --connect ------------------------------------------------------------------------

@pytest.mark.parametrize("n_clients, listeners, verdict, left", [
    pytest.param(100, 0, "exhausted", 0, id="all-taken"),
    pytest.param(95, 5, "exhausted", 0, id="listeners-take-the-rest"),
    pytest.param(85, 0, "running out", 15, id="85-percent"),
    pytest.param(10, 0, "ports left", 90, id="plenty"),
    pytest.param(0, 0, "ports left", 100, id="no-connections"),
])
def test_explain_connect_verdicts(n_clients, listeners, verdict, left):
    rows = [client(40000 + i, state="TIME_WAIT" if i % 2 else "ESTABLISHED") for i in range(n_clients)]
    rows += [row("tcp", "0.0.0.0", 40099 - i) for i in range(listeners)]
    found = leaks.explain_connect(rows, "10.0.0.5", 5432, RANGE, "2")
    assert (found.verdict, found.left, found.used, found.bound) == (verdict, left, n_clients, listeners)
    assert found.verdict in leaks.CONNECT_VERDICTS
    if verdict != "ports left":
        assert "EADDRNOTAVAIL" in found.reason
    if listeners:
        assert "held by listeners" in found.reason


def test_explain_connect_counts_only_that_destination():
    rows = [client(40000), client(40001, state="TIME_WAIT"), client(40002, rport=80), client(40003, raddr="10.0.0.6")]
    found = leaks.explain_connect(rows, "::ffff:10.0.0.5", 5432, RANGE, "0")
    assert found.used == 2 and dict(found.by_state) == {"ESTABLISHED": 1, "TIME_WAIT": 1}
    assert found.destination == "10.0.0.5:5432"
    assert found.reason.startswith("2 local ports toward 10.0.0.5:5432 (1 ESTABLISHED, 1 TIME_WAIT) of 100")


def test_explain_connect_unknown_range():
    found = leaks.explain_connect([client(40000)], "10.0.0.5", 5432, None, None)
    assert (found.verdict, found.left, found.port_range) == ("unknown range", None, None)
    assert "unknown" in dict(found.context)["ephemeral ports"]
    row_ = leaks.connect_row(found)
    assert tuple(row_) == CONNECT_KEYS and row_["range_size"] is None


@pytest.mark.parametrize("value, address, says, advises_1", [
    pytest.param("0", "10.0.0.5", "(off)", True, id="off"),
    pytest.param("1", "10.0.0.5", "(on)", False, id="on"),
    pytest.param("2", "10.0.0.5", "this destination is not loopback", True, id="loopback-only-remote"),
    pytest.param("2", "127.0.0.1", "this destination is loopback, so it applies", False, id="loopback-only-local"),
    pytest.param("2", "::1", "this destination is loopback, so it applies", False, id="loopback-only-v6"),
    pytest.param(None, "10.0.0.5", "unknown here", False, id="not-linux"),
])
def test_explain_connect_tcp_tw_reuse(value, address, says, advises_1):
    rows = [client(40000 + i, raddr=address, state="TIME_WAIT") for i in range(90)]
    found = leaks.explain_connect(rows, address, 5432, RANGE, value)
    assert says in dict(found.context)["tcp_tw_reuse"]
    assert ("set net.ipv4.tcp_tw_reuse = 1" in found.advice) is advises_1
    assert "reuse connections" in found.advice and "ip_local_port_range" in found.advice


def test_tw_reuse_effect_states_the_safety_rule():
    text = leaks.tw_reuse_effect("1")
    assert "TCP timestamps" in text and "1 s" in text


def test_explain_connect_open_connections_advice():
    rows = [client(40000 + i) for i in range(90)]
    found = leaks.explain_connect(rows, "10.0.0.5", 5432, RANGE, "1")
    assert "open connections" in found.advice and "tcp_tw_reuse = 1" not in found.advice


def test_connect_lines_align_labels():
    lines = leaks.connect_lines(leaks.explain_connect([client(40000)], "10.0.0.5", 5432, RANGE, "2"))
    assert lines[0] == "destination      10.0.0.5:5432"
    assert lines[1] == "verdict          PORTS LEFT"
    assert [line.split()[0] for line in lines] == ["destination", "verdict", "reason", "advice", "ephemeral",
                                                   "tcp_tw_reuse"]


# --- properties ---------------------------------------------------------------------------------

STATES = st.sampled_from(["ESTABLISHED", "TIME_WAIT", "CLOSE_WAIT", "SYN_SENT", "FIN_WAIT2", "LISTEN", None])
ROWS = st.lists(st.builds(row, proto=st.sampled_from(["tcp", "tcp6", "udp"]),
                          laddr=st.sampled_from(["10.0.0.1", "10.0.0.2", "::1"]),
                          lport=st.integers(39990, 40110),
                          raddr=st.sampled_from([None, "10.0.0.5", "::ffff:10.0.0.5", "::1"]),
                          rport=st.sampled_from([None, 80, 5432]), state=STATES,
                          pid=st.sampled_from([None, 1, 2]), process=st.sampled_from([None, "a", "b"])),
                max_size=60)


@given(ROWS)
def test_shares_stay_within_the_range(rows):
    for d in leaks.outbound_destinations(rows, RANGE):
        assert 1 <= d.ports_used <= min(d.sockets, 100) and 0 < d.ratio <= 1 and d.time_wait <= d.sockets


@given(ROWS, st.sampled_from([("10.0.0.5", 80), ("10.0.0.5", 5432), ("::1", 80)]))
def test_explain_connect_accounts_for_every_port(rows, destination):
    found = leaks.explain_connect(rows, *destination, RANGE, "2")
    assert found.left == max(0, 100 - found.used - found.bound)
    assert found.verdict == "exhausted" or found.left > 0
    assert sum(n for _, n in found.by_state) >= found.used


@given(ROWS)
def test_close_wait_counts_every_close_wait_socket(rows):
    assert sum(c.count for c in leaks.close_wait_by_process(rows, 1)) == \
        sum(1 for r in rows if r[sockview.STATE] == "CLOSE_WAIT")
