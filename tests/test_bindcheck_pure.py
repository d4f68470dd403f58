"""bindcheck's pure parts: the /proc/net/tcp parser, holder selection, the verdict on every OS
(emulated through platform.bind_rules(system)), the Linux context lines and the CSV flattening."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockdiag import platform
from sockdiag.bindcheck import command as bindcheck
from sockdiag.core import bindverdict
from sockdiag.core.bindverdict import Target, decide, in_the_way, linux_context, parse_proc_net_tcp

# Real lines (trimmed at the inode) from /proc/net/tcp and tcp6 on x86-64 (little-endian).
HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
LISTEN_V4 = "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1669 1"
TIME_WAIT_V4 = "   1: 0100007F:972D 0100007F:B992 06 00000000:00000000 03:00000886 00000000     0        0 0 3"
TIME_WAIT_V6_MAPPED = ("   2: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:C350 06 "
                       "00000000:00000000 03:000012C0 00000000     0        0 0 3")
ESTABLISHED_V6 = ("   3: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:D431 01 "
                  "00000000:00000000 02:00000E2F 00000000  1000        0 4242 1")


def attempt(option, ok, errno=None):
    return {"option": option, "ok": ok, "errno": errno}


def row(state, local="127.0.0.1", port=8080, remote=None, remote_port=None, pid=None, process=None,
        family="inet", proto="tcp"):
    return {"proto": proto, "family": family, "local_address": local, "local_port": port,
            "remote_address": remote, "remote_port": remote_port, "state": state, "pid": pid, "process": process}


V4 = Target("127.0.0.1", socket.AF_INET)
IN_USE = [attempt("plain", False, "EADDRINUSE"), attempt("SO_REUSEADDR", False, "EADDRINUSE"),
          attempt("SO_REUSEPORT", False, "EADDRINUSE")]
REUSEADDR_OK = [attempt("plain", False, "EADDRINUSE"), attempt("SO_REUSEADDR", True),
                attempt("SO_REUSEPORT", False, "EADDRINUSE")]
TW = row("TIME_WAIT", remote="127.0.0.1", remote_port=50000)
LISTENER = row("LISTEN", pid=4321, process="nginx")


# --- /proc/net/tcp --------------------------------------------------------------------------------

def test_parse_skips_header_and_reads_ipv4():
    entries = parse_proc_net_tcp("\n".join([HEADER, LISTEN_V4, TIME_WAIT_V4]))
    assert [e.state for e in entries] == ["LISTEN", "TIME_WAIT"]
    tw = entries[1]
    assert (tw.local_address, tw.local_port, tw.remote_address, tw.remote_port) == \
        ("127.0.0.1", 0x972D, "127.0.0.1", 0xB992)
    assert (tw.timer, tw.when_ticks) == (3, 0x886)
    assert entries[0].local_address == "0.0.0.0" and entries[0].local_port == 2024


def test_parse_ipv6_and_mapped():
    v6, mapped = parse_proc_net_tcp("\n".join([HEADER, ESTABLISHED_V6, TIME_WAIT_V6_MAPPED]))
    assert v6.local_address == "::1" and v6.local_port == 8080 and v6.state == "ESTABLISHED"
    assert mapped.state == "TIME_WAIT" and mapped.remote_port == 50000
    assert bindverdict._ip_key(mapped.local_address) == bindverdict._ip_key("127.0.0.1")


def test_parse_big_endian_host():
    (entry,) = parse_proc_net_tcp("   0: 7F000001:0050 00000000:0000 0A 00000000:00000000 00:00000000 0 0 0 1",
                                  byteorder="big")
    assert entry.local_address == "127.0.0.1" and entry.local_port == 80


@pytest.mark.parametrize("line", [
    pytest.param("", id="empty"),
    pytest.param("   0: nothex:0050 00000000:0000 0A 0:0 00:0", id="bad-address"),
    pytest.param("   0: 0100007F:0050 00000000:0000 0A 0:0", id="too-short"),
    pytest.param("   0: 0100007F:0050 00000000:0000 0A 0:0 zz:0", id="bad-timer"),
    pytest.param("   0: 01007F:0050 00000000:0000 0A 0:0 00:0", id="3-byte-address"),
    pytest.param("x: 0100007F:0050 00000000:0000 0A 0:0 00:0", id="no-slot-number"),
])
def test_parse_skips_malformed_lines(line):
    assert parse_proc_net_tcp(line) == []


@given(st.text())
def test_parse_never_raises(text):
    assert isinstance(parse_proc_net_tcp(text), list)


@given(st.ip_addresses(v=4), st.integers(0, 65535), st.integers(0, 0xFFFFFFFF), st.integers(1, 12))
def test_parse_round_trips_ipv4(address, port, when, state):
    le = address.packed[::-1].hex().upper()
    line = f"  7: {le}:{port:04X} 00000000:0000 {state:02X} 00000000:00000000 03:{when:08X} 0 0 0 1"
    (entry,) = parse_proc_net_tcp(line)
    assert (entry.local_address, entry.local_port, entry.when_ticks) == (str(address), port, when)


@pytest.mark.parametrize("hz, expected", [(100, 21.82), (250, 8.728)])
def test_time_wait_timers_in_seconds(hz, expected):
    timers = bindverdict.time_wait_timers(parse_proc_net_tcp("\n".join([HEADER, LISTEN_V4, TIME_WAIT_V4])), hz)
    assert list(timers.values()) == [pytest.approx(expected)]


def test_row_timer_matches_psutil_rows_including_mapped_addresses():
    timers = bindverdict.time_wait_timers(parse_proc_net_tcp(TIME_WAIT_V6_MAPPED + "\n" + TIME_WAIT_V4))
    psutil_row = row("TIME_WAIT", "::ffff:127.0.0.1", 8080, "::ffff:127.0.0.1", 50000, family="inet6")
    assert bindverdict.row_timer(psutil_row, timers) == pytest.approx(48.0)
    assert bindverdict.row_timer(row("TIME_WAIT", port=8080, remote="127.0.0.1", remote_port=1), timers) is None
    assert bindverdict.row_timer(row("LISTEN", "127.0.0.1", 0x972D), timers) is None


# --- which sockets are in the way -----------------------------------------------------------------

DUAL = Target("::", socket.AF_INET6, dualstack=True)
ANY4 = Target("0.0.0.0", socket.AF_INET)
LOOP6 = Target("::1", socket.AF_INET6)


@pytest.mark.parametrize("target, local, family, expected", [
    pytest.param(V4, "127.0.0.1", "inet", True, id="same-v4"),
    pytest.param(V4, "127.0.0.2", "inet", False, id="other-v4"),
    pytest.param(V4, "0.0.0.0", "inet", True, id="v4-wildcard-holder"),
    pytest.param(V4, "::", "inet6", True, id="v6-wildcard-may-be-dualstack"),
    pytest.param(V4, "::ffff:127.0.0.1", "inet6", True, id="v4-mapped"),
    pytest.param(V4, "::1", "inet6", False, id="v6-loopback"),
    pytest.param(ANY4, "10.1.2.3", "inet", True, id="wildcard-target-meets-v4"),
    pytest.param(ANY4, "::1", "inet6", False, id="v4-wildcard-target-not-v6"),
    pytest.param(DUAL, "::1", "inet6", True, id="dualstack-meets-v6"),
    pytest.param(DUAL, "127.0.0.5", "inet", True, id="dualstack-meets-v4"),
    pytest.param(LOOP6, "::1", "inet6", True, id="same-v6"),
    pytest.param(LOOP6, "::", "inet6", True, id="v6-wildcard-holder"),
    pytest.param(LOOP6, "0.0.0.0", "inet", False, id="v6-target-not-v4-wildcard"),
    pytest.param(V4, None, "inet", True, id="unknown-address-listed"),
])
def test_in_the_way(target, local, family, expected):
    assert in_the_way(row("LISTEN", local, family=family), target) is expected


def test_select_holders_splits_by_port_and_address():
    rows = [row("LISTEN", "127.0.0.1", 80), row("LISTEN", "127.0.0.2", 80), row("LISTEN", "127.0.0.1", 81)]
    holders, others = bindverdict.select_holders(rows, 80, V4)
    assert holders == [rows[0]] and others == [rows[1]]


def test_count_states_most_frequent_first():
    rows = [TW, TW, LISTENER, row(None, proto="udp"), row("UNCONN", proto="udp")]
    assert bindverdict.count_states(rows) == {"TIME_WAIT": 2, "UNCONN": 2, "LISTEN": 1}  # states' vocabulary


# --- the verdict, per OS --------------------------------------------------------------------------

def rules_of(system, unprivileged_start=None):
    """`system`'s rules; the privileged-port limit only where a test names it (None: no limit)."""
    return platform.bind_rules(system)._replace(unprivileged_start=unprivileged_start)


