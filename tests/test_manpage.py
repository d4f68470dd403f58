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
