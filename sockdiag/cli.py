"""The command line: build_parser() (side-effect free; argparse-manpage imports it), main() and
dispatch to the command packages.

main() is the ONE place where exceptions become a one-line message and an exit status.
Command modules, argparse and psutil are imported lazily: `sockdiag --version` imports none of
them, and `--help` never loads psutil or asyncio.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from sockdiag import __version__

# subcommand -> (the options module:function that adds its subparser, the "module:function" that
# runs it). The run function takes (args, env) and returns an exit status. Both load lazily.
COMMANDS = {
    "listen": ("sockdiag.relay.options:add_listen", "sockdiag.relay.command:run_listen"),
    "connect": ("sockdiag.relay.options:add_connect", "sockdiag.relay.command:run_connect"),
    "probe": ("sockdiag.probe.options:add_probe", "sockdiag.probe.command:run"),
    "states": ("sockdiag.states.options:add_states", "sockdiag.states.command:run"),
    "bindcheck": ("sockdiag.bindcheck.options:add_bindcheck", "sockdiag.bindcheck.command:run"),
    "wait": ("sockdiag.wait.options:add_wait", "sockdiag.wait.command:run"),
    "ping": ("sockdiag.ping.options:add_ping", "sockdiag.ping.command:run"),
    "forward": ("sockdiag.forward.options:add_forward", "sockdiag.forward.command:run"),
}


def _resolve(spec: str):
    import importlib

    module_name, _, func_name = spec.partition(":")
    return getattr(importlib.import_module(module_name), func_name)


def build_parser(only: str | None = None):
    """The complete argparse parser: each command's options from its own package. No side effects
    (argparse-manpage imports this to build the man page). With `only`, that command's options
    alone: building all nine costs about 40 ms of every run's start-up (argparse formats each
    option's help as it is added)."""
    import argparse

    from sockdiag.cmdline import PROG, Parser, PrintCompletion, common
    from sockdiag.core.status import EXIT_STATUS_HELP

    epilog = "exit status:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_STATUS_HELP) + (
        "\n\nRun 'sockdiag COMMAND --help' for a command's options; 'man sockdiag' for examples.")
    parser = Parser(prog=PROG, description="Socket diagnostics: a netcat-style relay, a connect scanner, "
                                           "the socket table and a bind/TIME_WAIT diagnosis in one tool.",
                    epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--print-completion", action=PrintCompletion, choices=("bash", "zsh"), metavar="SHELL",
                        help="print the shell completion script for SHELL (bash or zsh), generated from these "
                             "options, and exit")
    common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name, (add_options, _run) in COMMANDS.items():
        if only is None or name == only:
            _resolve(add_options)(sub)
    return parser


def _command_named(argv: list[str]) -> str | None:
    """The command argv runs, when it is plain to see: the first word that is not an option and
    names a command, with no top-level --help or --print-completion before it (those need every
    command). None means: build the whole parser, whose messages name every command."""
    for word in argv:
        if word.startswith("-"):
            if word in ("-h", "--help", "--") or word.startswith("--print-completion"):
                return None
            continue
        return word if word in COMMANDS else None
    return None


def entry() -> None:
    """The `sockdiag` console script and `python -m sockdiag`: main(), then exit with its status."""
    status = main()
    _exit(status)


def _exit(status: int) -> None:
    """Exit without the interpreter's teardown when it has nothing left to do: it frees every
    object one by one (20-25 ms after a 20,000-row table, ~20 ms after a scan), and the work is
    done. Only when the main thread is the only thread and no atexit callback is registered
    (those would run in the teardown); the streams are flushed first. Else a normal exit."""
    import os

    threading = sys.modules.get("threading")
    if (threading is None or threading.active_count() == 1) and _atexit_callbacks() == 0:
        try:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:
                    stream.flush()
        except (OSError, ValueError):
            pass  # the normal exit below deals with a broken or closed stream as before
        else:
            os._exit(status)
    sys.exit(status)


def _atexit_callbacks() -> int:
    """How many atexit callbacks are registered (-1 when the interpreter cannot say)."""
    import atexit

    count = getattr(atexit, "_ncallbacks", None)
    return count() if count is not None else -1


