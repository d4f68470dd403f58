"""probe at network scale: -iL, --exclude/--excludefile, ranges, each address once, -o grep/csv/json,
progress on a terminal. Real listeners on 127.x.y.z addresses of this module's own (Linux routes
all of 127/8 to lo); names come from a monkeypatched getaddrinfo, never DNS."""

from __future__ import annotations

import contextlib
import csv
import io
import ipaddress
import json
import random
import re
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockdiag import platform
from sockdiag.core.spans import AddressRange, assign, merge, span_of, subtract
from sockdiag.core.targets import TargetError, parse_targets, split_target_text
from tests.conftest import run_main

LINUX = platform.SYSTEM == platform.LINUX
pytestmark = pytest.mark.skipif(not LINUX, reason="listeners on 127.x.y.z other than 127.0.0.1 need Linux")


def _base() -> str:
    """127.A.B. of this run: addresses no other test module uses (A, B random)."""
    return f"127.{random.randrange(100, 250)}.{random.randrange(1, 254)}."


BASE = _base()


def addr(n: int) -> str:
    return f"{BASE}{n}"


@contextlib.contextmanager
def listening(*hosts: str):
    """One listener on each address, all on the same port (bound on the first, reused on the
    others: a free port on one loopback address is free on the others of the module's /24)."""
    socks = []
    try:
        first = socket.socket()
        socks.append(first)
        first.bind((hosts[0], 0))
        first.listen(16)
        port = first.getsockname()[1]
        for host in hosts[1:]:
            s = socket.socket()
            socks.append(s)
            s.bind((host, port))
            s.listen(16)
        yield port
    finally:
        for s in socks:
            s.close()


def probe(*argv: str, **flags):
    return run_main(["probe", *argv], **flags)


def found(result) -> list[tuple[str, int]]:
    return [(line.split()[0], int(line.split()[1])) for line in result.text.splitlines()]


def fake_getaddrinfo(table):
    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table[host], 0))]
    return getaddrinfo


# --- pure: ranges, file text, spans ----------------------------------------------------------------

@pytest.mark.parametrize(
    "text, first, last",
    [
        pytest.param("127.0.1.1-254", "127.0.1.1", "127.0.1.254", id="last-octet"),
        pytest.param("127.0.1.1-127.0.1.9", "127.0.1.1", "127.0.1.9", id="two-addresses"),
        pytest.param("127.0.1.250-127.0.2.3", "127.0.1.250", "127.0.2.3", id="across-octets"),
        pytest.param("::1-::5", "::1", "::5", id="ipv6"),
        pytest.param("127.0.1.7-7", "127.0.1.7", "127.0.1.7", id="one-address"),
    ],
)
def test_ranges_parse_to_address_ranges(text, first, last):
    (spec,) = parse_targets(text)
    assert isinstance(spec.network, AddressRange)
    assert (str(spec.network[0]), str(spec.network[len(spec) - 1])) == (first, last)


@pytest.mark.parametrize(
    "text, needle",
    [
        pytest.param("127.0.1.9-1", "reversed", id="reversed"),
        pytest.param("127.0.1.1-256", "255 at most", id="octet-too-big"),
        pytest.param("127.0.1.1-::1", "one address family", id="mixed-families"),
        pytest.param("127.0.1.1-x", "bad range", id="junk-end"),
        pytest.param("127.0.0.0-127.2.0.0", "--force", id="too-big"),
    ],
)
def test_bad_ranges_are_usage_errors(text, needle):
    with pytest.raises(TargetError, match=re.escape(needle)):
        parse_targets(text)


def test_names_with_dashes_stay_names():
    assert [s.name for s in parse_targets("db-1.example,a-b")] == ["db-1.example", "a-b"]


def test_exclusions_have_no_size_limit():
    (spec,) = parse_targets("0.0.0.0/0", limit=False)
    assert len(spec) == 1 << 32


def test_target_file_text_as_nmap_reads_it():
    text = "# targets\n127.0.0.1\n\n  127.0.0.2 127.0.0.3,127.0.0.4\t# four\n#127.0.0.9\n127.0.1.0/30,\n"
    assert split_target_text(text) == ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.1.0/30"]


