"""`chatops completion bash`, sourced by a real bash: the commands and their options
complete as a user types them."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from chatops import cli


def _script(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(["completion", shell]) == 0
    return capsys.readouterr().out


def _complete(script: str, *words: str) -> list[str]:
    bash = shutil.which("bash")
    assert bash, "bash is part of every machine the suite runs on"
    line = " ".join(("chatops", *words))
    program = (
        f'{script}\nCOMP_WORDS=(chatops {" ".join(words)}); COMP_CWORD={len(words)}; '
        f'COMP_LINE="{line}"; COMP_POINT={len(line)}; _shtab_chatops; '
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run([bash, "-c", program], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_bash_completes_the_commands_and_their_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = _script("bash", capsys)
    assert _complete(script, "pro") == ["promote"]
    assert _complete(script, "restore-") == ["restore-points"]
    assert {"status", "abort", "retry", "backups", "backup-now", "completion"} <= set(
        _complete(script, "")
    )
    assert {"--watch", "--namespace"} <= set(_complete(script, "status", "--"))
    assert "--full" in _complete(script, "promote", "--")
    assert _complete(script, "doc") == ["doctor"]
    assert {"--output", "--require", "--backup-max-age", "--all-namespaces"} <= set(
        _complete(script, "doctor", "--")
    )
    assert "release" in _complete(script, "get", "")
    assert {"--watch", "--until-done", "--no-color"} <= set(
        _complete(script, "get", "release", "chat", "--")
    )


@pytest.mark.parametrize("shell", ["zsh", "tcsh"])
def test_the_other_shells_get_a_script_naming_every_command(
    shell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    script = _script(shell, capsys)
    for command in ("promote", "abort", "retry", "status", "backups", "restore-points", "doctor"):
        assert command in script


def test_an_unknown_shell_is_refused_with_the_choices() -> None:
    done = subprocess.run([sys.executable, "-m", "chatops.cli", "completion", "fish"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "invalid choice: 'fish'" in done.stderr and "bash" in done.stderr
