"""Every operating-system difference sockdiag cares about, in one place.

Other modules never test sys.platform / os.name themselves; they ask here. Functions take an
optional `system` ("linux", "darwin", "win32") so tests can emulate the other platforms' values.
"""

from __future__ import annotations

import errno as _errno
import os
import socket
import sys

LINUX, DARWIN, WINDOWS = "linux", "darwin", "win32"


def current_system() -> str:
    """The running OS as one of LINUX / DARWIN / WINDOWS, or sys.platform for others (BSDs)."""
    if sys.platform.startswith("linux"):
        return LINUX
    if sys.platform == "darwin":
        return DARWIN
    if sys.platform in ("win32", "cygwin"):
        return WINDOWS
    return sys.platform


SYSTEM = current_system()

# errno numbers for the names sockdiag reasons about, per OS. Linux and macOS values come from
# <asm-generic/errno.h> and <sys/errno.h>; Windows sockets report WSA* codes (winsock2.h,
# 10000 + BSD number), which Python's errno module also uses for these names on Windows.
# So connect_ex() says "refused" as 111 on Linux, 61 on macOS and 10061 on Windows.
_ERRNO_TABLES: dict[str, dict[str, int]] = {
    LINUX: {
        "EPERM": 1, "EINTR": 4, "EACCES": 13, "EINVAL": 22, "ENFILE": 23, "EMFILE": 24,
        "EPIPE": 32, "EAGAIN": 11, "EAFNOSUPPORT": 97, "EADDRINUSE": 98, "EADDRNOTAVAIL": 99,
        "ENETDOWN": 100, "ENETUNREACH": 101, "ECONNABORTED": 103, "ECONNRESET": 104,
        "ENOBUFS": 105, "EISCONN": 106, "ENOTCONN": 107, "ETIMEDOUT": 110,
        "ECONNREFUSED": 111, "EHOSTDOWN": 112, "EHOSTUNREACH": 113, "EALREADY": 114,
        "EINPROGRESS": 115,
    },
    DARWIN: {
        "EPERM": 1, "EINTR": 4, "EACCES": 13, "EINVAL": 22, "ENFILE": 23, "EMFILE": 24,
        "EPIPE": 32, "EAGAIN": 35, "EINPROGRESS": 36, "EALREADY": 37, "EAFNOSUPPORT": 47,
        "EADDRINUSE": 48, "EADDRNOTAVAIL": 49, "ENETDOWN": 50, "ENETUNREACH": 51,
        "ECONNABORTED": 53, "ECONNRESET": 54, "ENOBUFS": 55, "EISCONN": 56, "ENOTCONN": 57,
        "ETIMEDOUT": 60, "ECONNREFUSED": 61, "EHOSTDOWN": 64, "EHOSTUNREACH": 65,
    },
    WINDOWS: {
        "EPERM": 1, "EPIPE": 32,
        "EINTR": 10004, "EACCES": 10013, "EINVAL": 10022, "EMFILE": 10024,
        "EWOULDBLOCK": 10035, "EINPROGRESS": 10036, "EALREADY": 10037,
        "EAFNOSUPPORT": 10047, "EADDRINUSE": 10048, "EADDRNOTAVAIL": 10049,
        "ENETDOWN": 10050, "ENETUNREACH": 10051, "ECONNABORTED": 10053, "ECONNRESET": 10054,
        "ENOBUFS": 10055, "EISCONN": 10056, "ENOTCONN": 10057, "ETIMEDOUT": 10060,
        "ECONNREFUSED": 10061, "EHOSTDOWN": 10064, "EHOSTUNREACH": 10065,
    },
}
_NAMES_BY_CODE = {system: {code: name for name, code in table.items()}
                  for system, table in _ERRNO_TABLES.items()}
# Windows' C runtime also has small errno values (EACCES 13, EINVAL 22) next to the WSA ones.
_NAMES_BY_CODE[WINDOWS].update({13: "EACCES", 22: "EINVAL", 24: "EMFILE", 4: "EINTR"})

