"""sock_diag netlink at ~20,000 TCP + a few thousand unix sockets: sockdiag's reader vs pyroute2 vs ss.

Issue 13 asks whether to keep a hand-written sock_diag parser (core/netlinkmsg.py +
platform/netlink.py) or use pyroute2's DiagSocket. Both are timed in-process on the same socket
table (pyroute2's rows turned into the same fields, so both do the same work), then each as a
fresh `python -c` process (imports included, with peak RSS), side by side with `ss -tan`,
`ss -tani` (tcp_info) and `ss -xa`.

Two helper processes hold the TCP pairs (benchmarks/states.py's holders); this process holds the
unix sockets (socketpairs plus bound ones in a temporary directory). Loopback only.

Needs pyroute2 in the venv (not a sockdiag dependency): pip install pyroute2
Usage: python benchmarks/netlink.py [ROUNDS] [PAIRS] [UNIX_PAIRS]   (defaults 10, 10000, 2000; Linux)
"""

from __future__ import annotations

import os
import resource
import socket
import sys
import tempfile
import time

from _bench import have, median, peak_rss_mib, ratio, run_timed, table
from states import start_holders, stop_holders

from sockdiag.platform import netlink



def ours_tcp(with_info: bool):
    return lambda: netlink.tcp_sockets(with_info=with_info)


def ours_unix():
    return netlink.unix_sockets()


def pyroute2_tcp(with_info: bool):
    from pyroute2.netlink.diag import DiagSocket

    def read():
        rows = []
        with DiagSocket() as ds:
            ds.bind()
            for family in (socket.AF_INET, socket.AF_INET6):
                for m in ds.get_sock_stats(family=family, extensions=2 if with_info else 0):
                    info = m.get_attr("INET_DIAG_INFO") if with_info else None
                    rows.append((m["idiag_family"], m["idiag_state"], m["idiag_src"], m["idiag_sport"],
                                 m["idiag_dst"], m["idiag_dport"], m["idiag_inode"], m["idiag_uid"],
                                 m["idiag_rqueue"], m["idiag_wqueue"],
                                 None if info is None else (info["tcpi_rtt"] / 1000, info["tcpi_snd_cwnd"],
                                                            info["tcpi_total_retrans"], info["tcpi_bytes_acked"])))
        return rows
    return read


def pyroute2_unix():
    from pyroute2.netlink.diag import UDIAG_SHOW_NAME, UDIAG_SHOW_PEER, UDIAG_SHOW_RQLEN, UDIAG_SHOW_VFS, DiagSocket

    rows = []
    with DiagSocket() as ds:
        ds.bind()
        for m in ds.get_sock_stats(family=socket.AF_UNIX,
                                   show=UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_VFS):
            rq = m.get_attr("UNIX_DIAG_RQLEN")
            rows.append((m["udiag_ino"], m["udiag_type"], m["udiag_state"], m.get_attr("UNIX_DIAG_NAME"),
                         m.get_attr("UNIX_DIAG_PEER"), rq and rq["udiag_rqueue"]))
    return rows


def hold_unix(pairs: int, directory: str) -> list[socket.socket]:
    held = []
    for _ in range(pairs):
        held += socket.socketpair()
    for i in range(200):  # some named ones too, so the name attribute is parsed
        sock = socket.socket(socket.AF_UNIX)
        held.append(sock)
        sock.bind(os.path.join(directory, f"s{i}"))
        sock.listen(1)
    return held


def timed(fn, rounds: int) -> tuple[list[float], int]:
    fn()  # warm
    times, n = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        n = len(fn())
        times.append(time.perf_counter() - start)
    return times, n


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    pairs = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    unix_pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * unix_pairs + 400)), hard))
    try:
        import pyroute2
    except ImportError:
        raise SystemExit("pip install pyroute2 (into the venv only) to run this benchmark")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"Python {sys.version.split()[0]}, pyroute2 {pyroute2.__version__}, {os.uname().release}")

    in_process = {
        "sockdiag tcp_sockets(with_info=False)": ours_tcp(False),
        "pyroute2 DiagSocket TCP, no info": pyroute2_tcp(False),
        "sockdiag tcp_sockets(with_info=True)": ours_tcp(True),
        "pyroute2 DiagSocket TCP + INET_DIAG_INFO": pyroute2_tcp(True),
        "sockdiag unix_sockets()": ours_unix,
        "pyroute2 DiagSocket unix": pyroute2_unix,
    }
    py = sys.executable
    here = os.path.dirname(os.path.abspath(__file__))
    prog = f"import sys; sys.path.insert(0, {here!r}); import netlink as b; "
    processes = {
        "python: sockdiag TCP + info": [py, "-c", "from sockdiag.platform.netlink import tcp_sockets; tcp_sockets(True)"],
        "python: pyroute2 TCP + info": [py, "-c", prog + "b.pyroute2_tcp(True)()"],
        "ss -tan": ["ss", "-tan"],
        "ss -tani": ["ss", "-tani"],
        "python: sockdiag unix": [py, "-c", "from sockdiag.platform.netlink import unix_sockets; unix_sockets()"],
        "python: pyroute2 unix": [py, "-c", prog + "b.pyroute2_unix()"],
        "ss -xa": ["ss", "-xa"],
    }
    if not have("ss"):
        processes = {k: v for k, v in processes.items() if not k.startswith("ss")}

    holders = start_holders(pairs)
    with tempfile.TemporaryDirectory(prefix="sdnl") as tmp:
        unix_held = hold_unix(unix_pairs, tmp)
        try:
            results = {name: timed(fn, rounds) for name, fn in in_process.items()}
            proc_times: dict[str, list[float]] = {name: [] for name in processes}
            for argv in processes.values():
                run_timed(argv)
            for _ in range(rounds):
                for name, argv in processes.items():
                    run = run_timed(argv)
                    if run.returncode:
                        raise SystemExit(f"{name} exited with {run.returncode}")
                    proc_times[name].append(run.seconds)
            rss = {name: peak_rss_mib(argv) for name, argv in processes.items()}
        finally:
            for sock in unix_held:
                sock.close()
            stop_holders(holders)

    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    names = list(in_process)
    rows = []
    for i in range(0, len(names), 2):
        ours, theirs = names[i], names[i + 1]
        for name in (ours, theirs):
            times, n = results[name]
            rows.append([name, str(n), f"{median(times) * 1000:.1f}",
                         ratio(median(results[ours][0]), median(times)) if name == theirs else ""])
    print(f"in-process reads, median of {rounds}")
    print(table(rows, ["reader", "sockets", "median ms", "sockdiag / pyroute2"]))

    def ref(name):
        return "ss -tani" if "TCP" in name or name.startswith("ss -t") else "ss -xa"
    rows = []
    for name, times in proc_times.items():
        r = rss[name]
        rows.append([name, f"{median(times) * 1000:.1f}", f"{r[0]:.1f}" if r else "n/a",
                     ratio(median(times), median(proc_times[ref(name)])) if ref(name) in proc_times else "n/a"])
    print(f"\nwhole processes (imports included), median of {rounds} alternating rounds")
    print(table(rows, ["command", "median ms", "peak RSS MiB", "vs ss (-tani / -xa)"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
