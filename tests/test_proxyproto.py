"""core.proxyproto: SOCKS5 / SOCKS4a / HTTP CONNECT requests and replies, no sockets."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockdiag.core.proxyproto import (
    HttpConnectReader,
    ProxyError,
    ProxyRefused,
    ProxyReplyError,
    ProxyRequestError,
    Socks4ReplyReader,
    Socks5AuthReader,
    Socks5MethodReader,
    Socks5ReplyReader,
    handshake,
    http_connect,
    socks4a_connect,
    socks5_connect,
    socks5_greeting,
    socks5_userpass,
)

# --- requests -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("encoded", "expected"), [
    pytest.param(socks5_greeting(False), b"\x05\x01\x00", id="socks5-greeting"),
    pytest.param(socks5_greeting(True), b"\x05\x02\x00\x02", id="socks5-greeting-auth"),
    pytest.param(socks5_userpass("bob", "s3cret"), b"\x01\x03bob\x06s3cret", id="rfc1929"),
    pytest.param(socks5_userpass("bob", ""), b"\x01\x03bob\x00", id="rfc1929-empty-password"),
    pytest.param(socks5_connect("127.0.0.1", 80), b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50", id="socks5-ipv4"),
    pytest.param(socks5_connect("[::1]", 443), b"\x05\x01\x00\x04" + bytes(15) + b"\x01\x01\xbb", id="socks5-ipv6"),
    pytest.param(socks5_connect("example.test", 22), b"\x05\x01\x00\x03\x0cexample.test\x00\x16", id="socks5-name"),
    pytest.param(socks5_connect("b\u00fccher.test", 1), b"\x05\x01\x00\x03\x12xn--bcher-kva.test\x00\x01",
                 id="socks5-idna"),
    pytest.param(socks4a_connect("10.1.2.3", 80), b"\x04\x01\x00\x50\x0a\x01\x02\x03\x00", id="socks4-ipv4"),
    pytest.param(socks4a_connect("db.test", 5432, "alice"), b"\x04\x01\x15\x38\x00\x00\x00\x01alice\x00db.test\x00",
                 id="socks4a-name-userid"),
    pytest.param(http_connect("example.test", 443), b"CONNECT example.test:443 HTTP/1.1\r\n"
                 b"Host: example.test:443\r\n\r\n", id="connect"),
    pytest.param(http_connect("::1", 80, ("u", "p:w")), b"CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n"
                 b"Proxy-Authorization: Basic dTpwOnc=\r\n\r\n", id="connect-ipv6-basic"),
])
def test_requests_are_encoded(encoded, expected):
    assert encoded == expected


@pytest.mark.parametrize("make", [
    pytest.param(lambda: socks5_connect("a" * 256, 80), id="name-over-255"),
    pytest.param(lambda: socks5_connect("bad name", 80), id="space-in-name"),
    pytest.param(lambda: socks5_connect("example.test", 0), id="port-0"),
    pytest.param(lambda: socks4a_connect("::1", 80), id="ipv6-on-socks4"),
    pytest.param(lambda: socks4a_connect("x.test", 80, "a\x00b"), id="nul-in-userid"),
    pytest.param(lambda: socks5_userpass("", "p"), id="empty-user"),
    pytest.param(lambda: socks5_userpass("u", "p" * 256), id="password-over-255"),
    pytest.param(lambda: http_connect("x.test", 80, ("u", "p\r\nX: y")), id="crlf-in-credentials"),
    pytest.param(lambda: handshake("4", "x.test", 80, ("u", "secret")), id="password-on-socks4"),
    pytest.param(lambda: handshake("6", "x.test", 80), id="unknown-kind"),
])
def test_requests_that_cannot_be_encoded(make):
    with pytest.raises(ProxyRequestError):
        make()


def test_socks4_takes_a_user_without_password():
    assert handshake("4", "x.test", 80, ("alice", "")).start() == socks4a_connect("x.test", 80, "alice")


# --- replies ------------------------------------------------------------------------------------

def parse(reader, data: bytes):
    reader.feed(data)
    assert reader.done, reader.needed()
    return reader.reply


@pytest.mark.parametrize(("code", "reason"), [
    (1, "general SOCKS server failure (SOCKS5 reply 1)"),
    (2, "connection not allowed by ruleset (SOCKS5 reply 2)"),
    (4, "host unreachable (SOCKS5 reply 4)"),
    (5, "connection refused by destination host (SOCKS5 reply 5)"),
    (8, "address type not supported (SOCKS5 reply 8)"),
    (42, "unknown failure (SOCKS5 reply 42)"),
])
def test_socks5_refusals_name_the_reason(code, reason):
    reply = parse(Socks5ReplyReader(), bytes([5, code]))  # complete at REP: the rest is not needed
    assert (reply.ok, reply.reason) == (False, reason)


@pytest.mark.parametrize(("code", "reason"), [
    (91, "request rejected or failed (SOCKS4 91)"),
    (92, "request rejected: the SOCKS server cannot reach the client's identd (SOCKS4 92)"),
    (7, "unknown reply (SOCKS4 7)"),
])
def test_socks4_refusals_name_the_reason(code, reason):
    reply = parse(Socks4ReplyReader(), bytes([0, code]))
    assert (reply.ok, reply.reason) == (False, reason)


@pytest.mark.parametrize(("data", "bound", "size"), [
    pytest.param(b"\x05\x00\x00\x01\x0a\x00\x00\x01\x04\x38", ("10.0.0.1", 1080), 10, id="ipv4"),
    pytest.param(b"\x05\x00\x00\x04" + bytes(15) + b"\x01\x00\x50", ("::1", 80), 22, id="ipv6"),
    pytest.param(b"\x05\x00\x00\x03\x04host\x00\x50", ("host", 80), 11, id="name"),
])
def test_socks5_success_replies(data, bound, size):
    reader = Socks5ReplyReader()
    reader.feed(data + b"stream")
    assert reader.reply.ok and reader.reply.bound == bound
    assert reader.leftover == b"stream"


@pytest.mark.parametrize(("head", "ok", "reason"), [
    (b"HTTP/1.1 200 Connection established\r\n\r\n", True, "HTTP 200 Connection established"),
    (b"HTTP/1.0 200\r\nVia: x\r\n\r\n", True, "HTTP 200"),
    (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n", False,
     "HTTP 407 Proxy Authentication Required"),
    (b"HTTP/1.1 403\r\n\r\n", False, "HTTP 403 Forbidden"),
    (b"HTTP/1.1 502 Bad\x1bGateway\n\n", False, "HTTP 502 Bad?Gateway"),
])
def test_http_responses(head, ok, reason):
    reader = HttpConnectReader()
    reader.feed(head + b"tunnel bytes")
    assert (reader.reply.ok, reader.reply.reason) == (ok, reason)
    assert reader.leftover == b"tunnel bytes"


@pytest.mark.parametrize(("reader", "data"), [
    pytest.param(Socks5MethodReader, b"\x04\x00", id="method-version"),
    pytest.param(Socks5ReplyReader, b"\x04\x00", id="reply-version"),
    pytest.param(Socks5ReplyReader, b"\x05\x00\x00\x09", id="unknown-atyp"),
    pytest.param(Socks5AuthReader, b"\x07\x00", id="auth-version"),
    pytest.param(Socks4ReplyReader, b"\x05\x5a", id="socks4-version"),
    pytest.param(HttpConnectReader, b"SSH-2.0-OpenSSH_9.6\r\n", id="not-http"),
    pytest.param(HttpConnectReader, b"HTTP/1.1 2000 OK\r\n\r\n", id="bad-status"),
    pytest.param(HttpConnectReader, b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", id="bad-header"),
    pytest.param(HttpConnectReader, b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20000, id="head-too-long"),
])
def test_malformed_replies(reader, data):
    with pytest.raises(ProxyReplyError):
        reader().feed(data)


def test_handshake_refuses_a_method_it_did_not_offer():
    exchange = handshake("5", "x.test", 80)
    exchange.start()
    with pytest.raises(ProxyReplyError, match="not offered"):
        exchange.receive(b"\x05\x02")


def test_socks5_no_acceptable_method_is_a_refusal():
    exchange = handshake("5", "x.test", 80, ("u", "p"))
    exchange.start()
    with pytest.raises(ProxyRefused, match="no acceptable authentication method"):
        exchange.receive(b"\x05\xff")


def test_socks5_bad_password_is_a_refusal():
    exchange = handshake("5", "x.test", 80, ("u", "p"))
    exchange.start()
    assert exchange.receive(b"\x05\x02") == b"\x01\x01u\x01p"
    with pytest.raises(ProxyRefused, match="authentication failed"):
        exchange.receive(b"\x01\x01")


# --- properties: any split parses the same, nothing is over-read, garbage is our error ----------

SOCKS5_OK = b"\x05\x00\x00\x03\x09proxy.lan\x04\x38"
TRANSCRIPTS = {  # (kind, auth): what the server sends, all of it, for a granted connect
    ("5", None): b"\x05\x00" + SOCKS5_OK,
    ("5", ("user", "pw")): b"\x05\x02\x01\x00" + SOCKS5_OK,
    ("4", None): b"\x00\x5a\x00\x50\x7f\x00\x00\x01",
    ("connect", None): b"HTTP/1.1 200 Connection established\r\nVia: 1.1 squid\r\nX-Empty:\r\n\r\n",
    ("connect", ("u", "p")): b"HTTP/1.0 200 OK\n\n",
}
READERS = [Socks5MethodReader, Socks5AuthReader, Socks5ReplyReader, Socks4ReplyReader, HttpConnectReader]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def run_exchange(kind, auth, chunks):
    exchange = handshake(kind, "target.test", 80, auth)
    sent = [exchange.start()]
    for chunk in chunks:
        sent.append(exchange.receive(chunk))
    return b"".join(sent), exchange.done, exchange.reply, exchange.leftover


@settings(max_examples=300, deadline=None)
@given(which=st.sampled_from(sorted(TRANSCRIPTS, key=str)), cuts=st.lists(st.integers(0, 200), max_size=8),
       stream=st.binary(max_size=20))
def test_any_split_of_a_reply_gives_the_same_handshake(which, cuts, stream):
    kind, auth = which
    data = TRANSCRIPTS[which] + stream
    whole = run_exchange(kind, auth, [data])
    assert whole[1] and whole[2].ok and whole[3] == stream
    assert run_exchange(kind, auth, split(data, cuts)) == whole


@settings(max_examples=300, deadline=None)
@given(which=st.sampled_from(sorted(TRANSCRIPTS, key=str)), peeks=st.lists(st.integers(1, 64), min_size=1),
       stream=st.binary(min_size=1, max_size=20))
def test_wants_never_consumes_past_the_reply(which, peeks, stream):
    """As net.proxy reads: peek at what is waiting (any amount), consume `wants` of it."""
    kind, auth = which
    waiting = TRANSCRIPTS[which] + stream
    exchange = handshake(kind, "target.test", 80, auth)
    exchange.start()
    turn = 0
    while not exchange.done:
        available = waiting[:peeks[turn % len(peeks)]]
        turn += 1
        take = exchange.wants(available)
        assert 1 <= take <= len(available)
        exchange.receive(available[:take])
        waiting = waiting[take:]
    assert waiting == stream and exchange.leftover == b""


@settings(max_examples=500, deadline=None)
@given(reader=st.sampled_from(READERS), data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=6))
def test_garbage_raises_only_the_parsers_error(reader, data, cuts):
    outcomes = []
    for chunks in ([data], split(data, cuts)):
        parser = reader()
        try:
            for chunk in chunks:
                parser.feed(chunk)
            outcomes.append(("done", parser.reply, parser.leftover) if parser.done else ("more", parser.needed()))
        except ProxyReplyError as exc:
            outcomes.append(("error", exc.message))
    if outcomes[0][0] != "more":
        assert outcomes[0] == outcomes[1]
    else:
        assert outcomes[1][0] == "more" and outcomes[1][1] >= 1


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["5", "4", "connect"]), auth=st.sampled_from([None, ("u", "")]),
       data=st.binary(max_size=120))
def test_handshakes_raise_only_proxy_errors(kind, auth, data):
    exchange = handshake(kind, "target.test", 80, auth)
    exchange.start()
    try:
        exchange.receive(data)
    except ProxyError:
        pass
