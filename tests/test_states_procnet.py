"""procnet: the Linux /proc socket table, on fake /proc trees and against psutil on real sockets."""

from __future__ import annotations

import ipaddress
import os
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockdiag import platform
from sockdiag.core import sockview
from sockdiag.platform import procnet, socktable
from sockdiag.states import command as states

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
UNIX_HEADER = "Num       RefCount Protocol Flags    Type St Inode Path\n"


def hex4(address: str) -> str:
    """An IPv4 address as the kernel prints it in /proc/net/tcp (a host-order 32-bit word)."""
    return "%08X" % int.from_bytes(ipaddress.IPv4Address(address).packed, sys.byteorder)


def hex6(address: str) -> str:
    packed = ipaddress.IPv6Address(address).packed
    return "".join("%08X" % int.from_bytes(packed[i:i + 4], sys.byteorder) for i in range(0, 16, 4))


def inet_line(n, local, lport, remote, rport, st_hex, inode, v6=False, tail=" 1 0000000000000000 100 0 0 10 0",
              queues="00000000:00000000", timer="00:00000000"):
    enc = hex6 if v6 else hex4
    return (f"{n:4d}: {enc(local)}:{lport:04X} {enc(remote)}:{rport:04X} {st_hex} {queues} "
            f"{timer} 00000000  1000        0 {inode}{tail}\n")


def owned(pid, name, fd):
    return pid, name, ((pid, name, fd),)


@pytest.fixture
def fake_proc(tmp_path):
    """A /proc with a listener, a connection, a TIME_WAIT socket, UDP, IPv6 and unix sockets."""
    net = tmp_path / "net"
    net.mkdir()
    (net / "tcp").write_text(HEADER + "".join([
        inet_line(0, "127.0.0.1", 8080, "0.0.0.0", 0, "0A", 1001, queues="00000000:00000002"),  # 2 to accept
        inet_line(1, "127.0.0.1", 8080, "127.0.0.1", 40001, "01", 1002, queues="00000010:00000200",
                  timer="02:000002BC"),  # 16 bytes unacknowledged, 512 unread; keepalive in 700 ticks
        inet_line(2, "127.0.0.1", 8080, "127.0.0.1", 40002, "06", 0, tail=" 3 0000000000000000",
                  timer="03:00000DAC"),
        inet_line(3, "10.1.2.3", 40003, "192.0.2.9", 443, "01", 1009),  # owner not readable
        inet_line(4, "0.0.0.0", 0, "0.0.0.0", 0, "07", 1010),  # unbound: no endpoint
        inet_line(5, "127.0.0.1", 8081, "127.0.0.1", 40004, "0C", 0),  # request socket
    ]))
    (net / "tcp6").write_text(HEADER + "".join([
        inet_line(0, "::1", 9090, "::", 0, "0A", 1003, v6=True),
        inet_line(1, "::ffff:127.0.0.1", 9091, "::ffff:127.0.0.1", 40005, "01", 1004, v6=True),
    ]))
    (net / "udp").write_text(HEADER + inet_line(0, "0.0.0.0", 53, "0.0.0.0", 0, "07", 1005, tail=" 2 0000000000000000 0")
                             + inet_line(1, "127.0.0.1", 5353, "127.0.0.1", 53, "01", 1012, tail=" 2 0 0"))
    (net / "unix").write_text(UNIX_HEADER + "".join([
        "0000000000000000: 00000002 00000000 00010000 0001 01  1006 /run/my app.sock\n",
        "0000000000000000: 00000003 00000000 00000000 0001 03  1007 /run/my app.sock\n",
        "0000000000000000: 00000002 00000000 00000000 0002 01  1008 @abstract\n",
        "0000000000000000: 00000003 00000000 00000000 0001 03  1011\n",
    ]))
    owners = {100: ("srv", "/usr/bin/srv\0--flag\0", [1001, 1002, 1003, 1004, 1005, 1006, 1012]),
              200: ("a-very-long-nam", "/opt/a-very-long-name-daemon\0", [1007, 1008]),
              300: ("short-title-too", "short-title-too-long: worker process", [1011])}
    for pid, (comm, cmdline, inodes) in owners.items():
        fd = tmp_path / str(pid) / "fd"
        fd.mkdir(parents=True)
        (tmp_path / str(pid) / "comm").write_text(comm + "\n")
        (tmp_path / str(pid) / "cmdline").write_text(cmdline)
        for n, inode in enumerate(inodes, start=3):
            os.symlink(f"socket:[{inode}]", fd / str(n))
        os.symlink("pipe:[99]", fd / "0")
        os.symlink("/dev/null", fd / "1")
    (tmp_path / "self").mkdir()  # not a PID: ignored
    (tmp_path / "400").mkdir()  # a kernel thread or a process gone meanwhile: no fd directory
    return tmp_path


