"""The CLI skeleton: parsing, exit statuses, error translation, broken pipes."""

from __future__ import annotations

import argparse
import sys

import pytest

from sockdiag import __version__, cli
from sockdiag.core.errors import SockdiagError, TimeoutFailure
from sockdiag.core.status import ExitStatus
from tests.conftest import run_module


def test_version(cli):
    r = cli(["--version"])
    assert r.status == 0
    assert r.text.strip() == f"sockdiag {__version__}"


def test_help_lists_every_command_and_exit_statuses(cli):
    r = cli(["--help"])
    assert r.status == 0
    for name in cli_commands():
        assert name in r.text
    assert "exit status" in r.text and "130" in r.text


def cli_commands():
    return list(cli.COMMANDS)


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_subcommand_has_help(cli, name):
    r = cli([name, "--help"])
    assert r.status == 0, r.err
    assert r.text.startswith(f"usage: sockdiag {name}")


@pytest.mark.parametrize(
    "argv, needle",
    [
        pytest.param(["bogus"], "invalid choice", id="unknown-command"),
        pytest.param([], "required", id="no-command"),
        pytest.param(["states", "--nope"], "unrecognized arguments", id="unknown-option"),
        pytest.param(["listen", "70000"], "out of range", id="port-70000"),
        pytest.param(["connect", "127.0.0.1", "0"], "out of range", id="port-0"),
        pytest.param(["connect", "127.0.0.1", "80", "-w", "0"], "more than 0", id="zero-timeout"),
        pytest.param(["connect", "127.0.0.1", "nosuchservice"], "unknown port or service", id="bad-service"),
        pytest.param(["probe", "127.0.0.1", "1-2", "-c", "x"], "whole number", id="bad-concurrency"),
        pytest.param(["listen", "1", "--max-frame", "lots"], "byte count", id="bad-max-frame"),
        pytest.param(["states", "-4", "-6"], "not allowed with", id="exclusive-families"),
    ],
)
def test_usage_errors_exit_2_without_traceback(cli, argv, needle):
    r = cli(argv)
    assert r.status == ExitStatus.USAGE
    assert needle in r.err
    # one shape for every usage error: `sockdiag[ CMD]: error: ...` and one hint line
    error, hint = r.err.splitlines()
    prog = "sockdiag" + (f" {argv[0]}" if argv and argv[0] in cli_module().COMMANDS else "")
    assert error.startswith(f"{prog}: error: ")
    assert hint == f"Try '{prog} --help'."
    assert r.out == b""


def test_verbose_after_subcommand_is_counted():
    args = cli.build_parser().parse_args(["states", "-vv"])
    assert args.verbose == 2
    args = cli.build_parser().parse_args(["-v", "states"])
    assert args.verbose == 1


def test_build_parser_has_no_side_effects():
    a, b = cli.build_parser(), cli.build_parser()
    assert a.format_help() == b.format_help()
    assert isinstance(a, argparse.ArgumentParser)


@pytest.mark.parametrize(
    "exc, status, message",
    [
        pytest.param(SockdiagError("connect x:1: connection refused (ECONNREFUSED)"), 1,
                     "sockdiag states: error: connect x:1: connection refused (ECONNREFUSED)", id="sockdiag-error"),
        pytest.param(TimeoutFailure("connect x:1: timed out"), 3, "timed out", id="timeout"),
        pytest.param(PermissionError(13, "Permission denied"), 4, "permission denied (EACCES)", id="eacces"),
        pytest.param(ConnectionRefusedError(111, "refused"), 1, "ECONNREFUSED", id="oserror"),
        pytest.param(KeyboardInterrupt(), 130, "interrupted", id="ctrl-c"),
        pytest.param(ValueError("boom"), 1, "internal error: ValueError: boom", id="bug"),
    ],
)
def test_exceptions_become_one_line_and_status(cli, monkeypatch, exc, status, message):
    def fail(args, env):
        raise exc

    monkeypatch.setattr(cli_module(), "_dispatch", fail)
    r = cli(["states"])
    assert r.status == status
    assert message in r.err
    assert "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_debug_prints_traceback(cli, monkeypatch):
    def fail(args, env):
        raise ValueError("boom")

    monkeypatch.setattr(cli_module(), "_dispatch", fail)
    r = cli(["--debug", "states"])
    assert r.status == 1 and "Traceback" in r.err


