"""connect --tls and listen --tls: verification and its one-line failures, SNI, ALPN, client
certificates, the throwaway certificate, and -k / --echo / --exec / --frame over TLS. Loopback
only; certificates from trustme (the system CAs are only ever shown to fail a trustme server)."""

from __future__ import annotations

import builtins
import datetime
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
from contextlib import contextmanager

import pytest

trustme = pytest.importorskip("trustme")

from sockdiag.core.status import ExitStatus
from tests.conftest import run_main, wait_until
from tests.test_relay_support import TIMEOUT, Proc, ThreadedMain, module_env, recv_all

_FINGERPRINT = re.compile(r"SHA-256 fingerprint ([0-9A-F:]{95})")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, certificates it issued (good, wrong name, expired, a client's) and a self-signed one."""
    tmp = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3)
    certs = {
        "good": ca.issue_cert("localhost", "127.0.0.1"),
        "localhost_only": ca.issue_cert("localhost"),
        "expired": ca.issue_cert("localhost", "127.0.0.1", not_before=past - datetime.timedelta(days=30),
                                 not_after=past),
        "client": ca.issue_cert("client.example"),
    }
    paths = {"ca": tmp / "ca.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    for name, cert in certs.items():
        paths[name] = tmp / f"{name}.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(paths[name]))
    from sockdiag.net.selfsigned import generate

    cert_pem, key_pem = generate(["localhost", "127.0.0.1"])
    paths["selfsigned"] = tmp / "selfsigned.pem"
    paths["selfsigned"].write_bytes(key_pem + cert_pem)
    return {key: str(value) for key, value in paths.items()}


def _server_context(pki, cert: str = "good", *, client_ca: bool = False, alpn=None, sni: list | None = None):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki[cert])
    if client_ca:
        ctx.load_verify_locations(pki["ca"])
        ctx.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if sni is not None:
        ctx.sni_callback = lambda sock, name, _ctx: sni.append(name)
    return ctx


@contextmanager
def tls_server(ctx: ssl.SSLContext, reply: bytes = b"hello from server\n", accepts: int = 1):
    """A TLS server on 127.0.0.1 for `accepts` connections: reads to the client's EOF (close_notify),
    then sends `reply` (the client's half-close must not end its reading). Yields (port, box)."""
    box: dict = {"received": [], "errors": []}
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)

    def serve():
        for _ in range(accepts):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                conn.settimeout(TIMEOUT)
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    data = b""
                    while chunk := tls.recv(65536):
                        data += chunk
                    box["received"].append(data)
                    tls.sendall(reply)
            except (OSError, ssl.SSLError) as exc:
                box["errors"].append(exc)
            finally:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], box
    finally:
        listener.close()
        thread.join(TIMEOUT)


def _no_bridge_left() -> bool:
    return not [thread for thread in threading.enumerate() if thread.name == "sockdiag-tls"]


