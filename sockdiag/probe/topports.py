"""--top-ports: the frequency-ordered port lists shipped in sockdiag/data/top-ports.txt."""

from __future__ import annotations

DATA_PACKAGE, DATA_FILE = "sockdiag.data", "top-ports.txt"


def parse_top_ports(text: str, proto: str) -> list[int]:
    """The `proto` ports of a top-ports text (PORT/PROTO lines, '#' comments), in file order."""
    ports: list[int] = []
    seen: set[int] = set()
    for line in text.splitlines():
        item = line.partition("#")[0].strip()
        number, _, line_proto = item.partition("/")
        if line_proto == proto and number.isdigit() and int(number) not in seen:
            seen.add(int(number))
            ports.append(int(number))
    return ports


FIRST_PORTS = 24  # how many of the most common ports a randomised scan tries first on each host


def common_ports(proto: str, count: int = FIRST_PORTS) -> list[int]:
    """The `count` most common `proto` ports, read from the head of the shipped list with a plain
    open() (no importlib.resources: every randomised scan asks, so start-up matters). [] when
    the file cannot be read: the order then stays plain random."""
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", DATA_FILE)
    suffix = "/" + proto
    found: list[int] = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                item = line.partition("#")[0].strip()
                if item.endswith(suffix) and item[:-len(suffix)].isdigit():
                    found.append(int(item[:-len(suffix)]))
                    if len(found) >= count:
                        break
    except OSError:
        return []
    return found


def read_top_ports(proto: str) -> list[int]:
    """The shipped list for "tcp" or "udp", most common first."""
    from importlib.resources import files  # lazily: only --top-ports pays for it

    return parse_top_ports(files(DATA_PACKAGE).joinpath(DATA_FILE).read_text("utf-8"), proto)


def select_ports(proto: str, count: int, among: list[int] | None = None) -> list[int]:
    """The `count` most common ports, or (as nmap does with -p and --top-ports together) the
    `count` most common of `among`; sorted, as every port list of probe."""
    ranked = read_top_ports(proto)
    if among is not None:
        allowed = set(among)
        ranked = [port for port in ranked if port in allowed]
    return sorted(ranked[:count])
