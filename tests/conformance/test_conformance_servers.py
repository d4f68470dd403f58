"""listen's servers, as ncat's tests check them: -k with 20 clients at once, the exec
environment, the idle timeout (-i), --max-clients, and --allow/--deny (and their file forms).
Each case also runs against ncat and, where nc has the feature, OpenBSD nc."""

from __future__ import annotations

import re
import socket
import subprocess

import pytest

from tests.conformance.tools import (EXIT_WAIT, NC, NCAT, SOCKDIAG, Checks, Running, assert_same_or_better, connect,
                                     connect_many, eventually, patience, read_to_eof, sockdiag, tools)

CLIENTS = 20


# --- -k: many clients at once ----------------------------------------------------------------------

# same: ncat -k also serves all 20 at once and keeps serving after they leave (its listen backlog
# of 10 drops part of the burst of SYNs; those connect on the retransmission a second later).
# better: nc -k serves one client at a time from an accept queue of one: while the first client
# stays connected, the next two or so wait in the queue unread and the rest cannot connect (their
# SYNs are dropped; with SYN cookies some seem connected but are never accepted), so not every
# client's data arrives even after they leave.
@pytest.mark.parametrize("peer", tools(NC, NCAT))
def test_keep_open_serves_20_clients_at_once(request, peer):
    argv = {SOCKDIAG: sockdiag("listen", "-k", "-v", "-b", "127.0.0.1", "0"),
            NC: ["nc", "-l", "-k", "-d", "127.0.0.1", "0"],  # -d: no stdin
            NCAT: ["ncat", "-l", "-k", "--recv-only", "127.0.0.1", "0"]}
    expected = sorted(f"client {i}".encode() for i in range(CLIENTS))

    def case(tool):
        with Running(argv[tool]) as server:
            port = server.port()
            clients = connect_many(port, CLIENTS, timeout=patience(tool))
            try:
                for i, client in enumerate(clients):  # all connected at the same time
                    client.sendall(f"client {i}\n".encode())
                at_once = len(clients) == CLIENTS and eventually(lambda: len(server.out.splitlines()) >= CLIENTS,
                                                                 timeout=patience(tool))
            finally:
                for client in clients:
                    client.close()
            all_printed = len(clients) == CLIENTS and eventually(lambda: len(server.out.splitlines()) >= CLIENTS,
                                                                 timeout=patience(tool))
            lines = sorted(server.out.splitlines())
            try:
                with connect(port) as late:
                    late.sendall(b"late client\n")
                served_later = eventually(lambda: b"late client\n" in server.out)
            except OSError:  # refused, or no SYN-ACK: not serving any more
                served_later = False
            server.interrupt()
        return Checks({"20 clients connected at once": len(clients) == CLIENTS,
                       "20 clients served at once": at_once, "every client's data printed": all_printed,
                       "every line intact": all(line in expected for line in lines),
                       "still serving after they left": served_later})

    assert_same_or_better(request, case)


# --- the exec environment ----------------------------------------------------------------------------

# same: ncat --sh-exec tells the command the same four facts (as NCAT_REMOTE_ADDR and so on).
# (nc: OpenBSD nc has no exec option.)
@pytest.mark.parametrize("peer", tools(NCAT))
def test_sh_exec_environment_names_both_ends(request, peer):
    argv = {SOCKDIAG: sockdiag("listen", "-v", "-b", "127.0.0.1", "--sh-exec",
                               "echo $SOCKDIAG_REMOTE_ADDR $SOCKDIAG_REMOTE_PORT $SOCKDIAG_LOCAL_ADDR $SOCKDIAG_LOCAL_PORT",
                               "0"),
            NCAT: ["ncat", "-l", "127.0.0.1", "0", "--sh-exec",
                   "echo $NCAT_REMOTE_ADDR $NCAT_REMOTE_PORT $NCAT_LOCAL_ADDR $NCAT_LOCAL_PORT"]}

    def case(tool):
        with Running(argv[tool]) as server:
            port = server.port()
            with connect(port) as client:
                client_port = client.getsockname()[1]
                said, how = read_to_eof(client)
            status = server.wait()
        return Checks({"remote address and port": said.split()[:2] == [b"127.0.0.1", str(client_port).encode()],
                       "local address and port": said.split()[2:] == [b"127.0.0.1", str(port).encode()],
                       "one line, then an orderly close": said.count(b"\n") == 1 and how == "eof",
                       "exit status 0 after its one client": status == 0})

    assert_same_or_better(request, case)


# --- the idle timeout --------------------------------------------------------------------------------

