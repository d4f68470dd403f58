"""Every operating-system difference sockdiag cares about, behind one facade.

Other modules never test sys.platform / os.name themselves; they ask here (`from sockdiag import
platform; platform.errno_name(code)`). One module per concern, each with the reason for every
difference next to it:

  system    which OS this is (the only place sys.platform is read)
  errnos    errno / getaddrinfo codes by symbolic name, per OS; OSError -> one-line SockdiagError
  sockopts  address reuse, dual stack, SO_LINGER, bindcheck's bind variants
  services  the services database
  stdio     how the relay waits, copies (zero-copy on Linux) and runs --exec children
  scan      what the scanner may use: non-blocking sockets, poller, forks, file limits
  bindrules TIME_WAIT length, SO_REUSEADDR semantics, privileged ports (core.bindverdict's BindRules)
  linux     /proc/sys values and /proc/net/tcp text (None / [] elsewhere)

The socket table readers are modules of their own, imported where needed (not re-exported here,
so that importing the facade stays cheap): `platform.socktable` (the OS switch, psutil) and
`platform.procnet` (Linux /proc). Functions take an optional `system` ("linux", "darwin",
"win32") so tests can emulate the other platforms' values.
"""

from __future__ import annotations

from sockdiag.platform.bindrules import (TIME_WAIT_SECONDS, bind_rules, privilege_remedy, reserved_ports_hint,
                                         reuseaddr_passes_time_wait, time_wait_seconds, unprivileged_port_setting,
                                         unprivileged_port_start)
from sockdiag.platform.errnos import (ACCEPT_TRANSIENT, CONNECTION_LOST, IN_PROGRESS, UNREACHABLE, connect_in_progress,
                                      describe, describe_gaierror, errno_code, errno_is, errno_name, from_oserror,
                                      gai_error_name)
from sockdiag.platform.linux import clock_ticks_per_second, host_byteorder, proc_net_tcp_texts, read_sysctl
from sockdiag.platform.scan import (PROBE_BACKOFF, WINDOWS_SELECT_LIMIT, probe_forks, probe_max_concurrency,
                                    probe_poller_kind, probe_reuses_refused_sockets, probe_socket_type_flags,
                                    raise_open_file_limit, usable_cpus)
from sockdiag.platform.services import service_name, service_port, services_file
from sockdiag.platform.sockopts import (REUSEADDR_NOTES, abstract_unix_supported, bind_attempt_options, dualstack_supported, has_reuseport,
                                        linger_rst_value, reuseaddr_note, server_reuse_option, set_bind_option,
                                        set_server_reuse, set_v6only, unix_sockets_supported, v6only_default)
from sockdiag.platform.stdio import (RELAY_PIPE_SIZE, child_group_options, enlarge_pipe, group_alive, poll_supported,
                                     relay_selector, shell_argv, signal_group, socket_as_stdio, split_command,
                                     stdio_selectable, termination_signals, zero_copy_supported)
from sockdiag.platform.system import DARWIN, LINUX, SYSTEM, WINDOWS, current_system

__all__ = [
    "abstract_unix_supported", "unix_sockets_supported",
    "ACCEPT_TRANSIENT", "CONNECTION_LOST", "DARWIN", "IN_PROGRESS", "LINUX", "PROBE_BACKOFF", "RELAY_PIPE_SIZE",
    "REUSEADDR_NOTES", "SYSTEM", "TIME_WAIT_SECONDS", "UNREACHABLE", "WINDOWS", "WINDOWS_SELECT_LIMIT",
    "bind_attempt_options", "bind_rules", "child_group_options", "group_alive", "signal_group",
    "termination_signals", "clock_ticks_per_second", "connect_in_progress", "current_system",
    "describe", "describe_gaierror", "dualstack_supported", "enlarge_pipe", "errno_code", "errno_is", "errno_name",
    "from_oserror", "gai_error_name", "has_reuseport", "host_byteorder", "linger_rst_value", "privilege_remedy",
    "poll_supported", "probe_forks", "probe_max_concurrency", "probe_poller_kind", "probe_reuses_refused_sockets",
    "probe_socket_type_flags", "proc_net_tcp_texts",
    "raise_open_file_limit", "read_sysctl", "relay_selector", "reserved_ports_hint", "reuseaddr_note",
    "reuseaddr_passes_time_wait", "server_reuse_option", "service_name", "service_port", "services_file",
    "set_bind_option", "set_server_reuse", "set_v6only", "shell_argv", "socket_as_stdio", "split_command",
    "stdio_selectable", "time_wait_seconds", "unprivileged_port_setting", "unprivileged_port_start", "usable_cpus",
    "v6only_default", "zero_copy_supported",
]