# A non-blocking connect that has started but not finished: Linux/macOS say EINPROGRESS,
# Windows says WSAEWOULDBLOCK; EALREADY and EAGAIN appear on a repeated connect_ex.
IN_PROGRESS = frozenset({"EINPROGRESS", "EWOULDBLOCK", "EAGAIN", "EALREADY"})
UNREACHABLE = frozenset({"EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENETDOWN"})

_DESCRIPTIONS = {
    "ECONNREFUSED": "connection refused",
    "ECONNRESET": "connection reset by peer",
    "ECONNABORTED": "connection aborted",
    "ETIMEDOUT": "timed out",
    "EHOSTUNREACH": "host unreachable",
    "ENETUNREACH": "network unreachable",
    "EHOSTDOWN": "host is down",
    "ENETDOWN": "network is down",
    "EADDRINUSE": "address already in use",
    "EADDRNOTAVAIL": "address not available on this host",
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
    "EPIPE": "broken pipe (peer closed the connection)",
    "EMFILE": "too many open files",
    "ENFILE": "too many open files in system",
    "EAFNOSUPPORT": "address family not supported",
    "EINVAL": "invalid argument",
    "ENOBUFS": "no buffer space available",
}


def errno_name(code: int, system: str | None = None) -> str:
    """The symbolic name of an errno value as `system` reports it (EWOULDBLOCK/EAGAIN alike)."""
    system = system or SYSTEM
    name = _NAMES_BY_CODE.get(system, {}).get(code)
    if name is None and system == SYSTEM:
        name = _errno.errorcode.get(code)
        if name and name.startswith("WSA"):
            name = name[3:]
    return name or f"errno {code}"


def errno_code(name: str, system: str | None = None) -> int | None:
    """The number `system` uses for errno `name`, or None when it has no such error."""
    system = system or SYSTEM
    table = _ERRNO_TABLES.get(system, {})
    if name in table:
        return table[name]
    if name == "EWOULDBLOCK" and "EAGAIN" in table:
        return table["EAGAIN"]
    return getattr(_errno, name, None) if system == SYSTEM else None


def errno_is(code: int | None, name: str, system: str | None = None) -> bool:
    """Whether `code` is errno `name` on `system`: compare by name, never by Linux numbers."""
    return code is not None and errno_name(code, system) == name


def connect_in_progress(code: int, system: str | None = None) -> bool:
    """Whether a non-blocking connect_ex() result means "started, not finished"."""
    return errno_name(code, system) in IN_PROGRESS


def describe(code: int, system: str | None = None) -> str:
    """A one-line description naming the errno symbolically: `connection refused (ECONNREFUSED)`."""
    name = errno_name(code, system)
    text = _DESCRIPTIONS.get(name)
    if text is None:
        text = os.strerror(code).lower() if (system or SYSTEM) == SYSTEM else "error"
    return f"{text} ({name})"


# --- address reuse ------------------------------------------------------------------------------

def server_reuse_option(system: str | None = None) -> str:
    """The option a server should set before bind so a restart is not blocked.

    POSIX: SO_REUSEADDR lets a new listener bind while old connections sit in TIME_WAIT.
    Windows: SO_REUSEADDR lets *another* socket bind a port already in use (port hijacking),
    so servers set SO_EXCLUSIVEADDRUSE instead; TIME_WAIT does not block a bind there anyway.
    """
    return "SO_EXCLUSIVEADDRUSE" if (system or SYSTEM) == WINDOWS else "SO_REUSEADDR"


def set_server_reuse(sock: socket.socket) -> None:
    """Apply server_reuse_option() to a socket that is about to bind."""
    option = server_reuse_option()
    if option == "SO_EXCLUSIVEADDRUSE":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined]
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)


def has_reuseport(system: str | None = None) -> bool:
    """Whether SO_REUSEPORT exists: Linux 3.9+ (load-balancing groups) and macOS/BSD (multicast-
    style sharing); Windows has no such option."""
    system = system or SYSTEM
    if system == WINDOWS:
        return False
    if system == SYSTEM:
        return hasattr(socket, "SO_REUSEPORT")
    return system in (LINUX, DARWIN)


