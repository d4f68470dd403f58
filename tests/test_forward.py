"""sockdiag forward: a TCP/UDP port forwarder on real loopback sockets.

main(argv, env) runs in the test's main thread (so Ctrl-C and SIGTERM reach it as they would a
user's forwarder); the test's clients run in a thread and end the run with a SIGINT to the main
thread. Upstreams are loopback servers run by the test (tests/proxy_servers.py's echo Target).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sockdiag.cli import main
from tests.conftest import ROOT, has_ipv6_loopback, make_env, run_main, wait_until
from tests.proxy_servers import Proxy, Target
from tests.test_relay_support import TIMEOUT, recv_all, recv_exactly

_LISTENING = re.compile(r"listening on (?:\[[^\]]*\]|[^ :]+):(\d+)")


class Run:
    """What a forward run left: its status, stderr, and what the clients' function returned."""

    def __init__(self, status: int, err: str, result):
        self.status, self.err, self.result = status, err, result


def forward(argv: list[str], clients, env_flags: dict | None = None) -> Run:
    """main(["forward", "-v", *argv]) here, clients(port, env) in a thread (once the -v line names
    the port); Ctrl-C once clients return."""
    env = make_env(**(env_flags or {}))
    argv = argv if "-v" in argv else ["-v", *argv]
    box: dict = {}
    state = {"running": True}
    lock = threading.Lock()
    main_thread = threading.get_ident()

    def stderr() -> str:
        return env.stderr.getvalue().decode("utf-8", "replace")

    def body() -> None:
        try:
            match = wait_until(lambda: _LISTENING.search(stderr()) or not state["running"], timeout=TIMEOUT)
            if match is not True:
                box["result"] = clients(int(match.group(1)), env)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test
            box["error"] = exc
        finally:
            with lock:
                if state["running"]:
                    signal.pthread_kill(main_thread, signal.SIGINT)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    try:
        status = main(["forward", *argv], env)
    except KeyboardInterrupt:  # the Ctrl-C came just after main() had returned on its own
        status = 130
    with lock:
        state["running"] = False
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "client thread still running"
    if "error" in box:
        raise box["error"]
    return Run(status, stderr(), box.get("result"))


def connect(port: int, host: str = "127.0.0.1", source: str | None = None) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    if source is not None:
        sock.bind((source, 0))
    sock.connect((host, port))
    return sock


def exchange(port: int, data: bytes, host: str = "127.0.0.1") -> bytes:
    """Send data, half-close, read everything back (through an echo upstream)."""
    with connect(port, host) as sock:
        sender = threading.Thread(target=lambda: (sock.sendall(data), sock.shutdown(socket.SHUT_WR)))
        sender.start()
        got = recv_all(sock)
        sender.join(TIMEOUT)
        return got