def _one_error_line(result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


# --- connect: verification -----------------------------------------------------------------------

@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_verified_with_ca_relays_both_ways_across_the_half_close(pki, version):
    ctx = _server_context(pki)
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
    with tls_server(ctx) as (port, box):
        result = run_main(["connect", "--ca", pki["ca"], "127.0.0.1", str(port)], stdin=b"request\n")
    assert result.status == ExitStatus.OK, result.err
    assert result.out == b"hello from server\n"
    assert box["received"] == [b"request\n"]
    assert _no_bridge_left()


def test_trustme_server_fails_against_the_system_cas_in_one_line(pki):
    with tls_server(_server_context(pki)) as (port, _box):
        result = run_main(["connect", "--tls", "localhost", str(port)], stdin=b"x")
    assert result.status == ExitStatus.FAILURE
    assert _one_error_line(result).startswith(
        f"sockdiag connect: error: TLS 127.0.0.1:{port}: certificate verify failed: unknown CA (")


def test_name_mismatch_names_what_the_certificate_is_for(pki):
    # two accepts: the second is sockdiag's unverified look at the names for the message
    with tls_server(_server_context(pki, "localhost_only"), accepts=2) as (port, _box):
        result = run_main(["connect", "--ca", pki["ca"], "127.0.0.1", str(port)], stdin=b"x")
    assert result.status == ExitStatus.FAILURE
    assert _one_error_line(result) == (f"sockdiag connect: error: TLS 127.0.0.1:{port}: certificate verify failed: "
                                       "name mismatch (certificate is for localhost, not 127.0.0.1)")


def test_expired_certificate(pki):
    with tls_server(_server_context(pki, "expired")) as (port, _box):
        result = run_main(["connect", "--ca", pki["ca"], "127.0.0.1", str(port)], stdin=b"x")
    assert result.status == ExitStatus.FAILURE
    assert "certificate verify failed: expired (certificate has expired)" in _one_error_line(result)


def test_self_signed_certificate(pki):
    with tls_server(_server_context(pki, "selfsigned")) as (port, _box):
        result = run_main(["connect", "--ca", pki["ca"], "127.0.0.1", str(port)], stdin=b"x")
    assert result.status == ExitStatus.FAILURE
    assert "certificate verify failed: self-signed (" in _one_error_line(result)


def test_insecure_accepts_anything_and_shows_it_with_v(pki):
    with tls_server(_server_context(pki, "selfsigned")) as (port, _box):
        result = run_main(["connect", "-v", "--insecure", "127.0.0.1", str(port)], stdin=b"x")
    assert result.status == ExitStatus.OK, result.err
    assert result.out == b"hello from server\n"
    assert "server certificate: subject CN=localhost,O=sockdiag throwaway, issuer CN=localhost,O=sockdiag" in result.err
    assert "names DNS:localhost, IP:127.0.0.1; expires in 29 days" in result.err


def test_sni_is_the_host_given_or_sni_and_none_for_an_address(pki):
    names: list = []
    with tls_server(_server_context(pki, sni=names), accepts=2) as (port, _box):
        by_address = run_main(["connect", "--ca", pki["ca"], "127.0.0.1", str(port)], stdin=b"")
        by_sni = run_main(["connect", "--ca", pki["ca"], "--sni", "localhost", "127.0.0.1", str(port)], stdin=b"")
    assert (by_address.status, by_sni.status) == (0, 0), by_address.err + by_sni.err
    assert names == [None, "localhost"]


def test_alpn_negotiated_and_shown_with_v(pki):
    with tls_server(_server_context(pki, alpn=["h2", "http/1.1"])) as (port, _box):
        result = run_main(["connect", "-v", "--ca", pki["ca"], "--alpn", "http/1.1", "127.0.0.1", str(port)])
    assert result.status == ExitStatus.OK, result.err
    assert re.search(r"TLS: TLSv1\.[23], cipher \S+, ALPN http/1\.1", result.err)


def test_client_certificate_required_by_the_server(pki):
    with tls_server(_server_context(pki, client_ca=True)) as (port, box):
        result = run_main(["connect", "--ca", pki["ca"], "--cert", pki["client"], "127.0.0.1", str(port)],
                          stdin=b"with a cert\n")
    assert result.status == ExitStatus.OK, result.err
    assert box["received"] == [b"with a cert\n"]
    with tls_server(_server_context(pki, client_ca=True)) as (port, box):
        result = run_main(["connect", "--ca", pki["ca"], "127.0.0.1", str(port)], stdin=b"without\n")
    assert result.status == ExitStatus.FAILURE
    assert _one_error_line(result) == (f"sockdiag connect: error: TLS 127.0.0.1:{port}: the peer requires a client "
                                       "certificate (give --cert FILE)")
    assert _no_bridge_left()


def test_a_plain_server_is_one_line(pki):
    listener = socket.create_server(("127.0.0.1", 0))

    def banner():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"SSH-2.0-OpenSSH_9.0\r\n" * 20)
            recv_all(conn)

    thread = threading.Thread(target=banner, daemon=True)
    thread.start()
    with listener:
        result = run_main(["connect", "--tls", "-w", "5", "127.0.0.1", str(listener.getsockname()[1])])
    thread.join(TIMEOUT)
    assert result.status == ExitStatus.FAILURE
    assert "handshake failed: the peer does not speak TLS" in _one_error_line(result)


def test_zero_io_checks_the_handshake(pki):
    with tls_server(_server_context(pki)) as (port, _box):
        assert run_main(["connect", "-z", "--ca", pki["ca"], "127.0.0.1", str(port)]).status == ExitStatus.OK
    with tls_server(_server_context(pki)) as (port, _box):
        failed = run_main(["connect", "-z", "--tls", "127.0.0.1", str(port)])
    assert failed.status == ExitStatus.FAILURE and "unknown CA" in failed.err


@pytest.mark.parametrize("argv", [["-u", "--tls"], ["--insecure", "--ca", "x.pem"], ["--alpn", "h2,,x"]],
                         ids=["udp", "insecure-and-ca", "empty-alpn"])
