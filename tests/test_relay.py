"""connect and listen over TCP: byte-exact relay both ways, half-close, errors and exit statuses."""

from __future__ import annotations

import os
import select
import shutil
import socket
import struct
import subprocess
import sys

import pytest

from sockdiag import platform
from sockdiag.core.status import ExitStatus
from tests.conftest import has_ipv6_loopback, wait_until
from tests.test_relay_support import (TIMEOUT, Proc, ThreadedMain, module_env, one_connection_server,
                                      recv_all, recv_exactly)

LINUX = platform.SYSTEM == platform.LINUX


# --- connect, in-process --------------------------------------------------------------------------

def test_connect_sends_stdin_and_prints_the_whole_reply_after_half_close(cli):
    data = os.urandom(300_000)

    def server(conn):
        received = recv_all(conn)  # only ends because connect shut down its write side
        conn.sendall(b"got " + str(len(received)).encode() + b"\n" + received[::-1])
        return received

    with one_connection_server(server) as (port, box):
        r = cli(["connect", "127.0.0.1", str(port)], stdin=data)
    assert r.status == 0, r.err
    assert box["result"] == data
    assert r.out == b"got 300000\n" + data[::-1]


def test_connect_keeps_sending_after_the_peer_finished(cli):
    data = os.urandom(200_000)

    def server(conn):
        conn.sendall(b"early reply\n")
        conn.shutdown(socket.SHUT_WR)  # the peer is done talking but still listens
        return recv_all(conn)

    with one_connection_server(server) as (port, box):
        r = cli(["connect", "127.0.0.1", str(port)], stdin=data)
    assert r.status == 0, r.err
    assert r.out == b"early reply\n"
    assert box["result"] == data


def test_connect_verbose_events_go_to_stderr_only(cli):
    def server(conn):
        recv_all(conn)
        conn.sendall(b"12 bytes out")

    with one_connection_server(server) as (port, _):
        r = cli(["connect", "-v", "127.0.0.1", str(port)], stdin=b"hello")
    assert r.out == b"12 bytes out"
    assert f"connected to 127.0.0.1:{port}" in r.err
    assert "closed, 12 bytes in, 5 bytes out" in r.err


def test_no_shutdown_keeps_the_write_side_open(cli):
    def server(conn):
        got = recv_exactly(conn, 5)
        readable, _, _ = select.select([conn], [], [], 0.3)  # a FIN would make it readable
        conn.sendall(b"bye")
        conn.shutdown(socket.SHUT_WR)
        return got, bool(readable), recv_all(conn)

    with one_connection_server(server) as (port, box):
        r = cli(["connect", "--no-shutdown", "127.0.0.1", str(port)], stdin=b"hello")
    assert r.status == 0, r.err
    assert r.out == b"bye"
    assert box["result"] == (b"hello", False, b"")


def test_reset_by_peer_is_one_line_and_status_1(cli):
    def server(conn):
        recv_exactly(conn, 5)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST

    with one_connection_server(server) as (port, _):
        r = cli(["connect", "--no-shutdown", "127.0.0.1", str(port)], stdin=b"hello")
    assert r.status == ExitStatus.FAILURE
    assert r.err == f"sockdiag connect: error: receive from 127.0.0.1:{port}: connection reset by peer (ECONNRESET)\n"


def test_write_to_vanished_peer_is_one_line_and_status_1(cli):
    def server(conn):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with one_connection_server(server) as (port, _):
        r = cli(["connect", "127.0.0.1", str(port)], stdin=os.urandom(4_000_000))
    assert r.status == ExitStatus.FAILURE
    assert r.err.count("\n") == 1 and "Traceback" not in r.err
    assert "ECONNRESET" in r.err or "EPIPE" in r.err


def test_connection_refused(cli, free_tcp_port):
    r = cli(["connect", "127.0.0.1", str(free_tcp_port)])
    assert r.status == ExitStatus.FAILURE
    assert r.err == f"sockdiag connect: error: connect 127.0.0.1:{free_tcp_port}: connection refused (ECONNREFUSED)\n"