# relay: better: nc -w (its idle limit for a connection) closes the connection in silence and
# exits 0, ncat -i says why but exits 2, as for a usage error; sockdiag says why and exits 3.
# echo, exec (ncat: --exec /bin/cat for both; nc has neither): better: ncat's -i does not apply
# to an --exec connection, which stays open; sockdiag closes it and exits 3.
@pytest.mark.parametrize("mode", ["relay", "echo", "exec"])
@pytest.mark.parametrize("peer", tools(NC, NCAT))
def test_idle_timeout_ends_a_single_connection_with_status_3(request, peer, mode):
    if peer == NC and mode != "relay":
        pytest.skip("OpenBSD nc has no echo or exec mode")
    serve = {"relay": ([], []), "echo": (["--echo"], ["--exec", "/bin/cat"]),
             "exec": (["--exec", "cat"], ["--exec", "/bin/cat"])}[mode]
    argv = {SOCKDIAG: sockdiag("listen", "-v", "-i", "0.5", "-b", "127.0.0.1", *serve[0], "0"),
            NC: ["nc", "-l", "-w", "1", "127.0.0.1", "0"],  # whole seconds only
            NCAT: ["ncat", "-l", "-i", "500ms", "127.0.0.1", "0", *serve[1]]}

    def case(tool):
        limit = 1 + patience(tool)  # the idle limit (nc: 1 s), then as long as the tool deserves
        with Running(argv[tool], stdin=subprocess.PIPE) as server:  # stdin stays open: only the idle timer ends it
            with connect(server.port()) as client:  # the client connects, then just waits
                _, how = read_to_eof(client, timeout=limit)
                status = server.wait(timeout=EXIT_WAIT if how != "open" else patience(tool))
        checks = Checks({"idle connection closed": how in ("eof", "reset"), "ends by itself": status is not None,
                         "a status of its own (not 0, 1 or 2)": status not in (None, 0, 1, 2),
                         "says why": "idle" in server.err.lower() or "no data" in server.err.lower()})
        if tool == SOCKDIAG:
            checks["exit status 3"] = status == 3
            checks["error line in the house format"] = re.search(
                r"^sockdiag listen: error: [^\n]*idle for 0\.5 s \(-i\)[^\n]*$", server.err, re.MULTILINE) is not None
        return checks

    assert_same_or_better(request, case)


# better: ncat -k -i ends the whole server at the first idle client (status 2); sockdiag closes
# that client only and serves the next. (nc -k has no idle limit for its clients.)
@pytest.mark.parametrize("peer", tools(NCAT))
def test_idle_timeout_with_keep_open_closes_only_that_client(request, peer):
    argv = {SOCKDIAG: sockdiag("listen", "-k", "-v", "-i", "0.5", "-b", "127.0.0.1", "0"),
            NCAT: ["ncat", "-l", "-k", "-i", "500ms", "127.0.0.1", "0"]}

    def case(tool):
        with Running(argv[tool], stdin=subprocess.PIPE) as server:
            port = server.port()
            with connect(port) as idle:
                _, how = read_to_eof(idle)
            try:
                with connect(port) as later:
                    later.sendall(b"later client\n")
                served = eventually(lambda: server.out == b"later client\n" or server.popen.poll() is not None)
                served = served and server.out == b"later client\n"
            except ConnectionRefusedError:
                served = False
            running = server.popen.poll() is None
            server.interrupt()
        return Checks({"idle client closed": how in ("eof", "reset"), "next client served": served,
                       "server still running": running})

    assert_same_or_better(request, case)


# --- --max-clients -----------------------------------------------------------------------------------

# same: ncat --max-conns 2 also serves two, closes the third without data, says so with -v, and
# takes a new client once one has left.
@pytest.mark.parametrize("peer", tools(NCAT))
def test_max_clients_closes_the_excess(request, peer):
    argv = {SOCKDIAG: sockdiag("listen", "-k", "-v", "--max-clients", "2", "-b", "127.0.0.1", "--exec", "cat", "0"),
            NCAT: ["ncat", "-l", "-k", "-v", "--max-conns", "2", "127.0.0.1", "0", "--exec", "/bin/cat"]}

    def echoes(client: socket.socket, data: bytes) -> bool:
        client.sendall(data)
        try:
            return client.recv(len(data)) == data
        except OSError:
            return False

    def case(tool):
        with Running(argv[tool]) as server:
            port = server.port()
            with connect(port) as one, connect(port) as two:
                both = echoes(one, b"1") and echoes(two, b"2")
                with connect(port) as third:
                    excess, _ = read_to_eof(third)
                one.shutdown(socket.SHUT_WR)  # cat ends, the server closes this client: a place is free
                _, one_end = read_to_eof(one)
                with connect(port) as fourth:
                    freed = one_end == "eof" and echoes(fourth, b"4")
            said = "limit" in server.err or "too many" in server.err
            server.interrupt()
        return Checks({"two clients served at once": both, "third closed without data": excess == b"",
                       "says why": said, "a freed place is taken": freed})

    assert_same_or_better(request, case)


