"""Generate man/sockdiag.1 from sockdiag.cli.build_parser() with argparse-manpage.

Usage: python man/build.py            write man/sockdiag.1
       python man/build.py --check    exit 1 if the committed page is out of date

The settings live in pyproject.toml ([tool.build_manpages]); the date and version come from the
sockdiag package, so the page is the same on every machine.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def render() -> dict[Path, str]:
    """{output path: man page text} for every page configured in pyproject.toml."""
    os.environ["COLUMNS"] = "80"  # argparse wraps help text to the terminal width
    sys.path.insert(0, str(ROOT))
    from argparse_manpage.manpage import Manpage
    from build_manpages.build_manpages import parse_manpages_spec

    import sockdiag
    from sockdiag.cli import build_parser

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["build_manpages"]["manpages"]
    pages = {}
    for out, data in parse_manpages_spec("\n".join(config)).items():
        data = {key: value for key, value in data.items()
                if key not in ("import_type", "import_from", "objtype", "objname")}
        data["include"] = str(ROOT / data["include"])
        data["version"] = sockdiag.__version__
        data["date"] = sockdiag.RELEASE_DATE
        pages[ROOT / out] = str(Manpage(build_parser(), _data=data))
    return pages


def main(argv: list[str]) -> int:
    stale = []
    for path, text in render().items():
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.write_text(text)
    for path in stale:
        print(f"{path} is out of date: run python man/build.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
