"""How the relay moves bytes and runs children on each OS: selectors, zero-copy, --exec."""

from __future__ import annotations

import os

from sockdiag.platform.system import LINUX, SYSTEM, WINDOWS

def relay_selector():
    """The selector the relay loops wait with. poll(2) where it exists, because epoll refuses
    regular files (EPERM) and stdin is often a file; Windows has only select(), which takes
    sockets only (stdin is then fed through a thread, see stdio_selectable)."""
    import selectors

    if hasattr(selectors, "PollSelector"):
        return selectors.PollSelector()
    return selectors.SelectSelector()


def poll_supported(system: str | None = None) -> bool:
    """Whether select.poll() exists: everywhere but Windows, whose select module has select()
    only. net.tlsbridge waits with poll() (its POLLHUP tells that the engine closed its end)."""
    system = system or SYSTEM
    if system != SYSTEM:
        return system != WINDOWS
    import select

    return hasattr(select, "poll")


def stdio_selectable(system: str | None = None) -> bool:
    """Whether stdin/stdout descriptors can be waited on next to sockets. POSIX: yes. Windows:
    select() takes sockets only, so the relay pumps stdin through a thread into a socketpair."""
    return (system or SYSTEM) != WINDOWS


def zero_copy_supported(system: str | None = None) -> bool:
    """Whether the relay may use splice(2) (pipe <-> socket, pipe <-> file) and sendfile(2)
    (regular file -> socket): Linux only; data then never passes through user space.
    macOS's sendfile differs (no current-offset mode), so it keeps the portable copy loop.
    SOCKDIAG_NO_ZEROCOPY=1 forces the copy loop (benchmarks and tests cover both paths)."""
    system = system or SYSTEM
    if system != LINUX:
        return False
    if system != SYSTEM:
        return True
    if os.environ.get("SOCKDIAG_NO_ZEROCOPY"):
        return False
    return hasattr(os, "splice") and hasattr(os, "sendfile")


RELAY_PIPE_SIZE = 1024 * 1024  # Linux's default pipe-max-size; one splice then moves up to 1 MiB


def enlarge_pipe(fd: int, size: int = RELAY_PIPE_SIZE) -> None:
    """Grow a pipe the relay owns (Linux F_SETPIPE_SZ; the default 64 KiB costs a system call per
    64 KiB). Best effort: an unprivileged process may be capped lower."""
    if SYSTEM != LINUX:
        return
    import fcntl

    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except OSError:
        pass


def socket_as_stdio(system: str | None = None) -> bool:
    """Whether a connected socket can be a child's stdin/stdout directly (ncat -e). POSIX: a
    socket is a descriptor like any other. Windows: subprocess needs pipe or file handles
    (an overlapped socket handle breaks the child's reads), so the child gets pipes and two
    threads copy between them and the socket."""
    return (system or SYSTEM) != WINDOWS


def split_command(command: str, system: str | None = None) -> list[str] | str:
    """--exec CMD without a shell. POSIX: split into argv with shell-like quoting (no expansion,
    no pipes). Windows: CreateProcess parses the command line itself, so it is passed as is."""
    if (system or SYSTEM) == WINDOWS:
        return command
    import shlex

    return shlex.split(command)


def shell_argv(command: str, system: str | None = None) -> list[str]:
    """--sh-exec CMD: /bin/sh -c on POSIX, %COMSPEC% /c on Windows (as ncat -c)."""
    if (system or SYSTEM) == WINDOWS:
        return [os.environ.get("COMSPEC", "cmd.exe"), "/c", command]
    return ["/bin/sh", "-c", command]


# --- exec children and termination ----------------------------------------------------------------

def child_group_options(system: str | None = None) -> dict:
    """Popen options that start an --exec child in a process group of its own, so that the
    whole group (a shell and what it started) can be signalled at once and a terminal's Ctrl-C
    does not reach it before sockdiag decides. POSIX: a new session (setsid), whose id is the
    child's pid. Windows: CREATE_NEW_PROCESS_GROUP."""
    if (system or SYSTEM) == WINDOWS:
        return {"creationflags": 0x00000200}  # subprocess.CREATE_NEW_PROCESS_GROUP
    return {"start_new_session": True}


def signal_group(pid: int, kill: bool = False) -> bool:
    """SIGTERM (or SIGKILL) to the process group an --exec child leads; False when nobody is
    left in it. Windows has no process-group signals for console-less children: the child
    itself is terminated (TerminateProcess), which is what SIGKILL would do."""
    import signal

    if SYSTEM == WINDOWS:
        try:
            os.kill(pid, signal.SIGTERM)
            return True
        except OSError:
            return False
    try:
        os.killpg(pid, signal.SIGKILL if kill else signal.SIGTERM)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed its uid (setuid program): it is still there
        return True


def group_alive(pid: int) -> bool:
    """Whether any process is left in the group an --exec child led (POSIX; Windows: False)."""
    if SYSTEM == WINDOWS:
        return False
    try:
        os.killpg(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def termination_signals() -> list:
    """The signals that end sockdiag the way Ctrl-C does (cleanly: sockets closed, children
    stopped, files removed): SIGTERM everywhere, SIGHUP where it exists (not on Windows)."""
    import signal

    return [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
