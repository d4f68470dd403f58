"""Name what the kernel did (issue 12, item 8).

(a) A send that fails because the peer reset the connection says so. Linux reports a RST that
    arrives after the peer's FIN as EPIPE on the next send, which used to read "broken pipe";
    now `connection reset by peer after its FIN (EPIPE)`. Only a send after this side's own
    shutdown keeps an EPIPE of its own wording. stdout's broken pipe still ends quietly (test_cli).
(b) bindcheck names an orphaned FIN_WAIT2 socket in the way as FIN_WAIT2, with tcp_fin_timeout
    as its wait, instead of "no socket in TIME_WAIT". The verdict key stays "time-wait only".
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import subprocess

import pytest

from sockdiag import platform
from sockdiag.bindcheck import command as bindcheck
from sockdiag.core import bindverdict
from sockdiag.core.bindverdict import Target, decide, parse_proc_net_tcp
from sockdiag.core.errors import SockdiagError
from sockdiag.core.framing import FrameSpec
from sockdiag.core.status import ExitStatus
from sockdiag.platform.bindrules import fin_wait2_seconds, fin_wait2_setting
from sockdiag.platform.errnos import describe_connection_error, from_connection_error
from sockdiag.relay.dialogue import Dialogue
from sockdiag.relay.report import ServerReport
from tests.conftest import make_env, run_main, wait_until
from tests.test_relay_support import TIMEOUT, Proc, one_connection_server, recv_exactly

LINUX = platform.SYSTEM == platform.LINUX
RESET_AFTER_FIN = "connection reset by peer after its FIN (EPIPE)"


def fin_then_reset(conn: socket.socket) -> None:
    """The peer's side of the case: FIN first (shutdown), then RST (close with SO_LINGER 0)."""
    conn.shutdown(socket.SHUT_WR)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