def verdict(attempts, holders, system="linux", unprivileged_start=None, **kw):
    kw.setdefault("port", 8080)
    kw.setdefault("address", "127.0.0.1")
    return decide(attempts, holders, rules=rules_of(system, unprivileged_start), **kw)


@pytest.mark.parametrize("system", ["linux", "darwin", "win32"])
def test_free(system):
    d = verdict([attempt("plain", True)], [], system)
    assert d.verdict == "free" and "can bind it now" in d.advice


def test_free_with_sockets_that_do_not_block():
    d = verdict([attempt("plain", True)], [TW], "win32")
    assert d.verdict == "free" and "do not block" in d.reason


def test_address_not_available():
    d = verdict([attempt("plain", False, "EADDRNOTAVAIL")], [], address="192.0.2.1")
    assert d.verdict == "address not available"
    assert "192.0.2.1 is not an address of this host" in d.reason


def test_in_use_by_listener_names_pid_and_process():
    d = verdict(IN_USE, [LISTENER, TW])
    assert d.verdict == "in use"
    assert "LISTEN socket of PID 4321 (nginx) on 127.0.0.1:8080" in d.reason
    assert "and 1 more socket" not in d.reason  # the TIME_WAIT one is not live
    assert d.advice.startswith("stop PID 4321 (nginx)") and "another port" in d.advice