def test_inet_rows(fake_proc):
    owners, _ = procnet.socket_owners(str(fake_proc))
    rows = procnet.inet_rows("tcp", owners, procnet.ProcessNames(str(fake_proc)), str(fake_proc), hz=100)
    nobody = (None, None, ())
    assert [r[-2] for r in rows] == ["stream"] * 6 and all(isinstance(r[-1], int) for r in rows)  # type, inode
    assert [r[:14] for r in rows] == [
        ("tcp", "inet", "127.0.0.1", 8080, None, None, "LISTEN", *owned(100, "srv", 3), 2, None, None, 1000),
        ("tcp", "inet", "127.0.0.1", 8080, "127.0.0.1", 40001, "ESTABLISHED", *owned(100, "srv", 4), 512, 16,
         ("keepalive", 7.0), 1000),
        ("tcp", "inet", "127.0.0.1", 8080, "127.0.0.1", 40002, "TIME_WAIT", *nobody, 0, 0, ("timewait", 35.0), 1000),
        ("tcp", "inet", "10.1.2.3", 40003, "192.0.2.9", 443, "ESTABLISHED", *nobody, 0, 0, None, 1000),
        ("tcp", "inet", None, None, None, None, "CLOSE", *nobody, 0, 0, None, 1000),
        ("tcp", "inet", "127.0.0.1", 8081, "127.0.0.1", 40004, "SYN_RECV", *nobody, 0, 0, None, 1000),
    ]


def test_inet6_and_udp_rows(fake_proc):
    proc = str(fake_proc)
    owners, _ = procnet.socket_owners(proc)
    names = procnet.ProcessNames(proc)
    assert [r[:14] for r in procnet.inet_rows("tcp6", owners, names, proc)] == [
        ("tcp6", "inet6", "::1", 9090, None, None, "LISTEN", *owned(100, "srv", 5), 0, None, None, 1000),
        ("tcp6", "inet6", "::ffff:127.0.0.1", 9091, "::ffff:127.0.0.1", 40005, "ESTABLISHED", *owned(100, "srv", 6),
         0, 0, None, 1000),
    ]
    assert [r[-2] for r in procnet.inet_rows("udp", owners, names, proc)] == ["dgram", "dgram"]
    assert [r[:14] for r in procnet.inet_rows("udp", owners, names, proc)] == [  # UDP: UNCONN, or ESTABLISHED when connected
        ("udp", "inet", "0.0.0.0", 53, None, None, "UNCONN", *owned(100, "srv", 7), 0, 0, None, 1000),
        ("udp", "inet", "127.0.0.1", 5353, "127.0.0.1", 53, "ESTABLISHED", *owned(100, "srv", 9), 0, 0, None, 1000),
    ]
    assert procnet.inet_rows("udp6", owners, names, proc) == []  # no such file: no IPv6 on this host


def test_unix_rows(fake_proc):
    proc = str(fake_proc)
    owners, _ = procnet.socket_owners(proc)
    me = os.getuid()  # the uid of the owner's /proc/PID: here the test's
    daemon = "a-very-long-name-daemon"
    unix = procnet.unix_rows(owners, procnet.ProcessNames(proc), proc)
    assert all(r[-2] in ("stream", "dgram", "seqpacket") and isinstance(r[-1], int) for r in unix)
    assert [r[:14] for r in unix] == [
        ("unix", "unix", "/run/my app.sock", None, None, None, "LISTEN", *owned(100, "srv", 8), None, None, None, me),
        ("unix", "unix", "/run/my app.sock", None, None, None, "ESTABLISHED", *owned(200, daemon, 3), None, None, None,
         me),
        ("unix", "unix", "@abstract", None, None, None, "UNCONN", *owned(200, daemon, 4), None, None, None, me),
        ("unix", "unix", None, None, None, None, "ESTABLISHED", *owned(300, "short-title-too-long:", 3), None, None,
         None, me),
    ]


def test_unix_paths_keep_their_bytes(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "unix").write_bytes(UNIX_HEADER.encode() + b"0: 00000002 00000000 00010000 0001 01  7 "
                                                                   b"/run/caf\xc3\xa9-\xff.sock\n")
    [path] = [r[2] for r in procnet.unix_rows({}, procnet.ProcessNames(str(tmp_path)), str(tmp_path))]
    assert path.encode("utf-8", "surrogateescape") == b"/run/caf\xc3\xa9-\xff.sock"


def test_read_rows_selects_protocols_and_skips_owners(fake_proc):
    rows, uninspected = procnet.read_rows({"udp", "unix"}, True, str(fake_proc))
    assert [r[0] for r in rows] == ["udp"] * 2 + ["unix"] * 4 and uninspected == 0
    rows, _ = procnet.read_rows({"tcp"}, False, str(fake_proc))
    assert len(rows) == 6 and all(r[7] is None and r[8] is None and r[9] == () for r in rows)


def test_owner_walk_limited_to_pids_or_names(fake_proc):
    proc = str(fake_proc)
    rows, _ = procnet.read_rows({"tcp", "unix"}, True, proc, pids=[200])
    assert {r[7] for r in rows} == {None, 200}
    rows, _ = procnet.read_rows({"tcp", "unix"}, True, proc, process=lambda name: name.startswith("a-very"))
    assert {r[7] for r in rows} == {None, 200} and {r[8] for r in rows} == {None, "a-very-long-name-daemon"}
    rows, _ = procnet.read_rows({"unix"}, True, proc, pids=[100, 300], process=lambda name: name == "srv")
    assert {r[7] for r in rows} == {None, 100}
    assert procnet.pids_named(lambda name: True, procnet.ProcessNames(proc), proc) == sorted(
        [100, 200, 300], key=lambda p: os.listdir(proc).index(str(p)))