def v4(text: str):
    return span_of(ipaddress.ip_network(text) if "/" in text else ipaddress.ip_address(text))


def test_subtract_splits_without_listing():
    holes = merge([v4("10.0.0.5"), v4("10.0.0.8/30")])
    first, last = int(ipaddress.ip_address("10.0.0.0")), int(ipaddress.ip_address("10.0.0.255"))
    pieces = subtract(first, last, holes[(4, 0)])
    assert [(str(ipaddress.ip_address(a)), str(ipaddress.ip_address(b))) for a, b in pieces] == [
        ("10.0.0.0", "10.0.0.4"), ("10.0.0.6", "10.0.0.7"), ("10.0.0.12", "10.0.0.255")]


def test_assign_gives_each_address_to_the_first_target():
    spans = [v4("10.0.0.0/24"), v4("10.0.0.7"), v4("10.0.1.1"), v4("10.0.0.0/23"), v4("10.0.1.1")]
    plan = assign(spans, [v4("10.0.0.128/25")])
    sizes = [sum(b - a + 1 for a, b in p) for p in plan.pieces]
    assert sizes == [128, 0, 1, 255, 0]  # the /23 keeps 10.0.1.0-255 without 10.0.1.1
    assert plan.shared == [0, 1, 0, 257, 1] and plan.first_owner[1] == 0 and plan.first_owner[4] == 2
    assert plan.excluded == [128, 0, 0, 0, 0]


def test_a_16_minus_a_24_stays_two_spans():
    plan = assign([v4("10.1.0.0/16")], [v4("10.1.7.0/24")])
    assert len(plan.pieces[0]) == 2 and sum(b - a + 1 for a, b in plan.pieces[0]) == 65536 - 256


@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 8)), min_size=1, max_size=12),
       st.lists(st.tuples(st.integers(0, 60), st.integers(0, 8)), max_size=4))
def test_assign_covers_the_union_once(items, holes):
    """Every address of the union minus the holes belongs to exactly one target: the first."""
    spans = [((4, 0), a, a + n) for a, n in items]
    excluded = [((4, 0), a, a + n) for a, n in holes]
    plan = assign(spans, excluded)
    hole_set = {x for _, a, b in excluded for x in range(a, b + 1)}
    owner = {}
    for i, (_, a, b) in enumerate(spans):
        for x in range(a, b + 1):
            owner.setdefault(x, i)
    expected = {x: i for x, i in owner.items() if x not in hole_set}
    got = {}
    for i, pieces in enumerate(plan.pieces):
        assert pieces == sorted(pieces)
        for a, b in pieces:
            for x in range(a, b + 1):
                assert x not in got
                got[x] = i
    assert got == expected


# --- -iL --------------------------------------------------------------------------------------------

def test_input_file_with_comments_blanks_and_commas(tmp_path):
    with listening(addr(2), addr(5)) as port:
        targets = tmp_path / "hosts.txt"
        targets.write_text(f"# lab hosts\n{addr(1)}\n\n{addr(2)} {addr(3)},{addr(4)}  # three\n{addr(5)}-6\n")
        r = probe("-iL", str(targets), str(port))
    assert r.status == 0, r.err
    assert found(r) == [(addr(2), port), (addr(5), port)]


def test_input_from_stdin_and_every_positional_is_ports():
    with listening(addr(7)) as port:
        r = probe("-iL", "-", "1", str(port), stdin=f"{addr(7)}\n{addr(8)}\n".encode())
        r2 = probe("-iL", "-", f"1,{port}", stdin=f"{addr(7)}\n".encode())
    assert found(r) == [(addr(7), port)] and r.status == 0
    assert found(r2) == [(addr(7), port)]


def test_missing_input_file_is_one_line_exit_1(tmp_path):
    r = probe("-iL", str(tmp_path / "nope.txt"), "80")
    assert r.status == 1 and r.out == b""
    assert r.err.count("\n") == 1 and "-iL" in r.err and "ENOENT" in r.err