def test_usage_errors(argv):
    assert run_main(["connect", *argv, "127.0.0.1", "9"]).status == ExitStatus.USAGE


def test_unreadable_certificate_file_is_a_usage_error(tmp_path):
    result = run_main(["listen", "--tls", "--cert", str(tmp_path / "missing.pem"), "-b", "127.0.0.1", "0"])
    assert result.status == ExitStatus.USAGE
    assert "--cert" in result.err and "missing.pem" in result.err


# --- listen --------------------------------------------------------------------------------------

def test_listen_throwaway_certificate_fingerprint_matches_the_clients_view():
    server = ThreadedMain(["listen", "-v", "--tls", "-b", "127.0.0.1", "0"], stdin=b"from listen\n")
    port = server.port()
    client = run_main(["connect", "-v", "--insecure", "127.0.0.1", str(port)], stdin=b"from connect\n")
    assert server.result() == ExitStatus.OK, server.err
    assert client.status == ExitStatus.OK, client.err
    assert (server.out, client.out) == (b"from connect\n", b"from listen\n")
    listen_print = _FINGERPRINT.search(server.err)
    connect_print = _FINGERPRINT.search(client.err)
    assert listen_print and connect_print and listen_print.group(1) == connect_print.group(1)
    assert "throwaway self-signed certificate for 127.0.0.1, localhost" in server.err


def test_listen_verifies_the_client_certificate_and_shows_it(pki):
    server = ThreadedMain(["listen", "-v", "--cert", pki["good"], "--ca", pki["ca"], "-b", "127.0.0.1", "0"])
    port = server.port()
    client = run_main(["connect", "--ca", pki["ca"], "--cert", pki["client"], "127.0.0.1", str(port)],
                      stdin=b"signed\n")
    assert server.result() == ExitStatus.OK, server.err
    assert client.status == ExitStatus.OK, client.err
    assert server.out == b"signed\n"
    assert "client certificate: names DNS:client.example" in server.err


def test_listen_keep_open_relays_two_clients_past_a_silent_and_a_plain_one(pki):
    with Proc(["listen", "-k", "-v", "--tls", "--cert", pki["good"], "-b", "127.0.0.1", "0"]) as server:
        port = server.port()
        silent = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)  # never says hello
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as plain:
            plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
            recv_all(plain)
        for line in (b"first client\n", b"second client\n"):
            result = run_main(["connect", "--ca", pki["ca"], "-q", "0", "localhost", str(port)], stdin=line)
            assert result.status == ExitStatus.OK, result.err
        # three "closed" lines: the plain client's and both TLS clients' (the second one's bytes
        # reach stdout before its line; counting two raced the second client's data)
        wait_until(lambda: server.stderr.count(": closed ") >= 3 or server.popen.poll() is not None)
        silent.close()
        assert server.interrupt() == ExitStatus.INTERRUPTED
        out = server.popen.stdout.read()
    assert out == b"first client\nsecond client\n"
    assert "handshake failed: the peer does not speak TLS" in server.stderr
    assert "Traceback" not in server.stderr


def test_listen_echo_is_byte_exact(pki):
    payload = os.urandom(1_500_000)
    server = ThreadedMain(["listen", "--echo", "--tls", "--cert", pki["good"], "-b", "127.0.0.1", "0", "-v"])
    port = server.port()
    client = run_main(["connect", "--ca", pki["ca"], "127.0.0.1", str(port)], stdin=payload)
    assert client.status == ExitStatus.OK, client.err
    assert client.out == payload
    assert server.result() == ExitStatus.OK, server.err
    assert _no_bridge_left()


@pytest.mark.skipif(shutil.which("cat") is None, reason="needs cat")
def test_listen_exec_cat(pki):
    server = ThreadedMain(["listen", "--exec", "cat", "--tls", "--cert", pki["good"], "-b", "127.0.0.1", "0", "-v"])
    port = server.port()
    client = run_main(["connect", "--ca", pki["ca"], "127.0.0.1", str(port)], stdin=b"through cat\n" * 1000)
    assert client.status == ExitStatus.OK, client.err
    assert client.out == b"through cat\n" * 1000
    assert server.result() == ExitStatus.OK, server.err


