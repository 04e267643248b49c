"""``capview completion bash|zsh|fish``: run each script in its real shell and ask it to
complete, the way the shell does when the operator presses TAB (issue 20)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from clihelp import run_cli, show


def _script(shell: str) -> str:
    cp = run_cli("completion", shell)
    assert cp.returncode == 0 and cp.stderr == "", show(cp)
    return cp.stdout


def _bash_complete(script: str, *words: str) -> list[str]:
    """COMPREPLY for the command line ``words`` (the last one being completed)."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    prog = (script + f"\nCOMP_WORDS=({quoted}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); _capview\n"
            'printf "%s\\n" "${COMPREPLY[@]}"\n')
    cp = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog], capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    return [w for w in cp.stdout.splitlines() if w]


def test_bash_completes_commands_options_and_values(tmp_path):
    script = _script("bash")
    assert sorted(_bash_complete(script, "capview", "re")) == ["release", "releases", "restart"]
    assert _bash_complete(script, "capview", "") [:3] == ["check", "release", "deploy"]
    assert _bash_complete(script, "capview", "release", "--d") == ["--dry-run"]
    assert _bash_complete(script, "capview", "deploy", "v1", "prod", "--so") == ["--source"]
    assert _bash_complete(script, "capview", "-c", "x.yaml", "pru") == ["prune"]  # a global option's value skipped
    assert _bash_complete(script, "capview", "completion", "") == ["bash", "zsh", "fish", "--help"]
    assert _bash_complete(script, "capview", "demo", "--") == ["--dir", "--headless", "--serve", "--help"]
    assert "--json" not in _bash_complete(script, "capview", "ui", "--")  # ui takes only -c
    (tmp_path / "deploy-staging.yaml").write_text("")
    assert _bash_complete(script, "capview", "-c", str(tmp_path / "deploy-st")) == [str(tmp_path / "deploy-staging.yaml")]
    assert _bash_complete(script, "capview", "release", "--wait-lock", "") == []  # a value, not an option


def test_every_command_and_option_is_in_every_script():
    from capview.cli import build_parser
    from capview.cli.completion import describe

    globals_, commands = describe(build_parser())
    for shell in ("bash", "zsh", "fish"):
        text = _script(shell)
        for c in commands:
            assert c.name in text, (shell, c.name)
            for o in c.options:
                long = [f for f in o.flags if f.startswith("--")][0]
                assert (long if shell != "fish" else f"-l {long[2:]}") in text, (shell, c.name, long)


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_loads_it_as_the_completion_of_capview(tmp_path):
    prog = (_script("zsh") + "\nprint -r -- ${_comps[capview]}\n"
            "setopt ksharrays; COMP_WORDS=(capview release --d); COMP_CWORD=2; _capview; print -r -- ${COMPREPLY[@]}\n")
    cp = subprocess.run(["zsh", "-f", "-c", prog], capture_output=True, text=True, timeout=30,
                        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert cp.returncode == 0, cp.stderr
    first, second = cp.stdout.splitlines()[:2]
    assert first == "_bash_complete -o default -F _capview", cp.stdout
    assert "--dry-run" in second.split() and "release" not in second.split(), cp.stdout  # zsh filters the prefix


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes(tmp_path):
    path = tmp_path / "capview.fish"
    path.write_text(_script("fish"))

    def complete(line: str) -> list[str]:
        cp = subprocess.run(["fish", "--no-config", "-c", f"source {path}; complete -C {line!r}"],
                            capture_output=True, text=True, timeout=30, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
        assert cp.returncode == 0, cp.stderr
        return [w.split("\t")[0] for w in cp.stdout.splitlines()]

    assert sorted(complete("capview re")) == ["release", "releases", "restart"]
    assert complete("capview release --dr") == ["--dry-run"]
    assert complete("capview completion ") == ["bash", "fish", "zsh"]
