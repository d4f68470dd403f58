"""sock_diag netlink: the pure parser on packed messages, and the Linux reader on real sockets."""

from __future__ import annotations

import os
import socket
import struct
import tempfile

import pytest

from sockdiag.core import netlinkmsg as nl
from sockdiag.platform import netlink


# --- the pure parser, on messages packed here -----------------------------------------------------

def unix_msg(inode, sock_type=1, state=10, attrs=b""):
    return nl.pack_message(nl.SOCK_DIAG_BY_FAMILY, nl.NLM_F_MULTI, 7,
                           struct.pack("=BBBBIII", 1, sock_type, state, 0, inode, 1, 2) + attrs)


def inet_msg(family, state, sport, dport, src, dst, inode, attrs=b""):
    body = struct.pack("=BBBB", family, state, 1, 2) + struct.pack("!HH", sport, dport)
    body += src.ljust(16, b"\0") + dst.ljust(16, b"\0") + struct.pack("=III", 0, 0, 0)
    body += struct.pack("=IIIII", 200, 3, 4, 1000, inode)
    return nl.pack_message(nl.SOCK_DIAG_BY_FAMILY, nl.NLM_F_MULTI, 7, body + attrs)


def tcp_info(size):
    """A struct tcp_info of `size` bytes with recognisable values in the parsed fields."""
    raw = bytearray(size)
    for offset, fmt, value in ((68, "I", 1500), (72, "I", 250), (8, "I", 204000), (80, "I", 10),
                               (76, "I", 0x7FFFFFFF), (100, "I", 3), (120, "Q", 5000), (128, "Q", 6000),
                               (200, "Q", 7000)):
        if offset + struct.calcsize(fmt) <= size:
            struct.pack_into("=" + fmt, raw, offset, value)
    return bytes(raw)


DONE = nl.pack_message(nl.NLMSG_DONE, nl.NLM_F_MULTI, 7, struct.pack("=i", 0))


def parse_all(buf, parse, seq=7):
    out = []
    for msg_type, start, end in nl.messages(buf, seq):
        if msg_type == nl.NLMSG_DONE:
            return out, True
        out.append(parse(buf, start, end))
    return out, False


def test_requests_have_the_kernel_sizes():
    unix = nl.unix_request(seq=3)
    inet = nl.inet_request(nl.AF_INET6, seq=4)
    assert struct.unpack_from("=IHHI", unix) == (16 + 24, nl.SOCK_DIAG_BY_FAMILY, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, 3)
    assert struct.unpack_from("=IHHI", inet) == (16 + 56, nl.SOCK_DIAG_BY_FAMILY, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, 4)
    assert inet[16:19] == bytes([nl.AF_INET6, nl.IPPROTO_TCP, 2])  # ext bit for INET_DIAG_INFO
    assert nl.inet_request(nl.AF_INET, with_info=False)[18] == 0


@pytest.mark.parametrize("name, expected", [
    (b"/tmp/a\nb\x1c\xff\0", b"/tmp/a\nb\x1c\xff"),  # a path arrives with its NUL terminator
    (b"\0abs\n\0x", b"\0abs\n\0x"),  # an abstract name is exactly its bytes, NULs included
    (b"\0", b"\0"),
], ids=["path", "abstract", "abstract-empty"])
def test_parse_unix_names(name, expected):
    attrs = (nl.pack_attr(nl.UNIX_DIAG_NAME, name) + nl.pack_attr(nl.UNIX_DIAG_PEER, struct.pack("=I", 99))
             + nl.pack_attr(nl.UNIX_DIAG_RQLEN, struct.pack("=II", 2, 128))
             + nl.pack_attr(nl.UNIX_DIAG_VFS, struct.pack("=II", 55, 66)))
    rows, done = parse_all(unix_msg(42, 5, 10, attrs) + DONE, nl.parse_unix)
    assert done
    assert rows == [nl.UnixSock(42, "seqpacket", "LISTEN", expected, 99, 2, 128, 55, 66, None)]


def test_parse_unix_without_attributes():
    rows, _ = parse_all(unix_msg(1, 2, 7) + unix_msg(2, 9, 99), nl.parse_unix)
    assert rows == [nl.UnixSock(1, "dgram", "UNCONN", None, None, None, None, None, None, None),
                    nl.UnixSock(2, "9", "99", None, None, None, None, None, None, None)]


