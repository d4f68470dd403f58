"""core.x509: a DER certificate's names and validity, read without the ssl module's private
decoder. Checked against that decoder (CPython's own, through OpenSSL) where it exists, on
certificates made by trustme and by cryptography, and against broken input."""

from __future__ import annotations

import datetime
import os
import ssl

import pytest

from sockdiag.core import tlsinfo, x509

trustme = pytest.importorskip("trustme")


def openssl_view(der: bytes, tmp_path) -> dict | None:
    """What CPython's private test decoder reads (None where this interpreter lacks it)."""
    decoder = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decoder is None:
        return None
    path = os.path.join(tmp_path, "c.pem")
    with open(path, "w", encoding="ascii") as out:
        out.write(ssl.DER_cert_to_PEM_cert(der))
    return decoder(path)


def shown(cert: dict) -> tuple:
    """What sockdiag shows of a certificate (tlsinfo.CertSummary), for comparing two decoders."""
    s = tlsinfo.CertSummary(cert, 0.0)
    return s.subject, s.issuer, s.common_name, s.dns_names, s.ip_addresses, s.not_after


def trustme_der(*names, **kwargs) -> bytes:
    cert = trustme.CA().issue_cert(*names, **kwargs)
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode("ascii"))


@pytest.mark.parametrize("names, kwargs", [
    pytest.param(("example.test",), {}, id="one-dns-name"),
    pytest.param(("example.test", "127.0.0.1", "::1", "*.wild.test", "fe80::1"), {}, id="dns-and-ip"),
    pytest.param(("a.test",), {"common_name": "a.test", "organization_name": "Org, Inc; \"x\"",
                               "organization_unit_name": "unit+1"}, id="escaped-names"),
    pytest.param(("xn--bcher-kva.test",), {"common_name": "Bücher GmbH"}, id="utf8-common-name"),
])
def test_trustme_certificates_read_as_cpython_reads_them(tmp_path, names, kwargs):
    der = trustme_der(*names, **kwargs)
    ours = x509.decode(der)
    assert ours is not None
    theirs = openssl_view(der, tmp_path)
    if theirs is not None:
        assert shown(ours) == shown(theirs)
        assert ours["notBefore"] == theirs["notBefore"] and ours["notAfter"] == theirs["notAfter"]
    assert tlsinfo.CertSummary(ours, 0.0).matches(names[0])


def made_with_cryptography(not_after: datetime.datetime, sans, subject_cn: str | None = "host.test"):
    crypto = pytest.importorskip("cryptography")  # noqa: F841 - the optional extra
    from cryptography import x509 as cx
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [cx.NameAttribute(NameOID.COUNTRY_NAME, "DE"), cx.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b.test")]
    if subject_cn is not None:
        attrs.append(cx.NameAttribute(NameOID.COMMON_NAME, subject_cn))
    name = cx.Name(attrs)
    builder = (cx.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(cx.random_serial_number())
               .not_valid_before(datetime.datetime(2001, 2, 3, 4, 5, 6, tzinfo=datetime.timezone.utc))
               .not_valid_after(not_after))
    if sans is not None:
        builder = builder.add_extension(cx.SubjectAlternativeName(sans), critical=False)
    from cryptography.hazmat.primitives.serialization import Encoding

    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_expired_utctime_and_generalized_time_and_a_certificate_without_sans(tmp_path):
    from cryptography import x509 as cx

    utc = datetime.timezone.utc
    cases = [
        made_with_cryptography(datetime.datetime(2020, 1, 9, 23, 59, 58, tzinfo=utc), [cx.DNSName("old.test")]),
        made_with_cryptography(datetime.datetime(2070, 12, 31, 0, 0, 0, tzinfo=utc),  # after 2049: GeneralizedTime
                               [cx.IPAddress(__import__("ipaddress").ip_address("10.1.2.3")),
                                cx.RFC822Name("x@y.test"), cx.UniformResourceIdentifier("https://u.test/")]),
        made_with_cryptography(datetime.datetime(2030, 6, 1, tzinfo=utc), None),
        made_with_cryptography(datetime.datetime(2030, 6, 1, tzinfo=utc), None, subject_cn=None),
    ]
    for der in cases:
        ours = x509.decode(der)
        assert ours is not None
        theirs = openssl_view(der, tmp_path)
        if theirs is not None:
            assert shown(ours) == shown(theirs)
            assert ours["notBefore"] == theirs["notBefore"] == "Feb  3 04:05:06 2001 GMT"
            assert ours["notAfter"] == theirs["notAfter"]
            assert ("subjectAltName" in ours) == ("subjectAltName" in theirs)
    assert x509.decode(cases[0])["notAfter"] == "Jan  9 23:59:58 2020 GMT"
    assert tlsinfo.CertSummary(x509.decode(cases[0]), 1.9e9).days_left < 0
    assert x509.decode(cases[1])["subjectAltName"] == (("IP Address", "10.1.2.3"), ("email", "x@y.test"),
                                                       ("URI", "https://u.test/"))


def test_anything_that_is_not_a_certificate_is_none_never_an_exception():
    der = trustme_der("example.test")
    for cut in range(0, len(der), 7):
        assert x509.decode(der[:cut]) is None  # every truncation
    assert x509.decode(b"") is None and x509.decode(b"\x30\x84\xff\xff\xff\xff") is None
    assert x509.decode(b"\x30\x03\x02\x01\x00") is None
    flipped = bytearray(der)
    for i in range(4, len(flipped), 13):  # a byte changed here and there: a dict or None, no crash
        flipped[i] ^= 0xFF
        result = x509.decode(bytes(flipped))
        assert result is None or isinstance(result, dict)
        flipped[i] ^= 0xFF
