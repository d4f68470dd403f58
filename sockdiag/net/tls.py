"""TLS for connect, listen and probe: contexts from the options, handshakes whose failures are
one line (the verify reasons come from core.tlsinfo), the -v description of a session, and
reading a certificate that was not verified.

The relay engines never see an SSL socket: net.tlsbridge puts a socketpair between them and the
TLS connection, so splice, -k, --echo, --exec and --frame work unchanged.
"""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
import time

from sockdiag.core import tlsinfo, x509
from sockdiag.core.errors import SockdiagError, TimeoutFailure, UsageError

# OpenSSL's words when the other end does not speak TLS at all (a plain server or client)
_NOT_TLS = ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL",
            "RECORD_LAYER_FAILURE", "WRONG_SSL_VERSION")


is_ip_literal = tlsinfo.is_ip_literal


# --- contexts ----------------------------------------------------------------------------------------

def client_context(ca: str | None = None, insecure: bool = False, cert: str | None = None, key: str | None = None,
                   alpn: list[str] | None = None) -> ssl.SSLContext:
    """ssl.create_default_context(): the system CAs (or --ca FILE), host name checked; --insecure
    checks nothing; --cert/--key: the client certificate."""
    if insecure:  # skips loading the system CAs too (tens of milliseconds)
        ctx = probe_context()
    else:
        try:
            ctx = ssl.create_default_context(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"--ca {ca}: {_file_error(exc)}") from None
    _load_chain(ctx, cert, key)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def server_context(cert: str | None, key: str | None, ca: str | None = None, alpn: list[str] | None = None,
                   names: list[str] | None = None, env=None) -> ssl.SSLContext:
    """The listener's context: --cert/--key, or a throwaway self-signed certificate for `names`
    (its fingerprint with -v). --ca FILE: clients must present a certificate signed by FILE's CAs."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # No TLS 1.3 session tickets: no sockdiag client resumes, and a client that never reads (socat
    # -u) would be reset on close over those unread bytes, losing the end of what it sent.
    ctx.num_tickets = 0
    if cert is None and key is None:
        from sockdiag.net.selfsigned import generate, names_for

        names = names_for(None) if names is None else names
        cert_pem, key_pem = generate(names)
        _load_pem_chain(ctx, cert_pem, key_pem)
        if env is not None:
            der = ssl.PEM_cert_to_DER_cert(cert_pem.decode("ascii"))
            env.info(f"TLS: throwaway self-signed certificate for {', '.join(names)}, "
                     f"SHA-256 fingerprint {tlsinfo.fingerprint(der)}")
    else:
        _load_chain(ctx, cert, key)
    if ca is not None:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"--ca {ca}: {_file_error(exc)}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def probe_context() -> ssl.SSLContext:
    """probe --tls: read whatever certificate the server has; verify nothing."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert: str | None, key: str | None) -> None:
    if cert is None and key is None:
        return
    if cert is None:
        raise UsageError("--key needs --cert (the certificate that goes with the key)")
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--cert {cert}" + (f" --key {key}" if key else "") + f": {_file_error(exc)}") from None


