"""--top-ports: the frequency-ordered port lists shipped in sockdiag/data/top-ports.txt."""

from __future__ import annotations

DATA_PACKAGE, DATA_FILE = "sockdiag.data", "top-ports.txt"  # the package data (pyproject.toml)


def parse_top_ports(text: str, proto: str) -> list[int]:
    """The `proto` ports of a top-ports text (PORT/PROTO lines, '#' comments), in file order."""
    return list(_ports(text.splitlines(), proto))


def _ports(lines, proto: str):
    """The `proto` ports of top-ports lines, in order, each once (a generator: a caller that
    wants only the head stops reading there)."""
    seen: set[int] = set()
    for line in lines:
        number, _, line_proto = line.partition("#")[0].strip().partition("/")
        if line_proto == proto and number.isdigit() and int(number) not in seen:
            seen.add(int(number))
            yield int(number)


def _data_path() -> str:
    """The shipped list's file, beside the package (a plain path: importlib.resources' import
    would cost every randomised scan, which reads the head of the list, a few ms)."""
    import os

    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", DATA_FILE)


FIRST_PORTS = 24  # how many of the most common ports a randomised scan tries first on each host


def common_ports(proto: str, count: int = FIRST_PORTS) -> list[int]:
    """The `count` most common `proto` ports: the head of the shipped list, read only that far.
    [] when the file cannot be read: the order then stays plain random."""
    from itertools import islice

    try:
        with open(_data_path(), encoding="utf-8") as f:
            return list(islice(_ports(f, proto), count))
    except OSError:
        return []


def read_top_ports(proto: str) -> list[int]:
    """The shipped list for "tcp" or "udp", most common first."""
    with open(_data_path(), encoding="utf-8") as f:
        return list(_ports(f, proto))


def select_ports(proto: str, count: int, among: list[int] | None = None) -> list[int]:
    """The `count` most common ports, or (as nmap does with -p and --top-ports together) the
    `count` most common of `among`; sorted, as every port list of probe."""
    ranked = read_top_ports(proto)
    if among is not None:
        allowed = set(among)
        ranked = [port for port in ranked if port in allowed]
    return sorted(ranked[:count])
