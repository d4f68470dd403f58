"""prometheus (pure): the text exposition format for node_exporter's textfile collector; its
escaping, its stable order, and a round trip through prometheus-client's own parser."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from sockdiag.core import prometheus
from sockdiag.core.prometheus import Family

RANGE = "40000\t40099"


def row(proto="tcp", laddr="10.0.0.1", lport=8080, raddr=None, rport=None, state="LISTEN", pid=1, process="srv"):
    family = "inet6" if proto.endswith("6") else "inet"
    return (proto, family, laddr, lport, raddr, rport, state, pid, process, "trailing")


ROWS = [
    row(),
    *(row("tcp", "10.0.0.1", 8080, "10.0.0.9", 50000 + i, "CLOSE_WAIT", 1, "srv") for i in range(3)),
    *(row("tcp", "10.0.0.1", 8080, "10.0.0.9", 51000 + i, "TIME_WAIT", None, None) for i in range(2)),
    *(row("tcp", "10.0.0.1", 40000 + i, "10.0.0.5", 5432, "TIME_WAIT", None, None) for i in range(4)),
    row("tcp", "10.0.0.1", 40010, "10.0.0.5", 5432, "ESTABLISHED", 7, "app"),
    row("tcp6", "::1", 40011, "::1", 6379, "CLOSE_WAIT", 7, "app"),
    row("udp", "0.0.0.0", 53, None, None, None, 5, "dnsd"),
    row("unix", "/run/a.sock", None, None, None, "LISTEN", 1, "init"),
]

EXPECTED = """\
# HELP sockdiag_sockets Sockets by protocol and state.
# TYPE sockdiag_sockets gauge
sockdiag_sockets{proto="tcp",state="CLOSE_WAIT"} 3
sockdiag_sockets{proto="tcp",state="ESTABLISHED"} 1
sockdiag_sockets{proto="tcp",state="LISTEN"} 1
sockdiag_sockets{proto="tcp",state="TIME_WAIT"} 6
sockdiag_sockets{proto="tcp6",state="CLOSE_WAIT"} 1
sockdiag_sockets{proto="udp",state="UNCONN"} 1
sockdiag_sockets{proto="unix",state="LISTEN"} 1
# HELP sockdiag_close_wait_sockets CLOSE_WAIT sockets by process: the peer closed, the process has not called close().
# TYPE sockdiag_close_wait_sockets gauge
sockdiag_close_wait_sockets{process="app",pid="7"} 1
sockdiag_close_wait_sockets{process="srv",pid="1"} 3
# HELP sockdiag_time_wait_sockets TIME_WAIT sockets by port (the 10 ports with most).
# TYPE sockdiag_time_wait_sockets gauge
sockdiag_time_wait_sockets{port="5432"} 4
sockdiag_time_wait_sockets{port="8080"} 2
# HELP sockdiag_ephemeral_ports_used_ratio Share of the ephemeral port range used by outgoing TCP connections \
to one destination; near 1, connect() to it fails with EADDRNOTAVAIL.
# TYPE sockdiag_ephemeral_ports_used_ratio gauge
sockdiag_ephemeral_ports_used_ratio{remote_address="10.0.0.5",remote_port="5432"} 0.05
sockdiag_ephemeral_ports_used_ratio{remote_address="::1",remote_port="6379"} 0.01
"""


# --- the format ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    pytest.param("nginx", "nginx", id="plain"),
    pytest.param('say "hi"', 'say \\"hi\\"', id="double-quote"),
    pytest.param("C:\\bin", "C:\\\\bin", id="backslash"),
    pytest.param("two\nlines", "two\\nlines", id="line-feed"),
    pytest.param('\\"\n', '\\\\\\"\\n', id="all-three"),
    pytest.param("tab\there {x}, y=z", "tab\there {x}, y=z", id="others-as-is"),
    pytest.param("\udcff", "\\\\udcff", id="lone-surrogate"),
])
def test_escape_label_value(value, expected):
    assert prometheus.escape_label_value(value) == expected


@pytest.mark.parametrize("text, expected", [
    pytest.param('a "b"', 'a "b"', id="quote-kept"),
    pytest.param("a\\b\nc", "a\\\\b\\nc", id="backslash-line-feed"),
])
def test_escape_help(text, expected):
    assert prometheus.escape_help(text) == expected


@pytest.mark.parametrize("value, expected", [
    pytest.param(3, "3", id="int"),
    pytest.param(True, "1", id="bool"),
    pytest.param(0.25, "0.25", id="float"),
    pytest.param(1e-05, "1e-05", id="small-float"),
    pytest.param(math.inf, "+Inf", id="inf"),
    pytest.param(-math.inf, "-Inf", id="minus-inf"),
    pytest.param(math.nan, "NaN", id="nan"),
])
def test_format_value(value, expected):
    assert prometheus.format_value(value) == expected


def test_exposition_ends_with_a_line_feed_and_keeps_empty_families():
    text = prometheus.exposition([Family("x_total", "counter", "X.", ()), Family("y", "gauge", "Y.", (((), 2),))])
    assert text == "# HELP x_total X.\n# TYPE x_total counter\n# HELP y Y.\n# TYPE y gauge\ny 2\n"


# --- sockdiag's families ------------------------------------------------------------------------

def test_socket_exposition_text():
    assert prometheus.socket_exposition(ROWS, port_range=RANGE) == EXPECTED


def test_no_ratio_family_without_the_range():
    names = [f.name for f in prometheus.socket_families(ROWS)]
    assert names == ["sockdiag_sockets", "sockdiag_close_wait_sockets", "sockdiag_time_wait_sockets"]


def test_empty_table_still_describes_every_family():
    lines = prometheus.exposition_lines(prometheus.socket_families([], port_range=RANGE))
    assert all(line.startswith("# ") for line in lines) and len(lines) == 8


def test_top_limits_time_wait_ports_to_the_busiest():
    rows = [row("tcp", "10.0.0.1", 1000 + p, "10.0.0.9", 50000 + i, "TIME_WAIT", None, None)
            for p in range(4) for i in range(p + 1)]
    family = prometheus.socket_families(rows, top=2)[2]
    assert family.samples == (((("port", "1002"),), 3), ((("port", "1003"),), 4))


def test_unknown_owner_has_empty_labels():
    rows = [row("tcp", "10.0.0.1", 8080, "10.0.0.9", 50000, "CLOSE_WAIT", None, None)]
    assert prometheus.socket_families(rows)[1].samples == (((("process", ""), ("pid", "")), 1),)


@given(st.permutations(ROWS))
def test_order_does_not_depend_on_the_table_order(rows):
    assert prometheus.socket_exposition(rows, port_range=RANGE) == EXPECTED


# --- round trip through prometheus-client's parser ----------------------------------------------

def _parse(text):
    parser = pytest.importorskip("prometheus_client.parser")
    return {f.name: f for f in parser.text_string_to_metric_families(text)}


def test_parser_reads_families_labels_and_values():
    families = _parse(EXPECTED)
    assert list(families) == ["sockdiag_sockets", "sockdiag_close_wait_sockets", "sockdiag_time_wait_sockets",
                              "sockdiag_ephemeral_ports_used_ratio"]
    assert {f.type for f in families.values()} == {"gauge"}
    sockets = {(s.labels["proto"], s.labels["state"]): s.value for s in families["sockdiag_sockets"].samples}
    assert sockets[("tcp", "TIME_WAIT")] == 6 and sockets[("udp", "UNCONN")] == 1 and len(sockets) == 7
    assert [(s.labels, s.value) for s in families["sockdiag_close_wait_sockets"].samples] == [
        ({"process": "app", "pid": "7"}, 1), ({"process": "srv", "pid": "1"}, 3)]
    assert [(s.labels, s.value) for s in families["sockdiag_time_wait_sockets"].samples] == [
        ({"port": "5432"}, 4), ({"port": "8080"}, 2)]
    assert [(s.labels, s.value) for s in families["sockdiag_ephemeral_ports_used_ratio"].samples] == [
        ({"remote_address": "10.0.0.5", "remote_port": "5432"}, 0.05),
        ({"remote_address": "::1", "remote_port": "6379"}, 0.01)]
    assert all(s.timestamp is None for f in families.values() for s in f.samples)


@given(st.text(max_size=30), st.text(max_size=30), st.integers(1, 5))
@example('we"ird\\name\n', "}", 2)
@example("a\rb\u2028c\x85", "\x00", 1)
@example("\\n", '\\"', 3)
def test_any_process_name_round_trips(name, other, count):
    rows = [row("tcp", "10.0.0.1", 8080, "10.0.0.9", 50000 + i, "CLOSE_WAIT", 42, name) for i in range(count)]
    rows.append(row("tcp", "10.0.0.1", 8081, "10.0.0.9", 50000, "CLOSE_WAIT", 43, other))
    text = prometheus.socket_exposition(rows)
    samples = _parse(text)["sockdiag_close_wait_sockets"].samples
    got = {s.labels["pid"]: (s.labels["process"], s.value) for s in samples}
    assert got == {"42": (name, count), "43": (other, 1)}


@given(st.text(max_size=40))
def test_help_text_round_trips(help_text):
    assume(help_text == help_text.strip())  # the parser drops the spaces around a HELP text
    family = _parse(prometheus.exposition([Family("x", "gauge", help_text, (((("l", help_text),), 1),))]))["x"]
    assert family.documentation == help_text
    assert family.samples[0].labels == {"l": help_text}
