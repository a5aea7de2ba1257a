"""`meshctl`: parse the command line and dispatch to the subcommand's module.

A subcommand module provides `register(subparsers)`, which adds its parser and sets `run` to a
function from the parsed arguments to an exit code. Usage errors exit with argparse's 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from meshctl import analyze, completion, config, kube_inject, local, proxies, version

SUBCOMMANDS = (analyze, local, proxies, config, version, kube_inject, completion)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshctl", description="Operate the mesh.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(subparsers)
    parser.set_defaults(parser=parser)  # for commands that describe meshctl itself
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # usage errors and --help; argparse has printed why
        return exit_.code if isinstance(exit_.code, int) else 2
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