def test_empty_input_is_an_error_not_a_silent_success():
    r = probe("-iL", "-", "80", stdin=b"# nothing here\n\n")
    assert r.status == 1 and "no targets" in r.err and r.err.count("\n") == 1


def test_a_target_among_the_ports_with_input_file_gets_a_hint():
    r = probe("-iL", "-", addr(1), "80", stdin=f"{addr(1)}\n".encode())
    assert r.status == 2 and "with -iL every positional is PORTS" in r.err


def test_host_ports_positionals_unchanged():
    with listening(addr(9)) as port:
        r = probe(addr(9), "-w", "1", str(port))
    assert found(r) == [(addr(9), port)]
    r = probe(addr(9))
    assert r.status == 2 and r.err.splitlines() == ["sockdiag probe: error: the following arguments are required: PORTS",
                                                    "Try 'sockdiag probe --help'."]


# --- exclusions and each address once ---------------------------------------------------------------

def test_exclude_hosts_cidrs_and_ranges():
    hosts = [addr(n) for n in (1, 2, 5, 12, 17, 20)]
    with listening(*hosts) as port:
        r = probe("--exclude", f"{addr(2)},{addr(4)}/30,{addr(10)}-13", f"{addr(1)}-20", str(port))
    assert [h for h, _ in found(r)] == [addr(1), addr(17), addr(20)]


def test_excludefile(tmp_path):
    exclude = tmp_path / "exclude.txt"
    exclude.write_text(f"# never these\n{addr(1)}\n{addr(16)}/28\n")
    with listening(addr(1), addr(3), addr(17)) as port:
        r = probe("--excludefile", str(exclude), f"{addr(1)}-20", str(port))
    assert [h for h, _ in found(r)] == [addr(3)]


def test_excluding_every_target_is_an_error():
    r = probe("--exclude", f"{addr(0)}/24", addr(3), "80")
    assert r.status == 1 and "no target left" in r.err


def test_exclude_by_name(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo({"skip.test": addr(2)}))
    with listening(addr(1), addr(2)) as port:
        r = probe("--exclude", "skip.test", f"{addr(1)}-2", str(port))
    assert [h for h, _ in found(r)] == [addr(1)]
    r = probe("--exclude", "unknown.test", addr(1), str(port))
    assert r.status == 1 and "--exclude unknown.test" in r.err


def test_a_name_inside_a_block_is_scanned_once_and_v_says_so(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo({"db.test": addr(3)}))
    with listening(addr(3)) as port:
        r = probe("-v", f"{addr(0)}/29,db.test,{addr(3)}", str(port))
        quiet = probe(f"{addr(0)}/29,db.test", str(port))
    assert found(r) == [(addr(3), port)]
    assert f"db.test ({addr(3)}) already in {addr(0)}/29: scanned once" in r.err
    assert f"{addr(3)} already in {addr(0)}/29" in r.err
    assert "already" not in quiet.err


# --- ports --------------------------------------------------------------------------------------------

def test_exclude_ports():
    r = probe("-a", "--exclude-ports", "2,4-5", addr(30), "1-6")
    assert [p for _, p in found(r)] == [1, 3, 6]
    assert probe("--exclude-ports", "1-6", addr(30), "1-6").status == 2
    assert "--exclude-ports" in probe("--exclude-ports", "x-y", addr(30), "1-6").err


# --- order and output --------------------------------------------------------------------------------

def test_twenty_hosts_grouped_per_host_sorted_by_port_in_any_order():
    hosts = [addr(n) for n in (3, 8, 9, 15)]
    with listening(*hosts) as port, listening(addr(8), addr(15)) as port2:
        r = probe(f"{addr(1)}-20", f"1-20,{port},{port2}")
        seq = probe("--no-randomize", f"{addr(1)}-20", f"1-20,{port},{port2}")
    rows = found(r)
    expected = sorted([(h, port) for h in hosts] + [(h, port2) for h in (addr(8), addr(15))],
                      key=lambda row: (ipaddress.ip_address(row[0]), row[1]))
    assert rows == expected and r.text == seq.text


