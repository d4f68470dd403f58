"""The committed man page is what the current parser generates."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import ROOT

pytest.importorskip("argparse_manpage")


def _build_module():
    spec = importlib.util.spec_from_file_location("man_build", ROOT / "man" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_man_page_is_current(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    pages = _build_module().render()
    assert pages, "no man page configured in pyproject.toml"
    for path, text in pages.items():
        assert path.read_text() == text, f"{path.name} is stale: run python man/build.py"


def test_man_page_has_required_sections():
    text = (ROOT / "man" / "sockdiag.1").read_text()
    for needle in (".SH EXIT STATUS", ".SH EXAMPLES", "sockdiag listen", "sockdiag connect", "sockdiag probe",
                   "sockdiag states", "sockdiag bindcheck", ".SH OUTPUT FORMATS"):
        assert needle in text


def _installed_page():
    """Where pip put the page: <prefix>/share/man/man1 (the wheel's data files), or None."""
    import sysconfig
    from pathlib import Path

    page = Path(sysconfig.get_path("data")) / "share" / "man" / "man1" / "sockdiag.1"
    return page if page.is_file() else None


def test_installed_man_page_is_the_generated_one(monkeypatch):
    page = _installed_page()
    if page is None:
        pytest.skip("sockdiag is not installed from a wheel here (no <prefix>/share/man/man1/sockdiag.1)")
    monkeypatch.setenv("COLUMNS", "80")
    (text,) = _build_module().render().values()
    assert page.read_text() == text, "the installed man page differs from the one the parser generates"


def test_man_finds_the_page_with_only_the_venv_bin_on_path():
    import os
    import shutil
    import subprocess
    import sysconfig

    page, man = _installed_page(), shutil.which("man")
    if page is None or man is None:
        pytest.skip("needs sockdiag installed from a wheel and man-db's `man`")
    bindir = sysconfig.get_path("scripts")
    env = {"PATH": bindir, "HOME": os.environ.get("HOME", "/")}  # only the venv's bin/, as a user's shell
    out = subprocess.run([man, "-w", "sockdiag"], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert os.path.samefile(out.stdout.strip(), page)
