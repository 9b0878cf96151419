"""Shell completion for bash and zsh, generated from the argument parser: commands and their
options; unit names come from the running daemon (`synsup units`)."""

from __future__ import annotations

import argparse

UNIT_COMMANDS = ("status", "restart", "stop", "start", "logs")

BASH = """# synsup completion for bash: source <(synsup completion bash)
_synsup() {
    local cur prev cmd
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    cmd="${COMP_WORDS[1]}"
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "%(commands)s" -- "$cur")); return
    fi
    case "$prev" in
        %(file_options)s)
            COMPREPLY=($(compgen -f -- "$cur")); return;;
    esac
    case "$cur" in
        -*) case "$cmd" in
%(options)s
            esac; return;;
    esac
    case "$cmd" in
        %(unit_commands)s) COMPREPLY=($(compgen -W "$(synsup units 2>/dev/null)" -- "$cur"));;
    esac
}
complete -o default -F _synsup synsup
"""

ZSH = """#compdef synsup
# synsup completion for zsh: source <(synsup completion zsh)
_synsup_units() { compadd -- ${(f)"$(synsup units 2>/dev/null)"} }
_synsup() {
    local -a commands
    commands=(%(described)s)
    if (( CURRENT == 2 )); then
        _describe 'command' commands; return
    fi
    case "$words[2]" in
%(zsh_options)s
    esac
}
compdef _synsup synsup
"""


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


FILE_METAVARS = frozenset({"PATH", "DIR", "FILE"})


def _file_options(commands: dict[str, argparse.ArgumentParser]) -> list[str]:
    """Options, of any command, that take a path (metavar PATH, DIR or FILE): completed with files."""
    return sorted({o for p in commands.values() for a in p._actions
                   if a.metavar in FILE_METAVARS for o in a.option_strings})


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(o for a in parser._actions for o in a.option_strings if o.startswith("--"))


def _help(parser: argparse.ArgumentParser, name: str) -> str:
    text = (parser.description or name).replace("'", "").replace(":", " -")
    return f"'{name}:{text}'"


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    commands = _subparsers(parser)
    if shell == "bash":
        options = "\n".join(f'                {name}) COMPREPLY=($(compgen -W "{" ".join(_options(p))}" -- "$cur"));;'
                            for name, p in commands.items())
        return BASH % {"commands": " ".join(commands), "options": options,
                       "file_options": "|".join(_file_options(commands)),
                       "unit_commands": "|".join(UNIT_COMMANDS)}
    zsh_options = "\n".join(
        f"        {name}) _arguments {repr('*:unit:_synsup_units' if name in UNIT_COMMANDS else '*:file:_files')} "
        f"{' '.join(repr(o) for o in _options(p))};;" for name, p in commands.items())
    return ZSH % {"described": " ".join(_help(p, n) for n, p in commands.items()), "zsh_options": zsh_options}