REUSEADDR_NOTES = {
    LINUX: "SO_REUSEADDR lets a listener bind past TIME_WAIT sockets only if the sockets that "
           "left them had SO_REUSEADDR set too; it never allows two listeners on one port",
    DARWIN: "SO_REUSEADDR lets a listener bind past TIME_WAIT sockets; it never allows two "
            "listeners on one exact address and port",
    WINDOWS: "SO_REUSEADDR on Windows lets another socket bind a port that is in use (even by "
             "another process): a server should set SO_EXCLUSIVEADDRUSE instead",
}


def reuseaddr_note(system: str | None = None) -> str:
    """One line on what SO_REUSEADDR does on `system`."""
    return REUSEADDR_NOTES.get(system or SYSTEM, REUSEADDR_NOTES[DARWIN])


# --- IPv6 dual stack ----------------------------------------------------------------------------

def dualstack_supported() -> bool:
    """Whether one AF_INET6 socket bound to :: with IPV6_V6ONLY off also accepts IPv4."""
    return socket.has_ipv6 and socket.has_dualstack_ipv6()


def v6only_default(system: str | None = None) -> bool:
    """IPV6_V6ONLY's default: off on Linux (net.ipv6.bindv6only=0) and macOS, on for Windows.
    Listeners set it explicitly rather than trust the default."""
    return (system or SYSTEM) == WINDOWS


# --- Linux /proc and sysctl values ---------------------------------------------------------------

def read_sysctl(path: str) -> str | None:
    """A /proc/sys value on Linux (e.g. 'net/ipv4/tcp_tw_reuse'), or None elsewhere/unreadable."""
    if SYSTEM != LINUX:
        return None
    try:
        with open(os.path.join("/proc/sys", path), encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def service_port(name: str, proto: str = "tcp") -> int | None:
    """The port of a service name from the system services database, or None."""
    try:
        return socket.getservbyname(name, proto)
    except OSError:
        return None


def services_file(system: str | None = None) -> str:
    """Where the services database lives: /etc/services on POSIX, under SystemRoot on Windows."""
    if (system or SYSTEM) == WINDOWS:
        return os.path.join(os.environ.get("SystemRoot", r"C:\Windows"), "System32", "drivers", "etc", "services")
    return "/etc/services"


_service_tables: dict[str, dict[int, str] | None] = {}


def service_name(port: int, proto: str = "tcp") -> str | None:
    """The service name of a port from the system services database, or None.

    The file is parsed once per process: getservbyport() rescans it on every call (~35 us each,
    0.18 s for `probe --all` over 5000 ports). Where it cannot be read, getservbyport() answers.
    """
    if proto not in _service_tables:
        from sockdiag.portspec import parse_services

        try:
            with open(services_file(), encoding="utf-8", errors="replace") as f:
                _service_tables[proto] = parse_services(f.read(), proto)
        except OSError:
            _service_tables[proto] = None
    table = _service_tables[proto]
    if table is not None:
        return table.get(port)
    try:
        return socket.getservbyport(port, proto)
    except (OSError, OverflowError):
        return None


# --- relay (connect / listen) -------------------------------------------------------------------

def relay_selector():
    """The selector the relay loops wait with. poll(2) where it exists, because epoll refuses
    regular files (EPERM) and stdin is often a file; Windows has only select(), which takes
    sockets only (stdin is then fed through a thread, see stdio_selectable)."""
    import selectors

    if hasattr(selectors, "PollSelector"):
        return selectors.PollSelector()
    return selectors.SelectSelector()


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


# A transfer that fails with one of these lost its peer (reset, or a write after the peer left);
# Windows adds ECONNABORTED for a connection its own stack dropped.
CONNECTION_LOST = frozenset({"ECONNRESET", "EPIPE", "ECONNABORTED", "ENOTCONN", "ETIMEDOUT", "ESHUTDOWN"})

# accept() failures that concern one client or a passing shortage, never the listener itself:
# a client that reset while queued (ECONNABORTED; Linux may also pass on network errors), or
# the descriptor table / buffers being full (EMFILE, ENFILE, ENOBUFS).
ACCEPT_TRANSIENT = frozenset({"ECONNABORTED", "ECONNRESET", "EPROTO", "EPERM", "EINTR", "EMFILE", "ENFILE",
                              "ENOBUFS", "ENOMEM", "EHOSTUNREACH", "ENETUNREACH", "ENETDOWN", "ETIMEDOUT"})


def set_v6only(sock: socket.socket, v6only: bool) -> None:
    """Set IPV6_V6ONLY explicitly on an AF_INET6 listener: the default differs (off on Linux and
    macOS, on for Windows), and a dual-stack listener needs it off."""
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if v6only else 0)


