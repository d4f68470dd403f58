"""connect -x/-X/--proxy-auth and net.proxy.open_via_proxy against loopback SOCKS5, SOCKS4a and
HTTP CONNECT proxies (tests/proxy_servers.py), and ncat's HTTP proxy where it is installed."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

from sockdiag.cli import build_parser
from sockdiag.cmdline import OUTPUT_STREAMS
from sockdiag.net.proxy import open_via_proxy, proxy_from_args
from tests.conftest import has_ipv6_loopback, make_env, run_main, wait_until
from tests.proxy_servers import Proxy, Target

PAYLOAD = os.urandom(256 * 1024)
BANNER = b"220 target ready\r\n"
UNRESOLVABLE = "target.invalid"  # only the proxy knows it (its `names` table); getaddrinfo must not see it


def connect(proxy: Proxy, *extra: str, host: str = "127.0.0.1", port: int, stdin: bytes = b""):
    kind = {"http": ["-X", "connect"]}.get(proxy.kind, [])
    return run_main(["connect", "-x", f"127.0.0.1:{proxy.port}", *kind, *extra, host, str(port)], stdin=stdin)


def one_error_line(result, status: int, *parts: str) -> str:
    assert result.status == status, result
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("sockdiag connect: error: "), lines
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def target():
    with Target(BANNER) as server:
        yield server


@pytest.fixture
def no_local_lookup(monkeypatch):
    """getaddrinfo fails for the target name and records every name it was asked for."""
    real, asked = socket.getaddrinfo, []

    def getaddrinfo(host, *args, **kwargs):
        asked.append(host)
        if host == UNRESOLVABLE:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


# --- byte-exact relays through each kind --------------------------------------------------------

@pytest.mark.parametrize(("kind", "options", "auth"), [
    pytest.param("socks", [], None, id="socks5"),
    pytest.param("socks", ["--proxy-auth", "alice:s3:cret"], ("alice", "s3:cret"), id="socks5-userpass"),
    pytest.param("socks", ["-X", "4"], None, id="socks4"),
    pytest.param("http", [], None, id="connect"),
    pytest.param("http", ["--proxy-auth", "alice:s3cret"], ("alice", "s3cret"), id="connect-basic"),
])
@pytest.mark.parametrize("glue", [False, True], ids=["", "greeting-in-reply-segment"])
def test_relay_is_byte_exact_through_the_proxy(target, kind, options, auth, glue):
    """The target's greeting (sent at once, even in the proxy's reply segment) and the echoed
    stdin arrive whole and in order."""
    with Proxy(kind, auth=auth, glue=glue) as proxy:
        result = connect(proxy, *options, port=target.port, stdin=PAYLOAD)
    assert result.status == 0, result.err
    assert result.out == BANNER + PAYLOAD
    (request,) = proxy.requests
    assert (request.host, request.port) == ("127.0.0.1", target.port)
    if auth is not None:
        assert (request.user, request.password) == auth


@pytest.mark.parametrize(("kind", "options", "seen"), [
    pytest.param("socks", [], "socks5", id="socks5"),
    pytest.param("socks", ["-X", "4"], "socks4a", id="socks4a"),
    pytest.param("http", [], "http", id="connect"),
])
def test_the_target_name_is_resolved_by_the_proxy(target, no_local_lookup, kind, options, seen):
    with Proxy(kind, names={UNRESOLVABLE: "127.0.0.1"}) as proxy:
        result = connect(proxy, *options, "-v", host=UNRESOLVABLE, port=target.port, stdin=b"ping\n")
    assert result.status == 0, result.err
    assert result.out == BANNER + b"ping\n"
    (request,) = proxy.requests
    assert (request.kind, request.host) == (seen, UNRESOLVABLE)
    if seen == "socks5":
        assert request.atyp == 3  # a domain name, not an address
    assert UNRESOLVABLE not in no_local_lookup
    label = {"socks": "socks4" if options else "socks5", "http": "http"}[kind]
    assert f"connected to {UNRESOLVABLE}:{target.port} via {label} proxy 127.0.0.1:{proxy.port}" in result.err


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_target_literal_through_socks5():
    with Target(BANNER, family=socket.AF_INET6) as target, Proxy() as proxy:
        result = connect(proxy, host="::1", port=target.port, stdin=b"six\n")
    assert result.status == 0, result.err
    assert result.out == BANNER + b"six\n"
    assert (proxy.requests[0].atyp, proxy.requests[0].host) == (4, "::1")


def test_socks4_sends_the_user_as_its_user_id(target):
    with Proxy() as proxy:
        result = connect(proxy, "-X", "4", "--proxy-auth", "alice", port=target.port)
    assert result.status == 0, result.err
    assert (proxy.requests[0].kind, proxy.requests[0].user) == ("socks4", "alice")


def test_source_address_applies_to_the_proxy_connection(target):
    with Proxy() as proxy:
        result = connect(proxy, "-s", "127.0.0.2", port=target.port)
    assert result.status == 0, result.err
    assert proxy.clients[0][0] == "127.0.0.2"


@pytest.mark.parametrize("kind", ["socks", "http"])
def test_zero_io_reports_through_the_proxy(target, kind):
    with Proxy(kind) as proxy:
        assert connect(proxy, "-z", port=target.port).status == 0
    with Proxy(kind, refuse=5 if kind == "socks" else 403) as proxy:
        assert connect(proxy, "-z", port=target.port).status == 1


# --- refusals and bad replies: one line, exit 1 ------------------------------------------------

@pytest.mark.parametrize(("kind", "options", "refuse", "reason"), [
    pytest.param("socks", [], 5, "refused: connection refused by destination host (SOCKS5 reply 5)", id="socks5-5"),
    pytest.param("socks", [], 1, "refused: general SOCKS server failure (SOCKS5 reply 1)", id="socks5-1"),
    pytest.param("socks", ["-X", "4"], 91, "refused: request rejected or failed (SOCKS4 91)", id="socks4-91"),
    pytest.param("http", [], 403, "refused: HTTP 403 Refused Here", id="connect-403"),
])
def test_a_refusal_is_one_line_naming_the_reason(target, kind, options, refuse, reason):
    with Proxy(kind, refuse=refuse) as proxy:
        result = connect(proxy, *options, port=target.port)
    one_error_line(result, 1, f"proxy 127.0.0.1:{proxy.port} {reason}")
    assert result.out == b""


@pytest.mark.parametrize(("kind", "options", "reason"), [
    pytest.param("socks", ["--proxy-auth", "alice:wrong"], "refused: authentication failed", id="socks5-password"),
    pytest.param("socks", [], "refused: no acceptable authentication method", id="socks5-no-credentials"),
    pytest.param("http", [], "refused: HTTP 407 Proxy Authentication Required", id="connect-407"),
    pytest.param("http", ["--proxy-auth", "alice:wrong"], "refused: HTTP 407 Proxy Authentication Required",
                 id="connect-407-password"),
])
def test_authentication_failures(target, kind, options, reason):
    with Proxy(kind, auth=("alice", "s3cret")) as proxy:
        result = connect(proxy, *options, port=target.port)
    line = one_error_line(result, 1, reason)
    assert "wrong" not in line and "s3cret" not in line


@pytest.mark.parametrize(("kind", "reply", "message"), [
    pytest.param("socks", b"\x05", "closed the connection after 1 bytes of its reply", id="socks5-short"),
    pytest.param("socks", b"", "closed the connection before answering", id="socks5-nothing"),
    pytest.param("socks", b"HTTP/1.1 400 Bad Request\r\n\r\n", "bad reply: not a SOCKS5 reply", id="socks5-http"),
    pytest.param("http", b"SSH-2.0-OpenSSH_9.6\r\n", "bad reply: not an HTTP response", id="connect-ssh"),
    pytest.param("http", b"HTTP/1.1 200 OK\r\n", "closed the connection after 17 bytes", id="connect-short"),
])
def test_a_malformed_reply_is_one_line(target, kind, reply, message):
    with Proxy(kind, reply=reply) as proxy:
        result = connect(proxy, port=target.port)
    one_error_line(result, 1, f"proxy 127.0.0.1:{proxy.port}", message)


def test_an_unreachable_proxy_is_the_normal_connect_error(target):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, never listening: refused
        port = unused.getsockname()[1]
        result = run_main(["connect", "-x", f"127.0.0.1:{port}", "127.0.0.1", str(target.port)])
    one_error_line(result, 1, f"connect 127.0.0.1:{port} (proxy): connection refused (ECONNREFUSED)")


@pytest.mark.parametrize("kind", ["socks", "http"])
def test_timeout_bounds_the_handshake(target, kind):
    with Proxy(kind, silent=True) as proxy:
        result = connect(proxy, "-w", "0.3", port=target.port)
    one_error_line(result, 3, f"proxy 127.0.0.1:{proxy.port}: no complete answer within 0.3 s")


# --- the API forward uses -----------------------------------------------------------------------

def test_open_via_proxy_returns_a_blocking_socket_at_the_stream_start(target):
    with Proxy("http", glue=True) as proxy:
        sock = open_via_proxy("127.0.0.1", proxy.port, "connect", "127.0.0.1", target.port, None, 5.0)
        with sock:
            assert sock.gettimeout() is None
            received = b""
            while len(received) < len(BANNER):
                received += sock.recv(100)
    assert received == BANNER


def parse(*argv: str):
    token = OUTPUT_STREAMS.set((make_env().stdout, make_env().stderr))
    try:
        return build_parser().parse_args(["connect", *argv, "127.0.0.1", "9"])
    finally:
        OUTPUT_STREAMS.reset(token)


@pytest.mark.parametrize(("argv", "expected"), [
    pytest.param(["-x", "127.0.0.1"], ("127.0.0.1", 1080, "5", None), id="socks-default-port"),
    pytest.param(["--proxy", "127.0.0.1", "--proxy-type", "connect"], ("127.0.0.1", 3128, "connect", None),
                 id="connect-default-port"),
    pytest.param(["-x", "[::1]:8080", "-X", "4"], ("::1", 8080, "4", None), id="ipv6-port"),
    pytest.param(["-x", "[::1]", "-X", "http"], ("::1", 3128, "connect", None), id="ncat-name"),
    pytest.param(["-x", "localhost:1081", "--proxy-auth", "u:p:q"], ("localhost", 1081, "5", ("u", "p:q")),
                 id="auth-first-colon"),
])
def test_proxy_options(argv, expected):
    proxy = proxy_from_args(parse(*argv))
    assert (proxy.host, proxy.port, proxy.kind, proxy.auth) == expected


def test_no_proxy_without_x():
    assert proxy_from_args(parse()) is None


@pytest.mark.parametrize("argv", [
    pytest.param(["-x", ""], id="empty"),
    pytest.param(["-x", "127.0.0.1:70000"], id="port-range"),
    pytest.param(["-x", "127.0.0.1:"], id="empty-port"),
    pytest.param(["-x", "::1"], id="bare-ipv6"),
    pytest.param(["-x", "[::1"], id="open-bracket"),
    pytest.param(["-x", "999.1.1.1:1080"], id="bad-ipv4"),
    pytest.param(["-x", "127.0.0.1", "-X", "6"], id="bad-type"),
    pytest.param(["-x", "127.0.0.1", "--proxy-auth", ":pw"], id="empty-user"),
    pytest.param(["-x", "127.0.0.1", "--proxy-auth", "u:" + "p" * 256], id="long-password"),
    pytest.param(["--proxy-auth", "u:p"], id="auth-without-proxy"),
    pytest.param(["-x", "127.0.0.1", "-X", "4", "--proxy-auth", "u:p"], id="password-on-socks4"),
    pytest.param(["-x", "127.0.0.1", "-u"], id="udp"),
    pytest.param(["-x", "localhost:1080", "-n"], id="numeric-means-the-proxy-too"),
])
def test_bad_proxy_options_are_usage_errors(argv):
    result = run_main(["connect", *argv, "127.0.0.1", "9"])
    assert result.status == 2, result
    lines = result.err.splitlines()
    assert lines[0].startswith("sockdiag connect: error: ") and lines[1] == "Try 'sockdiag connect --help'."


def test_proxy_with_unix_socket_is_a_usage_error(tmp_path):
    result = run_main(["connect", "-x", "127.0.0.1", "-U", str(tmp_path / "s")])
    assert result.status == 2 and "not with -u or -U" in result.err, result


def test_ipv6_target_on_socks4_is_a_usage_error(target):
    with Proxy() as proxy:
        result = connect(proxy, "-X", "4", host="::1", port=target.port)
    assert result.status == 2 and "SOCKS4 cannot carry the IPv6 address" in result.err, result
    assert proxy.clients == []  # refused before any connection


# --- ncat as the HTTP proxy ---------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("ncat") is None, reason="ncat is not installed")
def test_through_ncat_http_proxy():
    """ncat's proxy ends the tunnel at the client's EOF (no half-close), so the target echoes a
    known length and closes, and stdin EOF is not passed on (--no-shutdown)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Target(BANNER, echo_limit=len(PAYLOAD)) as target:
        ncat = subprocess.Popen(["ncat", "-l", "--proxy-type", "http", "127.0.0.1", str(port)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: _accepts(port) or ncat.poll() is not None, timeout=10)
            assert ncat.poll() is None, ncat.stderr.read()
            result = run_main(["connect", "-x", f"127.0.0.1:{port}", "-X", "connect", "-w", "10", "--no-shutdown",
                               "127.0.0.1", str(target.port)], stdin=PAYLOAD)
        finally:
            ncat.kill()
            ncat.wait(10)
            ncat.stderr.close()
    assert result.status == 0, result.err
    assert result.out == BANNER + PAYLOAD


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
