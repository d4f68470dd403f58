"""probe --tls: a second phase after the scan. Each open port gets one TLS handshake (not
verified: the point is to see the certificate, whoever signed it) from a small thread pool, within
-w; the rows, held back until then, carry whether TLS answered, its version, the certificate's
subject and days to expiry, and whether its names cover the target (core.tlsinfo, RFC 6125).

The name checked (and sent as SNI) is the HOST argument when it is one host name; otherwise each
address itself (a list or block of targets has no single name)."""

from __future__ import annotations

import socket

from sockdiag.core.errors import UsageError

WORKERS = 16  # handshakes at once: a TLS handshake costs the server a signature, so stay modest
DEFAULT_TIMEOUT = 3.0  # seconds per handshake without -w (connect included)
_CSV_KEYS = ("tls_ok", "tls_version", "tls_subject", "tls_days_left", "tls_name_match", "tls_error")
OPEN = "open"


def keys(args) -> tuple[str, ...]:
    """The output columns --tls adds: `tls` (an object) in JSON, flat tls_* columns in CSV."""
    if not getattr(args, "tls", False):
        return ()
    return _CSV_KEYS if args.output == "csv" else ("tls",)


def check_options(args) -> None:
    if not getattr(args, "tls", False):
        return
    if args.udp:
        raise UsageError("--tls needs TCP (no -u)")
    if args.output == "grep":
        raise UsageError("--tls has no place in -o grep; use -o text, json or csv")


class TlsPhase:
    """Stands in for probe.command.Output: holds the rows until the scan is done, checks the open
    ports, then hands everything to the real Output with the TLS fields (Output asks fields())."""

    def __init__(self, out, args, specs, env):
        self.out, self.env = out, env
        self.timeout = args.timeout or DEFAULT_TIMEOUT
        names = [spec.name for spec in specs if getattr(spec, "name", None)]
        self.name = names[0] if len(specs) == 1 and names else None
        self.held: list = []
        self.results: dict[tuple[str, int], dict] = {}

    def __getattr__(self, name):
        return getattr(self.out, name)

    def rows(self, results) -> None:
        self.held.extend(results)

    def hosts_done(self, mark: int) -> None:
        pass

    def finish(self, elapsed: float, interrupted: bool = False) -> None:
        if not interrupted:
            self._check_all()
        self.out.tls = self
        self.out.rows(self.held)
        self.held = []
        self.out.finish(elapsed, interrupted)

    def _check_all(self) -> None:
        targets = sorted({(row[1], row[2]) for row in self.held if row[3] == OPEN})
        if not targets:
            return
        self.env.info(f"TLS: checking {len(targets)} open port(s), {self.timeout:g} s each at most")
        from concurrent.futures import ThreadPoolExecutor  # only with --tls: it costs start-up time

        with ThreadPoolExecutor(max_workers=min(WORKERS, len(targets)), thread_name_prefix="sockdiag-tls") as pool:
            for target, result in zip(targets, pool.map(lambda t: check(t[0], t[1], self.name, self.timeout),
                                                        targets)):
                self.results[target] = result

    def fields(self, ip: str, port: int, fmt: str) -> dict:
        """The TLS fields of one row (none for a port that was not open)."""
        result = self.results.get((ip, port))
        if result is None:
            return {}
        if fmt == "json":
            return {"tls": result}
        if fmt == "csv":
            return {f"tls_{key}": value for key, value in result.items()}
        return {"tls_text": text(result)}


def text(result: dict) -> str:
    """The text table's detail: `TLSv1.3 CN=example.com 89d name ok` or `no TLS: ...`."""
    if not result["ok"]:
        return f"no TLS: {result['error']}"
    parts = [result["version"] or "TLS", result["subject"] or "(no subject)"]
    if result["days_left"] is not None:
        parts.append(f"{result['days_left']}d" if result["days_left"] >= 0 else f"expired {-result['days_left']}d ago")
    if result["name_match"] is not None:
        parts.append("name ok" if result["name_match"] else "name mismatch")
    return " ".join(parts)


def check(ip: str, port: int, name: str | None, timeout: float) -> dict:
    """One unverified handshake with ip:port; what it showed, as probe's `tls` object."""
    from sockdiag.net import tls

    result = {"ok": False, "version": None, "subject": None, "days_left": None, "name_match": None, "error": None}
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sni = name if name and not tls.is_ip_literal(name) else None
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect((ip.partition("%")[0], port))
            session = tls.TlsSession(sock, tls.probe_context(), False, sni)
            session.handshake(timeout)
            der = session.obj.getpeercert(binary_form=True)
            result["ok"], result["version"] = True, session.obj.version()
    except Exception as exc:  # noqa: BLE001 - every failure is this port's error text
        result["error"] = tls.handshake_reason(exc)[0].removeprefix("handshake failed: ")
        return result
    summary = tls.summarize(None, der)
    if summary is not None:
        result["subject"], result["days_left"] = summary.subject, summary.days_left
        result["name_match"] = summary.matches(name or ip)
    return result