# getaddrinfo() reports its own EAI_* codes (negative on Linux, positive elsewhere), not errno.
_GAI_DESCRIPTIONS = {
    "EAI_NONAME": "name or service not known",
    "EAI_AGAIN": "temporary failure in name resolution",
    "EAI_FAIL": "name server failure",
    "EAI_NODATA": "no address for this name",
    "EAI_ADDRFAMILY": "no address in the requested family",
    "EAI_FAMILY": "address family not supported",
    "EAI_SERVICE": "service not known for this socket type",
    "EAI_MEMORY": "out of memory",
    "EAI_SYSTEM": "system error",
}


def gai_error_name(code: int | None) -> str:
    """The symbolic name of a getaddrinfo() error code (socket.EAI_* as this OS defines them)."""
    for name in _GAI_DESCRIPTIONS:
        if code is not None and getattr(socket, name, None) == code:
            return name
    return f"EAI {code}"


def describe_gaierror(exc: OSError) -> str:
    """`name or service not known (EAI_NONAME)` for a socket.gaierror."""
    name = gai_error_name(exc.errno)
    return f"{_GAI_DESCRIPTIONS.get(name, 'name resolution failed')} ({name})"



# --- probe --------------------------------------------------------------------------------------

def probe_socket_type_flags() -> int:
    """Flags OR-ed into the socket type so socket() returns a non-blocking socket in one system
    call: SOCK_NONBLOCK on Linux (and the BSDs that have it); 0 elsewhere (macOS, Windows), where
    the scanner calls setblocking(False) itself. A full scan creates 65535 sockets."""
    return getattr(socket, "SOCK_NONBLOCK", 0)


def probe_poller_kind(system: str | None = None) -> str:
    """How the scanner waits on thousands of connecting sockets: epoll on Linux (O(ready) per
    wait), poll(2) on macOS and the BSDs, select() on Windows (which has no poll for sockets
    that reports refused connects reliably; WSAPoll misses them before Windows 10 2004)."""
    system = system or SYSTEM
    if system == LINUX:
        return "epoll"
    if system == WINDOWS:
        return "select"
    return "poll"


# CPython's Windows build sets FD_SETSIZE to 512, so one select() call takes at most 512 sockets.
WINDOWS_SELECT_LIMIT = 512


def probe_max_concurrency(system: str | None = None) -> int | None:
    """An OS cap on sockets in flight per scanner shard, or None: Windows' select() limit."""
    return WINDOWS_SELECT_LIMIT - 12 if (system or SYSTEM) == WINDOWS else None


def linger_rst_value(system: str | None = None) -> bytes:
    """SO_LINGER {on, 0 s}: close() then sends RST instead of FIN, so a scan leaves no TIME_WAIT
    behind. struct linger is two ints on POSIX but two u_shorts in winsock2.h."""
    import struct

    return struct.pack("HH" if (system or SYSTEM) == WINDOWS else "ii", 1, 0)


