"""sockview (pure): filters, sorting, summary, --watch diffs and the text table; --state names."""

from __future__ import annotations

import argparse
import ipaddress
import re
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockdiag.core import sockview
from sockdiag.states.options import STATE_NAMES, state_name as _state_name
from sockdiag.core.sockview import ROW_KEYS

ME = 4242


def row(proto="tcp", laddr="127.0.0.1", lport=8080, raddr=None, rport=None, state="LISTEN", pid=ME, process="srv",
        owners=None, recv_q=None, send_q=None, timer=None, uid=None):
    family = {"tcp": "inet", "udp": "inet", "tcp6": "inet6", "udp6": "inet6", "unix": "unix"}[proto]
    if owners is None:
        owners = ((pid, process, 3),) if pid else ()
    return (proto, family, laddr, lport, raddr, rport, state, pid, process, owners, recv_q, send_q, timer, uid)


LISTENER = row()
SERVER = row(lport=8080, raddr="127.0.0.1", rport=40001, state="ESTABLISHED")
CLIENT = row(lport=40001, raddr="127.0.0.1", rport=8080, state="ESTABLISHED", pid=77, process="curl")
TIME_WAIT = row(lport=8080, raddr="127.0.0.1", rport=40002, state="TIME_WAIT", pid=None, process=None)
V6 = row("tcp6", "::1", 9090, state="LISTEN", pid=ME, process="srv")
UDP = row("udp", "0.0.0.0", 53, state="UNCONN", pid=5, process="dnsd")
UDP_CONNECTED = row("udp", "127.0.0.1", 40003, "127.0.0.1", 53, "ESTABLISHED", pid=6, process="dig")
UDP6 = row("udp6", "::", 5353, state="UNCONN", pid=5, process="dnsd")
UNIX = row("unix", "/run/a:b.sock", None, state="LISTEN", pid=1, process="init")
UNIX_ANON = row("unix", None, None, state="UNCONN", pid=None, process=None)
ALL = [LISTENER, SERVER, CLIENT, TIME_WAIT, V6, UDP, UDP_CONNECTED, UDP6, UNIX, UNIX_ANON]


@pytest.mark.parametrize(
    "flags, expected",
    [
        pytest.param({}, {"tcp", "tcp6", "udp", "udp6", "unix"}, id="default-all"),
        pytest.param({"tcp": True}, {"tcp", "tcp6"}, id="t"),
        pytest.param({"udp": True}, {"udp", "udp6"}, id="u"),
        pytest.param({"unix": True}, {"unix"}, id="x"),
        pytest.param({"tcp": True, "udp": True}, {"tcp", "tcp6", "udp", "udp6"}, id="tu"),
        pytest.param({"family": 4}, {"tcp", "udp"}, id="4"),
        pytest.param({"family": 6}, {"tcp6", "udp6"}, id="6"),
        pytest.param({"tcp": True, "family": 6}, {"tcp6"}, id="t6"),
        pytest.param({"unix": True, "family": 4}, set(), id="x4-nothing"),
    ],
)
def test_protocols(flags, expected):
    assert sockview.protocols(**flags) == expected


@pytest.mark.parametrize(
    "filters, expected",
    [
        pytest.param({}, ALL, id="none"),
        pytest.param({"protos": {"udp", "udp6"}}, [UDP, UDP_CONNECTED, UDP6], id="protos"),
        pytest.param({"listening": True}, [LISTENER, V6, UDP, UDP6, UNIX], id="listening"),
        pytest.param({"states": ["TIME_WAIT"]}, [TIME_WAIT], id="state"),
        pytest.param({"states": ["TIME_WAIT", "LISTEN"]}, [LISTENER, TIME_WAIT, V6, UNIX], id="states"),
        pytest.param({"states": ["NONE"]}, [UDP, UDP6, UNIX_ANON], id="state-none"),
        pytest.param({"states": ["UNCONN"]}, [UDP, UDP6, UNIX_ANON], id="state-unconn"),
        pytest.param({"states": ["BOUND"]}, [UDP, UDP6, UNIX_ANON], id="state-bound-is-unconn"),
        pytest.param({"port": 8080}, [LISTENER, SERVER, CLIENT, TIME_WAIT], id="port-local-or-remote"),
        pytest.param({"port": 53}, [UDP, UDP_CONNECTED], id="port-udp"),
        pytest.param({"pid": ME}, [LISTENER, SERVER, V6], id="pid"),
        pytest.param({"process": "SRV"}, [LISTENER, SERVER, V6], id="process-any-case"),
        pytest.param({"process": "d*"}, [UDP, UDP_CONNECTED, UDP6], id="process-glob"),
        pytest.param({"process": "sr"}, [], id="process-exact-not-prefix"),
        pytest.param({"port": 8080, "states": ["ESTABLISHED"], "pid": 77}, [CLIENT], id="combined"),
        pytest.param({"listening": True, "protos": {"tcp6"}}, [V6], id="listening-v6"),
    ],
)
def test_select(filters, expected):
    assert sockview.select(ALL, **filters) == expected