def test_listen_exec_sees_the_tcp_addresses(pki):
    server = ThreadedMain(["listen", "--sh-exec", 'echo "$SOCKDIAG_PROTO $SOCKDIAG_REMOTE_ADDR $SOCKDIAG_LOCAL_PORT"',
                           "--tls", "--cert", pki["good"], "-b", "127.0.0.1", "0", "-v"])
    port = server.port()
    client = run_main(["connect", "--ca", pki["ca"], "127.0.0.1", str(port)])
    assert client.status == ExitStatus.OK, client.err
    assert client.out == f"tcp 127.0.0.1 {port}\n".encode()
    assert server.result() == ExitStatus.OK, server.err


def test_frame_over_tls_is_byte_exact_on_the_wire(pki):
    with tls_server(_server_context(pki), reply=struct.pack("!I", 5) + b"reply") as (port, box):
        result = run_main(["connect", "--frame", "--ca", pki["ca"], "127.0.0.1", str(port)], stdin=b"one\ntwo\n")
    assert result.status == ExitStatus.OK, result.err
    assert box["received"] == [struct.pack("!I", 3) + b"one" + struct.pack("!I", 3) + b"two"]
    assert result.out == b"reply\n"


def test_listen_frame_over_tls(pki):
    server = ThreadedMain(["listen", "--frame", "--tls", "--cert", pki["good"], "-b", "127.0.0.1", "0", "-v"])
    port = server.port()
    client = run_main(["connect", "--frame", "--ca", pki["ca"], "127.0.0.1", str(port)], stdin=b"alpha\nbeta\n")
    assert client.status == ExitStatus.OK, client.err
    assert server.result() == ExitStatus.OK, server.err
    assert server.out == b"alpha\nbeta\n"


def test_listen_without_cryptography_is_one_line_with_the_hint(monkeypatch):
    real_import = builtins.__import__

    def no_cryptography(name, *args, **kwargs):
        if name == "cryptography" or name.startswith("cryptography."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cryptography)
    result = run_main(["listen", "--tls", "-b", "127.0.0.1", "0"])
    assert result.status == ExitStatus.FAILURE
    line = _one_error_line(result)
    assert "pip install 'sockdiag[tls]'" in line and "--cert FILE --key FILE" in line


def test_listen_one_client_handshake_failure_is_exit_1():
    server = ThreadedMain(["listen", "--tls", "-b", "127.0.0.1", "0", "-v"])
    port = server.port()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as plain:
        plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
        recv_all(plain)
    assert server.result() == ExitStatus.FAILURE
    assert "handshake failed" in server.err


# --- openssl as the peer -------------------------------------------------------------------------

_OPENSSL = shutil.which("openssl")


@pytest.mark.skipif(_OPENSSL is None, reason="needs openssl")
def test_openssl_s_client_talks_to_listen(pki):
    server = ThreadedMain(["listen", "-v", "--tls", "--cert", pki["good"], "-b", "127.0.0.1", "0"],
                          stdin=b"hello s_client\n")
    port = server.port()
    proc = subprocess.run([_OPENSSL, "s_client", "-quiet", "-verify_return_error", "-CAfile", pki["ca"],
                           "-verify_hostname", "localhost", "-connect", f"127.0.0.1:{port}"],
                          input=b"hello listen\n", capture_output=True, timeout=TIMEOUT, check=False)
    assert server.result() == ExitStatus.OK, server.err
    assert server.out == b"hello listen\n"
    assert b"hello s_client\n" in proc.stdout