def raise_open_file_limit(wanted: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE toward `wanted` (never above the hard limit); return the
    (soft, hard) limits now in force. Windows has no such limit: (wanted, wanted)."""
    try:
        import resource
    except ImportError:  # Windows: sockets are handles, not bounded by an rlimit
        return wanted, wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = hard if hard != resource.RLIM_INFINITY else max(wanted, soft)
    target = min(wanted, ceiling)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        soft = wanted
    return soft, hard


def probe_forks(system: str | None = None) -> bool:
    """Whether the scanner may run its shards in forked processes (else threads). Linux: yes;
    connect() work then runs on every CPU without GIL hand-offs (about 20% faster than threads
    on a full loopback scan, see benchmarks/README.md). macOS: fork without exec is unsafe once
    system frameworks are loaded; Windows has no fork."""
    return (system or SYSTEM) == LINUX and hasattr(os, "fork")


def usable_cpus() -> int:
    """CPUs this process may run on: the affinity mask on Linux (containers and taskset shrink
    it), os.cpu_count() elsewhere."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


# connect_ex()/socket() failures that mean "this machine is short of something right now"
# (descriptors, ephemeral ports, buffers), not "this port is in this state": the scanner backs
# off (fewer sockets in flight) and tries the port again. Linux reports an exhausted ephemeral
# port range as EADDRNOTAVAIL on connect; macOS and Windows as EADDRINUSE/ENOBUFS.
PROBE_BACKOFF = frozenset({"EMFILE", "ENFILE", "ENOBUFS", "ENOMEM", "EADDRNOTAVAIL", "EADDRINUSE"})


# --- states -------------------------------------------------------------------------------------

def socket_table_source(system: str | None = None) -> str:
    """Where `states` reads the socket table: "procfs" or "psutil".

    Linux: "procfs", i.e. sockdiag.procnet reading /proc/net/{tcp,tcp6,udp,udp6,unix} and the
    /proc/<pid>/fd links itself. Those are the files psutil's Linux backend parses too, but its
    generic path (and its 18 ms import) took about twice as long as `ss -tanp` at 20,000 sockets;
    see benchmarks/states.py. Everywhere else (macOS, Windows, BSD) psutil is the only way.
    """
    system = system or SYSTEM
    if system == LINUX and (system != SYSTEM or os.path.exists("/proc/net/tcp")):
        return "procfs"
    return "psutil"


# Why psutil.net_connections() may raise AccessDenied, and what to do about it, per OS: macOS
# lists other processes' sockets only to root (psutil walks every process with proc_pidinfo).
SOCKET_TABLE_DENIED_HINTS = {
    DARWIN: "macOS shows other users' sockets only to root; run with sudo to see them all",
    WINDOWS: "Windows hides some processes' sockets from non-administrators; run as Administrator",
    LINUX: "run as root to see every socket's process",
}


def socket_table_denied_hint(system: str | None = None) -> str:
    """One line on why the whole socket table was refused on `system`, and the remedy."""
    return SOCKET_TABLE_DENIED_HINTS.get(system or SYSTEM, "run as root to see all sockets")



# --- bindcheck ----------------------------------------------------------------------------------

# How long TIME_WAIT lasts, for advice when the kernel does not expose the remaining time.
# Linux: TCP_TIMEWAIT_LEN in include/net/tcp.h, a fixed 60 s (tcp_fin_timeout does not change it);
# macOS: 2 * net.inet.tcp.msl (15000 ms); Windows: TcpTimedWaitDelay, 120 s by default.
TIME_WAIT_SECONDS = {LINUX: 60, DARWIN: 30, WINDOWS: 120}


def time_wait_seconds(system: str | None = None) -> int | None:
    """How long a TIME_WAIT socket lives on `system` by default, or None when unknown."""
    return TIME_WAIT_SECONDS.get(system or SYSTEM)


def bind_attempt_options(system: str | None = None) -> tuple[str, ...]:
    """The binds bindcheck tries, in order. POSIX: plain, SO_REUSEADDR (what servers set) and
    SO_REUSEPORT where it exists. Windows: SO_EXCLUSIVEADDRUSE instead, because a Windows
    SO_REUSEADDR bind would succeed on a port that is really in use (see reuseaddr_note)."""
    if (system or SYSTEM) == WINDOWS:
        return ("plain", "SO_EXCLUSIVEADDRUSE")
    return ("plain", "SO_REUSEADDR") + (("SO_REUSEPORT",) if has_reuseport(system) else ())


def set_bind_option(sock: socket.socket, option: str) -> None:
    """Set one of bind_attempt_options() on a socket about to bind ("plain" sets nothing)."""
    if option != "plain":
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, option), 1)