@pytest.mark.parametrize("argv, message", [
    pytest.param(["connect", "127.0.0.1", "70000"], "out of range", id="port-70000"),
    pytest.param(["connect", "127.0.0.1", "10-5"], "unknown port or service name", id="range-as-port"),
    pytest.param(["listen", "-1"], "", id="negative-port"),
    pytest.param(["connect", "--raw", "127.0.0.1", "80"], "--raw applies to UDP only", id="raw-without-udp"),
    pytest.param(["connect", "-u", "--frame", "127.0.0.1", "80"], "--frame is a TCP message mode", id="udp-frame"),
])
def test_usage_errors(cli, argv, message):
    r = cli(argv)
    assert r.status == ExitStatus.USAGE
    assert message in r.err
    assert "Traceback" not in r.err


def test_unknown_host_is_one_line(cli, monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    r = cli(["connect", "no-such-host.invalid", "80"])
    assert r.status == ExitStatus.FAILURE
    assert r.err == "sockdiag connect: error: resolve no-such-host.invalid: name or service not known (EAI_NONAME)\n"


def test_each_resolved_address_is_tried_in_turn(cli, monkeypatch, free_tcp_port):
    real = socket.getaddrinfo

    with one_connection_server(lambda conn: recv_all(conn)) as (port, box):
        def two_addresses(host, port_arg, *args, **kwargs):
            assert host == "twohomed.test"
            dead = real("127.0.0.1", free_tcp_port, socket.AF_INET, socket.SOCK_STREAM)
            live = real("127.0.0.1", port_arg, socket.AF_INET, socket.SOCK_STREAM)
            return dead + live

        monkeypatch.setattr(socket, "getaddrinfo", two_addresses)
        r = cli(["connect", "-v", "twohomed.test", str(port)], stdin=b"x")
    assert r.status == 0, r.err
    assert box["result"] == b"x"
    assert f"connect 127.0.0.1:{free_tcp_port}: connection refused" in r.err
    assert f"connected to 127.0.0.1:{port}" in r.err


def test_source_address_and_port(cli, free_tcp_port):
    with one_connection_server(lambda conn: conn.getpeername()) as (port, box):
        r = cli(["connect", "-s", "127.0.0.1", "-p", str(free_tcp_port), "127.0.0.1", str(port)])
    assert r.status == 0, r.err
    assert box["result"] == ("127.0.0.1", free_tcp_port)



@pytest.mark.skipif(not has_ipv6_loopback(), reason="no ::1 on this host")
def test_ipv6_literal(cli):
    with one_connection_server(lambda conn: recv_all(conn), family=socket.AF_INET6, host="::1") as (port, box):
        r = cli(["connect", "-6", "::1", str(port)], stdin=b"six")
    assert r.status == 0, r.err
    assert box["result"] == b"six"


def test_family_mismatch_is_a_resolution_error(cli):
    r = cli(["connect", "-6", "127.0.0.1", "80"])
    assert r.status == ExitStatus.FAILURE
    assert r.err.startswith("sockdiag connect: error: resolve 127.0.0.1: ")


def test_source_bind_permission_denied_is_status_4(cli, monkeypatch, free_tcp_port):
    def deny(self, address):
        raise PermissionError(platform.errno_code("EACCES"), "Permission denied")

    monkeypatch.setattr(socket.socket, "bind", deny)
    r = cli(["connect", "-p", "80", "127.0.0.1", str(free_tcp_port)])
    assert r.status == ExitStatus.PERMISSION
    assert r.err == "sockdiag connect: error: bind 0.0.0.0:80: permission denied (EACCES)\n"


@pytest.mark.skipif(not LINUX, reason="relies on Linux dropping SYNs when the accept queue is full")
def test_connect_timeout_is_status_3(cli):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(3):  # fill the accept queue; later SYNs are dropped, so connect hangs
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            r = cli(["connect", "-w", "0.3", "127.0.0.1", str(port)])
        finally:
            for filler in fillers:
                filler.close()
    assert r.status == ExitStatus.TIMEOUT, r.err
    assert r.err == f"sockdiag connect: error: connect 127.0.0.1:{port}: timed out\n"


def test_idle_timeout_is_status_3(cli):
    def server(conn):
        recv_all(conn)  # never answers, never closes until the client leaves

    with one_connection_server(server) as (port, _):
        r = cli(["connect", "--no-shutdown", "-i", "0.2", "127.0.0.1", str(port)])
    assert r.status == ExitStatus.TIMEOUT
    assert f"connection with 127.0.0.1:{port} idle for 0.2 s" in r.err


# --- frame mode -----------------------------------------------------------------------------------

def _frames_server(reply: bytes):
    def server(conn):
        conn.sendall(reply)
        conn.shutdown(socket.SHUT_WR)
        return recv_all(conn)
    return server


def test_frame_mode_both_ways(cli):
    reply = b"\x00\x00\x00\x03one\x00\x00\x00\x00" + b"\x00\x00\x00\x05three"
    with one_connection_server(_frames_server(reply)) as (port, box):
        r = cli(["connect", "--frame", "127.0.0.1", str(port)], stdin=b"alpha\n\nlast")
    assert r.status == 0, r.err
    assert r.out == b"one\n\nthree\n"
    assert box["result"] == b"\x00\x00\x00\x05alpha" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x04last"


def test_frame_mode_rejects_hostile_header(cli):
    with one_connection_server(_frames_server(b"\xff\xff\xff\xff")) as (port, _):
        r = cli(["connect", "--frame", "127.0.0.1", str(port)])
    assert r.status == ExitStatus.FAILURE
    assert r.err == (f"sockdiag connect: error: receive from 127.0.0.1:{port}: frame header (ff ff ff ff) announces "
                     "4294967295 bytes, more than the maximum of 16777216\n")


def test_frame_mode_max_frame_option(cli):
    with one_connection_server(_frames_server(b"\x00\x00\x01\x00" + b"x" * 256)) as (port, _):
        r = cli(["connect", "--frame", "--max-frame", "255", "127.0.0.1", str(port)])
    assert r.status == ExitStatus.FAILURE
    assert "announces 256 bytes, more than the maximum of 255" in r.err


def test_frame_mode_truncated_stream(cli):
    with one_connection_server(_frames_server(b"\x00\x00\x00\x09abc")) as (port, _):
        r = cli(["connect", "--frame", "127.0.0.1", str(port)])
    assert r.status == ExitStatus.FAILURE
    assert "stream ended inside a frame (3 of 9 payload bytes)" in r.err


def test_frame_mode_refuses_to_send_oversized_line(cli):
    with one_connection_server(_frames_server(b"")) as (port, _):
        r = cli(["connect", "--frame", "--max-frame", "4", "127.0.0.1", str(port)], stdin=b"12345\n")
    assert r.status == ExitStatus.FAILURE
    assert "stdin line longer than the maximum of 4 bytes" in r.err


# --- listen, in-process ---------------------------------------------------------------------------

def test_listen_serves_one_connection_both_ways():
    to_client = os.urandom(150_000)
    to_server = os.urandom(170_000)
    run = ThreadedMain(["listen", "-v", "-b", "127.0.0.1", "0"], stdin=to_client)
    port = run.port()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(to_server)
        sock.shutdown(socket.SHUT_WR)
        got = recv_all(sock)
    assert run.result() == 0, run.err
    assert got == to_client
    assert run.out == to_server
    assert "connection from 127.0.0.1:" in run.err
    assert "closed, 170000 bytes in, 150000 bytes out" in run.err
    # like nc -l: the listener is gone once its one client arrived
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()


def test_listen_address_in_use(cli):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        r = cli(["listen", "-b", "127.0.0.1", str(port)])
    assert r.status == ExitStatus.FAILURE
    assert r.err == f"sockdiag listen: error: listen 127.0.0.1:{port}: address already in use (EADDRINUSE)\n"


def test_listen_privileged_port_is_status_4(cli, monkeypatch):
    def deny(self, address):
        raise PermissionError(platform.errno_code("EACCES"), "Permission denied")

    monkeypatch.setattr(socket.socket, "bind", deny)
    r = cli(["listen", "-4", "80"])
    assert r.status == ExitStatus.PERMISSION
    assert r.err == "sockdiag listen: error: listen 0.0.0.0:80: permission denied (EACCES)\n"


@pytest.mark.skipif(not LINUX or not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs Linux, root and setpriv to drop to an unprivileged user")
def test_listen_privileged_port_really_denied_for_nobody():
    start = platform.read_sysctl("net/ipv4/ip_unprivileged_port_start")
    if start is None or int(start) <= 1:
        pytest.skip("privileged ports are not restricted here")
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                           "-m", "sockdiag", "listen", "-4", "1"], capture_output=True, timeout=TIMEOUT,
                          env=module_env(), stdin=subprocess.DEVNULL)
    if b"No module named" in done.stderr:
        pytest.skip("the source tree is not readable by nobody")
    assert done.returncode == ExitStatus.PERMISSION, done.stderr
    assert done.stderr == b"sockdiag listen: error: listen 0.0.0.0:1: permission denied (EACCES)\n"


