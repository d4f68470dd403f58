"""targets (pure): probe target lists, and the probe's own port-spec and banner-escaping rules."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, strategies as st

from sockdiag.core.portspec import PortSpecError, parse_ports
from sockdiag.probe.command import printable
from sockdiag.core.targets import MAX_BLOCK, TargetError, block_address, parse_targets


@pytest.mark.parametrize(
    "text, kinds",
    [
        pytest.param("localhost", ["name"], id="name"),
        pytest.param("db-1.example.internal", ["name"], id="dotted-name"),
        pytest.param("127.0.0.1", ["address"], id="ipv4"),
        pytest.param("::1", ["address"], id="ipv6"),
        pytest.param("[::1]", ["address"], id="bracketed-ipv6"),
        pytest.param("fe80::1%eth0", ["address"], id="ipv6-zone"),
        pytest.param("127.0.0.0/29", ["network"], id="cidr"),
        pytest.param("::1/128", ["network"], id="ipv6-cidr"),
        pytest.param("127.0.0.1, ::1,localhost", ["address", "address", "name"], id="comma-list"),
    ],
)
def test_parse_targets_kinds(text, kinds):
    specs = parse_targets(text)
    assert [("name" if s.name else "address" if s.address else "network") for s in specs] == kinds


def test_duplicates_dropped_order_kept():
    specs = parse_targets("127.0.0.2,127.0.0.1,127.0.0.2,LOCALHOST,localhost")
    assert [s.text for s in specs] == ["127.0.0.2", "127.0.0.1", "LOCALHOST"]


def test_cidr_is_every_address_in_the_block():
    (spec,) = parse_targets("127.0.0.5/29")  # host bits allowed, as nmap does
    assert len(spec) == 8
    assert [str(block_address(spec, i)) for i in (0, 7)] == ["127.0.0.0", "127.0.0.7"]


def test_block_limit_and_force():
    assert len(parse_targets("10.0.0.0/16")[0]) == MAX_BLOCK
    with pytest.raises(TargetError, match="--force"):
        parse_targets("10.0.0.0/15")
    assert len(parse_targets("10.0.0.0/15", force=True)[0]) == 2 * MAX_BLOCK
    with pytest.raises(TargetError, match="even with --force"):
        parse_targets("10.0.0.0/7", force=True)
    with pytest.raises(TargetError, match="/112"):
        parse_targets("fd00::/104")


@pytest.mark.parametrize(
    "text, family, needle",
    [
        pytest.param("", None, "empty target", id="empty"),
        pytest.param("127.0.0.1,,::1", None, "empty item", id="empty-item"),
        pytest.param("127.0.0.999", None, "'127.0.0.999'", id="octet-too-big"),
        pytest.param("1.2.3", None, "not an IPv4 address", id="short-ipv4"),
        pytest.param("::g", None, "not an IPv6 address", id="bad-ipv6"),
        pytest.param("[localhost]", None, "not an IPv6 address", id="bracketed-name"),
        pytest.param("bad host", None, "bad host name", id="space"),
        pytest.param("a..b", None, "bad host name", id="empty-label"),
        pytest.param("127.0.0.0/33", None, "bad network", id="prefix-too-long"),
        pytest.param("127.0.0.0/x", None, "prefix length", id="prefix-not-number"),
        pytest.param("127.0.0.1", 6, "-6", id="v4-with-minus-6"),
        pytest.param("::1", 4, "-4", id="v6-with-minus-4"),
        pytest.param("::1/120", 4, "-4", id="v6-block-with-minus-4"),
    ],
)
def test_bad_targets_name_the_bad_part(text, family, needle):
    with pytest.raises(TargetError) as info:
        parse_targets(text, family)
    assert needle in info.value.message
    assert info.value.status == 2


@given(st.text(max_size=40))
def test_target_parser_only_raises_its_own_error(text):
    try:
        specs = parse_targets(text)
    except TargetError:
        return
    assert specs
    for spec in specs:
        assert 1 <= len(spec) <= MAX_BLOCK


@given(st.ip_addresses())
def test_any_address_literal_parses_to_itself(address):
    (spec,) = parse_targets(str(address))
    assert spec.address == address


@given(st.ip_addresses(v=4), st.integers(16, 32))
def test_blocks_hold_exactly_their_addresses(address, prefix):
    (spec,) = parse_targets(f"{address}/{prefix}")
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    assert len(spec) == network.num_addresses
    assert block_address(spec, len(spec) - 1) == network.broadcast_address


# --- the probe's port specs (portspec.parse_ports with the probe's service lookup) ---------------

@pytest.mark.parametrize("spec", ["0", "70000", "10-5", "abc", "", "1-2,", "65536-"])
def test_probe_port_specs_rejected(spec):
    with pytest.raises(PortSpecError):
        parse_ports(spec, {"ssh": 22}.get)


def test_probe_full_range_and_services():
    assert parse_ports("-") == list(range(1, 65536))
    assert parse_ports("ssh,1-3,22", {"ssh": 22}.get) == [1, 2, 3, 22]


# --- banners ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "data, text",
    [
        pytest.param(b"SSH-2.0-OpenSSH_9.2\r\n", "SSH-2.0-OpenSSH_9.2", id="ssh-crlf-dropped"),
        pytest.param(b"220 hello\r\n250 more\r\n", "220 hello\\r\\n250 more", id="inner-newlines"),
        pytest.param(b"\x00\xffab\\", "\\x00\\xffab\\\\", id="binary-and-backslash"),
        pytest.param(b"tab\there", "tab\\there", id="tab"),
        pytest.param("caf\u00e9".encode(), "caf\\xc3\\xa9", id="utf8-escaped"),
        pytest.param(b"", "", id="empty"),
    ],
)
def test_printable(data, text):
    assert printable(data) == text


@given(st.binary(max_size=64))
def test_printable_is_one_line_of_printable_ascii(data):
    text = printable(data)
    assert text.isascii() and text.isprintable()
    assert "\n" not in text and "\r" not in text
