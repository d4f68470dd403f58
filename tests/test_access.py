"""--allow/--deny mean the same in every address form: IPv4, IPv4-mapped IPv6 and IPv6.

A dual-stack listener sees an IPv4 client as ::ffff:a.b.c.d. Before rules and peers were
canonicalised, `--allow 0.0.0.0/0 --deny ::ffff:127.0.0.2/128` served 127.0.0.2 (and ran
--sh-exec for it). The matrix below is ncat's documented behaviour (deny wins; with an allow
rule only the named hosts pass) applied to canonical addresses.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockdiag.core.addrset import AddressSet, canonical_address, canonical_network, split_entries
from sockdiag.core.errors import SockdiagError, UsageError
from sockdiag.core.status import ExitStatus
from sockdiag.relay.access import AccessList
from tests.conftest import has_ipv6_loopback, wait_until
from tests.test_relay_support import TIMEOUT, Proc, recv_all

V4 = "127.0.0.2"
MAPPED = "::ffff:127.0.0.2"

# The same single host, written every way a user might.
HOST_FORMS = [
    pytest.param("127.0.0.2", id="v4"),
    pytest.param("127.0.0.2/32", id="v4-cidr"),
    pytest.param("::ffff:127.0.0.2", id="mapped"),
    pytest.param("::ffff:127.0.0.2/128", id="mapped-cidr"),
    pytest.param("::ffff:7f00:2", id="mapped-hex"),
    pytest.param("0:0:0:0:0:ffff:7f00:0002/128", id="mapped-full"),
    pytest.param("[::ffff:127.0.0.2]", id="mapped-bracketed"),
]
# The whole loopback /8, every way.
NET_FORMS = [
    pytest.param("127.0.0.0/8", id="v4"),
    pytest.param("::ffff:127.0.0.0/104", id="mapped"),
    pytest.param("::ffff:7f00:0/104", id="mapped-hex"),
    pytest.param("0:0:0:0:0:ffff:7f00:0/104", id="mapped-full"),
]
# How the peer may arrive: on an IPv4 listener, or on a dual-stack one.
PEERS = [pytest.param(V4, id="peer-v4"), pytest.param(MAPPED, id="peer-mapped")]


def acl(allow=(), deny=(), resolve=None) -> AccessList:
    return AccessList.parse(list(allow), list(deny), resolve=resolve or (lambda name: []))


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("rule", HOST_FORMS)
def test_deny_one_host_in_any_form(rule, peer):
    rules = acl(allow=["0.0.0.0/0"], deny=[rule])
    assert not rules.permits(peer)
    assert rules.permits("127.0.0.3") and rules.permits("::ffff:127.0.0.3")


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("rule", HOST_FORMS)
def test_allow_one_host_in_any_form(rule, peer):
    rules = acl(allow=[rule])
    assert rules.permits(peer)
    assert not rules.permits("127.0.0.3") and not rules.permits("::ffff:127.0.0.3") and not rules.permits("::1")


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("rule", NET_FORMS)
def test_networks_in_any_form(rule, peer):
    assert not acl(deny=[rule]).permits(peer)
    assert acl(allow=[rule]).permits(peer)
    assert not acl(allow=[rule]).permits("10.0.0.1") and not acl(allow=[rule]).permits("::ffff:10.0.0.1")


@pytest.mark.parametrize("rule, peer, denied", [
    pytest.param("0.0.0.0/0", V4, True, id="v4-slash0-covers-v4"),
    pytest.param("0.0.0.0/0", MAPPED, True, id="v4-slash0-covers-mapped"),
    pytest.param("0.0.0.0/0", "::1", False, id="v4-slash0-not-v6"),
    pytest.param("::ffff:0:0/96", V4, True, id="mapped-slash96-is-all-v4"),
    pytest.param("::ffff:0:0/96", "::1", False, id="mapped-slash96-not-v6"),
    pytest.param("::/0", "::1", True, id="v6-slash0-covers-v6"),
    pytest.param("::/0", V4, False, id="v6-slash0-not-v4-as-ncat"),
    pytest.param("::/0", MAPPED, False, id="v6-slash0-not-mapped-either"),
    pytest.param("::1/128", "::1", True, id="v6-host"),
    pytest.param("0::1", "::1", True, id="v6-uncompressed"),
    pytest.param("0000:0000:0000:0000:0000:0000:0000:0001/128", "::1", True, id="v6-full"),
    pytest.param("::1", "127.0.0.1", False, id="v6-loopback-is-not-v4-loopback"),
    pytest.param("127.0.0.2/32", "127.0.0.3", False, id="slash32-edge"),
    pytest.param("::ffff:127.0.0.2/127", "127.0.0.3", True, id="mapped-slash127-is-v4-slash31"),
    pytest.param("fe80::1%lo", "fe80::1%2", True, id="scope-ignored"),
])
def test_boundaries(rule, peer, denied):
    assert acl(deny=[rule]).permits(peer) is not denied


def test_deny_wins_over_allow_and_empty_allow_file_admits_nobody(tmp_path):
    assert not acl(allow=["127.0.0.0/8"], deny=["::ffff:127.0.0.2"]).permits(V4)
    empty = tmp_path / "allow.txt"
    empty.write_text("# nobody yet\n")
    rules = AccessList.parse([], [], allowfiles=[str(empty)])
    assert not rules.permits("127.0.0.1")


def test_rule_files_take_comments_blank_lines_and_commas(tmp_path):
    allow = tmp_path / "allow"
    allow.write_text("# office\n127.0.0.0/30, ::1  # loopback\n\n::ffff:10.1.0.0/112\n")
    deny = tmp_path / "deny"
    deny.write_text("127.0.0.2\n")
    rules = AccessList.parse([], [], allowfiles=[str(allow)], denyfiles=[str(deny)])
    assert [rules.permits(h) for h in ("127.0.0.1", "127.0.0.2", "127.0.0.9", "::1", "10.1.2.3", "10.2.0.1")] \
        == [True, False, False, True, True, False]


def test_missing_rule_file_is_one_line_exit_1(cli, tmp_path):
    r = cli(["listen", "--allowfile", str(tmp_path / "nope"), "-b", "127.0.0.1", "0"])
    assert r.status == ExitStatus.FAILURE
    assert r.err.startswith("sockdiag listen: error: --allowfile ") and "(ENOENT)" in r.err
    assert r.err.count("\n") == 1


def test_host_names_are_resolved_once_to_every_address():
    calls = []

    def resolve(name):
        calls.append(name)
        return {"db.test": ["127.0.0.7", "::ffff:127.0.0.8", "::1"]}.get(name, [])

    rules = acl(allow=["db.test"], resolve=resolve)
    assert calls == ["db.test"]
    assert [rules.permits(h) for h in ("127.0.0.7", "::ffff:127.0.0.7", "127.0.0.8", "::1", "127.0.0.9")] \
        == [True, True, True, True, False]
    assert calls == ["db.test"]


def test_host_name_through_getaddrinfo(monkeypatch, cli):
    """Unknown names: a monkeypatched resolver, never the network."""

    def fake_getaddrinfo(name, *args, **kwargs):
        if name == "known.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.5", 0))]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    assert AccessList.parse(["known.test"], []).permits("::ffff:127.0.0.5")
    with pytest.raises(SockdiagError, match=r"resolve unknown.test: name or service not known \(EAI_NONAME\)"):
        AccessList.parse(["unknown.test"], [])


@pytest.mark.parametrize("value", ["", " ", ",", "10.0.0.0/33", "999.1.1.1", "host/24", "::gg"])
def test_bad_rules_are_usage_errors(value):
    with pytest.raises(UsageError):
        acl(allow=[value])


def test_non_ip_peers_pass_only_without_allow_rules():
    assert acl().permits("/tmp/sock")
    assert acl(deny=["127.0.0.1"]).permits("/tmp/sock")
    assert not acl(allow=["127.0.0.1"]).permits("/tmp/sock")


# --- properties ---------------------------------------------------------------------------------

@given(st.ip_addresses(v=4), st.integers(0, 32), st.ip_addresses(v=4))
def test_property_mapped_rule_equals_v4_rule(net_address, prefix, peer):
    v4_net = ipaddress.IPv4Network((net_address, prefix), strict=False)
    mapped_net = ipaddress.IPv6Network((ipaddress.IPv6Address("::ffff:" + str(v4_net.network_address)),
                                        prefix + 96))
    assert canonical_network(mapped_net) == v4_net
    mapped_peer = "::ffff:" + str(peer)
    for rule in (str(v4_net), str(mapped_net)):
        expected = peer in v4_net
        assert (str(peer) in AddressSet([ipaddress.ip_network(rule)])) is expected
        assert (mapped_peer in AddressSet([ipaddress.ip_network(rule)])) is expected


@given(st.text(max_size=40))
def test_property_rule_parser_raises_only_its_own_errors(text):
    try:
        AddressSet.parse("--allow", split_entries([text]), resolve=lambda name: ["127.0.0.1"])
    except SockdiagError:
        pass


def test_canonical_address():
    assert canonical_address("::ffff:10.0.0.1") == ipaddress.IPv4Address("10.0.0.1")
    assert canonical_address("fe80::1%eth0") == ipaddress.IPv6Address("fe80::1")
    assert canonical_address("/tmp/x") is None


# --- live: a dual-stack listener, an IPv4 client, a rule in mapped form ------------------------

def _connect_and_read(port: int, source: str, family=socket.AF_INET, target="127.0.0.1") -> bytes:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.bind((source, 0))
        sock.connect((target, port))
        sock.shutdown(socket.SHUT_WR)
        return recv_all(sock)


needs_dualstack = pytest.mark.skipif(not (has_ipv6_loopback() and socket.has_dualstack_ipv6()),
                                     reason="needs a dual-stack IPv6 loopback")


@needs_dualstack
@pytest.mark.parametrize("deny", ["::ffff:127.0.0.2/128", "127.0.0.2", "::ffff:7f00:2"])
def test_dual_stack_sh_exec_never_runs_for_a_denied_ipv4_client(deny):
    argv = ["listen", "-k", "-v", "--allow", "0.0.0.0/0", "--allow", "::1", "--deny", deny,
            "--sh-exec", "echo ran for $SOCKDIAG_REMOTE_ADDR", "0"]
    with Proc(argv) as server:
        port = server.port()
        assert _connect_and_read(port, "127.0.0.2") == b""
        wait_until(lambda: "refused connection from 127.0.0.2:" in server.stderr)
        assert _connect_and_read(port, "127.0.0.3") == b"ran for 127.0.0.3\n"
        assert _connect_and_read(port, "::1", socket.AF_INET6, "::1") == b"ran for ::1\n"
        assert server.interrupt() == ExitStatus.INTERRUPTED
    assert "ran for 127.0.0.2" not in server.stderr


@needs_dualstack
def test_dual_stack_allow_in_v4_form_admits_the_mapped_client():
    with Proc(["listen", "-k", "--echo", "-v", "--allow", "127.0.0.3", "0"]) as server:
        port = server.port()
        assert _connect_and_read(port, "127.0.0.2") == b""
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=("127.0.0.3", 0)) as s:
            s.sendall(b"hi")
            s.shutdown(socket.SHUT_WR)
            assert recv_all(s) == b"hi"
        server.interrupt()


def test_ipv4_listener_with_a_mapped_rule():
    with Proc(["listen", "-k", "--echo", "-v", "-b", "127.0.0.1", "--deny", "::ffff:127.0.0.2", "0"]) as server:
        port = server.port()
        assert _connect_and_read(port, "127.0.0.2") == b""
        wait_until(lambda: "refused connection from 127.0.0.2:" in server.stderr)
        server.interrupt()
