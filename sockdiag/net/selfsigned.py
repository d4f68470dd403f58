"""listen --tls without --cert/--key: a throwaway self-signed certificate, made in memory with
`cryptography` (the optional extra sockdiag[tls], imported only here and only when needed)."""

from __future__ import annotations

import datetime
import ipaddress

from sockdiag.core.errors import SockdiagError

INSTALL_HINT = "install the extra: pip install 'sockdiag[tls]', or give --cert FILE --key FILE"
VALID_DAYS = 30  # long enough for a listen that runs a while; nobody is meant to trust it for longer


def names_for(bind: str | None) -> list[str]:
    """The names the certificate is for: the bind address (or name) given, else the loopback ones."""
    names = ["localhost", "127.0.0.1", "::1"]
    bind = (bind or "").strip("[]")
    if bind and bind not in ("0.0.0.0", "::"):  # the address given comes first: it is the CN
        names = [bind] + [name for name in names if name != bind]
    return names


def generate(names: list[str]) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM): EC P-256 (made in a millisecond, unlike RSA), CN and
    subjectAltName from `names`. No cryptography: SockdiagError with the install hint (exit 1)."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        raise SockdiagError("listen --tls without --cert/--key needs the 'cryptography' package to make a "
                            "throwaway certificate; " + INSTALL_HINT) from None
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sockdiag throwaway"),
                         x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
