"""The per-OS rules behind bindcheck's verdicts: TIME_WAIT and FIN_WAIT2 lengths, SO_REUSEADDR,
privileged ports."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sockdiag.core.bindverdict import BindRules

from sockdiag.platform.linux import read_sysctl
from sockdiag.platform.system import DARWIN, LINUX, SYSTEM, WINDOWS

# How long TIME_WAIT lasts, for advice when the kernel does not expose the remaining time.
# Linux: TCP_TIMEWAIT_LEN in include/net/tcp.h, a fixed 60 s (tcp_fin_timeout does not change it);
# macOS: 2 * net.inet.tcp.msl (15000 ms); Windows: TcpTimedWaitDelay, 120 s by default.
TIME_WAIT_SECONDS = {LINUX: 60, DARWIN: 30, WINDOWS: 120}


def time_wait_seconds(system: str | None = None) -> int | None:
    """How long a TIME_WAIT socket lives on `system` by default, or None when unknown."""
    return TIME_WAIT_SECONDS.get(system or SYSTEM)


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


# How long the kernel keeps an orphaned FIN_WAIT2 connection (its program closed it, the peer has
# not). Linux: net.ipv4.tcp_fin_timeout (TCP_FIN_TIMEOUT, 60 s by default). At 60 s or less the
# connection becomes a time-wait socket at once, whose /proc/net/tcp timer shows the time left;
# above, it stays a full socket for the excess first (tcp_close()). A FIN from the peer in the
# meantime turns it into TIME_WAIT. Other systems: not known here, so the verdict names no length.
FIN_TIMEOUT_SETTING = "net.ipv4.tcp_fin_timeout"
_FIN_TIMEOUT_DEFAULT = 60


def fin_wait2_seconds(system: str | None = None, sysctl=None) -> int | None:
    """The longest an orphaned FIN_WAIT2 connection lives on `system`, or None when unknown.
    `sysctl` is the Linux setting's value as text (read here when not given), for tests."""
    if (system or SYSTEM) != LINUX:
        return None
    text = sysctl if sysctl is not None else read_sysctl("net/ipv4/tcp_fin_timeout")
    try:
        seconds = int(text) if text is not None else _FIN_TIMEOUT_DEFAULT
    except ValueError:
        seconds = _FIN_TIMEOUT_DEFAULT
    return seconds


def fin_wait2_setting(system: str | None = None) -> str | None:
    """The setting that bounds an orphaned FIN_WAIT2 connection, where there is one."""
    return FIN_TIMEOUT_SETTING if (system or SYSTEM) == LINUX else None


def bind_rules(system: str | None = None, sysctl=None, fin_timeout=None) -> "BindRules":
    """The rules of `system` as the values the pure verdict code takes (core.bindverdict).
    `sysctl` / `fin_timeout`: the Linux ip_unprivileged_port_start / tcp_fin_timeout text, for tests."""
    # Imported here, not at the top: the facade imports this module for every command, and the
    # verdict module (typing, textwrap, render) costs ~20 ms of start-up that only bindcheck needs.
    from sockdiag.core.bindverdict import BindRules

    return BindRules(time_wait_seconds=time_wait_seconds(system),
                     reuseaddr_passes_time_wait=reuseaddr_passes_time_wait(system),
                     unprivileged_start=unprivileged_port_start(system, sysctl),
                     unprivileged_setting=unprivileged_port_setting(system),
                     privilege_remedy=privilege_remedy(system),
                     reserved_ports_hint=reserved_ports_hint(system),
                     fin_wait2_seconds=fin_wait2_seconds(system, fin_timeout),
                     fin_wait2_setting=fin_wait2_setting(system))
