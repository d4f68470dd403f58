"""states -x: unix sockets of every type, with hostile names, read exactly (sock_diag netlink on
Linux): a name holding a newline neither forges a row nor is cut short."""

from __future__ import annotations

import json
import os
import socket

import pytest

from sockdiag.core.pathtext import unix_name_bytes
from sockdiag.platform import netlink
from tests.conftest import run_main

pytestmark = pytest.mark.skipif(not netlink.available(), reason="sock_diag netlink is Linux only")


def _rows():
    r = run_main(["states", "-x", "--pid", str(os.getpid()), "-o", "json"])
    assert r.status == 0, r.err
    return [json.loads(line) for line in r.text.splitlines()]


def test_every_type_and_hostile_names(tmp_path):
    names = {
        "stream": str(tmp_path / "a\nfake 00000000 row.sock").encode(),
        "dgram": str(tmp_path / "b\x1cc.sock").encode(),
        "seqpacket": str(tmp_path).encode() + b"/\xff\xfe.sock",
    }
    kinds = {"stream": socket.SOCK_STREAM, "dgram": socket.SOCK_DGRAM, "seqpacket": socket.SOCK_SEQPACKET}
    held = []
    try:
        for kind, name in names.items():
            sock = socket.socket(socket.AF_UNIX, kinds[kind])
            sock.bind(name)
            if kind != "dgram":
                sock.listen()
            held.append(sock)
        abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        abstract.bind(b"\0sockdiag\nforged")
        held.append(abstract)
        rows = _rows()
        by_name = {unix_name_bytes(r["local_address"]): r for r in rows if r["local_address"]}
        for kind, name in names.items():
            row = by_name[name]
            assert row["type"] == kind
            assert row["state"] == ("UNCONN" if kind == "dgram" else "LISTEN")
            assert row["pid"] == os.getpid() and isinstance(row["inode"], int)
        assert by_name[b"\0sockdiag\nforged"]["local_address"] == "@sockdiag\\x0aforged"
        assert not any("fake" in (r["local_address"] or "") and "\n" not in name.decode("utf-8", "replace")
                       for r in rows for name in [names["stream"]] if r["local_address"] != by_name[name]["local_address"])
        assert len([r for r in rows if r["local_address"] and "row.sock" in r["local_address"]]) == 1
    finally:
        for sock in held:
            sock.close()


def test_listener_queues_and_connected_pair():
    a, b = socket.socketpair()
    try:
        rows = [r for r in _rows() if r["inode"] in (os.fstat(a.fileno()).st_ino, os.fstat(b.fileno()).st_ino)]
        assert len(rows) == 2 and all(r["state"] == "ESTABLISHED" and r["type"] == "stream" for r in rows)
    finally:
        a.close()
        b.close()
