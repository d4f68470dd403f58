"""probe --banner: services that speak first, HTTP and redis asked first, how banners are shown
(text: one escaped, cut line; JSON: exact, base64 when not UTF-8), and the FIN close.

The services are tiny loopback servers that record what they received and how the scanner's
connection ended: "eof" (recv() returned b"": FIN) or "reset" (ECONNRESET: RST).
"""

from __future__ import annotations

import base64
import errno
import json
import random
import socket
import threading
from typing import Self

import pytest

from sockdiag.core import banners
from tests.conftest import run_main, wait_until

HTTP_ANSWER = b"HTTP/1.0 200 OK\r\nServer: TinyHTTP/0.1\r\nContent-Length: 0\r\n\r\n"


class Service:
    """One client on a loopback port: run `talk(conn, received)` (the protocol), then recv()
    until the client goes and record how ("eof", "reset" or an errno name)."""

    def __init__(self, talk, host: str = "127.0.0.1", port: int = 0):
        self.talk = talk
        self.received = bytearray()
        self.endings: list[str] = []
        self._lsock = socket.socket()
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((host, port))
        self._lsock.listen(8)
        self._lsock.settimeout(10)
        self.host, self.port = host, self._lsock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        try:
            conn, _ = self._lsock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            try:
                if self.talk(conn, self.received) is not False:
                    while data := conn.recv(1024):
                        self.received += data
                    self.endings.append("eof")
                else:
                    self.endings.append("server-closed")
            except ConnectionResetError:
                self.endings.append("reset")
            except OSError as exc:
                self.endings.append(errno.errorcode.get(exc.errno, str(exc)))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._lsock.close()
        self._thread.join(15)

    def ending(self) -> str:
        wait_until(lambda: self.endings)
        return self.endings[0]


def read_until(conn: socket.socket, received: bytearray, end: bytes) -> bytes:
    while end not in received:
        data = conn.recv(1024)
        if not data:
            break
        received += data
    return bytes(received)


def speaks_first(greeting: bytes):
    def talk(conn, received):
        conn.sendall(greeting)
    return talk


def http_server(conn, received):
    """Answers a HEAD request, and nothing else; closes after the answer (HTTP/1.0)."""
    request = read_until(conn, received, b"\r\n\r\n")
    if request.startswith(b"HEAD / HTTP/1."):
        conn.sendall(HTTP_ANSWER)
    return False


def redis_server(conn, received):
    """Answers the inline command PING with +PONG, and nothing else."""
    if read_until(conn, received, b"\r\n") == b"PING\r\n":
        conn.sendall(b"+PONG\r\n")


def probe(*argv: str):
    return run_main(["probe", "--banner", *argv])


def json_row(result) -> dict:
    rows = [json.loads(line) for line in result.text.splitlines()]
    assert len(rows) == 1, result.text
    return rows[0]


def private_loopback() -> str:
    """A 127.x.y.z of this test's own, or skip (Linux routes all of 127/8 to lo)."""
    address = f"127.84.{random.randrange(1, 255)}.{random.randrange(1, 254)}"
    try:
        with socket.socket() as s:
            s.bind((address, 0))
    except OSError:
        pytest.skip("only 127.0.0.1 on this system")
    return address


# --- through the command line: the three kinds of service --------------------------------------

def test_greeting_read_whole_in_json_and_closed_with_fin():
    with Service(speaks_first(b"SSH-2.0-OpenSSH_9.6 Debian\r\n")) as ssh:
        r = probe("-o", "json", "127.0.0.1", str(ssh.port))
        assert ssh.ending() == "eof"
    row = json_row(r)
    assert r.status == 0, r.err
    assert (row["state"], row["banner"], row["banner_b64"]) == ("open", "SSH-2.0-OpenSSH_9.6 Debian\r\n", None)
    assert list(row)[-2:] == ["banner", "banner_b64"]
    assert ssh.received == b""  # a service that speaks first is only listened to


def test_close_rst_asked_for_resets_a_banner_grab_too():
    with Service(speaks_first(b"220 mail ESMTP\r\n")) as smtp:
        r = probe("--close", "rst", "127.0.0.1", str(smtp.port))
        assert smtp.ending() == "reset"
    assert r.text.rstrip().endswith("220 mail ESMTP")


def test_http_port_is_asked_head_and_answers(monkeypatch):
    with Service(http_server) as web:
        monkeypatch.setattr(banners, "HTTP_PORTS", frozenset({web.port}))
        r = probe("-o", "json", "127.0.0.1", str(web.port))
    assert bytes(web.received) == b"HEAD / HTTP/1.0\r\n\r\n"
    assert json_row(r)["banner"] == HTTP_ANSWER.decode()
    with Service(http_server) as web:
        monkeypatch.setattr(banners, "HTTP_PORTS", frozenset({web.port}))
        text = probe("127.0.0.1", str(web.port))
    assert text.text.rstrip().endswith("HTTP/1.0 200 OK | Server: TinyHTTP/0.1")


def test_http_on_8080_by_port_number():
    host = private_loopback()
    try:
        web = Service(http_server, host, 8080)
    except OSError:
        pytest.skip("8080 is taken on every loopback address (a wildcard listener)")
    with web:
        r = probe("-o", "json", host, "8080")
    assert json_row(r)["banner"].startswith("HTTP/1.0 200 OK\r\n")


def test_redis_port_is_asked_ping_answers_pong_and_sees_fin(monkeypatch):
    with Service(redis_server) as redis:
        monkeypatch.setattr(banners, "REDIS_PORTS", frozenset({redis.port}))
        r = probe("-o", "json", "127.0.0.1", str(redis.port))
        assert redis.ending() == "eof"
    assert bytes(redis.received) == b"PING\r\n"
    assert json_row(r)["banner"] == "+PONG\r\n"


