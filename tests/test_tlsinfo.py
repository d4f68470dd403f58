"""core.tlsinfo: RFC 6125 name matching, verify reasons, names and times (pure, no ssl)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockdiag.core import tlsinfo


@pytest.mark.parametrize("target, dns, ips, expected", [
    ("example.com", ["example.com"], [], True),
    ("EXAMPLE.com.", ["example.COM"], [], True),
    ("www.example.com", ["*.example.com"], [], True),
    ("example.com", ["*.example.com"], [], False),  # the wildcard needs a label
    ("a.b.example.com", ["*.example.com"], [], False),  # one label only
    ("foo.example.com", ["f*.example.com"], [], False),  # no partial wildcards
    ("foo.test", ["*.test"], [], False),  # not over a single label
    ("www.example.test", ["www.*.test"], [], False),  # leftmost label only
    ("127.0.0.1", ["127.0.0.1"], [], False),  # an address never matches a DNS entry
    ("127.0.0.1", [], ["127.0.0.1"], True),
    ("::1", [], ["0:0:0:0:0:0:0:1"], True),  # compared as addresses
    ("[::1]", [], ["::1"], True),
    ("localhost", [], ["127.0.0.1"], False),
    ("bücher.example", ["xn--bcher-kva.example"], [], True),  # IDNA A-labels
    ("xn--bcher-kva.shop.example", ["*.shop.example"], [], True),
], ids=lambda value: repr(value))
def test_name_matches(target, dns, ips, expected):
    assert tlsinfo.name_matches(target, dns, ips) is expected


def test_common_name_counts_only_without_subject_alt_names():
    assert tlsinfo.name_matches("old.example", [], [], common_name="old.example")
    assert not tlsinfo.name_matches("old.example", ["new.example"], [], common_name="old.example")


@given(st.text(max_size=40), st.lists(st.text(max_size=30), max_size=4), st.lists(st.text(max_size=30), max_size=3))
def test_name_matches_never_raises(target, dns, ips):
    assert tlsinfo.name_matches(target, dns, ips) in (True, False)


@given(st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){1,3}", fullmatch=True))
def test_a_name_matches_itself_and_its_one_label_wildcard(name):
    assert tlsinfo.name_matches(name, [name], [])
    assert tlsinfo.name_matches("x." + name, ["*." + name], [])


@pytest.mark.parametrize("code, message, expected", [
    (10, "certificate has expired", "expired (certificate has expired)"),
    (18, "self-signed certificate", "self-signed (self-signed certificate)"),
    (19, "self-signed certificate in certificate chain", "self-signed CA (self-signed certificate in certificate chain)"),
    (20, "unable to get local issuer certificate", "unknown CA (unable to get local issuer certificate)"),
    (2, "unable to get issuer certificate", "unknown CA (unable to get issuer certificate)"),
    (62, "Hostname mismatch, certificate is not valid for 'x'.",
     "name mismatch (hostname mismatch, certificate is not valid for 'x')"),
    (999, "something new", "something new"),
    (None, None, "unknown reason"),
])
def test_verify_reason(code, message, expected):
    assert tlsinfo.verify_reason(code, message) == expected


def test_mismatch_detail_lists_a_few_names():
    assert tlsinfo.mismatch_detail(["localhost"], "127.0.0.2") == "certificate is for localhost, not 127.0.0.2"
    many = tlsinfo.mismatch_detail([f"n{i}" for i in range(6)], "x")
    assert many == "certificate is for n0, n1, n2, n3 and 2 more, not x"


@pytest.mark.parametrize("text, expected", [("h2", ["h2"]), ("h2, http/1.1", ["h2", "http/1.1"])])
def test_parse_alpn(text, expected):
    assert tlsinfo.parse_alpn(text) == expected


@pytest.mark.parametrize("text", ["", "h2,", ",h2", "x" * 256])
def test_parse_alpn_rejects(text):
    with pytest.raises(ValueError):
        tlsinfo.parse_alpn(text)


def test_format_name_most_specific_first_and_escaped():
    rdns = ((("countryName", "US"),), (("organizationName", "Acme, Inc."),), (("commonName", "a.example"),))
    assert tlsinfo.format_name(rdns) == "CN=a.example,O=Acme\\, Inc.,C=US"


def test_cert_time_and_days_left():
    not_after = tlsinfo.cert_time("Jan  2 00:00:00 2030 GMT")
    assert not_after == 1893542400.0
    assert tlsinfo.days_left(not_after, not_after - 86400 * 3 - 1) == 3
    assert tlsinfo.days_left(not_after, not_after + 1) == -1


def test_summary_lines():
    cert = {"subject": ((("commonName", "a.example"),),), "issuer": ((("commonName", "Test CA"),),),
            "subjectAltName": (("DNS", "a.example"), ("IP Address", "0:0:0:0:0:0:0:1")),
            "notAfter": "Jan  2 00:00:00 2030 GMT"}
    summary = tlsinfo.CertSummary(cert, now=1893542400.0 - 86400 * 10, der=b"x")
    assert summary.names == ["a.example", "::1"] and summary.matches("::1") and summary.days_left == 10
    lines = summary.lines("server certificate")
    assert lines[0] == "server certificate: subject CN=a.example, issuer CN=Test CA"
    assert lines[1] == "server certificate: names DNS:a.example, IP:::1; expires in 10 days"
    assert lines[2].startswith("server certificate: SHA-256 fingerprint 2D:71:16:42")