@pytest.mark.parametrize("size, newest", [(104, None), (120, None), (136, 6000), (232, 7000)],
                         ids=["linux-2.6", "no-bytes-received", "linux-4.1", "linux-5.5+"])
def test_parse_tcp_info_of_any_length(size, newest):
    info = nl.parse_tcp_info(tcp_info(size))
    assert (info.rtt_ms, info.rttvar_ms, info.rto_ms, info.snd_cwnd, info.total_retrans) == (1.5, 0.25, 204.0, 10, 3)
    assert info.snd_ssthresh is None  # still "infinite"
    assert info.bytes_acked == (5000 if size >= 128 else None)
    assert (info.bytes_sent if size >= 208 else info.bytes_received) == newest
    if size < 136:
        assert info.bytes_received is None and info.min_rtt_ms is None


def test_parse_tcp_info_shorter_than_the_oldest():
    info = nl.parse_tcp_info(tcp_info(74))  # cut inside rttvar
    assert info.rto_ms == 204.0 and info.rtt_ms == 1.5 and info.rttvar_ms is None and info.snd_cwnd is None


def test_parse_inet_v4_and_v6():
    v4 = inet_msg(nl.AF_INET, 1, 8080, 40000, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 2]), 77,
                  nl.pack_attr(nl.INET_DIAG_INFO, tcp_info(136)))
    v6 = inet_msg(nl.AF_INET6, 6, 443, 0, b"\0" * 15 + b"\1", b"\0" * 10 + b"\xff\xff" + bytes([10, 0, 0, 1]), 0)
    rows, done = parse_all(v4 + v6 + DONE, nl.parse_inet)
    assert done
    a, b = rows
    assert a[:13] == ("inet", "ESTABLISHED", "127.0.0.1", 8080, "127.0.0.2", 40000, 77, 1000, 3, 4, "on", 2, 200)
    assert a.info.rtt_ms == 1.5 and a.info.bytes_received == 6000
    assert b[:7] == ("inet6", "TIME_WAIT", "::1", 443, "::ffff:10.0.0.1", 0, 0) and b.info is None


def test_messages_error_and_seq_and_truncation():
    error = nl.pack_message(nl.NLMSG_ERROR, 0, 7, struct.pack("=i", -2) + b"\0" * 16)
    with pytest.raises(nl.NetlinkError) as caught:
        list(nl.messages(error, 7))
    assert caught.value.errno == 2
    assert list(nl.messages(error, 8)) == []  # another request's reply
    ack = nl.pack_message(nl.NLMSG_ERROR, 0, 7, struct.pack("=i", 0) + b"\0" * 16)
    assert list(nl.messages(ack, 7)) == []
    msg = unix_msg(1)
    with pytest.raises(ValueError):
        list(nl.messages(msg[:-4], 7))
    with pytest.raises(ValueError):
        list(nl.messages(msg + b"\0\0", 7))
    rows, done = parse_all(msg + DONE + unix_msg(2), nl.parse_unix)  # nothing after DONE
    assert done and [r.inode for r in rows] == [1]


def test_truncated_attribute_is_ignored():
    attrs = nl.pack_attr(nl.UNIX_DIAG_PEER, struct.pack("=I", 5)) + struct.pack("=HH", 40, nl.UNIX_DIAG_NAME) + b"ab"
    rows, _ = parse_all(unix_msg(3, attrs=attrs), nl.parse_unix)
    assert rows[0].peer == 5 and rows[0].name is None


def test_not_available_elsewhere(monkeypatch):
    assert not netlink.available("darwin") and not netlink.available("win32")
    monkeypatch.setattr(netlink, "SYSTEM", "darwin")
    with pytest.raises(netlink.NetlinkUnavailable, match="not available on darwin"):
        netlink.unix_sockets()


# --- the Linux reader on real sockets -------------------------------------------------------------

def _netlink_works() -> bool:
    if not netlink.available():
        return False
    try:
        netlink.unix_sockets()
        return True
    except netlink.NetlinkUnavailable:
        return False


linux_only = pytest.mark.skipif(not _netlink_works(), reason="needs Linux sock_diag netlink")


def inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


@pytest.fixture
def short_dir():
    # sun_path holds 108 bytes: a short directory of our own, whatever pytest's basetemp is
    with tempfile.TemporaryDirectory(prefix="sd") as path:
        yield os.fsencode(path)