def test_broken_pipe_is_quiet_success(cli, monkeypatch):
    def fail(args, env):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli_module(), "_dispatch", fail)
    r = cli(["states"])
    assert r.status == 0 and r.err == ""


def cli_module():
    return sys.modules["sockdiag.cli"]


def test_version_does_not_import_psutil_or_commands():
    code = ("import sys; from sockdiag.cli import main; "
            "from tests.conftest import make_env; rc = main(['--version'], make_env()); "
            "bad = [m for m in ('psutil', 'asyncio', 'sockdiag.relay', 'sockdiag.probe', 'sockdiag.states') "
            "if m in sys.modules]; print(bad); sys.exit(rc)")
    import subprocess
    from tests.conftest import ROOT

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_help_does_not_import_psutil():
    code = ("import sys; from sockdiag.cli import main; from tests.conftest import make_env; "
            "rc = main(['states', '--help'], make_env()); print('psutil' in sys.modules); sys.exit(rc)")
    import subprocess
    from tests.conftest import ROOT

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_module_entry_point_help():
    r = run_module(["--help"], text=True)
    assert r.returncode == 0 and "usage: sockdiag" in r.stdout


def test_module_entry_point_bad_command():
    r = run_module(["nope"], text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "invalid choice" in r.stderr


def test_usage_error_into_a_closed_pipe_still_exits_2():
    import subprocess

    from tests.conftest import ROOT

    code = ("import os, sys; r, w = os.pipe(); os.close(r); os.dup2(w, 2); "
            "from sockdiag.cli import main; sys.exit(main(['bogus']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT, timeout=30)
    assert out.returncode == 2


# --- the quick exit (cli.entry) ---------------------------------------------------------------------

class _Exited(Exception):
    def __init__(self, how: str, status: int):
        self.how, self.status = how, status


@pytest.fixture
def exits(monkeypatch):
    """cli._exit's two ways out, recorded instead of taken."""
    import os

    def quick(status):
        raise _Exited("os._exit", status)

    def normal(status):
        raise _Exited("sys.exit", status)

    monkeypatch.setattr(os, "_exit", quick)
    monkeypatch.setattr(sys, "exit", normal)


def test_exit_skips_the_teardown_when_nothing_is_left_to_run(exits, monkeypatch):
    monkeypatch.setattr(cli_module(), "_atexit_callbacks", lambda: 0)
    with pytest.raises(_Exited) as exited:
        cli_module()._exit(3)
    assert (exited.value.how, exited.value.status) == ("os._exit", 3)


def test_exit_is_normal_while_another_thread_runs(exits, monkeypatch):
    import threading

    monkeypatch.setattr(cli_module(), "_atexit_callbacks", lambda: 0)
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        with pytest.raises(_Exited) as exited:
            cli_module()._exit(0)
    finally:
        release.set()
        worker.join()
    assert exited.value.how == "sys.exit"  # the thread is joined, as a normal exit does


def test_exit_is_normal_when_an_atexit_callback_waits(exits, monkeypatch):
    monkeypatch.setattr(cli_module(), "_atexit_callbacks", lambda: 1)
    with pytest.raises(_Exited) as exited:
        cli_module()._exit(1)
    assert exited.value.how == "sys.exit"


def test_quick_exit_delivers_every_byte_and_the_status():
    """Through a pipe, as a script reads it: the last line arrives, then the status."""
    r = run_module(["probe", "-o", "json", "-a", "--no-randomize", "127.0.0.1", "1-300"], text=True)
    rows = r.stdout.splitlines()
    assert len(rows) == 300 and all(row.endswith("}") for row in rows)
    assert r.returncode in (0, 1) and r.stderr == ""