def main(argv: Sequence[str] | None = None, env=None) -> int:
    """Run sockdiag with `argv` (without the program name); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # answered before argparse is even imported: start-up time
        return _print_version(env)
    if env is None:
        from sockdiag.env import Env

        env = Env.from_process()
    from sockdiag.cmdline import OUTPUT_STREAMS, CompletionRequested, ParserExit

    token = OUTPUT_STREAMS.set((env.stdout, env.stderr))
    try:
        try:
            args = build_parser(_command_named(argv)).parse_args(argv)
        except ParserExit as exc:
            return exc.status
        except CompletionRequested as request:
            return _print_completion(env, request.shell)
        finally:
            OUTPUT_STREAMS.reset(token)
        env.verbosity, env.debug = args.verbose or 0, bool(args.debug)
        env.command = args.command
        return _run(args, env)
    finally:
        _final_flush(env)


def _print_completion(env, shell: str) -> int:
    """The completion script, generated from the parser by shtab: it cannot drift from the options."""
    import shtab

    env.write(shtab.complete(build_parser(), shell=shell))
    env.flush()
    return 0


def _print_version(env) -> int:
    line = f"sockdiag {__version__}\n".encode()
    stream = env.stdout if env is not None else getattr(sys.stdout, "buffer", None)
    try:
        if stream is None:  # stdout closed (`>&-`)
            raise OSError(9, "Bad file descriptor")
        stream.write(line)
        stream.flush()
    except BrokenPipeError:
        if env is None:
            from sockdiag.env import Env

            Env.from_process().silence_stdout()
    except OSError as exc:  # a full disk (>/dev/full) or a closed stdout: one line, status 1
        from sockdiag.env import STDOUT_NAME, Env

        env = env or Env.from_process()
        message, status = _describe_oserror(OSError(exc.errno, exc.strerror, STDOUT_NAME))
        env.error(message)
        env.silence_stdout()
        return status
    return 0


def _final_flush(env) -> None:
    try:
        env.flush()
    except BrokenPipeError:
        env.silence_stdout()
    except (OSError, ValueError):
        pass


def _dispatch(args, env) -> int:
    return int(_resolve(COMMANDS[args.command][1])(args, env))


def _catch_termination():
    """SIGTERM/SIGHUP raise Terminated, so they unwind like Ctrl-C: sockets closed, --exec
    children stopped, files removed. Returns a function that puts the old handlers back. Only
    the main thread may set handlers (tests run main() in threads too): elsewhere a no-op."""
    import signal

    from sockdiag import platform
    from sockdiag.core.errors import Terminated

    def handler(signum, frame):
        raise Terminated(signum, signal.Signals(signum).name)

    old = {}
    for signum in platform.termination_signals():
        try:
            old[signum] = signal.signal(signum, handler)
        except (ValueError, OSError):  # not the main thread
            break

    def restore() -> None:
        for signum, previous in old.items():
            signal.signal(signum, previous)

    return restore


def _run(args, env) -> int:
    """Run the chosen command; translate every failure into one stderr line and a status."""
    from sockdiag.core.errors import SockdiagError, Terminated
    from sockdiag.core.status import ExitStatus

    restore = _catch_termination()
    try:
        status = _dispatch(args, env)
        env.flush()
        return status
    except Terminated as exc:
        env.note(f"terminated ({exc.name})")
        return 128 + exc.signum
    except BrokenPipeError:
        # stdout closed by the reader (`sockdiag states | head -1`): not an error. Commands turn
        # EPIPE on a *socket* into a SockdiagError themselves, so this one is about stdout.
        env.silence_stdout()
        return ExitStatus.OK
    except KeyboardInterrupt:
        env.note("interrupted")
        return ExitStatus.INTERRUPTED
    except SockdiagError as exc:
        _debug_trace(env)
        hint = f"Try 'sockdiag {args.command} --help'." if exc.status == ExitStatus.USAGE else None
        env.error(exc.message, hint)
        return exc.status
    except OSError as exc:
        from sockdiag.env import STDOUT_NAME

        _debug_trace(env)
        message, status = _describe_oserror(exc)
        env.error(message)
        if exc.filename == STDOUT_NAME:  # buffered data must not fail again at interpreter exit
            env.silence_stdout()
        return status
    except Exception as exc:  # a bug: one line, the traceback only with --debug
        _debug_trace(env)
        hint = "" if env.debug else " (run with --debug for details)"
        env.error(f"internal error: {type(exc).__name__}: {exc}{hint}")
        return ExitStatus.FAILURE
    finally:
        restore()


def _describe_oserror(exc: OSError):
    from sockdiag import platform
    from sockdiag.core.errors import status_for_errno_name
    from sockdiag.core.status import ExitStatus

    if exc.errno is None:
        return str(exc) or type(exc).__name__, ExitStatus.FAILURE
    where = f"{exc.filename}: " if exc.filename else ""
    return where + platform.describe(exc.errno), status_for_errno_name(platform.errno_name(exc.errno))


def _debug_trace(env) -> None:
    if env.debug:
        import traceback

        try:
            env.stderr.write(traceback.format_exc().encode("utf-8", "replace"))
            env.stderr.flush()
        except (OSError, ValueError):
            pass