@pytest.mark.skipif(_OPENSSL is None, reason="needs openssl")
def test_connect_to_openssl_s_server(pki, free_tcp_port):
    proc = subprocess.Popen([_OPENSSL, "s_server", "-quiet", "-accept", f"127.0.0.1:{free_tcp_port}",
                             "-cert", pki["good"]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        def ready():
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", free_tcp_port)) == 0 or proc.poll() is not None
        wait_until(ready)
        result = run_main(["connect", "-v", "--ca", pki["ca"], "localhost", str(free_tcp_port)],
                          stdin=b"to s_server\n")
    finally:
        proc.kill()
        out = proc.communicate(timeout=TIMEOUT)[0]
    assert result.status == ExitStatus.OK, result.err
    assert b"to s_server" in out


def test_real_descriptors_both_ways_at_once_byte_exact(pki, tmp_path):
    """As a user runs it: files and pipes on both ends, so the engines splice through the bridge."""
    up, down = os.urandom(3_000_000), os.urandom(2_000_000)
    (tmp_path / "up").write_bytes(up)
    (tmp_path / "down").write_bytes(down)
    listen_argv = ["listen", "-v", "--tls", "--cert", pki["good"], "-b", "127.0.0.1", "0"]
    with (open(tmp_path / "down", "rb") as listen_in, open(tmp_path / "got_up", "wb") as listen_out,
          Proc(listen_argv, stdin=listen_in, stdout=listen_out) as server, open(tmp_path / "up", "rb") as connect_in):
        connect_argv = [sys.executable, "-m", "sockdiag", "connect", "--ca", pki["ca"], "localhost", str(server.port())]
        done = subprocess.run(connect_argv, stdin=connect_in, capture_output=True, timeout=TIMEOUT, env=module_env(),
                              check=False)
        assert server.wait() == ExitStatus.OK, server.stderr
    assert done.returncode == 0, done.stderr
    assert done.stdout == down
    assert (tmp_path / "got_up").read_bytes() == up


def test_a_handshake_failure_in_words_with_and_without_the_peer():
    """net.tls.handshake_reason is the words probe --tls shows per port; handshake_error puts
    `TLS PEER: ` before the same words, with the exit status for the error."""
    import errno

    from sockdiag.core.status import ExitStatus
    from sockdiag.net import tls

    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    words, _kind, _status = tls.handshake_reason(refused)
    assert words.startswith("handshake failed: ") and "ECONNREFUSED" in words
    error = tls.handshake_error(refused, "[::1]:443")
    assert error.message == f"TLS [::1]:443: {words}"
    timeout = tls.handshake_error(TimeoutError(), "127.0.0.1:443")
    assert timeout.message == "TLS 127.0.0.1:443: no handshake within the timeout"
    assert timeout.status == ExitStatus.TIMEOUT
    assert tls.handshake_reason(ConnectionResetError())[0] == "handshake failed: the peer closed the connection"


# --- dialogues over TLS (listen --tls with --exec-each, --frame-mode ascii-ack) ----------------------

def _tls_client(pki, port: int) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=pki["ca"])
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return ctx.wrap_socket(sock, server_hostname="127.0.0.1")


def _framed_reply(tls_sock) -> bytes:
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack("!I", data[:4])[0]:
        chunk = tls_sock.recv(65536)
        if not chunk:
            raise AssertionError(f"EOF after {data!r}")
        data += chunk
    return data[4:4 + struct.unpack("!I", data[:4])[0]]


@pytest.mark.skipif(sys.platform == "win32", reason="uses tr")
def test_exec_each_over_tls_serves_each_client(pki):
    """-k --exec-each over TLS: each client's message runs the command, the answer comes back
    framed, through the client's own TLS session; the handshake is verified by the client."""
    server = Proc(["listen", "-k", "-v", "--tls", "--cert", pki["good"], "-b", "127.0.0.1",
                   "--exec-each", "tr a-z A-Z", "--frame-dir", "out", "0"])
    with server:
        port = server.port()
        results = {}

        def client(i: int) -> None:
            with _tls_client(pki, port) as tls_sock:
                tls_sock.sendall(f"client {i}".encode())
                results[i] = _framed_reply(tls_sock)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert server.interrupt() == ExitStatus.INTERRUPTED
    assert results == {i: f"CLIENT {i}".encode() for i in range(4)}
    assert "TLS: TLSv1." in server.stderr


def test_ascii_ack_server_over_tls_answers_from_stdin(pki):
    """The tutorials' "simple SSH" server over TLS: each command is answered with its reply's
    length, the client's ack, then the reply (a line of stdin), all inside the TLS session."""
    with Proc(["listen", "-v", "--tls", "--cert", pki["good"], "-b", "127.0.0.1", "--frame-mode", "ascii-ack",
               "--frame-dir", "out", "0"], stdin=subprocess.PIPE) as server:
        server.popen.stdin.write(b"first reply\nsecond reply\n")
        server.popen.stdin.close()
        port = server.port()
        with _tls_client(pki, port) as tls_sock:
            got = []
            for command in (b"ls", b"pwd"):
                tls_sock.sendall(command)
                length = int(tls_sock.recv(64))
                tls_sock.sendall(b"ok")
                reply = b""
                while len(reply) < length:
                    reply += tls_sock.recv(length - len(reply))
                got.append(reply)
        assert got == [b"first reply", b"second reply"]
        assert server.wait() == 0, server.stderr
        assert server.popen.stdout.read() == b"lspwd"