def test_silent_service_is_open_without_banner_after_banner_wait():
    with Service(speaks_first(b"")) as mute:
        r = probe("--banner-wait", "0.2", "-o", "json", "127.0.0.1", str(mute.port))
        assert mute.ending() == "eof"
    row = json_row(r)
    assert (row["state"], row["banner"], row["banner_b64"]) == ("open", None, None)


def test_binary_banner_is_base64_in_json_and_escaped_in_text():
    greeting = b"J\x00\x00\x00\n5.7.44\x00\xff\xfe"  # a MySQL-like handshake: not UTF-8
    with Service(speaks_first(greeting)) as db:
        r = probe("-o", "json", "127.0.0.1", str(db.port))
    row = json_row(r)
    assert row["banner"] is None and base64.b64decode(row["banner_b64"]) == greeting
    with Service(speaks_first(greeting)) as db:
        text = probe("127.0.0.1", str(db.port))
    assert text.text.rstrip().endswith("J\\x00\\x00\\x00")


def test_csv_has_both_banner_columns():
    with Service(speaks_first(b"+OK POP3 ready\r\n")) as pop:
        r = probe("-o", "csv", "127.0.0.1", str(pop.port))
    header, line = r.text.splitlines()
    assert header.endswith(",banner,banner_b64")
    assert "+OK POP3 ready" in line


def test_text_banner_is_escaped_and_cut():
    greeting = b"220 \x1b[31m" + b"a" * 100 + b"\r\n"
    with Service(speaks_first(greeting)) as ftp:
        r = probe("127.0.0.1", str(ftp.port))
    shown = r.text.rstrip().split("  ")[-1].strip()
    assert shown.startswith("220 \\x1b[31maaa") and shown.endswith("...")
    assert len(shown) == banners.TEXT_WIDTH


# --- core.banners (pure) -------------------------------------------------------------------------

@pytest.mark.parametrize("port, service, expected", [
    pytest.param(22, "ssh", b"", id="ssh-listens"),
    pytest.param(25, "smtp", b"", id="smtp-listens"),
    pytest.param(80, "http", banners.HTTP_PROBE, id="http"),
    pytest.param(8080, "http-alt", banners.HTTP_PROBE, id="8080"),
    pytest.param(8000, None, banners.HTTP_PROBE, id="8000-by-number"),
    pytest.param(8008, None, banners.HTTP_PROBE, id="8008"),
    pytest.param(8888, None, banners.HTTP_PROBE, id="8888"),
    pytest.param(5000, "http-custom", banners.HTTP_PROBE, id="http-named"),
    pytest.param(443, "https", b"", id="https-is-tls"),
    pytest.param(8443, "https-alt", b"", id="https-named"),
    pytest.param(6379, "redis", banners.REDIS_PROBE, id="redis"),
    pytest.param(12345, None, b"", id="unknown-listens"),
])
def test_probe_for(port, service, expected):
    assert banners.probe_for(port, service) == expected


@pytest.mark.parametrize("data, probe, done", [
    pytest.param(b"SSH-2.0-x", b"", False, id="no-line-end-yet"),
    pytest.param(b"SSH-2.0-x\r\n", b"", True, id="first-line"),
    pytest.param(b"HTTP/1.0 200 OK\r\n", banners.HTTP_PROBE, False, id="http-status-only"),
    pytest.param(HTTP_ANSWER, banners.HTTP_PROBE, True, id="http-header-done"),
    pytest.param(b"+PONG\r\n", banners.REDIS_PROBE, True, id="pong"),
])
def test_complete(data, probe, done):
    assert banners.complete(data, probe) is done


@pytest.mark.parametrize("data, shown", [
    pytest.param(b"", None, id="nothing"),
    pytest.param(b"SSH-2.0-OpenSSH_9.2\r\n", "SSH-2.0-OpenSSH_9.2", id="first-line"),
    pytest.param(b"220-hello\r\n220 more\r\n", "220-hello", id="first-line-only"),
    pytest.param(b"a\\b\tc\x00", "a\\\\b\\tc\\x00", id="escapes"),
    pytest.param("caf\u00e9\n".encode(), "caf\\xc3\\xa9", id="non-ascii-escaped"),
    pytest.param(HTTP_ANSWER, "HTTP/1.0 200 OK | Server: TinyHTTP/0.1", id="http-status-and-server"),
    pytest.param(b"x" * 60, "x" * 60, id="exactly-the-width"),
    pytest.param(b"x" * 61, "x" * 57 + "...", id="cut"),
    pytest.param(b"x" * 56 + b"\x01\x02", "x" * 56 + "...", id="cut-never-splits-an-escape"),
])
def test_text(data, shown):
    assert banners.text(data) == shown


def test_fields_rule():
    assert banners.fields(b"") == (None, None)
    assert banners.fields(b"220 ok\r\n") == ("220 ok\r\n", None)
    assert banners.fields("\u00e9".encode()) == ("\u00e9", None)
    assert banners.fields(b"\xff\x00") == (None, "/wA=")


def test_text_is_one_short_line_of_printable_ascii():
    from hypothesis import given
    from hypothesis import strategies as st

    @given(st.binary(max_size=300))
    def check(data):
        shown = banners.text(data)
        assert shown is None or (shown.isascii() and shown.isprintable() and len(shown) <= banners.TEXT_WIDTH)

    check()
