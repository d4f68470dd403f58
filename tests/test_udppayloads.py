"""core.udppayloads (pure): the requests probe -u sends, checked field by field against the RFCs."""

from __future__ import annotations

import struct

import pytest

from sockdiag.core import udppayloads
from sockdiag.core.udppayloads import DNS_QUERY, NTP_REQUEST, SNMP_GET


def test_dns_query_is_a_standard_query_for_the_root_ns():
    ident, flags, qd, an, ns, ar = struct.unpack("!6H", DNS_QUERY[:12])
    assert (qd, an, ns, ar) == (1, 0, 0, 0)
    assert flags >> 15 == 0, "QR: a query"
    assert (flags >> 11) & 0xF == 0, "OPCODE: standard query"
    assert flags & 0x0100 == 0, "RD clear: no recursion triggered"
    assert DNS_QUERY[12:] == b"\x00" + struct.pack("!HH", 2, 1)  # root, NS, IN
    assert ident != 0


def test_ntp_request_is_a_48_byte_v4_client_packet():
    assert len(NTP_REQUEST) == 48
    li, vn, mode = NTP_REQUEST[0] >> 6, (NTP_REQUEST[0] >> 3) & 7, NTP_REQUEST[0] & 7
    assert (vn, mode) == (4, 3)
    assert li == 3  # unsynchronised: a client's clock is not a time source
    assert NTP_REQUEST[40:48] != bytes(8), "transmit timestamp set (RFC 4330 5)"


def _ber(data: bytes, at: int = 0) -> tuple[int, bytes, int]:
    """One short-form TLV at `at`: (tag, value, next offset)."""
    tag, length = data[at], data[at + 1]
    assert length < 128
    return tag, data[at + 2:at + 2 + length], at + 2 + length


def test_snmp_get_is_v2c_public_get_of_sysdescr():
    tag, message, end = _ber(SNMP_GET)
    assert (tag, end) == (0x30, len(SNMP_GET))
    tag, version, at = _ber(message)
    assert (tag, version) == (0x02, b"\x01")
    tag, community, at = _ber(message, at)
    assert (tag, community) == (0x04, b"public")
    tag, pdu, at = _ber(message, at)
    assert tag == 0xA0 and at == len(message)
    _, request_id, at = _ber(pdu)
    _, error_status, at = _ber(pdu, at)
    _, error_index, at = _ber(pdu, at)
    assert request_id and (error_status, error_index) == (b"\x00", b"\x00")
    _, varbinds, _ = _ber(pdu, at)
    _, varbind, _ = _ber(varbinds)
    tag, oid, at = _ber(varbind)
    assert tag == 0x06 and oid == bytes([43, 6, 1, 2, 1, 1, 1, 0])  # 1.3.6.1.2.1.1.1.0
    assert _ber(varbind, at)[:2] == (0x05, b"")


def test_snmp_get_bytes_written_out():
    assert SNMP_GET.hex() == ("3027" "020101" "0406" + b"public".hex() + "a01a" "02025344" "020100" "020100"
                              "300e" "300c" "0608" "2b06010201010100" "0500")


@pytest.mark.parametrize("port, expected", [
    pytest.param(53, DNS_QUERY, id="dns"),
    pytest.param(123, NTP_REQUEST, id="ntp"),
    pytest.param(161, SNMP_GET, id="snmp"),
    pytest.param(9, b"", id="discard-empty"),
    pytest.param(5353, b"", id="unknown-empty"),
])
def test_payload_per_port(port, expected):
    assert udppayloads.payload(port) == expected


def test_payloads_for_a_port_list():
    assert udppayloads.payloads([1, 53, 161, 1000]) == {53: DNS_QUERY, 161: SNMP_GET}
