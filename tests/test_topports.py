"""--top-ports: the shipped list (sockdiag/data/top-ports.txt), its header, the loader, the option."""

from __future__ import annotations

import json
from importlib.resources import files

import pytest

from sockdiag.probe.topports import (
    DATA_FILE,
    DATA_PACKAGE,
    parse_top_ports,
    read_top_ports,
    select_ports,
)
from tests.conftest import run_main

TEXT = files(DATA_PACKAGE).joinpath(DATA_FILE).read_text("utf-8")


def test_header_names_source_licence_and_how_the_order_was_made():
    header = "\n".join(line for line in TEXT.splitlines()[:20] if line.startswith("#"))
    assert "Licence: MIT" in header
    assert "IANA Service Name and Transport Protocol" in header and "Port Number Registry" in header
    assert "NOT derived from nmap's nmap-services" in header
    assert "hand-ordered" in header and "NUMERIC order, not by frequency" in header


@pytest.mark.parametrize("proto, head", [("tcp", [80, 443, 22]), ("udp", [53, 123, 161])])
def test_lists_are_long_unique_and_start_with_the_commonest(proto, head):
    ports = read_top_ports(proto)
    assert len(ports) >= 1000 and len(set(ports)) == len(ports)
    assert all(1 <= port <= 65535 for port in ports)
    assert ports[:3] == head


def test_parse_ignores_comments_other_protocols_and_repeats():
    text = "# head\n80/tcp\n53/udp # dns\n\n443/tcp\n80/tcp\nbogus\n"
    assert parse_top_ports(text, "tcp") == [80, 443]
    assert parse_top_ports(text, "udp") == [53]


def test_select_first_n_and_among_given_ports():
    ranked = read_top_ports("tcp")
    assert select_ports("tcp", 10) == sorted(ranked[:10])
    among = [1, 2, 3, 22, 443, 8080]
    assert select_ports("tcp", 2, among) == sorted([p for p in ranked if p in among][:2])
    assert len(select_ports("tcp", 65535)) == len(ranked)


def test_top_ports_option_scans_the_first_n():
    r = run_main(["probe", "-a", "-o", "json", "--top-ports", "10", "127.0.0.1"])
    assert sorted(json.loads(line)["port"] for line in r.text.splitlines()) == sorted(read_top_ports("tcp")[:10])


def test_top_ports_with_ports_takes_the_commonest_of_them_and_exclude_ports():
    r = run_main(["probe", "-a", "--top-ports", "2", "--exclude-ports", "22", "127.0.0.1", "1-100"])
    wanted = [p for p in read_top_ports("tcp") if p <= 100][:2]
    assert sorted(int(line.split()[1]) for line in r.text.splitlines()) == sorted(p for p in wanted if p != 22)
    assert run_main(["probe", "--top-ports", "5", "127.0.0.1", "40000-40001"]).status == 2


def test_input_file_with_top_ports_needs_no_positional():
    r = run_main(["probe", "-a", "-iL", "-", "--top-ports", "3"], stdin=b"127.0.0.1\n")
    assert sorted(int(line.split()[1]) for line in r.text.splitlines()) == sorted(read_top_ports("tcp")[:3])
    r = run_main(["probe", "-iL", "-"], stdin=b"127.0.0.1\n")
    assert r.status == 2 and "PORTS (or --top-ports N)" in r.err
