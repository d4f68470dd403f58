"""A DER certificate's subject, issuer, validity and subjectAltName, as the ssl module's dict.

getpeercert() returns {} for a certificate that was not verified (probe --tls, connect
--insecure), and the standard library has no public decoder for DER. This reads the few fields
sockdiag shows (RFC 5280 4.1) and nothing else: no signature, no other extension. Pure: bytes in,
a dict out; None for anything that is not a well-formed certificate.
"""

from __future__ import annotations

import ipaddress

_SEQUENCE, _SET, _OID, _INTEGER, _OCTETS, _BOOLEAN = 0x30, 0x31, 0x06, 0x02, 0x04, 0x01
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18
_STRINGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1A: "ascii",
            0x1E: "utf-16-be", 0x1C: "utf-32-be"}  # UTF8, Printable, IA5, T61, Visible, BMP, Universal
_SUBJECT_ALT_NAME = "2.5.29.17"
ATTRIBUTE_NAMES = {  # the names the ssl module gives (OpenSSL's long names)
    "2.5.4.3": "commonName", "2.5.4.4": "surname", "2.5.4.5": "serialNumber", "2.5.4.6": "countryName",
    "2.5.4.7": "localityName", "2.5.4.8": "stateOrProvinceName", "2.5.4.9": "streetAddress",
    "2.5.4.10": "organizationName", "2.5.4.11": "organizationalUnitName", "2.5.4.12": "title",
    "2.5.4.17": "postalCode", "2.5.4.42": "givenName", "2.5.4.97": "organizationIdentifier",
    "1.2.840.113549.1.9.1": "emailAddress", "0.9.2342.19200300.100.1.25": "domainComponent",
    "0.9.2342.19200300.100.1.1": "userId", "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionCountryName",
    "2.5.4.15": "businessCategory",
}
_GENERAL_NAMES = {0x82: "DNS", 0x87: "IP Address", 0x81: "email", 0x86: "URI"}  # [2] [7] [1] [6] implicit
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def decode(der: bytes) -> dict | None:
    """{'subject', 'issuer', 'notBefore', 'notAfter', 'subjectAltName'?} as ssl's getpeercert()
    gives them for a verified certificate, or None when `der` is not a certificate."""
    try:
        return _decode(memoryview(der))
    except (ValueError, IndexError, UnicodeDecodeError):
        return None


def _decode(buf) -> dict:
    tag, start, end = _tlv(buf, 0)
    _expect(tag, _SEQUENCE)
    tag, start, end = _tlv(buf, start)  # tbsCertificate
    _expect(tag, _SEQUENCE)
    fields = list(_items(buf, start, end))
    if fields and fields[0][0] == 0xA0:  # [0] EXPLICIT version
        fields = fields[1:]
    if len(fields) < 6:
        raise ValueError("short tbsCertificate")
    (serial_tag, *_), _signature, issuer, validity, subject = fields[0], fields[1], fields[2], fields[3], fields[4]
    _expect(serial_tag, _INTEGER)
    times = list(_items(buf, validity[1], validity[2]))
    if validity[0] != _SEQUENCE or len(times) != 2:
        raise ValueError("bad validity")
    cert = {"subject": _name(buf, subject), "issuer": _name(buf, issuer),
            "notBefore": _time(buf, times[0]), "notAfter": _time(buf, times[1])}
    for tag, start, end in fields[6:]:
        if tag == 0xA3:  # [3] EXPLICIT extensions
            names = _alt_names(buf, start, end)
            if names is not None:
                cert["subjectAltName"] = names
    return cert


