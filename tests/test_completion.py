"""--print-completion bash|zsh: generated from the parser (shtab), so it cannot drift from the options."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from sockdiag import cli
from tests.conftest import run_main


def _options_of(command: str) -> set[str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return {opt for action in sub.choices[command]._actions for opt in action.option_strings if opt.startswith("--")}


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_script_names_every_command_and_option(shell):
    r = run_main(["--print-completion", shell])
    assert r.status == 0 and r.err == ""
    script = r.text
    for command in cli.COMMANDS:
        assert command in script
        for option in _options_of(command) - {"--help"}:
            assert option in script, f"{shell} completion lacks {command} {option}"


def test_unknown_shell_is_a_usage_error():
    r = run_main(["--print-completion", "fish"])
    assert r.status == 2 and "invalid choice" in r.err


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_loads_the_script_and_completes_a_command():
    script = run_main(["--print-completion", "bash"]).text
    probe = script + "\nCOMP_WORDS=(sockdiag pro); COMP_CWORD=1; COMP_LINE='sockdiag pro'; COMP_POINT=12\n" \
                     "_shtab_sockdiag sockdiag pro sockdiag 2>/dev/null; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "probe" in out.stdout.split()