def closed_at_once(sock: socket.socket) -> bool:
    """Whether the forwarder closed this client without forwarding (EOF or reset)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def echo():
    with Target() as target:
        yield target


def refused_port() -> socket.socket:
    """A socket bound to a loopback port and not listening: connects are refused until listen()."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def upstream():
    """A listening upstream the test accepts from itself (to see exactly what reaches it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        sock.settimeout(TIMEOUT)
        yield sock


# --- bytes, half-close, resets --------------------------------------------------------------------

@pytest.mark.parametrize("path", ["splice", "copy"])
def test_bytes_exact_both_ways(echo, monkeypatch, path):
    """Binary data of every byte value, bigger than a pipe, comes back byte for byte; the -v lines
    name both ends and count the bytes each way."""
    if path == "copy":
        monkeypatch.setenv("SOCKDIAG_NO_ZEROCOPY", "1")
    data = bytes(range(256)) * 4096 + os.urandom(3_000_001)
    run = forward(["-v", "0", "127.0.0.1", str(echo.port)], lambda port, env: exchange(port, data))
    assert run.status == 130
    assert run.result == data
    assert re.search(rf"connection 1 from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:{echo.port}\n", run.err)
    assert re.search(rf"closed connection 1 from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:{echo.port} after [\d.]+ s, "
                     rf"{len(data)} bytes to upstream, {len(data)} bytes to client\n", run.err)


def test_half_close_client_first(upstream):
    """The client shuts its write side: the upstream reads EOF, then still answers, and the
    client reads the answer after its own half-close."""
    seen = {}

    def clients(port, env):
        with connect(port) as sock:
            sock.sendall(b"request")
            sock.shutdown(socket.SHUT_WR)
            conn, _ = upstream.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                seen["upstream got"] = recv_all(conn)  # ends: the EOF was passed on
                conn.sendall(b"answer after EOF")
                conn.shutdown(socket.SHUT_WR)
                return recv_all(sock)

    run = forward(["0", "127.0.0.1", str(upstream.getsockname()[1])], clients)
    assert seen["upstream got"] == b"request"
    assert run.result == b"answer after EOF"


def test_half_close_upstream_first(upstream):
    """The upstream shuts its write side first: the client reads EOF and can still send."""

    def clients(port, env):
        with connect(port) as sock:
            conn, _ = upstream.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                conn.sendall(b"banner")
                conn.shutdown(socket.SHUT_WR)
                got = recv_all(sock)
                sock.sendall(b"late words")
                sock.shutdown(socket.SHUT_WR)
                return got, recv_all(conn)

    run = forward(["0", "127.0.0.1", str(upstream.getsockname()[1])], clients)
    assert run.result == (b"banner", b"late words")


def test_client_reset_is_passed_on(upstream):
    """A client that resets (SO_LINGER 0) makes the upstream see a reset, not a polite EOF."""

    def clients(port, env):
        sock = connect(port)
        conn, _ = upstream.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            sock.sendall(b"x")
            assert recv_exactly(conn, 1) == b"x"
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            with pytest.raises(ConnectionResetError):
                while conn.recv(65536):
                    pass
        wait_until(lambda: "closed connection 1" in env.stderr.getvalue().decode())

    run = forward(["-v", "0", "127.0.0.1", str(upstream.getsockname()[1])], clients)
    assert "(client: connection reset by peer (ECONNRESET))" in run.err


# --- where it listens -------------------------------------------------------------------------------

def test_listens_on_loopback_by_default(echo, monkeypatch):
    """Without LADDR only 127.0.0.1 and ::1 are bound (as ssh -L), never the wildcard."""
    from sockdiag.forward import command

    opened = []
    real = command.open_listener

    def spy(candidates, socktype):
        sock = real(candidates, socktype)
        opened.append(sock.getsockname()[0])
        return sock

    monkeypatch.setattr(command, "open_listener", spy)
    run = forward(["-v", "0", "127.0.0.1", str(echo.port)], lambda port, env: exchange(port, b"hi"))
    assert run.result == b"hi"
    assert opened == (["127.0.0.1", "::1"] if has_ipv6_loopback() else ["127.0.0.1"])
    assert "0.0.0.0" not in run.err and "[::]" not in run.err


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_client_on_the_default_listener(echo):
    run = forward(["0", "127.0.0.1", str(echo.port)], lambda port, env: exchange(port, b"six", host="::1"))
    assert run.result == b"six"


def test_laddr_given(echo):
    """LADDR 127.0.0.2: that address answers, 127.0.0.1 on the same port does not."""

    def clients(port, env):
        with pytest.raises(ConnectionRefusedError):
            connect(port, "127.0.0.1")
        return exchange(port, b"two", host="127.0.0.2")

    run = forward(["-v", "127.0.0.2", "0", "127.0.0.1", str(echo.port)], clients)
    assert run.result == b"two"
    assert re.search(r"listening on 127\.0\.0\.2:\d+, forwarding to 127\.0\.0\.1:", run.err)


def test_unbindable_port_exits_1_with_errno_name(echo):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        result = run_main(["forward", "-4", str(holder.getsockname()[1]), "127.0.0.1", str(echo.port)])
    assert result.status == 1
    assert "EADDRINUSE" in result.err and len(result.err.splitlines()) == 1


# --- who may connect, how many ----------------------------------------------------------------------

@pytest.mark.parametrize("rule", [["--deny", "127.0.0.1"], ["--deny", "::ffff:127.0.0.1"],
                                  ["--allow", "127.0.0.2"], ["--deny", "127.0.0.0/8"]])
def test_refused_clients(echo, rule):
    """A refused client is closed before any upstream connection; IPv4-mapped rules match too."""

    def clients(port, env):
        with connect(port) as sock:
            return closed_at_once(sock)

    run = forward(["-v", *rule, "-4", "0", "127.0.0.1", str(echo.port)], clients)
    assert run.result is True
    assert re.search(r"refused connection from 127\.0\.0\.1:\d+ \(--allow/--deny\)", run.err)
    assert "connection 1 from" not in run.err


def test_mapped_client_on_a_dual_stack_listener_is_refused(echo):
    """A client arriving as ::ffff:127.0.0.1 (on an IPv6 socket bound to ::ffff:127.0.0.1) is
    matched as 127.0.0.1."""

    def clients(port, env):
        with connect(port) as sock:
            return closed_at_once(sock)

    run = forward(["-v", "--deny", "127.0.0.1", "::ffff:127.0.0.1", "0", "127.0.0.1", str(echo.port)], clients)
    assert run.result is True
    assert "refused connection from 127.0.0.1:" in run.err


def test_allowed_client_passes(echo):
    def clients(port, env):
        with connect(port, source="127.0.0.2") as sock:
            sock.sendall(b"ok")
            sock.shutdown(socket.SHUT_WR)
            return recv_all(sock)

    run = forward(["--allow", "127.0.0.2", "-4", "0", "127.0.0.1", str(echo.port)], clients)
    assert run.result == b"ok"


def test_max_clients(echo):
    def clients(port, env):
        with connect(port) as first:
            first.sendall(b"1")
            assert recv_exactly(first, 1) == b"1"  # the first is being served
            with connect(port) as second:
                turned_away = closed_at_once(second)
            first.sendall(b"2")
            return turned_away, recv_exactly(first, 1)

    run = forward(["--max-clients", "1", "0", "127.0.0.1", str(echo.port)], clients)
    assert run.result == (True, b"2")
    assert re.search(r"warning: too many clients \(--max-clients 1\): closed connection from 127\.0\.0\.1:\d+",
                     run.err)


# --- the upstream ---------------------------------------------------------------------------------

def test_refused_upstream_closes_that_client_and_keeps_serving():
    """The first client finds the upstream refusing: it is closed with one warning line. The
    upstream then starts listening, and the next client is served."""
    upstream = refused_port()
    with upstream:
        def clients(port, env):
            with connect(port) as sock:
                first_closed = closed_at_once(sock)
            upstream.listen(1)
            upstream.settimeout(TIMEOUT)
            with connect(port) as sock:
                conn, _ = upstream.accept()
                with conn:
                    conn.sendall(b"served")
                    conn.shutdown(socket.SHUT_WR)
                    return first_closed, recv_all(sock)

        target = str(upstream.getsockname()[1])
        run = forward(["0", "127.0.0.1", target], clients)
    assert run.result == (True, b"served")
    assert re.search(rf"warning: connection 1 from 127\.0\.0\.1:\d+: connect 127\.0\.0\.1:{target}: "
                     r"connection refused \(ECONNREFUSED\); client closed", run.err)


def test_each_resolved_address_in_turn(echo, monkeypatch):
    """HOST with two addresses (a monkeypatched resolver: no DNS): the first refuses, the second
    serves; the client never notices."""
    dead = refused_port()
    real = socket.getaddrinfo

    def fake_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host != "upstream.test":
            return real(host, port, family, type, proto, flags)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", dead.getsockname()[1])),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", echo.port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with dead:
        run = forward(["-4", "0", "upstream.test", "9"], lambda port, env: exchange(port, b"second"))
    assert run.result == b"second"
    assert "connection refused (ECONNREFUSED); trying the next address" in run.err
    assert "connection 1 from 127.0.0.1:" in run.err and f"to 127.0.0.1:{echo.port}" in run.err


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_only_listener_and_upstream():
    with Target(family=socket.AF_INET6) as echo6:
        def clients(port, env):
            with pytest.raises(ConnectionRefusedError):
                connect(port, "127.0.0.1")
            return exchange(port, b"v6", host="::1")

        run = forward(["-6", "0", "::1", str(echo6.port)], clients)
    assert run.result == b"v6"
    assert re.search(r"listening on \[::1\]:\d+, forwarding to \[::1\]:", run.err)


def test_connect_timeout():
    """-w: an upstream whose accept queue is full never completes the handshake; the client is
    closed after SEC with a warning, exit status untouched (the forwarder goes on)."""
    with socket.socket() as upstream:
        upstream.bind(("127.0.0.1", 0))
        upstream.listen(0)
        fillers = []
        try:
            for _ in range(4):  # fill the queue: later SYNs are dropped, connects hang
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(upstream.getsockname())
                fillers.append(filler)

            def clients(port, env):
                with connect(port) as sock:
                    return closed_at_once(sock)

            run = forward(["-w", "0.3", "0", "127.0.0.1", str(upstream.getsockname()[1])], clients)
        finally:
            for filler in fillers:
                filler.close()
    assert run.result is True
    assert "timed out after 0.3 s (-w); client closed" in run.err
    assert run.status == 130


def test_idle_timeout(echo):
    def clients(port, env):
        with connect(port) as sock:
            sock.sendall(b"once")
            assert recv_exactly(sock, 4) == b"once"
            got = recv_all(sock)  # then nothing: -i closes it
        wait_until(lambda: b"closed connection 1" in env.stderr.getvalue())
        return got

    run = forward(["-v", "-i", "0.3", "0", "127.0.0.1", str(echo.port)], clients)
    assert run.result == b""
    assert re.search(r"closed connection 1 from \S+ to \S+ \(idle for 0\.3 s \(-i\)\) after [\d.]+ s, "
                     r"4 bytes to upstream, 4 bytes to client", run.err)


def test_through_a_socks5_proxy(echo):
    """-x: each upstream is opened through the proxy (in a thread), the target named as given."""
    with Proxy() as proxy:
        run = forward(["-v", "-x", f"127.0.0.1:{proxy.port}", "0", "127.0.0.1", str(echo.port)],
                      lambda port, env: [exchange(port, b"via proxy"), exchange(port, b"again")])
        requests = [(r.kind, r.host, r.port) for r in proxy.requests]
    assert run.result == [b"via proxy", b"again"]
    assert requests == [("socks5", "127.0.0.1", echo.port)] * 2
    assert f"forwarding to 127.0.0.1:{echo.port} through socks5 proxy 127.0.0.1:{proxy.port}" in run.err


def test_refusing_proxy_closes_the_client():
    with Proxy(refuse=5) as proxy:
        def clients(port, env):
            with connect(port) as sock:
                return closed_at_once(sock)

        run = forward(["-x", f"127.0.0.1:{proxy.port}", "0", "127.0.0.1", "9"], clients)
    assert run.result is True
    assert "warning: connection 1 from 127.0.0.1:" in run.err and "client closed" in run.err


# --- --dump -----------------------------------------------------------------------------------------

def test_dump_file(echo, tmp_path):
    dump = tmp_path / "dump.txt"
    payload = b"hello\x00\xff world, sixteen+ bytes"
    run = forward(["--dump", str(dump), "0", "127.0.0.1", str(echo.port)],
                  lambda port, env: exchange(port, payload))
    assert run.result == payload
    text = dump.read_text()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
    n = len(payload)
    assert re.search(rf"^> {stamp} conn=1 length={n} from=0 to={n - 1}\n"
                     r"00000000  68 65 6c 6c 6f 00 ff 20  77 6f 72 6c 64 2c 20 73  \|hello.. world, s\|\n"
                     r"00000010  69 78 74 65 65 6e 2b 20  62 79 74 65 73           \|ixteen\+ bytes\|\n", text, re.MULTILINE)
    assert re.search(rf"^< {stamp} conn=1 length=\d+ from=0 to=\d+\n", text, re.MULTILINE)


def test_dump_hex_lines_pure():
    from sockdiag.forward.dump import chunk_text

    text = chunk_text("<", 0.25, 7, 16, b"AB\n")
    assert text == ("< 1970-01-01T00:00:00.250000Z conn=7 length=3 from=16 to=18\n"
                    "00000010  41 42 0a                                          |AB.|\n")


# --- UDP ----------------------------------------------------------------------------------------

def test_udp_clients_get_their_own_replies_and_sessions_expire(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
        upstream.bind(("127.0.0.1", 0))
        upstream.settimeout(TIMEOUT)
        sources = []

        def serve():
            for _ in range(4):
                data, addr = upstream.recvfrom(65535)
                sources.append(addr)
                upstream.sendto(b"re:" + data, addr)

        server = threading.Thread(target=serve, daemon=True)
        server.start()

        def clients(port, env):
            replies = []
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                for sock in (a, b):
                    sock.settimeout(TIMEOUT)
                for sock, word in ((a, b"from a"), (b, b"from b"), (a, b"a again"), (b, b"b again")):
                    sock.sendto(word, ("127.0.0.1", port))
                    replies.append(sock.recvfrom(65535)[0])
            wait_until(lambda: env.stderr.getvalue().count(b"closed udp session") == 2)
            return replies

        dump = tmp_path / "udp.hex"
        run = forward(["-v", "-u", "-i", "0.3", "--dump", str(dump), "-4", "0", "127.0.0.1",
                       str(upstream.getsockname()[1])], clients)
        server.join(TIMEOUT)
    assert run.result == [b"re:from a", b"re:from b", b"re:a again", b"re:b again"]
    assert len(set(sources)) == 2 and sources[0] == sources[2] and sources[1] == sources[3]
    assert re.search(r"closed udp session 1 from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:\d+ \(idle for 0\.3 s \(-i\)\) "
                     r"after [\d.]+ s, 13 bytes to upstream, 19 bytes to client", run.err)
    text = dump.read_text()
    assert re.search(r"^> \S+ conn=1 length=6 from=0 to=5\n00000000  66 72 6f 6d 20 61 ", text, re.MULTILINE)
    assert re.search(r"^< \S+ conn=2 length=9 from=0 to=8\n", text, re.MULTILINE)


# --- the command line and the end -------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["forward"],
    ["forward", "0", "127.0.0.1"],
    ["forward", "70000", "127.0.0.1", "80"],
    ["forward", "0", "127.0.0.1", "0"],
    ["forward", "-w", "0", "0", "127.0.0.1", "80"],
    ["forward", "-i", "nan", "0", "127.0.0.1", "80"],
    ["forward", "--max-clients", "0", "0", "127.0.0.1", "80"],
    ["forward", "-u", "-x", "127.0.0.1:1080", "0", "127.0.0.1", "80"],
    ["forward", "--allow", "", "0", "127.0.0.1", "80"],
    ["forward", "999.1.1.1", "0", "127.0.0.1", "80"],
], ids=lambda argv: " ".join(argv[1:]) or "nothing")
def test_bad_arguments_exit_2(argv):
    result = run_main(argv)
    assert result.status == 2, result.err
    lines = result.err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("sockdiag forward: error: "), result.err
    assert lines[1] == "Try 'sockdiag forward --help'."


def _open_fds() -> set[str]:
    fd = os.open("/proc/self/fd", os.O_RDONLY)
    try:
        return set(os.listdir(fd)) - {str(fd)}
    finally:
        os.close(fd)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_interrupt_closes_every_descriptor(echo):
    """Ctrl-C in the middle of open connections: every socket and pipe of the run is closed."""
    before = _open_fds()

    def clients(port, env):
        socks = [connect(port) for _ in range(3)]
        for sock in socks:
            sock.sendall(b"x")
            assert recv_exactly(sock, 1) == b"x"
        return socks

    run = forward(["0", "127.0.0.1", str(echo.port)], clients)
    for sock in run.result:
        assert closed_at_once(sock)
        sock.close()
    assert run.status == 130
    # (the echo upstream's threads close their ends of the connections as they see the EOFs)
    extra: dict = {}

    def all_closed() -> bool:
        extra.clear()
        for fd in _open_fds() - before:
            try:
                extra[fd] = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                pass
        return not extra

    try:
        wait_until(all_closed, timeout=5)
    except AssertionError:
        raise AssertionError(f"left open: {extra}") from None


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/net/tcp")
def test_sigterm_in_a_subprocess_leaves_nothing(echo):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "sockdiag", "forward", "-v", "-4", "0", "127.0.0.1",
                             str(echo.port)], stderr=subprocess.PIPE, env=env)
    try:
        line = proc.stderr.readline().decode()
        port = int(_LISTENING.search(line).group(1))
        client = connect(port)
        client.sendall(b"x")
        assert recv_exactly(client, 1) == b"x"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 143
        assert "terminated (SIGTERM)" in proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
        proc.stderr.close()
    with client:
        assert closed_at_once(client)
    listening = [line for name in ("/proc/net/tcp", "/proc/net/tcp6") for line in Path(name).read_text().splitlines()
                 if f":{port:04X} " in line and line.split()[3] == "0A"]
    assert listening == []
    with socket.socket() as again:  # the port is free again (SO_REUSEADDR: its TIME_WAIT may linger)
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
