"""PURE: probe's `-o grep` lines, in the shape of nmap's -oG (grepable) output.

    # sockdiag 0.2.0 probe scan initiated Mon Nov 30 11:09:58 2026: 20 IP addresses x 2 tcp ports
    Host: 127.0.1.5 ()	Ports: 22/open/tcp//ssh///, 80/open/tcp//http///
    # sockdiag done at Mon Nov 30 11:09:59 2026 -- 20 IP addresses (1 host with results) scanned in 0.05 seconds

One `Host:` line per host with a reported port (the states probe prints: open, and every
state with -a), its ports ascending. Each port entry has nmap's seven '/'-separated fields:
port/state/protocol/owner/service/rpc/version/; owner and rpc stay empty, version holds the
--banner text. '/' and ',' inside a field are written as \\x2f and \\x2c, so that
`cut -d/ -f1` and a split at ', ' stay safe.
"""

from __future__ import annotations

from collections.abc import Iterable

DATE_FORMAT = "%a %b %d %H:%M:%S %Y"  # nmap's (ctime's) layout: Mon Nov 30 11:09:58 2026


def field(text: str | None) -> str:
    return "" if not text else text.replace("/", "\\x2f").replace(",", "\\x2c")


def port_entry(port: int, state: str, proto: str, service: str | None, version: str | None = None) -> str:
    return f"{port}/{field(state)}/{proto}//{field(service)}//{field(version)}/"


def host_line(host: str, entries: Iterable[str]) -> str:
    return f"Host: {host} ()\tPorts: {', '.join(entries)}"


def header(version: str, date: str, addresses: int, ports: int, proto: str) -> str:
    return (f"# sockdiag {version} probe scan initiated {date}: {_plural(addresses, 'IP address', 'IP addresses')} "
            f"x {ports} {proto} port{'s' if ports != 1 else ''}")


def footer(date: str, addresses: int, hosts_shown: int, seconds: float, interrupted: bool = False) -> str:
    verb = "interrupted" if interrupted else "done"
    return (f"# sockdiag {verb} at {date} -- {_plural(addresses, 'IP address', 'IP addresses')} "
            f"({_plural(hosts_shown, 'host', 'hosts')} with results) scanned in {seconds:.2f} seconds")


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


class HostLines:
    """Collects one host's port entries (results arrive in job order: a host's rows together)
    and hands back its finished line when the next host starts, or when flushed."""

    def __init__(self):
        self.key: int | None = None  # the host being collected (its number in the scan)
        self.host = ""
        self.entries: list[str] = []
        self.shown = 0  # host lines written

    def add(self, key: int, host: str, entry: str) -> str:
        """Add a port entry; returns the previous host's line ('' while the host goes on)."""
        done = self.flush() if key != self.key else ""
        self.key, self.host = key, host
        self.entries.append(entry)
        return done

    def flush(self) -> str:
        if not self.entries:
            return ""
        line = host_line(self.host, self.entries) + "\n"
        self.key, self.entries = None, []
        self.shown += 1
        return line
