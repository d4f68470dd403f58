"""PURE: sock_diag netlink messages (Linux's UNIX_DIAG and INET_DIAG) packed and parsed; no I/O.

platform/netlink.py sends the requests built here and feeds the replies back. The layouts are
the kernel's UAPI (include/uapi/linux/{netlink,rtnetlink,sock_diag,unix_diag,inet_diag,tcp}.h),
in host byte order except the inet ports and addresses (network order). Parsers read with
offsets into the received buffer (no slicing per message): at 20,000 sockets that is the cost
that matters (benchmarks/netlink.py).

Every attribute and every tcp_info field is read only when the kernel sent it, so an older
kernel's shorter struct tcp_info gives None for the newer fields instead of garbage.
"""

from __future__ import annotations

import struct
from collections import namedtuple
from collections.abc import Callable, Iterator

# netlink.h
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP_INTR, NLM_F_DUMP = 0x1, 0x2, 0x10, 0x300
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10  # Linux values (this is the Linux wire format)
IPPROTO_TCP = 6

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_RTATTR = struct.Struct("=HH")  # len, type
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")

# unix_diag.h
UDIAG_SHOW_NAME, UDIAG_SHOW_VFS, UDIAG_SHOW_PEER, UDIAG_SHOW_ICONS = 0x01, 0x02, 0x04, 0x08
UDIAG_SHOW_RQLEN, UDIAG_SHOW_MEMINFO, UDIAG_SHOW_UID = 0x10, 0x20, 0x40
UDIAG_SHOW_DEFAULT = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID
UNIX_DIAG_NAME, UNIX_DIAG_VFS, UNIX_DIAG_PEER, UNIX_DIAG_RQLEN, UNIX_DIAG_UID = 0, 1, 2, 4, 7
_UNIX_REQ = struct.Struct("=BBHIIIII")  # family, protocol, pad, states, ino, show, cookie[2]
_UNIX_MSG = struct.Struct("=BBBBIII")  # family, type, state, pad, ino, cookie[2]
_PAIR = struct.Struct("=II")

# inet_diag.h
INET_DIAG_INFO = 2  # attribute type; requested with ext bit 1 << (INET_DIAG_INFO - 1)
# inet_diag_req_v2: family, protocol, ext, pad, states, then struct inet_diag_sockid: sport, dport,
# src[16], dst[16] (network order), ifindex, cookie[2]
_INET_REQ = struct.Struct("=BBBBI" + "HH16s16sIII")
# inet_diag_msg: family, state, timer, retrans, the sockid, expires, rqueue, wqueue, uid, inode
_INET_MSG = struct.Struct("=BBBB" + "2s2s16s16sIII" + "IIIII")
ALL_STATES = 0xFFFFFFFF
# The states /proc/net/tcp lists: TCP_ESTABLISHED (1) .. TCP_NEW_SYN_RECV (12). Not bit 13,
# TCP_BOUND_INACTIVE (Linux 6.5+): bound sockets that neither listen nor connect, which /proc
# (and ss -a) do not list.
TABLE_STATES = 0x1FFE

SOCK_TYPES = {1: "stream", 2: "dgram", 5: "seqpacket"}  # Linux SOCK_* numbers
# The kernel's TCP_* states (include/net/tcp_states.h), named as platform/procnet.py names them.
TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
    7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
    12: "SYN_RECV",  # TCP_NEW_SYN_RECV: a request socket
}
# Unix sockets use three of them; TCP_CLOSE there means "not connected" (ss: UNCONN).
UNIX_STATES = {**TCP_STATES, 7: "UNCONN"}
# inet_diag_msg.idiag_timer (as ss names them): 0 none, 1 retransmit, 2 keepalive, 3 TIME_WAIT, 4 zero-window probe
TIMERS = {0: "off", 1: "on", 2: "keepalive", 3: "timewait", 4: "persist"}
TCP_INFINITE_SSTHRESH = 0x7FFFFFFF


class NetlinkError(Exception):
    """The kernel answered a request with NLMSG_ERROR; `errno` is the positive errno number."""

    def __init__(self, errno: int):
        super().__init__(errno)
        self.errno = errno


# The record types are collections.namedtuple, not typing.NamedTuple: importing typing and
# building the classes cost ~8 ms of the start-up of every `states -t` (-X importtime).