def _load_pem_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """load_cert_chain() reads files only: write both to a private directory (0700) for the moment
    it takes, and remove it whatever happens."""
    with tempfile.TemporaryDirectory(prefix="sockdiag-tls-") as tmp:
        os.chmod(tmp, 0o700)
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        for path, data in ((cert_path, cert_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        ctx.load_cert_chain(cert_path, key_path)


def _file_error(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"not a usable PEM certificate or key ({exc.reason or exc.strerror or exc})".replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


# --- handshakes ----------------------------------------------------------------------------------------

class TlsSession:
    """One TLS connection over a socket, through memory BIOs: sockdiag moves the encrypted bytes
    itself, so it decides when close_notify goes out (an SSL socket's unwrap() reads on and
    throws away data the peer still sends) and reads the socket in large pieces instead of one
    record at a time. The socket stays the caller's to close."""

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext, server_side: bool,
                 server_hostname: str | None = None):
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=server_side,
                                server_hostname=server_hostname)

    def handshake(self, timeout: float | None) -> None:
        """Complete the handshake on the blocking socket within `timeout` seconds (TimeoutError)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                self._send_pending(deadline)
                self._settimeout(deadline)
                data = self.sock.recv(65536)
                if data:
                    self.incoming.write(data)
                else:
                    self.incoming.write_eof()
                continue
            except ssl.SSLError:
                try:  # the alert that says why (e.g. "unknown CA") is for the peer to see
                    self._send_pending(time.monotonic() + 0.5)
                except OSError:
                    pass
                raise
            self._send_pending(deadline)  # the last flight (and TLS 1.3 session tickets)
            return

    def _send_pending(self, deadline: float | None) -> None:
        data = self.outgoing.read()
        if data:
            self._settimeout(deadline)
            self.sock.sendall(data)

    def _settimeout(self, deadline: float | None) -> None:
        self.sock.settimeout(None if deadline is None else max(0.001, deadline - time.monotonic()))


def client_handshake(sock: socket.socket, ctx: ssl.SSLContext, server_hostname: str | None, peer: str,
                     timeout: float | None, reread=None) -> TlsSession:
    """The client's handshake on a connected socket within `timeout`; every failure is one
    SockdiagError naming `peer`. `reread()`, when given, returns the server's certificate through
    a second, unverified handshake, to name its names in a mismatch message."""
    try:
        session = TlsSession(sock, ctx, False, server_hostname)
    except (ValueError, ssl.SSLError) as exc:
        raise SockdiagError(f"TLS {peer}: {exc}") from None
    try:
        session.handshake(timeout)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        raise handshake_error(exc, peer, server_hostname, reread) from None
    return session


def server_handshake(sock: socket.socket, ctx: ssl.SSLContext, peer: str, timeout: float | None) -> TlsSession:
    session = TlsSession(sock, ctx, True)
    try:
        session.handshake(timeout)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        raise handshake_error(exc, peer) from None
    return session


def handshake_error(exc: Exception, peer: str, target: str | None = None, reread=None) -> SockdiagError:
    """A failed handshake as one line: `TLS 127.0.0.1:8443: certificate verify failed: expired (...)`."""
    reason, kind, status = handshake_reason(exc, target, reread)
    return kind(f"TLS {peer}: {reason}", status)


def handshake_reason(exc: Exception, target: str | None = None, reread=None) -> tuple[str, type, object]:
    """Why a handshake failed, without naming the peer: (the words, the SockdiagError class, its
    exit status or None for the class's own). probe --tls shows the words per port."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = tlsinfo.verify_reason(exc.verify_code, exc.verify_message)
        if tlsinfo.VERIFY_REASONS.get(exc.verify_code) == "name mismatch" and target:
            names = _reread_names(reread)
            reason = "name mismatch (" + (tlsinfo.mismatch_detail(names, target) if names is not None
                                          else f"certificate is not for {target}") + ")"
        return f"certificate verify failed: {reason}", SockdiagError, None
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "no handshake within the timeout", TimeoutFailure, None
    if isinstance(exc, ssl.SSLError):
        code = (exc.reason or "").upper()
        if any(word in code for word in _NOT_TLS):
            return f"handshake failed: the peer does not speak TLS ({ssl_words(exc)})", SockdiagError, None
        if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return "handshake failed: the peer closed the connection", SockdiagError, None
        return f"handshake failed: {ssl_words(exc)}", SockdiagError, None
    if isinstance(exc, OSError):
        if isinstance(exc, ConnectionResetError) or exc.errno is None:
            return "handshake failed: the peer closed the connection", SockdiagError, None
        from sockdiag.core.errors import status_for_errno_name
        from sockdiag.platform.errnos import describe, errno_name

        return f"handshake failed: {describe(exc.errno)}", SockdiagError, status_for_errno_name(errno_name(exc.errno))
    return f"handshake failed: {exc}", SockdiagError, None


_ALERTS = {  # what the peer's alert means for the user
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the peer requires a client certificate (give --cert FILE)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the peer refused our certificate (bad certificate)",
    "TLSV1_ALERT_UNKNOWN_CA": "the peer does not trust our certificate's CA (unknown CA)",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the peer refused our certificate (expired)",
    "TLSV1_ALERT_NO_APPLICATION_PROTOCOL": "no ALPN protocol in common with the peer",
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version in common with the peer",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the peer ended the handshake (handshake failure alert: no cipher or "
                                     "certificate in common?)",
}


def ssl_words(exc: ssl.SSLError) -> str:
    """An SSLError in words: a known alert explained, else OpenSSL's reason in lower case."""
    if exc.reason in _ALERTS:
        return _ALERTS[exc.reason]
    if exc.reason:
        return exc.reason.replace("_", " ").lower()
    return str(exc)



def _reread_names(reread) -> list[str] | None:
    if reread is None:
        return None
    try:
        der = reread()
    except Exception:  # noqa: BLE001 - the names only decorate the message
        return None
    summary = summarize(None, der)
    return None if summary is None else summary.names


def fetch_certificate(family: int, sockaddr, server_hostname: str | None, timeout: float | None) -> bytes | None:
    """Connect again, handshake without verifying, and return the server's certificate (DER)."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout if timeout is not None else 5.0)
        sock.connect(sockaddr)
        with probe_context().wrap_socket(sock, server_hostname=server_hostname) as tls:
            return tls.getpeercert(binary_form=True)


# --- what a session is ---------------------------------------------------------------------------------

def decode_der(der: bytes) -> dict | None:
    """A DER certificate as the ssl module's dict (subject, issuer, subjectAltName, notAfter), for
    certificates that were not verified (getpeercert() then returns {}): core.x509 reads it.
    None for bytes that are not a certificate."""
    return x509.decode(der)


def summarize(tls: ssl.SSLObject | ssl.SSLSocket | None, der: bytes | None = None) -> tlsinfo.CertSummary | None:
    """The peer's certificate as a CertSummary (None: it sent none)."""
    if tls is not None:
        der = tls.getpeercert(binary_form=True)
    if not der:
        return None
    cert = (tls.getpeercert() if tls is not None else None) or decode_der(der) or {}
    return tlsinfo.CertSummary(cert, time.time(), der)


def describe(tls: ssl.SSLObject | ssl.SSLSocket, peer_role: str) -> list[str]:
    """The -v lines of an established session: version, cipher, ALPN, the peer's certificate."""
    cipher = tls.cipher()
    alpn = tls.selected_alpn_protocol() or "none"
    lines = [f"TLS: {tls.version()}, cipher {cipher[0] if cipher else '?'}, ALPN {alpn}"]
    summary = summarize(tls)
    if summary is None:
        lines.append(f"TLS: no {peer_role} certificate")
    else:
        lines.extend("TLS: " + line for line in summary.lines(f"{peer_role} certificate"))
    return lines