def test_unreadable_fd_directories_are_counted(fake_proc, monkeypatch):
    real_open = os.open

    def deny_200(path, *args, **kwargs):
        if str(path).endswith("/200/fd"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(procnet.os, "open", deny_200)
    owners, uninspected = procnet.socket_owners(str(fake_proc))
    assert uninspected == 1 and 1007 not in owners and owners[1001] == ((100, 3),)


def test_shared_socket_lists_every_process(tmp_path):
    for pid, fd in ((10, 3), (20, 6)):
        (tmp_path / str(pid) / "fd").mkdir(parents=True)
        os.symlink("socket:[5]", tmp_path / str(pid) / "fd" / str(fd))
    owners, _ = procnet.socket_owners(str(tmp_path))
    assert owners[5] == ((10, 3), (20, 6))  # by PID, whatever order the directory lists them in


def test_parent_pid_reads_stat_past_a_name_with_parentheses(tmp_path):
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "stat").write_text("42 (odd) name (x)) S 7 42 42 0 -1 4194560 0 0 0 0\n")
    assert procnet.parent_pid(42, str(tmp_path)) == 7
    assert procnet.parent_pid(43, str(tmp_path)) is None
    assert procnet.parent_pid(os.getpid()) == os.getppid() or not os.path.exists("/proc/self/stat")


def test_process_names(fake_proc):
    names = procnet.ProcessNames(str(fake_proc))
    assert names(100) == "srv" and names(None) is None and names(999) is None
    assert names(200) == "a-very-long-name-daemon"  # comm is cut at 15; argv[0] completes it
    assert names(300) == "short-title-too-long:"  # a title rewritten with spaces (setproctitle)


@given(st.ip_addresses(v=4))
def test_decode_ipv4(address):
    assert procnet.decode_ipv4(hex4(str(address))) == str(address)


@given(st.ip_addresses(v=6))
def test_decode_ipv6(address):
    assert ipaddress.IPv6Address(procnet.decode_ipv6(hex6(str(address)))) == address


# --- the same rows as psutil, on real sockets ----------------------------------------------------

linux_only = pytest.mark.skipif(socktable.socket_table_source() != "procfs", reason="the /proc fast path is Linux only")


@linux_only
def test_same_rows_as_psutil(tmp_path):
    """The fast path and psutil agree on this process's sockets of every protocol. Compared for
    this process only: other processes on the machine open and close sockets meanwhile."""
    from tests.test_states import loopback_sockets

    with loopback_sockets(tmp_path) as held:
        me = os.getpid()
        mine = {}
        for source in ("procfs", "psutil"):
            rows = states.collect(frozenset(sockview.PROTOS), source=source).rows
            # psutil has no unix socket states (connected or not) nor queues, timers, uids: compare without
            rows = [(r[:6] + (None,) + r[7:10]) if r[0] == "unix" else r[:10] for r in rows]
            mine[source] = sorted((r for r in rows if r[7] == me or (r[3] == held.tcp and r[6] == "TIME_WAIT")),
                                  key=repr)
        assert mine["procfs"] == mine["psutil"]
        protos = {r[0] for r in mine["procfs"]}
        assert {"tcp", "udp", "unix"} <= protos and {r[6] for r in mine["procfs"]} >= {"LISTEN", "ESTABLISHED"}


@linux_only
def test_fast_path_does_not_import_psutil():
    import subprocess

    from tests.conftest import ROOT

    code = ("import sys; from sockdiag.cli import main; from tests.conftest import make_env; "
            "rc = main(['states', '-t'], make_env()); print('psutil' in sys.modules); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_socket_table_source_per_os():
    assert socktable.socket_table_source(platform.LINUX) == "procfs"
    assert socktable.socket_table_source(platform.DARWIN) == "psutil"
    assert socktable.socket_table_source(platform.WINDOWS) == "psutil"
    assert socktable.socket_table_source("freebsd13") == "psutil"
    assert "sudo" in socktable.socket_table_denied_hint(platform.DARWIN)
    assert "Administrator" in socktable.socket_table_denied_hint(platform.WINDOWS)
    assert "root" in socktable.socket_table_denied_hint("openbsd7")


def test_psutil_kind_is_the_smallest_cover():
    assert socktable.psutil_kind({"tcp"}) == "tcp4"
    assert socktable.psutil_kind({"tcp", "tcp6"}) == "tcp"
    assert socktable.psutil_kind({"tcp", "udp"}) == "inet4"
    assert socktable.psutil_kind({"tcp", "udp6"}) == "inet"
    assert socktable.psutil_kind({"tcp6", "unix"}) == "all"
    assert socktable.psutil_kind(set(sockview.PROTOS)) == "all"