# --- --allow / --deny --------------------------------------------------------------------------------

# A client from each of these loopback addresses connects to 127.0.0.1 in turn.
#   127.0.0.1, 127.0.0.3  inside --allow 127.0.0.0/30: served
#   127.0.0.2             inside --allow too, but denied: deny wins, closed without data
#   127.0.0.4             outside --allow: closed without data
SOURCES = {"127.0.0.1": True, "127.0.0.2": False, "127.0.0.3": True, "127.0.0.4": False}


def _rules(form: str, tmp_path) -> tuple[list[str], list[str]]:
    """(sockdiag's, ncat's) options for allow 127.0.0.0/30, deny 127.0.0.2, as options or files."""
    if form == "options":
        options = ["--allow", "127.0.0.0/30", "--deny", "127.0.0.2"]
        return options, options
    allow, deny = tmp_path / "allow", tmp_path / "deny"
    allow.write_text("127.0.0.0/30\n")  # no comment: ncat's host files take none
    deny.write_text("127.0.0.2\n")
    options = ["--allowfile", str(allow), "--denyfile", str(deny)]
    return options, options


# same: ncat --allow/--deny (and --allowfile/--denyfile) also let deny win and close a refused
# client without a byte. (nc: OpenBSD nc has no access lists.)
@pytest.mark.parametrize("form", ["options", "files"])
@pytest.mark.parametrize("peer", tools(NCAT))
def test_allow_and_deny(request, peer, form, tmp_path):
    ours, ncat_rules = _rules(form, tmp_path)
    argv = {SOCKDIAG: sockdiag("listen", "-k", "-v", "-b", "127.0.0.1", "--exec", "echo welcome", *ours, "0"),
            NCAT: ["ncat", "-l", "-k", "127.0.0.1", "0", "--exec", "/bin/echo welcome", *ncat_rules]}

    def case(tool):
        got = {}
        with Running(argv[tool]) as server:
            port = server.port()
            for source in SOURCES:
                with connect(port, source=source) as client:
                    got[source] = read_to_eof(client)
            server.interrupt()
        checks = Checks({f"{source} {'served' if allowed else 'closed without data'}":
                         got[source] == ((b"welcome\n", "eof") if allowed else (b"", "eof"))
                         for source, allowed in SOURCES.items()})
        if tool == SOCKDIAG:
            checks["refusals logged with -v"] = all(
                f"refused connection from {source}:" in server.err for source, ok in SOURCES.items() if not ok)
        return checks

    assert_same_or_better(request, case)


# same (-k): ncat -k --deny also keeps stdin from the denied client and serves the next one.
# better (one client): ncat -l --deny closes its listener at the denied client and then waits
# forever, with no one able to connect; sockdiag refuses that client and keeps listening for a
# permitted one (nc: no access lists).
@pytest.mark.parametrize("mode", ["one-client", "keep-open"])
@pytest.mark.parametrize("peer", tools(NCAT))
def test_denied_client_gets_nothing_and_a_permitted_one_is_served(request, peer, mode):
    keep_open = ["-k"] if mode == "keep-open" else []
    argv = {SOCKDIAG: sockdiag("listen", *keep_open, "-v", "--deny", "127.0.0.2", "-b", "127.0.0.1", "0"),
            NCAT: ["ncat", "-l", *keep_open, "--deny", "127.0.0.2", "127.0.0.1", "0"]}

    def case(tool):
        with Running(argv[tool], stdin=subprocess.PIPE) as server:
            server.send(b"for permitted clients only\n")  # waits in stdin until a client is served
            port = server.port()
            with connect(port, source="127.0.0.2") as denied:
                denied.sendall(b"from the denied client\n")
                leaked, denied_end = read_to_eof(denied)
            try:
                with connect(port) as permitted:
                    permitted.sendall(b"from the permitted client\n")
                    permitted.shutdown(socket.SHUT_WR)
                    if mode == "keep-open":
                        got = permitted.recv(100)
                    else:
                        server.close_stdin()  # the one client's relay ends when both sides are done
                        got, _ = read_to_eof(permitted)
            except OSError:  # refused (no listener left), or nothing came
                got = b""
            printed = eventually(lambda: b"from the permitted client\n" in server.out, timeout=patience(tool))
            server.interrupt()
        return Checks({"denied client closed without data": leaked == b"" and denied_end in ("eof", "reset"),
                       "denied client's data not printed": b"denied" not in server.out,
                       "permitted client gets stdin": got == b"for permitted clients only\n",
                       "permitted client's data printed": printed})

    assert_same_or_better(request, case)
