"""What `probe -u` sends to a UDP port: a request its well-known service answers, so that a
reply turns the silence of an empty datagram into `open`. Built here from the RFCs, byte by
byte; ports without a known service get the empty datagram (as nc -u -z sends nothing more).

Each request asks for as little as the protocol allows, changes nothing on the server and
triggers no traffic beyond the reply (the DNS query does not ask for recursion).
"""

from __future__ import annotations

# --- DNS (RFC 1035 4.1): a standard query for the root's NS records -------------------------------
# Every name server answers it (with the records, a referral, or REFUSED, all of which are
# replies); RD is clear, so a recursive resolver answers from its cache or its root hints and
# sends no query of its own.
DNS_QUERY = bytes([
    0x53, 0x44,  # ID: "SD"; a reply copies it
    0x00, 0x00,  # QR=0 (query), OPCODE=0 (standard query), AA TC RD RA Z RCODE all 0
    0x00, 0x01,  # QDCOUNT: one question
    0x00, 0x00,  # ANCOUNT
    0x00, 0x00,  # NSCOUNT
    0x00, 0x00,  # ARCOUNT
    0x00,        # QNAME: the root, the empty label
    0x00, 0x02,  # QTYPE: NS (2)
    0x00, 0x01,  # QCLASS: IN (1)
])

# --- NTP (RFC 5905 7.3, RFC 4330 5): a client request, 48 bytes -----------------------------------
NTP_REQUEST = bytes([
    0xE3,        # LI=3 (clock unsynchronised), VN=4, Mode=3 (client): 0b11_100_011
    0x00,        # stratum: unspecified
    0x04,        # poll: 2**4 s, the minimum (RFC 5905 7.3)
    0xFA,        # precision: 2**-6 s, signed
]) + bytes(4 + 4 + 4) + bytes(8 + 8 + 8) + bytes([
    # root delay, root dispersion, reference id; reference, origin, receive timestamps: 0
    # transmit timestamp (seconds since 1900, fraction): any non-zero value; the server copies
    # it into its reply's origin timestamp (RFC 4330 5 says a client should set it)
    0xE9, 0x5A, 0x2B, 0x80, 0x53, 0x44, 0x00, 0x00,
])

# --- SNMP (RFC 3416 over RFC 1901 v2c, BER of X.690): get sysDescr.0 with community "public" ----


def _tlv(tag: int, value: bytes) -> bytes:
    """One BER type-length-value; every length here is under 128 (the short form, X.690 8.1.3.4)."""
    if len(value) >= 128:
        raise ValueError("long BER lengths are not needed here")
    return bytes([tag, len(value)]) + value


_INTEGER, _OCTET_STRING, _NULL, _OID, _SEQUENCE, _GET_REQUEST = 0x02, 0x04, 0x05, 0x06, 0x30, 0xA0
# 1.3.6.1.2.1.1.1.0 (sysDescr.0, RFC 3418): the first two arcs as 40 * 1 + 3 = 0x2B
SYSDESCR_OID = bytes([0x2B, 0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00])

SNMP_GET = _tlv(_SEQUENCE, b"".join([
    _tlv(_INTEGER, b"\x01"),  # version: 1 = SNMPv2c (RFC 1901)
    _tlv(_OCTET_STRING, b"public"),  # community
    _tlv(_GET_REQUEST, b"".join([
        _tlv(_INTEGER, b"\x53\x44"),  # request-id: "SD"; a reply copies it
        _tlv(_INTEGER, b"\x00"),  # error-status: noError
        _tlv(_INTEGER, b"\x00"),  # error-index
        _tlv(_SEQUENCE, _tlv(_SEQUENCE, _tlv(_OID, SYSDESCR_OID) + _tlv(_NULL, b""))),  # one varbind
    ])),
]))

PAYLOADS: dict[int, bytes] = {53: DNS_QUERY, 123: NTP_REQUEST, 161: SNMP_GET}


def payload(port: int) -> bytes:
    """The datagram probe -u sends to `port`: its service's request, else empty."""
    return PAYLOADS.get(port, b"")


def payloads(ports) -> dict[int, bytes]:
    """{port: request} for the ports among `ports` that have one."""
    return {port: PAYLOADS[port] for port in ports if port in PAYLOADS}