class UnixSock(namedtuple("UnixSock", "inode type state name peer rqueue wqueue vfs_inode vfs_dev uid")):
    """One unix socket from UNIX_DIAG. name: the exact bytes (b'\\0...' abstract, None unnamed).
    For LISTEN, rqueue is the accept queue and wqueue the backlog (as ss shows them).

    inode; type: stream | dgram | seqpacket (or the number as text); state: LISTEN | ESTABLISHED |
    UNCONN | ...; name; peer: the peer's inode (connected sockets); rqueue, wqueue; vfs_inode: the
    socket file's inode, for a bound path; vfs_dev: its device, the kernel's internal dev_t
    (major << 20 | minor); uid. None where the kernel did not say."""
    __slots__ = ()


class TcpInfo(namedtuple("TcpInfo", "rtt_ms rttvar_ms rto_ms min_rtt_ms snd_mss snd_cwnd snd_ssthresh unacked "
                                    "lost retrans total_retrans bytes_acked bytes_received bytes_sent bytes_retrans")):
    """The struct tcp_info fields sockdiag shows; None when this kernel's struct is too short.
    Times in ms (floats), the rest ints. snd_ssthresh is None also while it is still "infinite"
    (as ss omits it); retrans: segments retransmitted and not yet acknowledged; bytes_acked and
    bytes_received: Linux 4.1+; bytes_sent and bytes_retrans: Linux 5.5+."""
    __slots__ = ()


class InetSock(namedtuple("InetSock", "family state local_address local_port remote_address remote_port inode uid "
                                      "rqueue wqueue timer retrans expires_ms info")):
    """One TCP socket from INET_DIAG, raw: port 0 and the any-address stay as they are.

    family: inet | inet6; inode: 0 for TIME_WAIT and request sockets; timer: off | on | keepalive
    | timewait | persist; retrans: retransmits (or zero-window probes) of the running timer;
    info: TcpInfo or None."""
    __slots__ = ()


# --- packing ------------------------------------------------------------------------------------

def _align(n: int) -> int:
    return (n + 3) & ~3


def pack_message(msg_type: int, flags: int, seq: int, payload: bytes, pid: int = 0) -> bytes:
    """nlmsghdr + payload, padded to 4 bytes."""
    length = _NLMSGHDR.size + len(payload)
    return _NLMSGHDR.pack(length, msg_type, flags, seq, pid) + payload + b"\0" * (_align(length) - length)


def pack_attr(attr_type: int, data: bytes) -> bytes:
    """One rtattr (netlink attribute), padded to 4 bytes."""
    length = _RTATTR.size + len(data)
    return _RTATTR.pack(length, attr_type) + data + b"\0" * (_align(length) - length)


def unix_request(seq: int = 1, show: int = UDIAG_SHOW_DEFAULT, states: int = ALL_STATES) -> bytes:
    """A SOCK_DIAG_BY_FAMILY dump request for every unix socket (struct unix_diag_req)."""
    req = _UNIX_REQ.pack(AF_UNIX, 0, 0, states, 0, show, 0xFFFFFFFF, 0xFFFFFFFF)
    return pack_message(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, req)


def inet_request(family: int, seq: int = 1, with_info: bool = True, states: int = ALL_STATES,
                 protocol: int = IPPROTO_TCP) -> bytes:
    """A dump request for one family's TCP sockets (struct inet_diag_req_v2), with tcp_info if asked."""
    ext = 1 << (INET_DIAG_INFO - 1) if with_info else 0
    req = _INET_REQ.pack(family, protocol, ext, 0, states, 0, 0, b"", b"", 0, 0xFFFFFFFF, 0xFFFFFFFF)
    return pack_message(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, req)


# --- parsing ------------------------------------------------------------------------------------

def messages(buf: bytes, seq: int | None = None) -> Iterator[tuple[int, int, int]]:
    """(type, start, end) of each message in one recv()'d buffer: the payload is buf[start:end].

    Stops after NLMSG_DONE (yielding it, so the reader knows the dump ended); raises NetlinkError
    for NLMSG_ERROR with an error; ValueError for a truncated or malformed buffer. Messages of
    another sequence number (a stale reply) are skipped when `seq` is given.
    """
    unpack = _NLMSGHDR.unpack_from
    hdr = _NLMSGHDR.size
    off, n = 0, len(buf)
    while off + hdr <= n:
        length, msg_type, _flags, msg_seq, _pid = unpack(buf, off)
        if length < hdr or off + length > n:
            raise ValueError(f"netlink message of length {length} at offset {off} of {n}")
        if seq is None or msg_seq == seq:
            if msg_type == NLMSG_ERROR:
                code = -_I32.unpack_from(buf, off + hdr)[0] if length >= hdr + 4 else 0
                if code:
                    raise NetlinkError(code)
            else:
                yield msg_type, off + hdr, off + length
                if msg_type == NLMSG_DONE:
                    return
        off += _align(length)
    if off < n:
        raise ValueError(f"{n - off} trailing bytes after the last netlink message")


