"""probe -u with protocol payloads: a DNS, NTP or SNMP service answers only a well-formed request
of its protocol, so the payload is what turns its silence into `open`.

Each responder here parses what it gets and answers only its own protocol's request; an empty
datagram (what other ports get) earns nothing, and a port with no socket is `closed` (ICMP).
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
import threading

import pytest

from sockdiag.core.udppayloads import DNS_QUERY, NTP_REQUEST, SNMP_GET
from sockdiag.probe.pool import Scanner
from sockdiag.probe.scanner import STATES, Host, Jobs, ScanConfig
from tests.conftest import run_main

STOP = b"\0stop"


def dns_answer(query: bytes) -> bytes | None:
    """A reply to a standard query with one question (header, then the question echoed)."""
    if len(query) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or (flags >> 11) & 0xF or qdcount != 1:
        return None
    at = 12
    while at < len(query) and query[at]:  # the labels of QNAME
        at += 1 + query[at]
    if at + 5 > len(query):
        return None
    question = query[12:at + 5]
    return struct.pack("!6H", ident, 0x8000 | 0x0400 | 5, 1, 0, 0, 0) + question  # QR AA, REFUSED


def ntp_answer(request: bytes) -> bytes | None:
    """A server reply (mode 4) to a client request (mode 3) of 48 bytes."""
    if len(request) != 48 or request[0] & 7 != 3:
        return None
    return bytes([0x24, 2, request[2], 0xEC]) + bytes(20) + request[40:48] + bytes(16)


def _tlv(data: bytes, at: int) -> tuple[int, bytes, int]:
    if at + 2 > len(data) or data[at + 1] >= 128:
        raise ValueError("not short-form BER")
    end = at + 2 + data[at + 1]
    if end > len(data):
        raise ValueError("truncated")
    return data[at], data[at + 2:end], end


def snmp_answer(message: bytes) -> bytes | None:
    """A GetResponse with sysDescr to a v1/v2c GetRequest with community public."""
    try:
        tag, body, _ = _tlv(message, 0)
        vtag, version, at = _tlv(body, 0)
        ctag, community, at = _tlv(body, at)
        ptag, pdu, _ = _tlv(body, at)
        _, request_id, _ = _tlv(pdu, 0)
    except ValueError:
        return None
    if (tag, vtag, ctag, ptag) != (0x30, 0x02, 0x04, 0xA0) or community != b"public":
        return None
    if version not in (b"\x00", b"\x01"):  # v1 or v2c
        return None

    def tlv(t: int, v: bytes) -> bytes:
        return bytes([t, len(v)]) + v

    varbind = tlv(0x30, tlv(0x06, bytes([43, 6, 1, 2, 1, 1, 1, 0])) + tlv(0x04, b"test agent"))
    pdu = tlv(0xA2, tlv(0x02, request_id) + tlv(0x02, b"\x00") + tlv(0x02, b"\x00") + tlv(0x30, varbind))
    return tlv(0x30, tlv(0x02, version) + tlv(0x04, community) + pdu)


class Responder:
    """A UDP socket on `address` answering with answer(datagram) (None: stay silent)."""

    def __init__(self, answer, host: str = "127.0.0.1", port: int = 0):
        self.answer = answer
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(30)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(2048)
            except OSError:
                return
            if data == STOP:
                return
            self.requests.append(data)
            reply = self.answer(data)
            if reply is not None:
                self.sock.sendto(reply, peer)

    def close(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(STOP, self.sock.getsockname())
        self._thread.join(10)
        self.sock.close()


@contextlib.contextmanager
def responders(host: str = "127.0.0.1", ports=(0, 0, 0)):
    """(dns, ntp, snmp) responders, plus a silent port and a closed one, on `host`."""
    made = []
    try:
        for answer, port in zip((dns_answer, ntp_answer, snmp_answer), ports):
            made.append(Responder(answer, host, port))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
            silent.bind((host, 0))
            gone.bind((host, 0))
            closed = gone.getsockname()[1]
            gone.close()
            yield made, silent.getsockname()[1], closed
    finally:
        for responder in made:
            responder.close()


def scan(ports: list[int], payloads: dict[int, bytes], host: str = "127.0.0.1") -> dict[int, str]:
    jobs = Jobs([Host(socket.AF_INET, [host])], sorted(ports))
    sc = Scanner(jobs, ScanConfig(udp=True, timeout=0.5, udp_payloads=payloads, report=frozenset(STATES)))
    sc.start()
    try:
        while not sc.wait(0.1):
            pass
    finally:
        results = sc.ready() + sc.stop()
    sc.check()
    return {port: state for _, _, port, state, *_ in results}


def test_services_answer_their_protocol_request_and_are_open():
    with responders() as ((dns, ntp, snmp), silent, closed):
        payloads = {dns.port: DNS_QUERY, ntp.port: NTP_REQUEST, snmp.port: SNMP_GET}
        states = scan([dns.port, ntp.port, snmp.port, silent, closed], payloads)
    assert states == {dns.port: "open", ntp.port: "open", snmp.port: "open", silent: "open|filtered",
                      closed: "closed"}
    assert dns.requests == [DNS_QUERY] and ntp.requests == [NTP_REQUEST] and snmp.requests == [SNMP_GET]


def test_without_the_payloads_the_same_services_stay_silent():
    with responders() as ((dns, ntp, snmp), _silent, _closed):
        states = scan([dns.port, ntp.port, snmp.port], {})
        assert dns.requests == ntp.requests == snmp.requests == [b""]
    assert set(states.values()) == {"open|filtered"}


def test_each_payload_only_answered_by_its_own_protocol():
    assert dns_answer(DNS_QUERY) and ntp_answer(NTP_REQUEST) and snmp_answer(SNMP_GET)
    for answer, others in ((dns_answer, (NTP_REQUEST, SNMP_GET)), (ntp_answer, (DNS_QUERY, SNMP_GET)),
                           (snmp_answer, (DNS_QUERY, NTP_REQUEST))):
        assert all(answer(other) is None for other in others)
        assert answer(b"") is None


def test_well_known_ports_get_their_payload_from_the_command_line():
    """probe -u on 53, 123 and 161 of a loopback address of this test's own (binding them needs
    root or CAP_NET_BIND_SERVICE)."""
    host = f"127.85.{random.randrange(1, 255)}.{random.randrange(1, 254)}"
    try:
        ctx = responders(host, (53, 123, 161))
        made, silent, closed = ctx.__enter__()
    except OSError as exc:
        pytest.skip(f"cannot bind 53/123/161 on {host}: {exc}")
    try:
        r = run_main(["probe", "-u", "-a", "-o", "json", "-w", "0.5", host, f"53,123,161,{silent},{closed}"])
    finally:
        ctx.__exit__(None, None, None)
    states = {row["port"]: row["state"] for row in map(json.loads, r.text.splitlines())}
    assert states == {53: "open", 123: "open", 161: "open", silent: "open|filtered", closed: "closed"}
    assert [responder.requests for responder in made] == [[DNS_QUERY], [NTP_REQUEST], [SNMP_GET]]
    assert r.status == 0
