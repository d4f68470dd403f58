"""connect -U / listen -U: unix domain sockets (stream, datagram, abstract), with -k, --echo,
--exec and --frame over them, and a listener that never removes what is not its own socket."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys

import pytest

from sockdiag import platform
from sockdiag.core.status import ExitStatus
from tests.conftest import run_main, wait_until
from tests.test_relay_support import TIMEOUT, Proc, recv_all

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX") or sys.platform == "win32",
                                reason="unix domain sockets (POSIX)")
linux_only = pytest.mark.skipif(not platform.abstract_unix_supported(), reason="abstract names are Linux only")


def _connect(path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(path)
    return sock


def test_connect_relays_both_ways(tmp_path):
    path = str(tmp_path / "srv.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen()
        payload = os.urandom(300_000)
        import threading

        def serve():
            conn, _ = server.accept()
            with conn:
                got = recv_all(conn)
                conn.sendall(got[::-1])

        thread = threading.Thread(target=serve)
        thread.start()
        r = run_main(["connect", "-U", path], stdin=payload)
        thread.join(TIMEOUT)
    assert r.status == 0, r.err
    assert r.out == payload[::-1]


def test_listen_serves_one_client_and_removes_its_file(tmp_path):
    path = str(tmp_path / "one.sock")
    with Proc(["listen", "-v", "-U", path], stdin=subprocess.PIPE) as server:
        wait_until(lambda: "listening on" in server.stderr)
        server.popen.stdin.write(b"from server\n")
        server.popen.stdin.close()
        with _connect(path) as client:
            client.sendall(b"from client\n")
            client.shutdown(socket.SHUT_WR)
            assert recv_all(client) == b"from server\n"
        assert server.wait() == 0, server.stderr
        assert server.popen.stdout.read() == b"from client\n"
    assert not os.path.exists(path)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_file_goes_however_the_server_ends(tmp_path, signum):
    path = str(tmp_path / "k.sock")
    with Proc(["listen", "-k", "--echo", "-v", "-U", path]) as server:
        wait_until(lambda: "listening on" in server.stderr)
        with _connect(path) as client:
            client.sendall(b"ping")
            assert client.recv(4) == b"ping"
        server.popen.send_signal(signum)
        server.wait()
    assert not os.path.exists(path)


def test_keep_open_exec_needs_no_allow_and_knows_it_is_unix(tmp_path):
    path = str(tmp_path / "exec.sock")
    with Proc(["listen", "-k", "-v", "-U", path, "--sh-exec", "echo $SOCKDIAG_PROTO $SOCKDIAG_LOCAL_ADDR"]) as server:
        wait_until(lambda: "listening on" in server.stderr)
        for _ in range(2):
            with _connect(path) as client:
                client.shutdown(socket.SHUT_WR)
                assert recv_all(client) == f"unix {path}\n".encode()
        server.interrupt()


def test_frame_mode_over_unix(tmp_path):
    path = str(tmp_path / "f.sock")
    with Proc(["listen", "-k", "--frame", "-v", "-U", path]) as server:
        wait_until(lambda: "listening on" in server.stderr)
        with _connect(path) as client:
            client.sendall(struct.pack("!I", 2) + b"hi" + struct.pack("!I", 3) + b"you")
        wait_until(lambda: "closed" in server.stderr)
        server.interrupt()
        assert server.popen.stdout.read() == b"hi\nyou\n"


def test_datagram_both_sides(tmp_path):
    path = str(tmp_path / "dgram.sock")
    with Proc(["listen", "-u", "--echo", "-v", "-U", path]) as server:
        wait_until(lambda: "listening on" in server.stderr)
        r = run_main(["connect", "-u", "--reply-wait", "2", "-U", path], stdin=b"one\ntwo\n")
        server.interrupt()
    assert r.status == 0, r.err
    assert r.out == b"one\ntwo\n"
    assert not os.path.exists(path)


@linux_only
def test_abstract_names_have_no_file(tmp_path):
    name = f"@sockdiag-test-{os.getpid()}"
    with Proc(["listen", "-v", "-U", name], stdin=subprocess.PIPE) as server:
        wait_until(lambda: "listening on" in server.stderr)
        server.popen.stdin.write(b"abstract\n")
        server.popen.stdin.close()
        r = run_main(["connect", "-U", name], stdin=b"")
        assert server.wait() == 0
    assert r.status == 0 and r.out == b"abstract\n"


def test_a_live_socket_is_refused_and_left_alone(tmp_path):
    path = str(tmp_path / "live.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(path)
        live.listen()
        r = run_main(["listen", "-U", path])
        assert r.status == ExitStatus.FAILURE
        assert r.err == f"sockdiag listen: error: listen {path}: a live socket already serves it (connect succeeded)\n"
        assert os.path.exists(path)


def test_a_stale_socket_file_is_replaced(tmp_path):
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    with Proc(["listen", "-v", "-U", path]) as server:
        wait_until(lambda: "listening on" in server.stderr)
        with _connect(path) as client:
            client.shutdown(socket.SHUT_WR)
        assert server.wait() == 0, server.stderr
    assert not os.path.exists(path)


@pytest.mark.parametrize("kind", ["file", "dir", "symlink"])
def test_never_removes_what_is_not_a_socket(tmp_path, kind):
    path = tmp_path / "thing"
    if kind == "file":
        path.write_text("precious")
    elif kind == "dir":
        path.mkdir()
    else:
        (tmp_path / "target").write_text("precious")
        path.symlink_to(tmp_path / "target")
    r = run_main(["listen", "-U", str(path)])
    assert r.status == ExitStatus.FAILURE and "exists and is not a socket; not removed" in r.err
    assert os.path.lexists(path)


@pytest.mark.parametrize("argv, message", [
    pytest.param(["listen", "-U", "/tmp/x.sock", "8080"], "replaces the address and port", id="listen-port"),
    pytest.param(["connect", "-U", "/tmp/x.sock", "127.0.0.1", "80"], "replaces HOST and PORT", id="connect-host"),
    pytest.param(["connect", "127.0.0.1"], "give HOST and PORT", id="connect-no-port"),
    pytest.param(["connect", "-U", ""], "empty socket path", id="empty"),
])
def test_usage_errors(cli, argv, message):
    r = cli(argv)
    assert r.status == ExitStatus.USAGE and message in r.err


def test_connect_to_nothing_is_one_line(tmp_path):
    r = run_main(["connect", "-U", str(tmp_path / "none.sock")])
    assert r.status == ExitStatus.FAILURE
    assert r.err.startswith("sockdiag connect: error: connect ") and "(ENOENT)" in r.err


def test_z_with_unix(tmp_path):
    path = str(tmp_path / "z.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen()
        assert run_main(["connect", "-z", "-U", path]).status == 0