def test_in_use_prefers_the_listener_and_counts_the_rest():
    conn = row("ESTABLISHED", remote="127.0.0.1", remote_port=9, pid=7, process="curl")
    d = verdict(IN_USE, [conn, LISTENER])
    assert "PID 4321 (nginx)" in d.reason and "and 1 more socket" in d.reason


def test_in_use_by_connection_of_a_surviving_child():
    conn = row("ESTABLISHED", remote="127.0.0.1", remote_port=9, pid=7, process="worker")
    d = verdict(IN_USE, [conn])
    assert "an ESTABLISHED connection of PID 7 (worker) on 127.0.0.1:8080 -> 127.0.0.1:9" in d.reason
    assert "wait until its connection closes" in d.advice


def test_in_use_by_connection_that_reuseaddr_passes():
    conn = row("ESTABLISHED", remote="127.0.0.1", remote_port=9, pid=7, process="worker")
    d = verdict(REUSEADDR_OK, [conn])
    assert d.verdict == "in use" and "SO_REUSEADDR succeeds now" in d.reason
    assert "can start beside that connection" in d.advice
    windows = verdict([attempt("plain", False, "EADDRINUSE"), attempt("SO_EXCLUSIVEADDRUSE", True)], [conn], "win32")
    assert "SO_REUSEADDR" not in windows.advice


def test_in_use_by_invisible_pid():
    d = verdict(IN_USE, [row("LISTEN")])
    assert d.verdict == "in use" and "of a process not visible here" in d.reason


def test_in_use_but_no_visible_socket():
    d = verdict(IN_USE, [])
    assert d.verdict == "in use" and "bound without listening" in d.reason


def test_in_use_but_socket_table_unreadable():
    d = verdict(IN_USE, None)
    assert d.verdict == "in use" and "could not be read" in d.reason


def test_udp_in_use_says_reuse_binds_were_not_tried():
    attempts = [attempt("plain", False, "EADDRINUSE"), attempt("SO_REUSEADDR", None), attempt("SO_REUSEPORT", None)]
    d = verdict(attempts, [row("UNCONN", pid=9, process="dnsd", proto="udp")], udp=True)
    assert "an UNCONN socket of PID 9 (dnsd)" in d.reason and "not tried" in d.advice


def test_reuseport_group():
    attempts = [attempt("plain", False, "EADDRINUSE"), attempt("SO_REUSEADDR", False, "EADDRINUSE"),
                attempt("SO_REUSEPORT", True)]
    d = verdict(attempts, [LISTENER])
    assert d.verdict == "reuseport group"
    assert "SO_REUSEPORT" in d.reason and "same user" in d.advice and "PID 4321" in d.advice