# --- subprocesses: the zero-copy and copy paths, as a user runs them ------------------------------

@pytest.mark.parametrize("zero_copy", [pytest.param(True, id="zero-copy"), pytest.param(False, id="copy-loop")])
@pytest.mark.parametrize("via", ["files", "pipes"])
def test_full_duplex_binary_transfer(tmp_path, zero_copy, via):
    """Random binary data both ways at once: listen's stdin -> connect's stdout and back."""
    extra = {} if zero_copy else {"SOCKDIAG_NO_ZEROCOPY": "1"}
    a, b = os.urandom(3_000_000), os.urandom(2_500_000)
    (tmp_path / "a").write_bytes(a)
    (tmp_path / "b").write_bytes(b)
    if via == "files":
        with open(tmp_path / "a", "rb") as a_in, open(tmp_path / "b", "rb") as b_in, \
                open(tmp_path / "a.out", "wb") as a_out, open(tmp_path / "b.out", "wb") as b_out:
            with Proc(["listen", "-v", "-b", "127.0.0.1", "0"], stdin=a_in, stdout=b_out, **extra) as server:
                port = server.port()
                with Proc(["connect", "127.0.0.1", str(port)], stdin=b_in, stdout=a_out, **extra) as client:
                    assert client.wait() == 0, client.stderr
                assert server.wait() == 0, server.stderr
        got_a, got_b = (tmp_path / "a.out").read_bytes(), (tmp_path / "b.out").read_bytes()
    else:
        with Proc(["listen", "-v", "-b", "127.0.0.1", "0"], stdin=subprocess.PIPE, **extra) as server:
            port = server.port()
            with Proc(["connect", "127.0.0.1", str(port)], stdin=subprocess.PIPE, **extra) as client:
                got_b, got_a = _pump_both(server, a, client, b)
                assert client.wait() == 0, client.stderr
            assert server.wait() == 0, server.stderr
    assert got_a == a
    assert got_b == b


