"""sockdiag.platform: per-OS errno values and socket options, including emulated Windows and macOS."""

from __future__ import annotations

import errno
import socket

import pytest

from sockdiag import platform
from sockdiag.platform.errnos import from_oserror
from sockdiag.core.status import ExitStatus

REFUSED = {"linux": 111, "darwin": 61, "win32": 10061}


@pytest.mark.parametrize("system, code", REFUSED.items(), ids=list(REFUSED))
def test_refused_has_one_name_everywhere(system, code):
    assert platform.errno_name(code, system) == "ECONNREFUSED"
    assert platform.errno_code("ECONNREFUSED", system) == code
    assert platform.errno_is(code, "ECONNREFUSED", system)


@pytest.mark.parametrize(
    "system, code, name",
    [
        ("linux", 110, "ETIMEDOUT"), ("darwin", 60, "ETIMEDOUT"), ("win32", 10060, "ETIMEDOUT"),
        ("linux", 98, "EADDRINUSE"), ("darwin", 48, "EADDRINUSE"), ("win32", 10048, "EADDRINUSE"),
        ("linux", 113, "EHOSTUNREACH"), ("darwin", 65, "EHOSTUNREACH"), ("win32", 10065, "EHOSTUNREACH"),
        ("win32", 10013, "EACCES"), ("win32", 13, "EACCES"), ("linux", 13, "EACCES"),
    ],
)
def test_errno_names_per_system(system, code, name):
    assert platform.errno_name(code, system) == name


@pytest.mark.parametrize(
    "system, code",
    [("linux", 115), ("linux", 11), ("linux", 114), ("darwin", 36), ("darwin", 35), ("win32", 10035), ("win32", 10036)],
)
def test_connect_in_progress(system, code):
    assert platform.connect_in_progress(code, system)


@pytest.mark.parametrize("system, code", [("linux", 111), ("darwin", 61), ("win32", 10061), ("win32", 0)])
def test_not_in_progress(system, code):
    assert not platform.connect_in_progress(code, system)


def test_linux_numbers_are_not_refused_elsewhere():
    assert platform.errno_name(111, "darwin") != "ECONNREFUSED"
    assert platform.errno_name(61, "linux") != "ECONNREFUSED"


def test_unknown_code_of_other_system():
    assert platform.errno_name(99999, "win32") == "errno 99999"


def test_current_system_matches_errno_module():
    assert platform.errno_name(errno.ECONNREFUSED) == "ECONNREFUSED"
    assert platform.errno_code("ECONNREFUSED") == errno.ECONNREFUSED


def test_describe_names_errno_symbolically():
    assert platform.describe(10061, "win32") == "connection refused (ECONNREFUSED)"
    assert platform.describe(errno.EADDRINUSE) == "address already in use (EADDRINUSE)"


@pytest.mark.parametrize(
    "system, option", [("linux", "SO_REUSEADDR"), ("darwin", "SO_REUSEADDR"), ("win32", "SO_EXCLUSIVEADDRUSE")]
)
def test_server_reuse_option(system, option):
    assert platform.server_reuse_option(system) == option


def test_windows_reuseaddr_note_warns():
    assert "SO_EXCLUSIVEADDRUSE" in platform.reuseaddr_note("win32")


@pytest.mark.parametrize("system, expected", [("linux", True), ("darwin", True), ("win32", False)])
def test_reuseport_availability(system, expected):
    if system == platform.SYSTEM:
        expected = expected and hasattr(socket, "SO_REUSEPORT")
    assert platform.has_reuseport(system) is expected


@pytest.mark.parametrize("system, expected", [("linux", False), ("darwin", False), ("win32", True)])
def test_v6only_default(system, expected):
    assert platform.v6only_default(system) is expected


def test_set_server_reuse_on_real_socket():
    with socket.socket() as s:
        platform.set_server_reuse(s)
        if platform.server_reuse_option() == "SO_REUSEADDR":
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
        s.bind(("127.0.0.1", 0))


def test_real_refused_connect_ex_is_named():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]  # bound, not listening: connects are refused
        with socket.socket() as s:
            code = s.connect_ex(("127.0.0.1", port))
    assert platform.errno_is(code, "ECONNREFUSED")


@pytest.mark.parametrize(
    "exc, status",
    [
        (PermissionError(errno.EACCES, "x"), ExitStatus.PERMISSION),
        (TimeoutError(errno.ETIMEDOUT, "x"), ExitStatus.TIMEOUT),
        (TimeoutError("timed out"), ExitStatus.TIMEOUT),
        (ConnectionRefusedError(errno.ECONNREFUSED, "x"), ExitStatus.FAILURE),
    ],
)
def test_from_oserror_status(exc, status):
    err = from_oserror("connect 127.0.0.1:1", exc)
    assert err.status == status
    assert err.message.startswith("connect 127.0.0.1:1: ")


def test_service_lookup():
    assert platform.service_port("no-such-service-xyz") is None


@pytest.mark.parametrize("system, reuses", [("linux", True), ("darwin", False), ("win32", False)])
def test_only_linux_reuses_a_refused_socket_for_the_next_probe(system, reuses):
    """POSIX leaves a socket's state unspecified after a failed connect; Linux's TCP lets it
    connect again (after one ECONNABORTED that resets it), which test_probe checks for real."""
    assert platform.probe_reuses_refused_sockets(system) is reuses


@pytest.mark.parametrize("system, has_poll", [("linux", True), ("darwin", True), ("win32", False)])
def test_poll_exists_everywhere_but_windows(system, has_poll):
    assert platform.poll_supported(system) is has_poll
