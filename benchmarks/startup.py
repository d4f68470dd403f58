"""CLI start-up: `sockdiag --version` vs a bare `python -c pass`, alternating, median of N runs.

Bar (issue 2): within 1.5x of `python -c pass`.  Usage: python benchmarks/startup.py [RUNS]
"""

from __future__ import annotations

import sys

from _bench import median, ratio, run_timed, sockdiag_argv, table


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "sockdiag --version": sockdiag_argv() + ["--version"],
        "python -m sockdiag --version": [sys.executable, "-m", "sockdiag", "--version"],
        "sockdiag --help": sockdiag_argv() + ["--help"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for name, argv in commands.items():  # warm the page cache and .pyc files
        run_timed(argv)
    for _ in range(runs):
        for name, argv in commands.items():
            result = run_timed(argv)
            assert result.returncode == 0, name
            times[name].append(result.seconds)
    base = median(times["python -c pass"])
    rows = [[name, f"{median(t) * 1000:.1f}", ratio(median(t), base)] for name, t in times.items()]
    print(f"start-up, median of {runs} alternating runs, Python {sys.version.split()[0]}")
    print(table(rows, ["command", "median ms", "vs python -c pass"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