def attributes(buf: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """The rtattrs in buf[start:end] as {type: (data start, data end)} (the last of a type wins)."""
    out = {}
    unpack = _RTATTR.unpack_from
    while start + 4 <= end:
        length, attr_type = unpack(buf, start)
        if length < 4 or start + length > end:
            break  # a truncated attribute: ignore it and the rest, as the kernel's nla_parse
        out[attr_type & 0x3FFF] = (start + 4, start + length)  # drop NLA_F_NESTED / NET_BYTEORDER
        start += _align(length)
    return out


def parse_unix(buf: bytes, start: int, end: int) -> UnixSock:
    """One unix_diag_msg and its attributes."""
    if end - start < _UNIX_MSG.size:
        raise ValueError("short unix_diag_msg")
    _family, sock_type, state, _pad, inode, _c0, _c1 = _UNIX_MSG.unpack_from(buf, start)
    attrs = attributes(buf, start + _UNIX_MSG.size, end)
    name = peer = rqueue = wqueue = vfs_ino = vfs_dev = uid = None
    if (span := attrs.get(UNIX_DIAG_NAME)) is not None:
        name = bytes(buf[span[0]:span[1]])
        # The kernel sends the bound address length: a path keeps its terminating NUL (and a
        # path cannot hold a NUL), an abstract name is exactly its bytes, NULs and all.
        if name[:1] != b"\0":
            name = name.partition(b"\0")[0]
    if (span := attrs.get(UNIX_DIAG_PEER)) is not None and span[1] - span[0] >= 4:
        peer = _U32.unpack_from(buf, span[0])[0]
    if (span := attrs.get(UNIX_DIAG_RQLEN)) is not None and span[1] - span[0] >= 8:
        rqueue, wqueue = _PAIR.unpack_from(buf, span[0])
    if (span := attrs.get(UNIX_DIAG_VFS)) is not None and span[1] - span[0] >= 8:
        vfs_ino, vfs_dev = _PAIR.unpack_from(buf, span[0])
    if (span := attrs.get(UNIX_DIAG_UID)) is not None and span[1] - span[0] >= 4:
        uid = _U32.unpack_from(buf, span[0])[0]
    return UnixSock(inode, SOCK_TYPES.get(sock_type, str(sock_type)), UNIX_STATES.get(state, str(state)),
                    name, peer, rqueue, wqueue, vfs_ino, vfs_dev, uid)


# struct tcp_info (include/uapi/linux/tcp.h): (field, offset, format, scale). A field is read only
# when the kernel's struct reaches its end; Linux 2.6-4.0 stop at total_retrans (104 bytes).
_TCP_INFO_FIELDS = (
    ("rtt_ms", 68, "I", 1000), ("rttvar_ms", 72, "I", 1000), ("rto_ms", 8, "I", 1000),
    ("min_rtt_ms", 148, "I", 1000), ("snd_mss", 16, "I", None), ("snd_cwnd", 80, "I", None),
    ("snd_ssthresh", 76, "I", None), ("unacked", 24, "I", None), ("lost", 32, "I", None),
    ("retrans", 36, "I", None), ("total_retrans", 100, "I", None), ("bytes_acked", 120, "Q", None),
    ("bytes_received", 128, "Q", None), ("bytes_sent", 200, "Q", None), ("bytes_retrans", 208, "Q", None),
)
_TCP_INFO_READERS = tuple((struct.Struct("=" + fmt).unpack_from, offset, offset + struct.calcsize(fmt), scale)
                          for _, offset, fmt, scale in _TCP_INFO_FIELDS)
assert tuple(f[0] for f in _TCP_INFO_FIELDS) == TcpInfo._fields


def parse_tcp_info(buf: bytes, start: int = 0, end: int | None = None) -> TcpInfo:
    """struct tcp_info in buf[start:end] -> TcpInfo; fields past `end` (an older kernel) are None.
    Times arrive in microseconds and are returned in milliseconds."""
    size = (len(buf) if end is None else end) - start
    values = []
    for unpack, offset, stop, scale in _TCP_INFO_READERS:
        if stop > size:
            values.append(None)
            continue
        value = unpack(buf, start + offset)[0]
        values.append(value / scale if scale else value)
    if values[6] is not None and values[6] >= TCP_INFINITE_SSTHRESH:
        values[6] = None
    return TcpInfo(*values)


def _ipv4(raw: bytes) -> str:
    return "%d.%d.%d.%d" % (raw[0], raw[1], raw[2], raw[3])


def ipv6_text(raw: bytes) -> str:
    """16 bytes -> compressed IPv6 text, IPv4-mapped as ::ffff:a.b.c.d (as inet_ntop writes it)."""
    if raw[:12] == b"\0" * 10 + b"\xff\xff":
        return "::ffff:" + _ipv4(raw[12:])
    import ipaddress  # only here: platform passes inet_ntop instead

    return str(ipaddress.IPv6Address(raw))


def parse_inet(buf: bytes, start: int, end: int, ntop6: Callable[[bytes], str] = ipv6_text) -> InetSock:
    """One inet_diag_msg and its INET_DIAG_INFO attribute (when sent: not for TIME_WAIT and
    request sockets). `ntop6` turns a 16-byte address into text (platform passes a cached
    inet_ntop, so the text matches /proc's reader)."""
    if end - start < _INET_MSG.size:
        raise ValueError("short inet_diag_msg")
    (family, state, timer, retrans, sport, dport, src, dst, _ifindex, _c0, _c1,
     expires, rqueue, wqueue, uid, inode) = _INET_MSG.unpack_from(buf, start)
    if family == AF_INET:
        fam, laddr, raddr = "inet", _ipv4(src), _ipv4(dst)
    else:
        fam, laddr, raddr = "inet6", ntop6(src), ntop6(dst)
    info = None
    if end - start > _INET_MSG.size:
        span = attributes(buf, start + _INET_MSG.size, end).get(INET_DIAG_INFO)
        if span is not None:
            info = parse_tcp_info(buf, span[0], span[1])
    return InetSock(fam, TCP_STATES.get(state, str(state)), laddr, int.from_bytes(sport, "big"), raddr,
                    int.from_bytes(dport, "big"), inode, uid, rqueue, wqueue, TIMERS.get(timer, str(timer)),
                    retrans, expires, info)


# --- the socket table's fast path ---------------------------------------------------------------
# `states` reads 20,000 TCP sockets this way: one unpack per message straight into a row tuple,
# none of the InetSock/attribute dicts above (benchmarks/states.py: about 2.5x less CPU than
# reading and parsing /proc/net/tcp, whose text the kernel alone takes ~70 ms to format).

# nlmsghdr and inet_diag_msg in one go: len, type, flags, seq, pid | family, state, timer, retrans,
# sport, dport (network order, read as host-order H and swapped), src, dst, (ifindex, cookie),
# expires, rqueue, wqueue, uid, inode
_TABLE_MSG = struct.Struct("=IHHII" + "BBBBHH16s16s12xIIIII")
# struct tcp_info up to bytes_retrans (Linux 5.5+) in one unpack: the _TCP_INFO_FIELDS by offset
# (rto mss unacked lost retrans rtt rttvar ssthresh cwnd total_retrans bytes_acked bytes_received
# min_rtt bytes_sent bytes_retrans); a shorter (older) struct goes through parse_tcp_info.
_INFO_ALL = struct.Struct("=8xI4xI4xI4xII28xIIII16xI16xQQ12xI48xQQ")


def _tcp_info_fast(buf, start: int, end: int) -> TcpInfo:
    """parse_tcp_info, in one unpack when the kernel's struct has every field."""
    if end - start < _INFO_ALL.size:
        return parse_tcp_info(buf, start, end)
    (rto, mss, unacked, lost, retrans, rtt, rttvar, ssthresh, cwnd, total_retrans, acked, received, min_rtt,
     sent, retransmitted) = _INFO_ALL.unpack_from(buf, start)
    return _new_tuple(TcpInfo, (rtt / 1000, rttvar / 1000, rto / 1000, min_rtt / 1000, mss, cwnd,
                                None if ssthresh >= TCP_INFINITE_SSTHRESH else ssthresh, unacked, lost, retrans,
                                total_retrans, acked, received, sent, retransmitted))


_new_tuple = tuple.__new__  # TcpInfo(...) without NamedTuple's Python-level __new__


class TableDump:
    """Parses the replies to one inet_request() into socket-table rows, buffer by buffer.

    Rows are tuples in core.sockview.ROW_KEYS order, as platform.procnet makes them from
    /proc/net/tcp: no owners yet (pid, process None, owners ()), port 0 is no endpoint (None,
    None), a listener's send_q None (/proc has no backlog, and the two readers agree), the timer
    (name, seconds) at /proc's resolution of `hz` ticks per second. `infos` (when given) gets
    inode -> TcpInfo for each socket the kernel sent one for. `ntop6`: 16 bytes -> IPv6 text."""

    def __init__(self, proto: str, seq: int, hz: int, ntop6: Callable[[bytes], str] = ipv6_text,
                 infos: dict | None = None, little_endian: bool = True):
        self.rows: list[tuple] = []
        self.done = False
        self._proto, self._seq, self._hz, self._ntop6, self._infos = proto, seq, hz, ntop6, infos
        self._swap = little_endian
        self._addresses: dict[bytes, str] = {}

    def feed(self, buf, n: int) -> bool:
        """Parse buf[:n], one recv()'s worth; True once NLMSG_DONE arrived. NetlinkError for an
        error reply, ValueError for a truncated buffer."""
        unpack = _TABLE_MSG.unpack_from
        size = _TABLE_MSG.size
        append = self.rows.append
        addresses = self._addresses
        states, timers = TCP_STATES, TIMERS
        proto, seq, hz, swap, infos = self._proto, self._seq, self._hz, self._swap, self._infos
        family = "inet6" if proto == "tcp6" else "inet"
        info_at, info_len = 0, -1
        off = 0
        while off + size <= n:  # a whole socket message fits (DONE and errors are shorter)
            (length, msg_type, _flags, msg_seq, _pid, fam, state, timer, _retrans, sport, dport, src, dst,
             expires, rqueue, wqueue, uid, inode) = unpack(buf, off)
            if msg_type != SOCK_DIAG_BY_FAMILY or msg_seq != seq or length < size or off + length > n:
                break
            if swap:
                sport = (sport >> 8) | ((sport & 0xFF) << 8)
                dport = (dport >> 8) | ((dport & 0xFF) << 8)
            local = addresses.get(src)
            if local is None:
                local = addresses[src] = _ipv4(src) if fam == AF_INET else self._ntop6(src)
            remote = addresses.get(dst)
            if remote is None:
                remote = addresses[dst] = _ipv4(dst) if fam == AF_INET else self._ntop6(dst)
            name = states.get(state) or str(state)
            append((proto, family, local if sport else None, sport or None, remote if dport else None,
                    dport or None, name, None, None, (), rqueue, None if state == 10 else wqueue,
                    (timers.get(timer, str(timer)), expires * hz // 1000 / hz) if timer else None,
                    uid, "stream", inode))
            if infos is not None and length > size:
                # Every full socket's attributes come in the same order: look where the last had it.
                at = off + info_at
                if at + 4 <= off + length and _RTATTR.unpack_from(buf, at) == (info_len, INET_DIAG_INFO):
                    infos[inode] = _tcp_info_fast(buf, at + 4, at + info_len)
                else:
                    span = attributes(buf, off + size, off + length).get(INET_DIAG_INFO)
                    if span is not None:
                        info_at, info_len = span[0] - 4 - off, span[1] - span[0] + 4
                        infos[inode] = _tcp_info_fast(buf, span[0], span[1])
            off += (length + 3) & ~3  # _align, inline: once per socket
        return self._rest(buf, off, n)

    def _rest(self, buf, off: int, n: int) -> bool:
        """The messages from `off` that are not sockets: NLMSG_DONE, an error, another request's."""
        while off + 16 <= n:
            length, msg_type, _flags, msg_seq, _pid = _NLMSGHDR.unpack_from(buf, off)
            if length < 16 or off + length > n:
                raise ValueError(f"netlink message of length {length} at offset {off} of {n}")
            if msg_seq == self._seq and msg_type in (NLMSG_DONE, NLMSG_ERROR):
                for _ in messages(bytes(buf[off:off + length]), msg_seq):  # raises for an error
                    self.done = True
                    return True
            elif msg_seq == self._seq and msg_type == SOCK_DIAG_BY_FAMILY and length >= _TABLE_MSG.size:
                return self.feed(buf[off:n], n - off)  # sockets after another request's message
            off += _align(length)
        if off < n:
            raise ValueError(f"{n - off} trailing bytes after the last netlink message")
        return False
