"""`meshctl completion bash`: shell completion, generated from meshctl's own parser.

Sourcing the output (`source <(meshctl completion bash)`) completes subcommands and each one's
flags; it is derived from the argparse definitions, so it never falls out of date.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("completion", help="print a shell completion script")
    parser.add_argument("shell", choices=["bash"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(bash_script(args.parser))  # meshctl's whole parser (`__main__` passes it)
    return 0


def bash_script(parser: argparse.ArgumentParser) -> str:
    (subparsers,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cases = []
    for name, sub in sorted(subparsers.choices.items()):
        flags = sorted(f for action in sub._actions for f in action.option_strings)
        cases.append(f'        {name}) words="{" ".join(flags)}" ;;')
    commands = " ".join(sorted(subparsers.choices))
    return "\n".join(
        [
            "_meshctl() {",
            '    local current="${COMP_WORDS[COMP_CWORD]}" words',
            '    if [ "$COMP_CWORD" -eq 1 ]; then',
            f'        COMPREPLY=($(compgen -W "{commands}" -- "$current"))',
            "        return",
            "    fi",
            '    case "${COMP_WORDS[1]}" in',
            *cases,
            '        *) words="" ;;',
            "    esac",
            '    COMPREPLY=($(compgen -W "$words" -- "$current"))',
            "}",
            "complete -o default -F _meshctl meshctl",
        ]
    )