@pytest.fixture
def pair():
    """A connected loopback TCP pair (client, server side), both closed afterwards."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=TIMEOUT)
        conn, _ = listener.accept()
    with client, conn:
        yield client, conn


def send_until_it_fails(send) -> Exception:
    """Call send() until it raises; the first sends may still leave before the RST is processed
    (their data then meets no socket, and the peer's kernel answers with another RST)."""
    box = {}

    def failed():
        try:
            send()
        except Exception as exc:  # noqa: BLE001 - what the test asserts on
            box["error"] = exc
            return True
        return False

    wait_until(failed, timeout=TIMEOUT)
    return box["error"]


# --- (a) the wording, per OS ---------------------------------------------------------------------

@pytest.mark.parametrize("system, text", [
    ("linux", "connection reset by peer after its FIN (EPIPE)"),
    ("darwin", "connection reset by peer (EPIPE)"),
], ids=["linux-rst-in-close-wait", "darwin-send-after-any-reset"])
def test_epipe_of_a_dropped_connection_is_the_peers_reset(system, text):
    assert describe_connection_error(platform.errno_code("EPIPE", system), system=system) == text


@pytest.mark.parametrize("name, text", [
    ("ECONNRESET", "connection reset by peer (ECONNRESET)"),
    ("ETIMEDOUT", "timed out (ETIMEDOUT)"),
], ids=["reset", "timeout"])
def test_other_errors_keep_their_description(name, text):
    assert describe_connection_error(platform.errno_code(name, "linux"), system="linux") == text


def test_epipe_after_our_own_shutdown_is_not_called_a_reset(pair):
    client, _ = pair
    client.shutdown(socket.SHUT_WR)
    code = platform.errno_code("EPIPE")
    assert describe_connection_error(code, client) == "this side had already shut down sending (EPIPE)"


def test_from_connection_error_keeps_status_1_and_the_action():
    error = from_connection_error("send to 127.0.0.1:9", BrokenPipeError(errno.EPIPE, "Broken pipe"))
    assert error.status == ExitStatus.FAILURE
    assert error.message.startswith("send to 127.0.0.1:9: connection reset by peer")
    assert error.message.endswith("(EPIPE)")


# --- (a) live: the relays --------------------------------------------------------------------------

@pytest.mark.parametrize("no_zerocopy", ["", "1"], ids=["zero-copy", "copy-loop"])
def test_connect_names_the_reset_after_the_peers_fin(no_zerocopy):
    """connect keeps sending after the peer's FIN (stdin is not done); the peer then resets. The
    stdin pipe is fed only after the reset was sent, so the failing send is always one after it."""
    def server(conn):
        assert recv_exactly(conn, 6) == b"hello\n"  # the relay runs
        fin_then_reset(conn)
        return "reset"

    def fed_and_exited(client: Proc, fd: int) -> bool:
        try:
            os.write(fd, b"x" * 65536)
        except (BlockingIOError, BrokenPipeError):
            pass
        return client.popen.poll() is not None

    with one_connection_server(server) as (port, box), \
            Proc(["connect", "127.0.0.1", str(port)], stdin=subprocess.PIPE,
                 SOCKDIAG_NO_ZEROCOPY=no_zerocopy) as client:
        fd = client.popen.stdin.fileno()
        os.write(fd, b"hello\n")
        wait_until(lambda: "result" in box or "error" in box, timeout=TIMEOUT)  # the RST is sent
        os.set_blocking(fd, False)
        wait_until(lambda: fed_and_exited(client, fd), timeout=TIMEOUT)
        status = client.wait()
    assert status == ExitStatus.FAILURE, client.stderr
    assert client.stderr.count("\n") == 1 and "Traceback" not in client.stderr
    if LINUX:
        assert client.stderr == f"sockdiag connect: error: send to 127.0.0.1:{port}: {RESET_AFTER_FIN}\n"
    else:
        assert "connection reset by peer" in client.stderr


def test_dialogue_send_names_the_reset(pair):
    client, conn = pair
    dialogue = Dialogue(client, FrameSpec(direction="in"), "127.0.0.1:9", idle=TIMEOUT)  # sends raw
    fin_then_reset(conn)
    error = send_until_it_fails(lambda: dialogue.send(b"more\n"))
    assert isinstance(error, SockdiagError) and error.status == ExitStatus.FAILURE
    if LINUX:
        assert error.message == f"send to 127.0.0.1:9: {RESET_AFTER_FIN}"
    else:
        assert "connection reset by peer" in error.message


def test_dialogue_send_after_its_own_shutdown(pair):
    client, _ = pair
    dialogue = Dialogue(client, FrameSpec(direction="in"), "127.0.0.1:9", idle=TIMEOUT)
    dialogue.finish_sending()
    with pytest.raises(SockdiagError) as info:
        dialogue.send(b"late\n")
    assert "this side had already shut down sending" in info.value.message


class _Client:
    """What ServerReport.lost() reads of a client (relay.clients.Client has the same fields)."""

    def __init__(self, sock):
        self.sock, self.peer, self.bytes_in, self.bytes_out = sock, "127.0.0.1:40000", 5, 7


def test_server_lost_note_names_the_reset(pair):
    """listen -k / --echo: a client's failed send is reported through ServerReport.lost()."""
    client, conn = pair
    fin_then_reset(conn)
    error = send_until_it_fails(lambda: client.send(b"owed"))
    env = make_env(verbosity=1)
    ServerReport(env).lost(_Client(client), error)
    note = env.stderr.getvalue().decode()
    if LINUX:
        assert note.endswith(f"127.0.0.1:40000: {RESET_AFTER_FIN}, 5 bytes in, 7 bytes out\n"), note
    else:
        assert "connection reset by peer" in note


# --- (b) bindcheck: an orphaned FIN_WAIT2 socket, pure ---------------------------------------------

def attempt(option, ok, errno_name=None):
    return {"option": option, "ok": ok, "errno": errno_name}


def row(state, port=8080, remote_port=4, pid=None):
    return {"proto": "tcp", "family": "inet", "local_address": "127.0.0.1", "local_port": port,
            "remote_address": "127.0.0.1", "remote_port": remote_port, "state": state, "pid": pid,
            "process": None}


IN_USE = [attempt("plain", False, "EADDRINUSE"), attempt("SO_REUSEADDR", False, "EADDRINUSE"),
          attempt("SO_REUSEPORT", False, "EADDRINUSE")]
REUSEADDR_OK = [attempt("plain", False, "EADDRINUSE"), attempt("SO_REUSEADDR", True),
                attempt("SO_REUSEPORT", False, "EADDRINUSE")]
FIN2 = row("FIN_WAIT2")
TW = row("TIME_WAIT", remote_port=5)


def rules_of(system, fin_timeout="60"):
    """`system`'s rules with an emulated net.ipv4.tcp_fin_timeout (Linux reads it otherwise)."""
    return platform.bind_rules(system, fin_timeout=fin_timeout)._replace(unprivileged_start=None)


def verdict(attempts, holders, system="linux", fin_timeout="60", **kw):
    return decide(attempts, holders, port=8080, address="127.0.0.1", rules=rules_of(system, fin_timeout), **kw)


def test_fin_wait2_alone_is_named_with_tcp_fin_timeout():
    d = verdict(IN_USE, [FIN2])
    assert d.verdict == "time-wait only"  # the documented key: scripts match on it
    assert d.reason.startswith("1 socket in FIN_WAIT2 (its program closed it, its peer has not: the kernel keeps "
                               "it up to net.ipv4.tcp_fin_timeout = 60 s), nothing live; not even a SO_REUSEADDR "
                               "bind passes them")
    assert "TIME_WAIT" not in d.reason and "passes a FIN_WAIT2 socket only if" in d.reason
    assert d.advice == "wait up to 60 s, and make the server set SO_REUSEADDR so the next restart does not hit this"


def test_fin_wait2_follows_the_setting():
    d = verdict(REUSEADDR_OK, [FIN2, row("FIN_WAIT2", remote_port=6)], fin_timeout="30")
    assert d.reason.startswith("2 sockets in FIN_WAIT2 (their programs closed them, their peers have not: the "
                               "kernel keeps each up to net.ipv4.tcp_fin_timeout = 30 s), nothing live; a bind "
                               "with SO_REUSEADDR succeeds now")
    assert d.advice.endswith("or wait up to 30 s")


def test_fin_wait2_with_the_kernels_timer():
    d = verdict(IN_USE, [FIN2], fin_wait2_expires_s=12.3)
    assert "= 60 s), expiring in ~13 s, nothing live" in d.reason
    assert d.advice.startswith("wait ~13 s,")


@pytest.mark.parametrize("expires_s, fin_expires_s, wait", [
    (5.0, None, "up to 60 s"),   # the FIN_WAIT2 one may take its whole tcp_fin_timeout
    (50.0, 20.0, "~50 s"),       # both timers known: the later one
    (5.0, 20.0, "~20 s"),
], ids=["fin-untimed", "time-wait-last", "fin-wait2-last"])
def test_time_wait_and_fin_wait2_together(expires_s, fin_expires_s, wait):
    d = verdict(IN_USE, [TW, FIN2], expires_s=expires_s, fin_wait2_expires_s=fin_expires_s)
    assert d.reason.startswith(f"1 socket in TIME_WAIT, expiring in ~{int(expires_s)} s, and 1 socket in FIN_WAIT2")
    assert "passes a TIME_WAIT or FIN_WAIT2 socket" in d.reason
    assert d.advice.startswith(f"wait {wait},")


def test_fin_wait2_off_linux_names_no_length():
    d = verdict(IN_USE, [FIN2], "darwin")
    assert "the kernel keeps it until its FIN_WAIT2 timer ends" in d.reason and "tcp_fin_timeout" not in d.reason
    assert d.advice.startswith("wait until they expire,")
    windows = verdict([attempt("plain", False, "EADDRINUSE"), attempt("SO_EXCLUSIVEADDRUSE", False, "EADDRINUSE")],
                      [FIN2], "win32")
    assert windows.advice.startswith("wait until they expire; do not set SO_REUSEADDR")


def test_time_wait_on_windows_keeps_its_advice():
    d = verdict([attempt("plain", False, "EADDRINUSE")], [TW], "win32")
    assert d.advice.startswith("wait up to 120 s for them to expire;")


def test_other_closing_states_say_the_fin_is_unacknowledged():
    d = verdict(IN_USE, [row("LAST_ACK")])
    assert d.reason.startswith("1 socket in LAST_ACK (closed by its program, its FIN not yet acknowledged by the "
                               "peer), nothing live")


def test_fin_wait2_of_a_live_program_is_in_use():
    d = verdict(IN_USE, [row("FIN_WAIT2", pid=5)])
    assert d.verdict == "in use"


@pytest.mark.parametrize("system, text, seconds, setting", [
    ("linux", "45", 45, "net.ipv4.tcp_fin_timeout"),
    ("linux", "junk", 60, "net.ipv4.tcp_fin_timeout"),
    ("darwin", None, None, None),
    ("win32", None, None, None),
], ids=["linux-set", "linux-unreadable", "darwin", "windows"])
def test_fin_wait2_rules_per_os(system, text, seconds, setting):
    assert fin_wait2_seconds(system, text) == seconds and fin_wait2_setting(system) == setting
    rules = platform.bind_rules(system, fin_timeout=text)
    assert (rules.fin_wait2_seconds, rules.fin_wait2_setting) == (seconds, setting)


# A real /proc/net/tcp line: an orphaned FIN_WAIT2 (st 05) held as a time-wait socket (tr 3, no inode).
FIN_WAIT2_LINE = "  46: 0100007F:B9D0 0100007F:CB91 05 00000000:00000000 03:00001766 00000000     0        0 0 3"


def test_fin_wait2_timer_is_read_and_kept_apart_from_time_wait():
    timers = bindverdict.time_wait_timers(parse_proc_net_tcp(FIN_WAIT2_LINE), 100)
    holder = row("FIN_WAIT2", port=0xB9D0, remote_port=0xCB91)
    assert bindverdict.row_timer(holder, timers) == pytest.approx(59.9)
    assert bindcheck._last_expiry([holder], timers, "FIN_WAIT2", every=True) == 59.9
    assert bindcheck._last_expiry([holder], timers, "TIME_WAIT", every=False) is None  # the JSON key's value
    untimed = row("FIN_WAIT2", port=0xB9D0, remote_port=1)  # a full socket (tcp_fin_timeout above 60 s)
    assert bindcheck._last_expiry([holder, untimed], timers, "FIN_WAIT2", every=True) is None


def test_text_report_shows_the_fin_wait2_expiry():
    holder = row("FIN_WAIT2", port=0xB9D0, remote_port=0xCB91)
    timers = bindverdict.time_wait_timers(parse_proc_net_tcp(FIN_WAIT2_LINE), 100)
    report = {"port": 0xB9D0, "address": "127.0.0.1", "proto": "tcp", "verdict": "time-wait only",
              "attempts": IN_USE, "holders": [holder], "time_wait": 0, "time_wait_expires_s": None, "advice": ""}
    diagnosis = verdict(IN_USE, [holder], fin_wait2_expires_s=59.9)
    lines = bindverdict.text_report(report, diagnosis, target=Target("127.0.0.1", socket.AF_INET), timers=timers)
    assert "holders: 1 (1 FIN_WAIT2)" in lines
    assert next(line for line in lines if "FIN_WAIT2  " in line).split()[-1] == "59.9"


# --- (b) live, Linux: a real orphaned FIN_WAIT2 in the way ----------------------------------------

def _fin_timeout() -> int | None:
    text = platform.read_sysctl("net/ipv4/tcp_fin_timeout")
    return int(text) if text and text.isdigit() else None


@pytest.fixture
def own_addr() -> str:
    candidate = f"127.68.{os.getpid() % 250 + 1}.1"
    try:
        with socket.socket() as s:
            s.bind((candidate, 0))
    except OSError:
        return "127.0.0.1"
    return candidate


def _states_on(addr: str, port: int) -> list[str]:
    from sockdiag.platform import socktable

    return [r["state"] for r in socktable.socket_rows("tcp")
            if r["local_port"] == port and bindverdict._ip_key(r["local_address"]) == bindverdict._ip_key(addr)]


@pytest.mark.skipif(not LINUX, reason="orphaned FIN_WAIT2 sockets and tcp_fin_timeout are Linux's; elsewhere the "
                                      "pure tests emulate the rules")
@pytest.mark.skipif((_fin_timeout() or 0) < 10, reason="net.ipv4.tcp_fin_timeout unreadable or under 10 s: the "
                                                       "FIN_WAIT2 socket could expire during the test")
def test_bindcheck_names_a_live_orphaned_fin_wait2(own_addr):
    """The client closes first and the server never does: the client's side waits in FIN_WAIT2.
    Closing its descriptor orphans it (no process owns it any more), and it holds the client's
    port against a plain bind. The server's RST at the end removes it at once."""
    fin = _fin_timeout()
    with socket.socket() as listener:
        listener.bind((own_addr, 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname(), timeout=TIMEOUT, source_address=(own_addr, 0))
        port = client.getsockname()[1]
        conn, _ = listener.accept()
        try:
            client.close()  # FIN; the server's kernel ACKs it, its program never closes
            wait_until(lambda: _states_on(own_addr, port) == ["FIN_WAIT2"])
            r = run_main(["bindcheck", "-o", "json", "-b", own_addr, str(port)])
            text = run_main(["bindcheck", "-b", own_addr, str(port)])
        finally:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
    assert r.status == ExitStatus.FAILURE, r.err
    report = json.loads(r.text)
    assert report["verdict"] == "time-wait only"
    assert [(h["state"], h["pid"]) for h in report["holders"]] == [("FIN_WAIT2", None)]
    assert report["time_wait"] == 0 and report["time_wait_expires_s"] is None
    reason = " ".join(text.text.split())
    assert (f"1 socket in FIN_WAIT2 (its program closed it, its peer has not: the kernel keeps it up to "
            f"net.ipv4.tcp_fin_timeout = {fin} s)") in reason
    assert "no socket in TIME_WAIT" not in reason
    if fin <= 60:  # held as a time-wait socket from the start: the kernel shows the time left
        assert ", expiring in ~" in reason and report["advice"].startswith("wait ~")
    assert wait_until(lambda: _states_on(own_addr, port) == [])  # the RST removed it