def test_grep_output_one_line_per_host():
    with listening(addr(41), addr(43)) as port, listening(addr(43)) as port2:
        r = probe("-o", "grep", f"{addr(41)}-44", f"{port},{port2}")
    lines = r.text.splitlines()
    assert re.fullmatch(r"# sockdiag \S+ probe scan initiated \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}: "
                        r"4 IP addresses x 2 tcp ports", lines[0])
    first, second = sorted((port, port2))
    ports43 = ", ".join(f"{p}/open/tcp//{platform.service_name(p, 'tcp') or ''}///" for p in (first, second))
    assert lines[1] == f"Host: {addr(41)} ()\tPorts: {port}/open/tcp//{platform.service_name(port, 'tcp') or ''}///"
    assert lines[2] == f"Host: {addr(43)} ()\tPorts: {ports43}"
    assert re.fullmatch(r"# sockdiag done at .* -- 4 IP addresses \(2 hosts with results\) scanned in [\d.]+ seconds",
                        lines[3])
    assert len(lines) == 4


def test_grep_output_with_all_states_and_field_escapes():
    from sockdiag.core.grepable import port_entry

    assert port_entry(22, "open", "tcp", "ssh", "SSH-2.0-x/y, z") == "22/open/tcp//ssh//SSH-2.0-x\\x2fy\\x2c z/"
    r = probe("-o", "grep", "-a", addr(50), "1-3")
    (line,) = [line for line in r.text.splitlines() if line.startswith("Host:")]
    assert line.startswith(f"Host: {addr(50)} ()\tPorts: 1/closed/tcp//")
    assert line.count("/closed/tcp/") == 3


def test_csv_and_json_rows():
    with listening(addr(60), addr(61)) as port:
        j = probe("-o", "json", f"{addr(60)}-61", str(port))
        c = probe("-o", "csv", f"{addr(60)}-61", str(port))
    rows = [json.loads(line) for line in j.text.splitlines()]
    assert [(row["host"], row["port"], row["state"]) for row in rows] == [(addr(60), port, "open"),
                                                                          (addr(61), port, "open")]
    table = list(csv.DictReader(io.StringIO(c.text)))
    assert [(row["host"], int(row["port"])) for row in table] == [(addr(60), port), (addr(61), port)]


@contextlib.contextmanager
def unanswered_port(host: str):
    """A port whose SYNs get no answer (a full accept queue drops them on Linux)."""
    with socket.socket() as lsock, socket.socket() as filler:
        lsock.bind((host, 0))
        lsock.listen(0)
        filler.connect(lsock.getsockname())
        yield lsock.getsockname()[1]


def test_progress_with_hosts_and_eta_only_on_a_terminal():
    with unanswered_port(addr(70)) as silent:
        tty = probe("-w", "0.4", f"{addr(70)}-71", str(silent), stderr_isatty=True)
        pipe = probe("-w", "0.4", f"{addr(70)}-71", str(silent))
    assert re.search(r"probe: \d/2 hosts, \d/2 \(\d+%\)", tty.err)
    assert "\r" not in pipe.err and "hosts" not in pipe.err


def test_grep_line_is_written_once_its_host_is_done():
    """Output streams a host's line when the watermark passes its last job, not at the next host."""
    from sockdiag.probe.command import Output
    from sockdiag.probe.scanner import Host
    from tests.conftest import make_env

    class Args:
        output, banner, all, udp = "grep", False, False, False

    env = make_env()
    out = Output(Args, env, "tcp", [Host(socket.AF_INET, [addr(1)]), Host(socket.AF_INET, [addr(2)])], [22, 80])
    out.rows([(0, addr(1), 22, "open", 0.001, None, None)])
    out.hosts_done(1)  # job 1 (addr(1) port 80) not final yet
    assert env.stdout.getvalue().count(b"Host:") == 0
    out.hosts_done(2)
    assert env.stdout.getvalue().decode().splitlines()[-1] == f"Host: {addr(1)} ()\tPorts: 22/open/tcp//ssh///"
    out.finish(0.5)
    assert env.stdout.getvalue().decode().splitlines()[-1].startswith("# sockdiag done at ")