@pytest.mark.parametrize(
    "text, name",
    [
        ("time-wait", "TIME_WAIT"), ("time_wait", "TIME_WAIT"), ("TIME_WAIT", "TIME_WAIT"), ("Time-Wait", "TIME_WAIT"),
        ("established", "ESTABLISHED"), ("estab", "ESTABLISHED"), ("listen", "LISTEN"), ("LISTENING", "LISTEN"),
        ("fin-wait-1", "FIN_WAIT1"), ("fin_wait2", "FIN_WAIT2"), ("syn-recv", "SYN_RECV"), ("none", "NONE"),
        ("closed", "CLOSE"), ("delete-tcb", "DELETE_TCB"), ("bound", "BOUND"),
    ],
)
def test_state_names_are_normalised(text, name):
    assert _state_name(text) == name


@pytest.mark.parametrize("text", ["foo", "", "time wait x", "TIMEWAIT", "established!"])
def test_unknown_state_lists_valid_names(text):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        _state_name(text)
    assert "ESTABLISHED" in str(info.value) and "TIME_WAIT" in str(info.value)


def test_state_names_are_psutils_constants():
    psutil = pytest.importorskip("psutil")
    constants = {getattr(psutil, name) for name in dir(psutil) if name.startswith("CONN_")}
    assert set(STATE_NAMES) >= constants
    assert {"DELETE_TCB", "IDLE", "BOUND"} <= set(STATE_NAMES)


# --- sorting --------------------------------------------------------------------------------------

ipv4 = st.ip_addresses(v=4)
ipv6 = st.ip_addresses(v=6)


@given(ipv6)
def test_ipv6_words_match_ipaddress(address):
    words = sockview._ipv6_words(str(address))
    assert sum(w << (16 * (7 - i)) for i, w in enumerate(words)) == int(address)


@given(st.lists(st.one_of(ipv4, ipv6), min_size=2, max_size=20))
def test_address_key_orders_like_ipaddress(addresses):
    """IPv4 before IPv6, each numerically: what `ss` users expect from a sorted table."""
    by_key = sorted(addresses, key=lambda a: sockview.address_key(str(a)))
    assert by_key == sorted(addresses, key=lambda a: (a.version, int(a)))


@pytest.mark.parametrize("text", ["::ffff:127.0.0.1", "fe80::1", "::", "1::", "1:2:3:4:5:6:7:8", "::1.2.3.4"])
def test_ipv6_words_special_forms(text):
    words = sockview._ipv6_words(text)
    assert sum(w << (16 * (7 - i)) for i, w in enumerate(words)) == int(ipaddress.IPv6Address(text))


@pytest.mark.parametrize("text", ["1:2:3", "1::2::3", "1:2:3:4:5:6:7:8:9", "12345::", "1:2:3:4:5:6:7:8::"])
def test_ipv6_words_rejects_non_addresses(text):
    with pytest.raises(ValueError):
        sockview._ipv6_words(text)


def test_address_key_groups_paths_and_missing_last():
    keys = [sockview.address_key(a) for a in ("10.0.0.1", "::1", "/run/x.sock", None)]
    assert keys == sorted(keys)


def test_sort_local_numeric_not_textual():
    rows = [row(laddr="10.0.0.10"), row(laddr="10.0.0.9"), row(laddr="10.0.0.9", lport=80), V6]
    assert sockview.sort_rows(rows, "local") == [rows[2], rows[1], rows[0], V6]


def test_sort_remote_state_pid():
    rows = [SERVER, CLIENT, TIME_WAIT, LISTENER]
    assert sockview.sort_rows(rows, "remote")[-1] == LISTENER  # no remote address: last
    assert [r[6] for r in sockview.sort_rows(rows, "state")] == ["ESTABLISHED", "ESTABLISHED", "LISTEN", "TIME_WAIT"]
    assert [r[7] for r in sockview.sort_rows(rows, "pid")] == [77, ME, ME, None]


def test_sort_unknown_key():
    with pytest.raises(ValueError):
        sockview.sort_rows(ALL, "size")


# --- --summary ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "r, listening, port",
    [
        pytest.param(SERVER, {8080}, 8080, id="server-side-listening"),
        pytest.param(CLIENT, {8080}, 8080, id="loopback-client-remote-listening"),
        pytest.param(TIME_WAIT, set(), 8080, id="server-gone-lower-port"),
        pytest.param(row(lport=45000, raddr="192.0.2.1", rport=443, state="TIME_WAIT"), set(), 443, id="client"),
        pytest.param(LISTENER, set(), 8080, id="no-remote"),
        pytest.param(UNIX_ANON, set(), None, id="no-ports"),
    ],
)
def test_service_port(r, listening, port):
    assert sockview.service_port(r, frozenset(listening)) == port


