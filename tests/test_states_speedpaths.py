"""The socket table's fast paths: TCP rows straight from sock_diag netlink (the same rows as
/proc/net/tcp), the /proc/PID/fd walk in a thread beside them, and /proc/net/unix rows marked
ambiguous where a socket name holding a newline could have forged a line."""

from __future__ import annotations

import gc
import json
import os
import socket
import struct
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockdiag.core import netlinkmsg as nl
from sockdiag.core import sockview
from sockdiag.platform import netlink, procnet, socktable
from tests.conftest import run_main

# --- TableDump: inet_diag replies -> rows, on messages packed here --------------------------------


def table_msg(family, state, sport, dport, src, dst, inode, *, timer=0, expires=0, rqueue=0, wqueue=0,
              uid=1000, seq=7, attrs=b""):
    body = struct.pack("=BBBB", family, state, timer, 0) + struct.pack("!HH", sport, dport)
    body += src.ljust(16, b"\0") + dst.ljust(16, b"\0") + struct.pack("=III", 0, 0, 0)
    body += struct.pack("=IIIII", expires, rqueue, wqueue, uid, inode)
    return nl.pack_message(nl.SOCK_DIAG_BY_FAMILY, nl.NLM_F_MULTI, seq, body + attrs)


DONE = nl.pack_message(nl.NLMSG_DONE, nl.NLM_F_MULTI, 7, struct.pack("=i", 0))
LO = bytes([127, 0, 0, 1])


def parse(*buffers, proto="tcp", infos=None):
    dump = nl.TableDump(proto, 7, 100, infos=infos, little_endian=struct.pack("=H", 1) == b"\1\0")
    done = False
    for buf in buffers:
        done = dump.feed(buf, len(buf))
    return dump.rows, done


def test_rows_as_procnet_makes_them():
    rows, done = parse(
        table_msg(nl.AF_INET, 10, 8080, 0, LO, b"", 11, rqueue=2, wqueue=128)  # listener: no backlog shown
        + table_msg(nl.AF_INET, 1, 8080, 40001, LO, LO, 12, timer=2, expires=7213, rqueue=512, wqueue=16)
        + table_msg(nl.AF_INET, 6, 8080, 40002, LO, LO, 0, timer=3, expires=35000)
        + table_msg(nl.AF_INET, 7, 0, 0, b"", b"", 13) + DONE)
    assert done
    assert rows == [
        ("tcp", "inet", "127.0.0.1", 8080, None, None, "LISTEN", None, None, (), 2, None, None, 1000, "stream", 11),
        ("tcp", "inet", "127.0.0.1", 8080, "127.0.0.1", 40001, "ESTABLISHED", None, None, (), 512, 16,
         ("keepalive", 7.21), 1000, "stream", 12),  # ms, cut to /proc's 1/100 s
        ("tcp", "inet", "127.0.0.1", 8080, "127.0.0.1", 40002, "TIME_WAIT", None, None, (), 0, 0, ("timewait", 35.0),
         1000, "stream", 0),
        ("tcp", "inet", None, None, None, None, "CLOSE", None, None, (), 0, 0, None, 1000, "stream", 13),
    ]


def test_ipv6_rows_and_a_dump_over_several_buffers():
    mapped = b"\0" * 10 + b"\xff\xff" + LO
    first = table_msg(nl.AF_INET6, 10, 443, 0, b"\0" * 15 + b"\1", b"", 21)
    second = table_msg(nl.AF_INET6, 1, 443, 50000, mapped, mapped, 22)
    rows, done = parse(first, second + DONE, proto="tcp6")
    assert done and [r[:7] for r in rows] == [
        ("tcp6", "inet6", "::1", 443, None, None, "LISTEN"),
        ("tcp6", "inet6", "::ffff:127.0.0.1", 443, "::ffff:127.0.0.1", 50000, "ESTABLISHED")]
    assert parse(first)[1] is False  # no NLMSG_DONE yet: read on