def test_time_wait_reuseaddr_works():
    d = verdict(REUSEADDR_OK, [TW, TW], expires_s=41.2)
    assert d.verdict == "time-wait only"
    assert d.reason.startswith("2 sockets in TIME_WAIT, the last expiring in ~42 s")
    assert "a bind with SO_REUSEADDR succeeds now" in d.reason
    assert "set SO_REUSEADDR" in d.advice and "sockdiag listen" in d.advice


def test_time_wait_linux_not_even_reuseaddr():
    d = verdict(IN_USE, [TW], expires_s=12.0)
    assert d.verdict == "time-wait only"
    assert "not even a SO_REUSEADDR bind passes them" in d.reason
    assert "old server had not set SO_REUSEADDR" in d.reason
    assert d.advice == "wait ~12 s, and make the server set SO_REUSEADDR so the next restart does not hit this"


def test_time_wait_darwin_has_no_linux_rule_and_no_timer():
    d = verdict(IN_USE, [TW], "darwin")
    assert "not even a SO_REUSEADDR" in d.reason and "old server had not set" not in d.reason
    assert "up to 30 s" in d.advice


def test_time_wait_only_reuseport_passes():
    attempts = [attempt("plain", False, "EADDRINUSE"), attempt("SO_REUSEADDR", False, "EADDRINUSE"),
                attempt("SO_REUSEPORT", True)]
    d = verdict(attempts, [TW], expires_s=3)
    assert d.verdict == "time-wait only" and "SO_REUSEPORT succeeds now" in d.reason


def test_time_wait_windows_never_advises_reuseaddr():
    attempts = [attempt("plain", False, "EADDRINUSE"), attempt("SO_EXCLUSIVEADDRUSE", False, "EADDRINUSE")]
    d = verdict(attempts, [TW], "win32")
    assert d.verdict == "time-wait only"
    assert "up to 120 s" in d.advice and "do not set SO_REUSEADDR" in d.advice


def test_orphaned_closing_states_count_with_time_wait():
    fin = row("FIN_WAIT2", remote="127.0.0.1", remote_port=4)
    d = verdict(REUSEADDR_OK, [TW, fin], expires_s=5)
    assert d.verdict == "time-wait only" and "and 1 socket in FIN_WAIT2" in d.reason


def test_closing_state_with_a_pid_is_live():
    d = verdict(IN_USE, [row("FIN_WAIT2", remote="127.0.0.1", remote_port=4, pid=5, process="app")])
    assert d.verdict == "in use"


def test_permission_linux_names_the_setting():
    d = verdict([attempt("plain", False, "EACCES")], [], port=80, unprivileged_start=1024)
    assert d.verdict == "permission"
    assert "ports below 1024 need privilege (net.ipv4.ip_unprivileged_port_start = 1024)" in d.reason
    assert "CAP_NET_BIND_SERVICE" in d.advice and "1024 or above" in d.advice


def test_permission_linux_above_the_limit_is_a_policy():
    d = verdict([attempt("plain", False, "EACCES")], [], port=8080, unprivileged_start=1024)
    assert d.verdict == "permission" and "security policy" in d.reason


def test_permission_darwin_has_no_setting():
    d = verdict([attempt("plain", False, "EACCES")], [], "darwin", port=80,
                unprivileged_start=platform.unprivileged_port_start("darwin"))
    assert "ports below 1024 need privilege, and" in d.reason and "ip_unprivileged" not in d.advice


def test_windows_eacces_is_an_excluded_port_range():
    d = verdict([attempt("plain", False, "EACCES")], [], "win32", port=50000,
                unprivileged_start=platform.unprivileged_port_start("win32"))
    assert d.verdict == "permission" and "excludedportrange" in d.advice


def test_windows_eacces_with_a_live_holder_is_in_use():
    d = verdict([attempt("plain", False, "EACCES")], [LISTENER], "win32")
    assert d.verdict == "in use"


def test_unexpected_errno_is_an_error_verdict():
    d = verdict([attempt("plain", False, "EINVAL")], [])
    assert d.verdict == "error" and "EINVAL" in d.reason