def _tlv(buf, pos: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the element at pos (DER: definite lengths)."""
    tag, length = buf[pos], buf[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4:
            raise ValueError("bad length")
        length = int.from_bytes(buf[pos:pos + count], "big")
        pos += count
    end = pos + length
    if end > len(buf):
        raise ValueError("element past the end")
    return tag, pos, end


def _items(buf, start: int, end: int):
    while start < end:
        tag, value, stop = _tlv(buf, start)
        if stop > end:
            raise ValueError("element past its parent")
        yield tag, value, stop
        start = stop


def _expect(tag: int, wanted: int) -> None:
    if tag != wanted:
        raise ValueError(f"tag {tag:#x}, expected {wanted:#x}")


def _oid(buf, start: int, end: int) -> str:
    raw = bytes(buf[start:end])
    if not raw:
        raise ValueError("empty OID")
    parts, value = [], 0
    for byte in raw[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    first = raw[0]
    head = [first // 40, first % 40] if first < 80 else [2, first - 80]
    return ".".join(map(str, head + parts))


def _string(buf, tag: int, start: int, end: int) -> str:
    encoding = _STRINGS.get(tag)
    if encoding is None:
        raise ValueError(f"not a string type: {tag:#x}")
    return bytes(buf[start:end]).decode(encoding)


def _name(buf, element: tuple) -> tuple:
    """Name (a SEQUENCE of RDNs, each a SET of (type, value)) -> ((('commonName', 'x'),), ...)."""
    tag, start, end = element
    _expect(tag, _SEQUENCE)
    rdns = []
    for set_tag, set_start, set_end in _items(buf, start, end):
        _expect(set_tag, _SET)
        rdn = []
        for pair_tag, pair_start, pair_end in _items(buf, set_start, set_end):
            _expect(pair_tag, _SEQUENCE)
            (oid_tag, oid_start, oid_end), (value_tag, value_start, value_end) = list(_items(buf, pair_start, pair_end))[:2]
            _expect(oid_tag, _OID)
            oid = _oid(buf, oid_start, oid_end)
            rdn.append((ATTRIBUTE_NAMES.get(oid, oid), _string(buf, value_tag, value_start, value_end)))
        rdns.append(tuple(rdn))
    return tuple(rdns)


def _time(buf, element: tuple) -> str:
    """UTCTime or GeneralizedTime (UTC, 'Z') -> 'Jan  1 00:00:00 2030 GMT', as the ssl module writes it."""
    tag, start, end = element
    text = bytes(buf[start:end]).decode("ascii")
    if not text.endswith("Z"):
        raise ValueError("time without Z")
    if tag == _UTC_TIME and len(text) == 13:
        year = int(text[:2])
        year += 1900 if year >= 50 else 2000  # RFC 5280 4.1.2.5.1
        rest = text[2:12]
    elif tag == _GENERALIZED_TIME and len(text) == 15:
        year, rest = int(text[:4]), text[4:14]
    else:
        raise ValueError("bad time")
    month, day, hour, minute, second = (int(rest[i:i + 2]) for i in range(0, 10, 2))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise ValueError("bad time")
    return f"{_MONTHS[month - 1]} {day:2d} {hour:02d}:{minute:02d}:{second:02d} {year} GMT"


def _alt_names(buf, start: int, end: int) -> tuple | None:
    """The subjectAltName entries among the extensions: (('DNS', name), ('IP Address', addr), ...)."""
    tag, seq_start, seq_end = _tlv(buf, start)
    _expect(tag, _SEQUENCE)
    for ext_tag, ext_start, ext_end in _items(buf, seq_start, seq_end):
        _expect(ext_tag, _SEQUENCE)
        parts = list(_items(buf, ext_start, ext_end))
        if not parts or parts[0][0] != _OID or _oid(buf, parts[0][1], parts[0][2]) != _SUBJECT_ALT_NAME:
            continue
        value = parts[-1]
        _expect(value[0], _OCTETS)
        names_tag, names_start, names_end = _tlv(buf, value[1])
        _expect(names_tag, _SEQUENCE)
        names = []
        for name_tag, name_start, name_end in _items(buf, names_start, names_end):
            kind = _GENERAL_NAMES.get(name_tag)
            if kind == "IP Address":
                raw = bytes(buf[name_start:name_end])
                if len(raw) not in (4, 16):
                    raise ValueError("bad iPAddress")
                names.append((kind, str(ipaddress.ip_address(raw))))
            elif kind is not None:
                names.append((kind, bytes(buf[name_start:name_end]).decode("ascii")))
        return tuple(names)
    return None