def test_tcp_info_goes_to_infos_by_inode():
    info = bytearray(232)
    struct.pack_into("=I", info, 68, 1500)  # rtt 1.5 ms
    struct.pack_into("=I", info, 76, 0x7FFFFFFF)  # ssthresh still "infinite"
    attrs = nl.pack_attr(8, b"\0") + nl.pack_attr(nl.INET_DIAG_INFO, bytes(info))
    infos = {}
    rows, _ = parse(table_msg(nl.AF_INET, 1, 1, 2, LO, LO, 31, attrs=attrs)
                    + table_msg(nl.AF_INET, 1, 3, 4, LO, LO, 32, attrs=attrs) + DONE, infos=infos)
    assert len(rows) == 2 and set(infos) == {31, 32}
    assert infos[32] == nl.parse_tcp_info(bytes(info)) and infos[32].rtt_ms == 1.5 and infos[32].snd_ssthresh is None


@settings(max_examples=50)
@given(st.binary(min_size=100, max_size=300))
def test_one_unpack_reads_tcp_info_as_field_by_field(raw):
    assert nl._tcp_info_fast(raw, 0, len(raw)) == nl.parse_tcp_info(raw)


def test_errors_and_other_requests_replies():
    error = nl.pack_message(nl.NLMSG_ERROR, 0, 7, struct.pack("=i", -2) + b"\0" * 16)
    with pytest.raises(nl.NetlinkError):
        parse(error)
    stale = table_msg(nl.AF_INET, 1, 1, 2, LO, LO, 41, seq=6)
    rows, done = parse(stale + table_msg(nl.AF_INET, 1, 5, 6, LO, LO, 42) + DONE)
    assert done and [r[-1] for r in rows] == [42]
    with pytest.raises(ValueError):
        parse(table_msg(nl.AF_INET, 1, 1, 2, LO, LO, 43)[:-8])


# --- on real sockets: netlink rows == /proc rows; owners from the forked walk ---------------------

def _netlink_tcp() -> bool:
    try:
        netlink.tcp_rows(("tcp",))
        return True
    except netlink.NetlinkUnavailable:
        return False


linux_netlink = pytest.mark.skipif(not netlink.available() or not _netlink_tcp(), reason="needs Linux inet_diag")


@pytest.fixture
def tcp_pair():
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    client.sendall(b"x" * 1000)  # unread: a receive queue on the server side
    yield listener, client, server
    for sock in (client, server, listener):
        sock.close()


def _inode(sock) -> int:
    return os.fstat(sock.fileno()).st_ino


@linux_netlink
def test_netlink_rows_match_proc_rows(tcp_pair):
    mine = {_inode(s) for s in tcp_pair}
    hz = procnet.clock_ticks()
    by_proc = [r for r in procnet._inet_rows("tcp", hz=hz) if r[-1] in mine]
    by_netlink = [r for r in netlink.tcp_rows(("tcp",), hz) if r[-1] in mine]
    assert len(by_proc) == 3 and by_netlink == by_proc  # timers: none on an idle loopback pair


@linux_netlink
def test_read_rows_owners_from_the_walk_beside(tcp_pair):
    mine = {_inode(s) for s in tcp_pair}
    rows, _ = procnet.read_rows({"tcp"}, True)
    owned = [r for r in rows if r[-1] in mine]
    assert len(owned) == 3 and all([o[0] for o in r[sockview.OWNERS]] == [os.getpid()] for r in owned)
    infos: dict = {}
    rows, _ = procnet.read_rows({"tcp"}, False, infos=infos)
    assert {r[-1] for r in rows} >= mine and mine - {_inode(tcp_pair[0])} <= set(infos)


@linux_netlink
def test_refused_netlink_falls_back_to_proc(tcp_pair, monkeypatch):
    from sockdiag.core.errors import PermissionFailure

    def refused(*args, **kwargs):
        raise PermissionFailure("inet_diag: operation not permitted (EPERM)")

    mine = {_inode(s) for s in tcp_pair}
    expected = [r for r in procnet._inet_rows("tcp") if r[-1] in mine]
    monkeypatch.setattr(netlink, "tcp_rows", refused)
    infos: dict = {}
    rows, _ = procnet.read_rows({"tcp"}, False, infos=infos)
    assert [r for r in rows if r[-1] in mine] == expected and len(expected) == 3 and infos == {}