def test_summarize_counts_and_top_ports():
    tw = [row(lport=8080, raddr="127.0.0.1", rport=40000 + i, state="TIME_WAIT", pid=None) for i in range(3)]
    tw += [row(lport=45000, raddr="127.0.0.1", rport=443, state="TIME_WAIT", pid=None)]
    rows = ALL + tw
    summary = sockview.summarize(rows, listening_ports={8080, 9090})
    assert all(tuple(s) == sockview.SUMMARY_KEYS for s in summary)
    totals = {s["proto"]: s["count"] for s in summary if s["section"] == "total"}
    assert totals == {None: len(rows), "tcp": 8, "tcp6": 1, "udp": 2, "udp6": 1, "unix": 2}
    states = {(s["proto"], s["state"]): s["count"] for s in summary if s["section"] == "state"}
    assert states[("tcp", "TIME_WAIT")] == 5 and states[("tcp", "ESTABLISHED")] == 2
    assert states[("udp", "UNCONN")] == 1 and states[("udp", "ESTABLISHED")] == 1  # no state is None
    assert sum(states.values()) == len(rows)
    ports = [(s["state"], s["port"], s["count"]) for s in summary if s["section"] == "port"]
    assert ports == [("TIME_WAIT", 8080, 4), ("TIME_WAIT", 443, 1), ("ESTABLISHED", 8080, 2), ("ESTABLISHED", 53, 1)]


def test_summarize_top_is_limited_and_ranked():
    rows = [row(lport=p, raddr="127.0.0.1", rport=60000, state="ESTABLISHED") for p in range(1, 9) for _ in range(p)]
    ports = [(s["port"], s["count"]) for s in sockview.summarize(rows, {*range(1, 9)}, top=3) if s["section"] == "port"]
    assert ports == [(8, 8), (7, 7), (6, 6)]


def test_summary_text():
    lines = sockview.summary_text(sockview.summarize(ALL, {8080}))
    assert lines[0] == "Total: 10 sockets (tcp 4, tcp6 1, udp 2, udp6 1, unix 2)"
    assert "Proto  State        Sockets" in lines
    assert "TIME_WAIT sockets by port (top 5):" in lines and "ESTABLISHED sockets by port (top 5):" in lines
    empty = sockview.summary_text(sockview.summarize([], ()))
    assert empty[0] == "Total: 0 sockets" and "TIME_WAIT sockets by port: none" in empty


# --- --watch --------------------------------------------------------------------------------------

rows_strategy = st.lists(st.sampled_from(ALL), max_size=12)


@given(rows_strategy, rows_strategy)
def test_changes_turn_before_into_after(before, after):
    appeared, gone = sockview.changes(before, after)
    assert Counter(before) - Counter(gone) + Counter(appeared) == Counter(after)
    assert not (Counter(appeared) & Counter(gone))


def test_marked_frame():
    appeared, gone = sockview.changes([LISTENER, SERVER], [LISTENER, TIME_WAIT])
    frame = sockview.marked([LISTENER, TIME_WAIT], appeared, gone)
    assert frame == [(" ", LISTENER), ("+", TIME_WAIT), ("-", SERVER)]
    lines = sockview.marked_text_lines(frame)
    assert lines[0].startswith("  Proto") and lines[2].startswith("+ tcp") and lines[3].startswith("- tcp")
    assert len({line.index("127.0.0.1") for line in lines[1:]}) == 1


# --- text ---------------------------------------------------------------------------------------

def test_text_table_columns_and_missing_values():
    lines = sockview.text_lines([LISTENER, TIME_WAIT, V6, UNIX, UNIX_ANON])
    assert re.split(r"\s{2,}", lines[0]) == list(sockview.TEXT_HEADERS)
    starts = [lines[0].index(h) for h in sockview.TEXT_HEADERS]
    for line in lines[1:]:
        for start in starts[1:]:
            assert line[start - 2:start] == "  " and line[start] != " "
    assert lines[1].split() == ["tcp", "-", "-", "127.0.0.1:8080", "-", "LISTEN", str(ME), "srv"]
    assert lines[2].split() == ["tcp", "-", "-", "127.0.0.1:8080", "127.0.0.1:40002", "TIME_WAIT", "-", "-"]
    assert lines[3].split()[3] == "[::1]:9090"
    assert lines[4].split()[3] == "/run/a:b.sock"  # a path is never bracketed
    assert lines[5].split() == ["unix", "-", "-", "-", "-", "UNCONN", "-", "-"]


def test_text_table_empty_and_headerless():
    assert sockview.text_lines([]) == ["  ".join(sockview.TEXT_HEADERS)]
    assert sockview.text_lines([], header=False) == []
    assert len(sockview.text_lines(ALL, header=False)) == len(ALL)


def test_row_keys_are_the_documented_ones():
    assert ROW_KEYS == ("proto", "family", "local_address", "local_port", "remote_address", "remote_port",
                        "state", "pid", "process", "owners", "recv_q", "send_q", "timer", "uid", "type", "inode")


def test_align():
    assert sockview.align([("a", "bb", "c"), ("ddd", "e", "")]) == ["a    bb  c", "ddd  e"]
    assert sockview.align([]) == []
