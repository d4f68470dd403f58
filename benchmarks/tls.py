"""connect --tls -> listen --tls: 1 GiB over loopback TLS, against ncat --ssl and socat openssl.

A 1 GiB file on the sender's stdin, /dev/null on the receiver's stdout, through
`sockdiag connect --tls` -> `sockdiag listen --tls`, `ncat --ssl` -> `ncat --ssl -l` and `socat -u`
with openssl addresses, alternating, median of RUNS. All three use the same certificate (EC P-256,
made here) and verify nothing, so the ciphers match (TLS 1.3, AES-256-GCM on all of them with
OpenSSL 3). Timed from starting the sender until both ends have exited. Bar: sockdiag at least
as fast as ncat --ssl. Also printed: the TLS version and cipher each pair negotiated (from
sockdiag -v), whether every transfer exited 0 (some ncat builds fail on bulk TLS input with
"Input/output error"; that run then counts as failed, not as fast), and the bytes each pair
delivered in one more, untimed transfer. ncat's one-way mode (--send-only -> --recv-only) exits 0
where its default mode fails, so it stands for ncat's speed when the default mode fails.

Linux only (readiness is read from /proc/net/tcp).
Usage: python benchmarks/tls.py [RUNS] [--size MIB]   (--smoke: 64 MiB, one run)
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from _bench import ROOT, have, median, ratio, sockdiag_argv, table
from relay import MIB, Measured, free_port, wait_listening

sys.path.insert(0, str(ROOT))


def make_data(directory: str, size_mib: int) -> Path:
    """`size_mib` MiB: one seeded random MiB repeated, read once into the page cache."""
    path = Path(directory) / "tls-data.bin"
    block = random.Random(3).randbytes(MIB)
    with open(path, "wb") as out:
        out.writelines(block for _ in range(size_mib))
    with open(path, "rb") as warm:
        while warm.read(16 * MIB):
            pass
    return path


def make_cert(directory: str) -> tuple[str, str]:
    from sockdiag.net.selfsigned import generate

    cert_pem, key_pem = generate(["localhost", "127.0.0.1"])
    cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    os.chmod(key, 0o600)
    return str(cert), str(key)


def commands(port: int, cert: str, key: str) -> dict[str, tuple[list[str], list[str]]]:
    sd, p = sockdiag_argv(), str(port)
    out = {"sockdiag --tls": (sd + ["listen", "--tls", "--cert", cert, "--key", key, "-b", "127.0.0.1", p],
                              sd + ["connect", "--insecure", "127.0.0.1", p])}
    if have("ncat"):
        out["ncat --ssl"] = (["ncat", "--ssl", "--ssl-cert", cert, "--ssl-key", key, "-l", "127.0.0.1", p],
                             ["ncat", "--ssl", "127.0.0.1", p])
        # ncat 7.93 ends a bulk TLS transfer with "Input/output error" in its default mode; one-way
        # mode exits 0, so it gives ncat's speed (the byte count below says what it delivered)
        out["ncat --ssl one-way"] = (
            ["ncat", "--ssl", "--recv-only", "--ssl-cert", cert, "--ssl-key", key, "-l", "127.0.0.1", p],
            ["ncat", "--ssl", "--send-only", "127.0.0.1", p])
    if have("socat"):
        out["socat -u openssl"] = (
            ["socat", "-u", f"OPENSSL-LISTEN:{p},bind=127.0.0.1,reuseaddr,cert={cert},key={key},verify=0", "STDOUT"],
            ["socat", "-u", "STDIN", f"OPENSSL-CONNECT:127.0.0.1:{p},verify=0"])
    return out


def transfer_once(listen_argv, connect_argv, data: Path, port: int) -> tuple[float, bool]:
    import time

    listener = Measured(listen_argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, listener.proc)
    with open(data, "rb") as source:
        start = time.perf_counter()
        sender = Measured(connect_argv, stdin=source, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sender_status, _ = sender.wait(600)
        listener_status, _ = listener.wait(600)
        elapsed = time.perf_counter() - start
    return elapsed, sender_status == 0 and listener_status == 0


def delivered(listen_argv, connect_argv, data: Path, port: int) -> int:
    """Bytes the listener wrote to its stdout in one (untimed) transfer: is the tool byte-exact?"""
    listener = subprocess.Popen(listen_argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, listener)
        with open(data, "rb") as source:
            sender = subprocess.Popen(connect_argv, stdin=source, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            total = 0
            while chunk := listener.stdout.read(4 * MIB):
                total += len(chunk)
            sender.wait(600)
        return total
    finally:
        listener.stdout.close()
        listener.wait(600)


def negotiated(port: int, cert: str, key: str) -> str:
    """What sockdiag's pair negotiates, from connect -v (one tiny transfer)."""
    sd, p = sockdiag_argv(), str(port)
    listener = subprocess.Popen(sd + ["listen", "--tls", "--cert", cert, "--key", key, "-b", "127.0.0.1", p],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, listener)
        done = subprocess.run(sd + ["connect", "-v", "--insecure", "127.0.0.1", p], input=b"x",
                              capture_output=True, timeout=30, check=False)
        lines = [line for line in done.stderr.decode().splitlines() if "cipher" in line]
        return lines[0].removeprefix("sockdiag: ") if lines else "unknown"
    finally:
        listener.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", type=int, default=5)
    parser.add_argument("--size", type=int, default=1024, help="MiB to send (default 1024)")
    parser.add_argument("--smoke", action="store_true", help="64 MiB, one run: does it work at all")
    options = parser.parse_args()
    runs, size = (1, 64) if options.smoke else (options.runs, options.size)
    with tempfile.TemporaryDirectory(prefix="sockdiag-bench-tls-") as tmp:
        data = make_data(tmp, size)
        cert, key = make_cert(tmp)
        port = free_port()
        print(f"sockdiag pair: {negotiated(port, cert, key)}", file=sys.stderr)
        pairs = commands(port, cert, key)
        times: dict[str, list[float]] = {name: [] for name in pairs}
        failed: dict[str, int] = {name: 0 for name in pairs}
        for _ in range(runs):
            for name, (listen_argv, connect_argv) in pairs.items():
                elapsed, ok = transfer_once(listen_argv, connect_argv, data, port)
                print(f"  {name}: {elapsed:.2f} s{'' if ok else ' (FAILED)'}", file=sys.stderr)
                (times[name] if ok else []).append(elapsed)
                failed[name] += not ok
        counts = {name: delivered(listen_argv, connect_argv, data, port)
                  for name, (listen_argv, connect_argv) in pairs.items()}
    ours = median(times["sockdiag --tls"]) if times["sockdiag --tls"] else None
    rows = []
    for name in pairs:
        m = median(times[name]) if times[name] else None
        rows.append([name, f"{m:.3f}" if m else "-", f"{size / m:,.0f}" if m else "-",
                     ratio(ours, m) if ours and m else "n/a", "ok" if not failed[name] else f"{failed[name]} failed",
                     f"{counts[name]:,} of {size * MIB:,}"])
    print(table(rows, ["connect -> listen", "median s", "MiB/s", "sockdiag time / this", "exit", "bytes delivered"]))
    ncat_runs = times.get("ncat --ssl") or times.get("ncat --ssl one-way")
    ncat = median(ncat_runs) if ncat_runs else None
    if ours and ncat:
        print(f"throughput >= ncat --ssl (speed {ncat / ours:.2f}x): {'PASS' if ours <= ncat else 'FAIL'}")
    elif "ncat --ssl" in pairs:
        print("throughput vs ncat --ssl: NOT MEASURED (every ncat run failed)")
    print(f"every sockdiag transfer exited 0: {'PASS' if not failed['sockdiag --tls'] else 'FAIL'}")
    print(f"sockdiag delivered every byte: {'PASS' if counts['sockdiag --tls'] == size * MIB else 'FAIL'}")


if __name__ == "__main__":
    main()