def _pump_both(server: Proc, a: bytes, client: Proc, b: bytes) -> tuple[bytes, bytes]:
    """Feed both stdins and drain both stdouts concurrently (threads; no deadlock on full pipes)."""
    import threading

    outputs: dict = {}

    def feed(proc, data):
        proc.popen.stdin.write(data)
        proc.popen.stdin.close()

    def drain(name, proc):
        outputs[name] = proc.popen.stdout.read()

    threads = [threading.Thread(target=feed, args=(server, a)), threading.Thread(target=feed, args=(client, b)),
               threading.Thread(target=drain, args=("server", server)),
               threading.Thread(target=drain, args=("client", client))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    return outputs["server"], outputs["client"]


def test_append_mode_stdout_falls_back_from_splice(tmp_path):
    data = os.urandom(1_000_000)
    out = tmp_path / "log"
    out.write_bytes(b"before\n")
    with open(out, "ab") as appended, Proc(["listen", "-v", "-b", "127.0.0.1", "0"], stdout=appended) as server:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            assert recv_all(sock) == b""
        assert server.wait() == 0, server.stderr
    assert out.read_bytes() == b"before\n" + data


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_terminal_stdin_exits_when_the_peer_closes():
    """With a terminal on stdin, waiting for its EOF after the peer left would hang the user."""
    controller, terminal = os.openpty()
    try:
        def server(conn):
            conn.sendall(b"bye\n")

        with one_connection_server(server) as (port, _):
            with Proc(["connect", "127.0.0.1", str(port)], stdin=terminal) as client:
                assert client.wait() == 0, client.stderr
                assert client.popen.stdout.read() == b"bye\n"
    finally:
        os.close(controller)
        os.close(terminal)


def test_closed_stdout_ends_quietly():
    def server(conn):
        # More than the socket buffers hold, so the client usually quits while this still sends.
        # The client leaving mid-send is the case under test, not a server failure: whether the
        # send ends in EPIPE/ECONNRESET or completes depends only on scheduling.
        try:
            conn.sendall(os.urandom(2_000_000))
        except (BrokenPipeError, ConnectionResetError):
            return "client gone"
        return "all sent"

    with one_connection_server(server) as (port, _):
        with Proc(["connect", "127.0.0.1", str(port)]) as client:
            client.popen.stdout.read(10)
            client.popen.stdout.close()
            status = client.wait()
    assert status == 0
    assert client.stderr == ""


def test_listen_reports_its_port_for_scripts():
    with Proc(["listen", "-v", "0"]) as server:
        port = server.port()
        assert 0 < port < 65536
        assert wait_until(lambda: "listening on" in server.stderr)
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
            pass
        assert server.wait() == 0, server.stderr


# --- the relay's platform facts, emulating the other systems ---------------------------------------

@pytest.mark.parametrize("system, zero_copy, selectable, socket_stdio", [
    pytest.param(platform.LINUX, True, True, True, id="linux"),
    pytest.param(platform.DARWIN, False, True, True, id="macos"),
    pytest.param(platform.WINDOWS, False, False, False, id="windows"),
])
def test_platform_relay_capabilities(system, zero_copy, selectable, socket_stdio):
    if system == platform.SYSTEM == platform.LINUX and os.environ.get("SOCKDIAG_NO_ZEROCOPY"):
        zero_copy = False
    assert platform.zero_copy_supported(system) is zero_copy
    assert platform.stdio_selectable(system) is selectable
    assert platform.socket_as_stdio(system) is socket_stdio


def test_platform_zero_copy_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("SOCKDIAG_NO_ZEROCOPY", "1")
    assert platform.zero_copy_supported() is False


@pytest.mark.parametrize("system, command, expected", [
    pytest.param(platform.LINUX, "tr 'a-z' A-Z", ["tr", "a-z", "A-Z"], id="posix-quoting"),
    pytest.param(platform.LINUX, "echo $HOME;id", ["echo", "$HOME;id"], id="posix-no-expansion"),
    pytest.param(platform.WINDOWS, 'findstr "a b"', 'findstr "a b"', id="windows-command-line"),
])
def test_platform_split_command(system, command, expected):
    assert platform.split_command(command, system) == expected


def test_platform_shell_argv():
    assert platform.shell_argv("a | b", platform.LINUX) == ["/bin/sh", "-c", "a | b"]
    assert platform.shell_argv("a | b", platform.WINDOWS)[1:] == ["/c", "a | b"]


def test_platform_gai_names():
    assert platform.gai_error_name(socket.EAI_NONAME) == "EAI_NONAME"
    assert platform.gai_error_name(12345) == "EAI 12345"
    assert platform.describe_gaierror(socket.gaierror(socket.EAI_AGAIN, "x")) == \
        "temporary failure in name resolution (EAI_AGAIN)"


@pytest.mark.skipif(not platform.stdio_selectable(), reason="Windows select() takes sockets only")
def test_relay_selector_accepts_a_regular_file(tmp_path):
    """epoll refuses regular files (EPERM); stdin is often one, so the relay must use poll."""
    path = tmp_path / "stdin"
    path.write_bytes(b"x")
    with open(path, "rb") as f, platform.relay_selector() as selector:
        selector.register(f.fileno(), 1)
        assert selector.select(0)
