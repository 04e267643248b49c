"""``capview completion bash|zsh|fish``: completion scripts generated from the argparse parser,
so they always list exactly the commands and options ``capview --help`` does.

Install: ``eval "$(capview completion bash)"`` in ~/.bashrc, ``eval "$(capview completion zsh)"``
in ~/.zshrc, ``capview completion fish > ~/.config/fish/completions/capview.fish``.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from capview.cli.parser import build_parser

# Options whose value is a local path (completed as file names).
PATH_OPTIONS = ("--config", "--source", "--dir")


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    takes_value: bool
    help: str
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Command:
    name: str
    aliases: tuple[str, ...]
    help: str
    options: tuple[Option, ...]
    choices: tuple[str, ...] = ()  # a positional with fixed choices (completion's shell)


def _options(p: argparse.ArgumentParser) -> tuple[Option, ...]:
    out = []
    for a in p._actions:  # noqa: SLF001 -- argparse has no public listing of its actions
        if not a.option_strings or isinstance(a, (argparse._HelpAction, argparse._VersionAction)):  # noqa: SLF001
            continue
        out.append(Option(tuple(a.option_strings), a.nargs != 0, (a.help or "").replace("%%", "%"),
                          tuple(a.choices or ())))
    return tuple(out)


def describe(parser: argparse.ArgumentParser) -> tuple[tuple[Option, ...], tuple[Command, ...]]:
    """(global options, commands) of the capview parser."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    helps = {c.dest: c.help or "" for c in sub._choices_actions}  # noqa: SLF001
    seen: dict[int, Command] = {}
    for name, p in sub.choices.items():
        if id(p) in seen:
            continue
        aliases = tuple(n for n, q in sub.choices.items() if q is p and n != name)
        choices = next((tuple(a.choices) for a in p._actions  # noqa: SLF001
                        if not a.option_strings and a.choices), ())
        seen[id(p)] = Command(name, aliases, helps.get(name, ""), _options(p), choices)
    return _options(parser), tuple(seen.values())


_WORD = re.compile(r"^[A-Za-z0-9_.,{}-]+$")


def _words(words: str) -> str:
    """A word list for ``compgen -W``, double-quoted: our own option names and choices only."""
    assert all(_WORD.match(w) for w in words.split()), words
    return f'"{words}"'


def _value_flags(opts) -> list[str]:
    return sorted({f for o in opts if o.takes_value for f in o.flags})


def bash(parser: argparse.ArgumentParser) -> str:
    globals_, commands = describe(parser)
    all_opts = list(globals_) + [o for c in commands for o in c.options]
    path_flags = sorted({f for o in all_opts if set(o.flags) & set(PATH_OPTIONS) for f in o.flags})
    names = " ".join(n for c in commands for n in (c.name, *c.aliases))
    top_words = names + " " + " ".join(f for o in globals_ for f in o.flags) + " --help --version"
    cases = []
    for c in commands:
        words = " ".join(f for o in c.options for f in o.flags) + " --help"
        if c.choices:
            words = " ".join(c.choices) + " " + words
        cases.append(f"        {'|'.join((c.name, *c.aliases))}) words={_words(words)} ;;")
    return f"""# capview completion for bash: eval "$(capview completion bash)" in ~/.bashrc
_capview() {{
    local cur prev cmd words i
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    case "$prev" in
        {'|'.join(path_flags)}) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
        {'|'.join(f for f in _value_flags(all_opts) if f not in path_flags)}) COMPREPLY=(); return 0 ;;
    esac
    cmd=""
    i=1
    while [ "$i" -lt "$COMP_CWORD" ]; do
        case "${{COMP_WORDS[i]}}" in
            {'|'.join(_value_flags(all_opts))}) i=$((i+1)) ;;
            -*) ;;
            *) cmd="${{COMP_WORDS[i]}}"; break ;;
        esac
        i=$((i+1))
    done
    case "$cmd" in
        "") words={_words(top_words)} ;;
{chr(10).join(cases)}
        *) words="" ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -o default -F _capview capview
"""


def zsh(parser: argparse.ArgumentParser) -> str:
    # zsh runs the bash function through its own bashcompinit layer (ships with zsh).
    return ("# capview completion for zsh: eval \"$(capview completion zsh)\" in ~/.zshrc\n"
            "autoload -U +X compinit && compinit -u\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + bash(parser).split("\n", 1)[1])


def _fish_escape(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_option(o: Option, cond: str) -> str:
    parts = ["complete -c capview", f"-n {_fish_escape(cond)}"]
    for f in o.flags:
        parts.append(f"-l {f[2:]}" if f.startswith("--") else f"-s {f[1:]}")
    if o.takes_value:
        parts.append("-r" + (" -F" if set(o.flags) & set(PATH_OPTIONS) else ""))
        if o.choices:
            parts.append(f"-a {_fish_escape(' '.join(o.choices))}")
    if o.help:
        parts.append(f"-d {_fish_escape(o.help.split(';')[0][:80])}")
    return " ".join(parts)


def fish(parser: argparse.ArgumentParser) -> str:
    globals_, commands = describe(parser)
    names = " ".join(n for c in commands for n in (c.name, *c.aliases))
    lines = ["# capview completion for fish: capview completion fish > ~/.config/fish/completions/capview.fish",
             "complete -c capview -f"]
    lines += [_fish_option(o, "true") for o in globals_]
    for c in commands:
        lines.append(f"complete -c capview -n {_fish_escape('not __fish_seen_subcommand_from ' + names)} "
                     f"-a {c.name} -d {_fish_escape(c.help[:80])}")
        cond = "__fish_seen_subcommand_from " + " ".join((c.name, *c.aliases))
        if c.choices:
            lines.append(f"complete -c capview -n {_fish_escape(cond)} -a {_fish_escape(' '.join(c.choices))}")
        lines += [_fish_option(o, cond) for o in c.options]
    return "\n".join(lines) + "\n"


def script(shell: str) -> str:
    return {"bash": bash, "zsh": zsh, "fish": fish}[shell](build_parser())