@pytest.fixture
def fake_proc(tmp_path):
    for pid, inodes in ((10, (5, 6)), (20, (6,))):
        fd = tmp_path / str(pid) / "fd"
        fd.mkdir(parents=True)
        (tmp_path / str(pid) / "comm").write_text(f"p{pid}\n")
        for n, inode in enumerate(inodes, 3):
            os.symlink(f"socket:[{inode}]", fd / str(n))
    return str(tmp_path)


def test_owner_walk_gives_the_in_process_result(fake_proc):
    names = procnet.ProcessNames(fake_proc)
    expected = procnet.owner_table(procnet.socket_owners(fake_proc)[0], names), 0
    walk = procnet.OwnerWalk(fake_proc, None, names)
    try:
        assert walk.result() == expected
    finally:
        walk.close()
    assert expected[0][6][2] in (((10, "p10", 4), (20, "p20", 3)), ((20, "p20", 3), (10, "p10", 4)))


def test_forked_walk_gives_the_in_process_result(fake_proc):
    """Two children walk alternate processes; a socket both hold (inode 6) merges back in PID order."""
    names = procnet.ProcessNames(fake_proc)
    expected = procnet.owner_table(procnet.socket_owners(fake_proc)[0], names), 0
    walk = procnet.ForkedOwnerWalk(fake_proc, None, names)
    try:
        got = walk.result()
    finally:
        walk.close()
    assert walk._children == []  # reaped: no zombie left
    # the same holders; a shared socket's in ascending PID order (the real /proc lists PIDs so)
    assert {inode: sorted(row[2]) for inode, row in got[0].items()} == \
        {inode: sorted(row[2]) for inode, row in expected[0].items()}
    assert got[0][6] == (10, "p10", ((10, "p10", 4), (20, "p20", 3))) and got[1] == 0


def test_forked_walk_walks_itself_when_a_child_fails(fake_proc, monkeypatch):
    parent = os.getpid()
    real = procnet.socket_triples
    expected = procnet.owner_table(procnet.socket_owners(fake_proc)[0], procnet.ProcessNames(fake_proc)), 0

    def fails_in_a_child(*args, **kwargs):
        if os.getpid() != parent:
            raise MemoryError
        return real(*args, **kwargs)

    monkeypatch.setattr(procnet, "socket_triples", fails_in_a_child)
    names = procnet.ProcessNames(fake_proc)
    walk = procnet.ForkedOwnerWalk(fake_proc, None, names)
    try:
        assert walk.result() == expected  # walked here
    finally:
        walk.close()
    assert walk._children == []


def test_owners_from_triples_is_merge_then_owner_table():
    """The one-pass merge gives what _merge_triples and owner_table give together: a socket held
    in two walks, and twice in one process (a dup), lists its holders by PID, then fd."""
    import array

    names = {1: "a", 2: "b", 3: "c"}.get
    parts = [array.array("q", [1, 100, 1, 3, 200, 1, 4, 300, 3, 9]),
             array.array("q", [2, 100, 2, 5, 300, 2, 7, 300, 2, 6, 400, 2, 8])]
    held, denied = procnet._merge_triples(parts)
    table, denied_too = procnet.owners_from_triples(parts, names)
    assert table == procnet.owner_table(held, names) and denied == denied_too == 3
    assert table[300] == (2, "b", ((2, "b", 6), (2, "b", 7), (3, "c", 9)))
    assert table[100] == (1, "a", ((1, "a", 3), (2, "b", 5)))


def test_owner_walk_errors_reach_the_caller_and_no_thread_is_left(tmp_path):
    walk = procnet.OwnerWalk(str(tmp_path / "no-such-proc"), None, procnet.ProcessNames(str(tmp_path)))
    try:
        with pytest.raises(FileNotFoundError):
            walk.result()
    finally:
        walk.close()
    assert not any(t.name == "sockdiag-owner-walk" for t in threading.enumerate())