@linux_only
def test_unix_hostile_names_read_back_exactly(short_dir):
    token = os.urandom(4).hex().encode()
    cases = [  # (type, name, listening)
        (socket.SOCK_STREAM, short_dir + b"/st\x1cream", True),
        (socket.SOCK_DGRAM, short_dir + b"/dg\nram\xff\xfe", False),
        (socket.SOCK_SEQPACKET, short_dir + b"/seq \xc3(\n", True),
        (socket.SOCK_STREAM, b"\0sockdiag-test\n" + token + b"\n", True),
        (socket.SOCK_DGRAM, b"\0sockdiag\0dgram" + token, False),
    ]
    socks = []
    try:
        for sock_type, name, listening in cases:
            sock = socket.socket(socket.AF_UNIX, sock_type)
            socks.append(sock)
            sock.bind(name)
            if listening:
                sock.listen(7)
        found = {u.inode: u for u in netlink.unix_sockets()}
        for sock, (sock_type, name, listening) in zip(socks, cases):
            row = found[inode(sock)]
            assert row.name == name
            assert row.type == {socket.SOCK_STREAM: "stream", socket.SOCK_DGRAM: "dgram",
                                socket.SOCK_SEQPACKET: "seqpacket"}[sock_type]
            assert row.state == ("LISTEN" if listening else "UNCONN")
            if name[:1] != b"\0":
                assert row.vfs_inode == os.stat(name).st_ino
            if listening:
                assert (row.rqueue, row.wqueue) == (0, 7)
    finally:
        for sock in socks:
            sock.close()


@linux_only
def test_unix_pairs_show_peers_and_accept_queue(short_dir):
    path = short_dir + b"/listener"
    a, b = socket.socketpair()
    with a, b, socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as client:
        listener.bind(path)
        listener.listen(3)
        client.connect(path)  # not accepted: it waits in the accept queue
        a.sendall(b"xyz")
        found = {u.inode: u for u in netlink.unix_sockets()}
        ra, rb = found[inode(a)], found[inode(b)]
        assert (ra.peer, rb.peer) == (inode(b), inode(a))
        assert ra.state == rb.state == "ESTABLISHED"
        assert rb.rqueue == 3
        lrow = found[inode(listener)]
        assert (lrow.state, lrow.name, lrow.rqueue, lrow.wqueue) == ("LISTEN", path, 1, 3)
        assert found[inode(client)].state == "ESTABLISHED"


def _loopback_tcp(family, host):
    listener = socket.socket(family)
    try:
        listener.bind((host, 0))
        listener.listen(5)
        client = socket.create_connection(listener.getsockname()[:2])
    except OSError:
        listener.close()
        raise
    server, _ = listener.accept()
    return listener, client, server


@linux_only
@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")], ids=["v4", "v6"])
def test_tcp_listener_and_pair(family, host):
    try:
        listener, client, server = _loopback_tcp(family, host)
    except OSError:
        pytest.skip(f"no {host} loopback")
    with listener, client, server:
        for _ in range(5):  # some traffic both ways, so rtt is measured
            client.sendall(b"p" * 1000)
            assert server.recv(4096)
            server.sendall(b"q" * 2000)
            got = 0
            while got < 2000:
                got += len(client.recv(4096))
        port = listener.getsockname()[1]
        found = {t.inode: t for t in netlink.tcp_sockets(with_info=True) if t.inode}
        lrow, crow, srow = found[inode(listener)], found[inode(client)], found[inode(server)]
        fam = "inet" if family == socket.AF_INET else "inet6"
        assert (lrow.family, lrow.state, lrow.local_address, lrow.local_port) == (fam, "LISTEN", host, port)
        assert (crow.state, crow.remote_address, crow.remote_port) == ("ESTABLISHED", host, port)
        assert (srow.state, srow.local_port, srow.remote_port) == ("ESTABLISHED", port, crow.local_port)
        assert crow.uid == os.getuid()
        assert crow.info is not None and crow.info.rtt_ms > 0 and crow.info.snd_cwnd > 0
        if crow.info.bytes_received is not None:
            assert crow.info.bytes_received >= 10000 and crow.info.bytes_acked >= 5000
        plain = {t.inode: t for t in netlink.tcp_sockets(with_info=False) if t.inode}
        assert plain[inode(client)].info is None