def test_every_verdict_is_declared():
    assert {"free", "in use", "time-wait only", "reuseport group", "permission",
            "address not available"} <= set(bindverdict.VERDICTS)


# --- what the platform module says for each OS ---------------------------------------------------

@pytest.mark.parametrize("system, options", [
    ("linux", ("plain", "SO_REUSEADDR", "SO_REUSEPORT")),
    ("darwin", ("plain", "SO_REUSEADDR", "SO_REUSEPORT")),
    ("win32", ("plain", "SO_EXCLUSIVEADDRUSE")),
])
def test_attempt_options_per_system(system, options):
    if system == platform.SYSTEM and not platform.has_reuseport():
        options = options[:2]
    assert platform.bind_attempt_options(system) == options


@pytest.mark.parametrize("system, code", [("win32", 10048), ("linux", 98), ("darwin", 48)])
def test_windows_errno_names_feed_the_same_verdict(system, code):
    name = platform.errno_name(code, system)
    options = platform.bind_attempt_options(system)
    attempts = [attempt(option, False, name) for option in options]
    assert decide(attempts, [LISTENER], port=8080, address="0.0.0.0", rules=rules_of(system)).verdict == "in use"


def test_run_attempts_with_windows_options_and_udp_skips():
    calls = []

    def fake_bind(target, port, sock_type, option):
        calls.append(option)
        return attempt(option, option != "plain", None if option != "plain" else "EADDRINUSE")

    tcp = bindcheck.run_attempts(V4, 1, False, platform.bind_attempt_options("win32"), bind=fake_bind)
    assert [a["option"] for a in tcp] == ["plain", "SO_EXCLUSIVEADDRUSE"] and calls == ["plain", "SO_EXCLUSIVEADDRUSE"]
    calls.clear()
    udp = bindcheck.run_attempts(V4, 1, True, ("plain", "SO_REUSEADDR", "SO_REUSEPORT"), bind=fake_bind)
    assert calls == ["plain"] and [a["ok"] for a in udp] == [False, None, None]


@pytest.mark.parametrize("system, rule", [("linux", "own"), ("darwin", "any"), ("win32", None)])
def test_reuseaddr_time_wait_rule(system, rule):
    assert platform.reuseaddr_passes_time_wait(system) == rule


@pytest.mark.parametrize("text, expected", [("1024", 1024), ("0", None), ("80", 80), ("x", 1024)])
def test_unprivileged_port_start_linux(text, expected):
    assert platform.unprivileged_port_start("linux", sysctl=text) == expected


def test_unprivileged_port_start_other_systems():
    assert platform.unprivileged_port_start("win32") is None
    assert platform.unprivileged_port_start("darwin") == 1024


# --- Linux context --------------------------------------------------------------------------------

SYSCTL = {"net/ipv4/ip_local_port_range": "32768\t60999", "net/ipv4/ip_local_reserved_ports": "",
          "net/ipv4/ip_unprivileged_port_start": "1024", "net/ipv4/tcp_tw_reuse": "2",
          "net/ipv4/tcp_fin_timeout": "60"}


def context(port, udp=False, **changes):
    return dict(linux_context(port, udp, {**SYSCTL, **changes}))


def test_context_port_outside_ephemeral_range():
    lines = context(8080)
    assert lines["ephemeral ports"] == "32768-60999: 8080 is outside it"
    assert "privileged" not in lines
    assert "2 (loopback only)" in lines["tcp_tw_reuse"] and "nothing for bind()" in lines["tcp_tw_reuse"]
    assert "FIN_WAIT2" in lines["tcp_fin_timeout"] and "does not shorten TIME_WAIT" in lines["tcp_fin_timeout"]


def test_context_port_inside_range_and_reserved():
    assert "may take it at any time" in context(40000)["ephemeral ports"]
    assert "reserved" in context(40000, **{"net/ipv4/ip_local_reserved_ports": "39000-41000,50000"})[
        "ephemeral ports"]


def test_context_privileged_port_and_udp_skips_tcp_settings():
    lines = context(80, udp=True)
    assert "privileged" in lines and "tcp_tw_reuse" not in lines and "tcp_fin_timeout" not in lines


@pytest.mark.parametrize("value, mode", [("0", "off"), ("1", "on"), ("2", "loopback only")])
def test_context_tw_reuse_modes(value, mode):
    assert context(8080, **{"net/ipv4/tcp_tw_reuse": value})["tcp_tw_reuse"].startswith(f"{value} ({mode})")


