"""TLS facts that need no ssl module: why a certificate was refused (OpenSSL's verify codes as
words), whether a certificate names a host (RFC 6125), and a certificate as the few lines -v and
probe --tls show. The ssl work itself is in net.tls; this module only sees values."""

from __future__ import annotations

import calendar
import hashlib
import ipaddress
import time

# X509_V_ERR_* codes (OpenSSL's x509_vfy.h) -> the words a user acts on.
VERIFY_REASONS = {
    2: "unknown CA",  # unable to get issuer certificate
    9: "not yet valid",
    10: "expired",
    18: "self-signed",  # the leaf itself is self-signed and not trusted
    19: "self-signed CA",  # a self-signed certificate in the chain, not trusted
    20: "unknown CA",  # unable to get local issuer certificate
    21: "unknown CA",  # unable to verify the first certificate
    23: "revoked",
    24: "invalid CA certificate",
    26: "unsuitable certificate purpose",
    62: "name mismatch",  # hostname mismatch
    64: "name mismatch",  # IP address mismatch
}

_SHORT_NAMES = {
    "commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
    "localityName": "L", "stateOrProvinceName": "ST", "emailAddress": "emailAddress",
    "domainComponent": "DC", "serialNumber": "serialNumber",
}


def verify_reason(code: int | None, message: str | None) -> str:
    """`certificate verify failed: expired (certificate has expired)` without the leading words:
    the reason for OpenSSL's verify code, then OpenSSL's own message in parentheses."""
    detail = (message or "").strip().rstrip(".")
    reason = VERIFY_REASONS.get(code) if code is not None else None
    if reason is None:
        return detail or "unknown reason"
    return f"{reason} ({detail[:1].lower() + detail[1:]})" if detail else reason


def mismatch_detail(names: list[str], target: str) -> str:
    """The parenthesis of a name mismatch: `certificate is for localhost, not 127.0.0.2`."""
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"certificate is for {shown or 'no name'}, not {target}"


def parse_alpn(text: str) -> list[str]:
    """--alpn h2,http/1.1 -> ["h2", "http/1.1"]; each name 1 to 255 bytes (RFC 7301)."""
    names = [part.strip() for part in text.split(",")]
    if not names or any(not name for name in names):
        raise ValueError(f"empty protocol name in {text!r} (give e.g. h2,http/1.1)")
    for name in names:
        if len(name.encode("utf-8")) > 255:
            raise ValueError(f"protocol name longer than 255 bytes: {name[:20]!r}...")
    return names


# --- names (RFC 6125) ------------------------------------------------------------------------------

def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]").partition("%")[0])
    except ValueError:
        return None


def is_ip_literal(text: str) -> bool:
    """An IPv4 or IPv6 address (brackets and %zone allowed): no SNI for it, IP entries match it."""
    return _ip(text) is not None


