"""portspec: the pure port-list and host:port parser."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from sockdiag.core.portspec import (PortSpecError, format_hostport, format_ranges, parse_hostport, parse_port,
                               parse_ports)

SERVICES = {"ssh": 22, "http": 80, "https": 443}.get


@pytest.mark.parametrize(
    "spec, expected",
    [
        pytest.param("22", [22], id="single"),
        pytest.param("22,80,443", [22, 80, 443], id="list"),
        pytest.param("1-5", [1, 2, 3, 4, 5], id="range"),
        pytest.param("80,1-3,80", [1, 2, 3, 80], id="dedup-sorted"),
        pytest.param("ssh,https", [22, 443], id="services"),
        pytest.param(" 22 , 80 ", [22, 80], id="spaces"),
        pytest.param("65534-", [65534, 65535], id="open-end"),
        pytest.param("-3", [1, 2, 3], id="open-start"),
    ],
)
def test_parse_ports(spec, expected):
    assert parse_ports(spec, SERVICES) == expected


def test_dash_is_all_ports():
    ports = parse_ports("-")
    assert ports[0] == 1 and ports[-1] == 65535 and len(ports) == 65535


@pytest.mark.parametrize(
    "spec, needle",
    [
        pytest.param("0", "out of range", id="zero"),
        pytest.param("70000", "70000", id="too-big"),
        pytest.param("10-5", "reversed", id="reversed"),
        pytest.param("abc", "'abc'", id="unknown-name"),
        pytest.param("", "empty", id="empty"),
        pytest.param("80,,90", "empty item", id="empty-item"),
        pytest.param("1-x", "not a number", id="range-garbage"),
        pytest.param("1-70000", "70000", id="range-too-big"),
        pytest.param("$$", "bad port", id="symbols"),
    ],
)
def test_bad_specs_name_the_bad_part(spec, needle):
    with pytest.raises(PortSpecError) as info:
        parse_ports(spec, SERVICES)
    assert needle in info.value.message
    assert info.value.status == 2


@given(st.text(max_size=30))
def test_parser_only_raises_its_own_error(spec):
    try:
        ports = parse_ports(spec, SERVICES)
    except PortSpecError:
        return
    assert ports == sorted(set(ports))
    assert all(1 <= p <= 65535 for p in ports)


@given(st.lists(st.integers(1, 65535), min_size=1, max_size=50))
def test_format_ranges_round_trips(ports):
    assert parse_ports(format_ranges(ports)) == sorted(set(ports))


def test_parse_port_allow_zero():
    assert parse_port("0", allow_zero=True) == 0
    with pytest.raises(PortSpecError):
        parse_port("0")


@pytest.mark.parametrize(
    "host, port, text",
    [("127.0.0.1", 80, "127.0.0.1:80"), ("::1", 8080, "[::1]:8080"), (None, None, "-"), ("::", None, "[::]")],
)
def test_format_hostport(host, port, text):
    assert format_hostport(host, port) == text


@pytest.mark.parametrize(
    "text, expected",
    [("127.0.0.1:80", ("127.0.0.1", 80)), ("[::1]:443", ("::1", 443)), ("localhost:ssh", ("localhost", 22))],
)
def test_parse_hostport(text, expected):
    assert parse_hostport(text, SERVICES) == expected


@pytest.mark.parametrize("text", ["::1:80", "[::1]80", "host", ":80", "[]:80", "h:0"])
def test_parse_hostport_errors(text):
    with pytest.raises(PortSpecError):
        parse_hostport(text, SERVICES)


SERVICES_TEXT = """\
# comment line
tcpmux\t\t1/tcp\t\t\t\t# TCP port service multiplexer
ssh\t\t22/tcp\t\t\t\t# SSH Remote Login Protocol
http\t\t80/tcp\t\twww\t\t# WorldWideWeb HTTP
www-alt\t\t80/tcp
domain\t\t53/udp
bogus\t\tx/tcp
"""


def test_parse_services_first_name_wins_per_proto():
    from sockdiag.core.portspec import parse_services

    assert parse_services(SERVICES_TEXT, "tcp") == {1: "tcpmux", 22: "ssh", 80: "http"}
    assert parse_services(SERVICES_TEXT, "udp") == {53: "domain"}


def test_service_table_agrees_with_getservbyport():
    import socket

    from sockdiag import platform

    for port in (22, 80, 443, 5432, 1, 9):
        try:
            expected = socket.getservbyport(port, "tcp")
        except OSError:
            expected = None
        assert platform.service_name(port, "tcp") == expected


@pytest.mark.parametrize("spec", ["¹", "٣", "1-²", "²-3", "８０"])
def test_non_ascii_digits_are_rejected(spec):
    with pytest.raises(PortSpecError):
        parse_ports(spec, SERVICES)


def test_unbracket_strips_only_a_whole_pair():
    from sockdiag.core.portspec import unbracket

    assert unbracket("[::1]") == "::1" and unbracket("[fe80::1%eth0]") == "fe80::1%eth0"
    assert unbracket("::1") == "::1" and unbracket("example.host") == "example.host"
    assert unbracket("[::1") == "[::1" and unbracket("::1]") == "::1]" and unbracket("") == ""