# What SO_REUSEADDR does to a TIME_WAIT socket in the way of a bind. Linux (inet_csk_bind_conflict):
# it passes only TIME_WAIT sockets whose own socket had SO_REUSEADDR set as well ("own"). BSD and
# macOS (in_pcbbind): the new socket's option alone passes them ("any"). Windows: TIME_WAIT rarely
# blocks a bind, and SO_REUSEADDR is no cure there (it lets a bind steal a port in use): None.
_REUSEADDR_PASSES_TIME_WAIT = {LINUX: "own", DARWIN: "any"}


def reuseaddr_passes_time_wait(system: str | None = None) -> str | None:
    """"own", "any" or None: which TIME_WAIT sockets a SO_REUSEADDR bind passes on `system`."""
    system = system or SYSTEM
    return _REUSEADDR_PASSES_TIME_WAIT.get(system, None if system == WINDOWS else "any")


def unprivileged_port_start(system: str | None = None, sysctl=None) -> int | None:
    """The lowest port an unprivileged process may bind, or None when no port is privileged.

    Linux: net.ipv4.ip_unprivileged_port_start (1024 unless changed; 0 turns the check off).
    macOS/BSD: 1024 (reserved ports 0-1023). Windows has no privileged ports. `sysctl` is the
    value of the Linux setting as text (read here when not given), for tests."""
    system = system or SYSTEM
    if system == WINDOWS:
        return None
    if system != LINUX:
        return 1024
    text = sysctl if sysctl is not None else read_sysctl("net/ipv4/ip_unprivileged_port_start")
    try:
        start = int(text) if text is not None else 1024
    except ValueError:
        start = 1024
    return start or None


def unprivileged_port_setting(system: str | None = None) -> str | None:
    """The name of the setting that moves the privileged-port limit, where there is one."""
    return "net.ipv4.ip_unprivileged_port_start" if (system or SYSTEM) == LINUX else None


def privilege_remedy(system: str | None = None) -> str:
    """How a server gets the right to bind a privileged port on `system`."""
    if (system or SYSTEM) == LINUX:
        return ("run it as root or grant the program CAP_NET_BIND_SERVICE "
                "(setcap cap_net_bind_service=+ep PROGRAM)")
    return "run it as root"


def reserved_ports_hint(system: str | None = None) -> str | None:
    """Windows refuses binds in its excluded port ranges (Hyper-V, WinNAT) with WSAEACCES;
    where to see those ranges. None elsewhere."""
    if (system or SYSTEM) == WINDOWS:
        return "netsh interface ipv4 show excludedportrange protocol=tcp"
    return None


def proc_net_tcp_texts() -> list[str]:
    """Linux only: the text of /proc/net/tcp and /proc/net/tcp6, whose `tm->when` column holds
    the TIME_WAIT timers that psutil does not expose. [] elsewhere or when unreadable."""
    if SYSTEM != LINUX:
        return []
    texts = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                texts.append(f.read())
        except OSError:
            pass
    return texts


def clock_ticks_per_second() -> int:
    """USER_HZ, the unit of /proc/net/tcp's timer column: sysconf(SC_CLK_TCK), 100 on Linux."""
    try:
        return int(os.sysconf("SC_CLK_TCK")) or 100
    except (AttributeError, ValueError, OSError):
        return 100


def host_byteorder() -> str:
    """/proc/net/tcp prints addresses as 32-bit words in host byte order: "little" or "big"."""
    return sys.byteorder