def test_no_context_off_linux():
    assert linux_context(8080, False, {path: None for path in SYSCTL}) == []


# --- output ---------------------------------------------------------------------------------------

REPORT = {"port": 8080, "address": "127.0.0.1", "proto": "tcp", "verdict": "time-wait only",
          "attempts": REUSEADDR_OK, "holders": [TW], "time_wait": 1, "time_wait_expires_s": 41.5,
          "advice": "set SO_REUSEADDR, or wait"}


def test_csv_is_one_row_of_the_json_keys():
    header, line = bindverdict.csv_report(REPORT)
    assert header.split(",") == list(bindverdict.JSON_KEYS)
    assert line == ("8080,127.0.0.1,tcp,time-wait only,plain=EADDRINUSE SO_REUSEADDR=ok "
                    "SO_REUSEPORT=EADDRINUSE,1,1,41.5,\"set SO_REUSEADDR, or wait\"")


def test_text_report_shows_verdict_tables_and_warning():
    diagnosis = decide(REPORT["attempts"], REPORT["holders"], port=8080, address="127.0.0.1", expires_s=41.5,
                       rules=rules_of("linux"))
    timers = {bindverdict._conn_key("127.0.0.1", 8080, "127.0.0.1", 50000): 41.5}
    lines = bindverdict.text_report(REPORT, diagnosis, target=V4, context=[("tcp_tw_reuse", "2")],
                                  others=2, note=platform.reuseaddr_note("win32"), timers=timers)
    text = "\n".join(lines)
    assert lines[0].split() == ["port", "8080/tcp"]
    assert "verdict  TIME-WAIT ONLY" in text
    assert "warning  SO_REUSEADDR on Windows" in text
    assert "holders: 1 (1 TIME_WAIT)" in text
    tw_line = next(line for line in lines if "TIME_WAIT  " in line)
    assert tw_line.split() == ["tcp", "127.0.0.1:8080", "127.0.0.1:50000", "TIME_WAIT", "-", "-", "41.5"]
    assert "2 other sockets use port 8080" in text
    assert "  tcp_tw_reuse  2" in text


# --- several processes hold the port (a prefork server) --------------------------------------------

def shared(state="LISTEN", pids=(100, 101, 102), name="nginx"):
    r = row(state, pid=pids[0], process=name)
    r["owners"] = tuple((pid, name, 6) for pid in pids)
    return r


@pytest.mark.parametrize(
    "parents, master",
    [
        pytest.param({101: 100, 102: 100, 100: 1}, (100, "nginx"), id="parent"),
        pytest.param({101: 100, 102: 101, 100: 1}, (100, "nginx"), id="grandparent"),
        pytest.param({101: 100, 102: 1, 100: 1}, None, id="one-not-a-child"),
        pytest.param({}, None, id="unknown"),
    ],
)
def test_master_is_the_ancestor_of_every_other_owner(parents, master):
    owners = bindverdict.holder_pids([shared(pids=(101, 100, 102))])
    assert bindverdict.master(owners, parents) == master


def test_in_use_by_a_prefork_server_names_every_holder_and_stops_the_master():
    d = bindverdict.decide(IN_USE, [shared(pids=(101, 100, 102))], port=8080, address="127.0.0.1", rules=rules_of("linux"),
                           parents={101: 100, 102: 100, 100: 1})
    assert "PIDs 101 (nginx), 100 (nginx), 102 (nginx)" in d.reason
    assert d.advice.startswith("stop PID 100 (nginx), the parent the other holders (PIDs 101, 102)")


def test_in_use_by_unrelated_processes_names_them_all():
    d = bindverdict.decide(IN_USE, [shared(pids=(7, 8))], port=8080, address="127.0.0.1", rules=rules_of("linux"), parents={})
    assert d.advice.startswith("stop all of PIDs 7 (nginx), 8 (nginx)")


def test_owners_of_a_row_without_owners_is_its_pid():
    assert bindverdict.row_owners(LISTENER) == [(4321, "nginx")] and bindverdict.row_owners(TW) == []
    assert bindverdict.row_owners({"owners": [{"pid": 5, "process": "x", "fd": 3}]}) == [(5, "x")]