def test_read_rows_waits_for_the_walk_when_reading_fails(fake_proc, monkeypatch):
    def broken(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/proc/net/tcp")

    monkeypatch.setattr(procnet, "_tcp_rows", broken)
    with pytest.raises(PermissionError):
        procnet.read_rows({"tcp"}, True, fake_proc)
    assert not any(t.name == "sockdiag-owner-walk" for t in threading.enumerate())


def test_states_leaves_the_garbage_collector_as_it_was():
    assert gc.isenabled()
    assert run_main(["states", "-t", "--port", "9"]).status == 0
    assert gc.isenabled()


# --- /proc/net/unix: rows that a name with a newline could have forged ---------------------------

HEADER = "Num       RefCount Protocol Flags    Type St Inode Path\n"


def record(inode, name=None, flags="00000000", kind="0001", st="01"):
    return f"0000000000000000: 00000002 00000000 {flags} {kind} {st} {inode:5d}" + (f" {name}" if name else "") + "\n"


def unix_table(tmp_path, text, kernel_count=None):
    (tmp_path / "net").mkdir(exist_ok=True)
    (tmp_path / "net" / "unix").write_text(HEADER + text, encoding="utf-8", errors="surrogateescape")
    if kernel_count is not None:
        (tmp_path / "net" / "protocols").write_text(
            "protocol  size sockets  memory press maxhdr  slab module     cl co di\n"
            f"UNIX-STREAM 1152 {kernel_count - 1:6d}      -1   NI       0   yes  kernel      y  n  n\n"
            "UNIX      1152      1      -1   NI       0   yes  kernel      y  n  n\n")
    rows = procnet.unix_rows({}, procnet.ProcessNames(str(tmp_path)), str(tmp_path))
    return [(r[2], r[-1] if len(r) > sockview.AMBIGUOUS else r[sockview.INODE], sockview.is_ambiguous(r))
            for r in rows]


def test_clean_table_has_no_ambiguous_rows(tmp_path):
    text = record(1, "/run/a b.sock", flags="00010000") + record(2, "@abs") + record(3) + record(4, "/run/\x1cc")
    rows = unix_table(tmp_path, text, kernel_count=4)
    assert [(name, amb) for name, _, amb in rows] == [
        ("/run/a b.sock", False), ("@abs", False), (None, False), ("/run/\x1cc", False)]  # \x1c splits no line


def test_name_cut_by_a_newline_is_joined_and_marked(tmp_path):
    text = record(1, "/tmp/a") + "rest of the name\n" + record(2, "/tmp/ends-in-newline") + "\n" + record(3)
    rows = unix_table(tmp_path, text)
    assert [(name, amb) for name, _, amb in rows] == [  # escaped as netlink's names are (core.pathtext)
        ("/tmp/a\\x0arest of the name", True), ("/tmp/ends-in-newline\\x0a", True), (None, False)]


def test_forged_records_are_marked(tmp_path):
    # A name ending in "\n" + a whole record: the forged line repeats a real inode...
    rows = unix_table(tmp_path, record(1, "/tmp/x") + record(7, "/run/important.sock") + record(7, "/run/important.sock"))
    assert [amb for _, _, amb in rows] == [False, True, True]
    # ... or invents one: more records than the kernel has unix sockets.
    text = record(1) + record(2, "/tmp/x") + record(99, "/run/forged") + record(3) + record(4, "@ok")
    rows = unix_table(tmp_path, text, kernel_count=4)
    assert [amb for _, _, amb in rows] == [False, True, True, True, True]
    assert [amb for _, _, amb in unix_table(tmp_path, text, kernel_count=5)] == [False] * 5


def test_cli_marks_ambiguous_rows_and_warns_once(monkeypatch):
    plain = ("unix", "unix", "/run/ok", None, None, None, "LISTEN", None, None, (), None, None, None, 0, "stream", 1)
    forged = ("unix", "unix", "/tmp/a\\x0ab", None, None, None, "UNCONN", None, None, (), None, None, None, 0,
              "stream", 2, True)
    monkeypatch.setattr(socktable, "socket_table_source", lambda system=None: "procfs")
    monkeypatch.setattr(procnet, "read_rows", lambda protos, with_pids=True, **kw: ([plain, forged], 0))
    r = run_main(["states", "-x", "-o", "json"])
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert "ambiguous" not in rows[0] and rows[1]["ambiguous"] is True
    assert list(rows[1])[:len(sockview.ROW_KEYS)] == list(sockview.ROW_KEYS)
    assert r.err.count("could not be read unambiguously") == 1 and "'unix?'" in r.err
    text = run_main(["states", "-x"]).text.splitlines()
    assert [line.split()[0] for line in text[1:]] == ["unix", "unix?"]