def _dns_form(name: str) -> str | None:
    """A host name compared as RFC 6125 says: ASCII (IDNA A-labels), lower case, no final dot."""
    name = name.rstrip(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return name or None


def _wildcard_matches(pattern: str, host: str) -> bool:
    """`*.example.com` matches exactly one whole leftmost label (`a.example.com`, not
    `example.com` nor `a.b.example.com`); partial wildcards (`f*.example.com`) and wildcards
    over fewer than two labels (`*.com`) match nothing, as OpenSSL does for Python."""
    if not pattern.startswith("*.") or "*" in pattern[2:]:
        return False
    rest = pattern[2:]
    if rest.count(".") < 1:
        return False
    label, dot, host_rest = host.partition(".")
    return bool(label) and bool(dot) and host_rest == rest


def name_matches(target: str, dns_names: list[str], ip_addresses: list[str], common_name: str | None = None) -> bool:
    """Whether a certificate with these subjectAltNames is valid for `target` (a host name or an
    IP address literal), by RFC 6125: an address matches IP entries only, compared as addresses;
    a name matches DNS entries, case-insensitively, with a wildcard only as the whole leftmost
    label. The subject's CN counts only when the certificate has no subjectAltName at all."""
    address = _ip(target)
    if address is not None:
        return any(_ip(entry) == address for entry in ip_addresses)
    host = _dns_form(target)
    if host is None:
        return False
    names = list(dns_names)
    if not names and not ip_addresses and common_name:
        names = [common_name]
    for entry in names:
        pattern = _dns_form(entry)
        if pattern is None or _ip(pattern) is not None:
            continue
        if pattern == host or ("*" in pattern and _wildcard_matches(pattern, host)):
            return True
    return False


# --- certificates as the ssl module's dict (getpeercert()) ----------------------------------------

def format_name(rdns) -> str:
    """(( ('commonName', 'x'), ), ...) -> `CN=x,O=y`: RFC 4514 order, most specific first."""
    parts = []
    for rdn in reversed(rdns or ()):
        parts.append("+".join(f"{_SHORT_NAMES.get(key, key)}={_escape(value)}" for key, value in rdn))
    return ",".join(parts)


def _escape(value: str) -> str:
    out = "".join("\\" + ch if ch in ',+"\\<>;' else ch for ch in value)
    if out[:1] in ("#", " "):
        out = "\\" + out
    return out


def common_name(rdns) -> str | None:
    for rdn in rdns or ():
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def cert_time(text: str) -> float:
    """`Jun  3 12:00:00 2027 GMT` (the ssl module's notAfter) -> seconds since the epoch."""
    return float(calendar.timegm(time.strptime(text.replace("  ", " "), "%b %d %H:%M:%S %Y GMT")))


def days_left(not_after: float, now: float) -> int:
    """Whole days until expiry: 0 on its last day, negative once expired."""
    return int((not_after - now) // 86400)


def fingerprint(der: bytes) -> str:
    """SHA-256 of the DER certificate as openssl x509 -fingerprint prints it: AB:CD:..."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


class CertSummary:
    """What -v and probe --tls show of a certificate."""

    def __init__(self, cert: dict, now: float, der: bytes | None = None):
        self.subject = format_name(cert.get("subject"))
        self.issuer = format_name(cert.get("issuer"))
        self.common_name = common_name(cert.get("subject"))
        alt = cert.get("subjectAltName", ())
        self.dns_names = [value for kind, value in alt if kind == "DNS"]
        self.ip_addresses = [str(_ip(value.strip()) or value.strip()) for kind, value in alt if kind == "IP Address"]
        self.not_after = cert_time(cert["notAfter"]) if cert.get("notAfter") else None
        self.days_left = None if self.not_after is None else days_left(self.not_after, now)
        self.fingerprint = fingerprint(der) if der else None

    @property
    def names(self) -> list[str]:
        """The names the certificate is for, as a message lists them."""
        names = self.dns_names + self.ip_addresses
        return names or ([self.common_name] if self.common_name else [])

    def matches(self, target: str) -> bool:
        return name_matches(target, self.dns_names, self.ip_addresses, self.common_name)

    def lines(self, who: str) -> list[str]:
        """The -v lines about `who`'s certificate ("server certificate", "client certificate")."""
        sans = ", ".join([f"DNS:{n}" for n in self.dns_names] + [f"IP:{a}" for a in self.ip_addresses]) or "none"
        if self.days_left is None:
            expiry = "expiry unknown"
        elif self.days_left >= 0:
            expiry = f"expires in {self.days_left} days"
        else:
            expiry = f"expired {-self.days_left} days ago"
        out = [f"{who}: subject {self.subject or '(empty)'}, issuer {self.issuer or '(empty)'}",
               f"{who}: names {sans}; {expiry}"]
        if self.fingerprint:
            out.append(f"{who}: SHA-256 fingerprint {self.fingerprint}")
        return out
