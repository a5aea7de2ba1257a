"""`meshctl analyze`: find configuration problems across resources, like `istioctl analyze`.

It analyzes YAML/JSON files and directories (recursively; kinds the mesh does not know are
skipped, so whole manifest trees can be given), the configuration a running galley distributes
(`--galley HOST:PORT`, read over galley's xDS API with a bounded wait), or both, files overriding
galley's resources of the same name as if they had been applied. Exit codes follow istioctl where
it has one: 79 when a message reaches `--failure-threshold` (in every output format); otherwise 2
for usage errors and inputs that cannot be read or parsed; 0 when clean.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import yaml

from galley.analysis import Level, Message, analyze, validate_all
from galley.client import ConfigClient
from meshconfig import ConfigValidationError, Resource, all_kinds, load_documents

EXIT_ISSUES = 79  # istioctl's ExitAnalyzerFoundIssues
EXIT_INPUT = 2
SUFFIXES = frozenset({".yaml", ".yml", ".json"})
REFERENCE = "https://istio.io/latest/docs/reference/config/analysis"


class InputError(Exception):
    """An input that cannot be analyzed at all (a missing path, an unreachable galley)."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="analyze mesh configuration and print validation messages",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="*", type=Path, metavar="PATH", help="YAML/JSON file or directory"
    )
    parser.add_argument(
        "--galley", type=_address, metavar="HOST:PORT", help="analyze a running galley's config"
    )
    parser.add_argument("-o", "--output", choices=("log", "json", "yaml"), default="log")
    parser.add_argument(
        "--failure-threshold",
        type=_level,
        default=Level.ERROR,
        metavar="LEVEL",
        help="lowest level that makes the exit code 79: Info, Warning or Error (default Error)",
    )
    parser.add_argument(
        "--output-threshold",
        type=_level,
        default=Level.INFO,
        metavar="LEVEL",
        help="lowest level of the messages printed (default Info)",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for galley (default 10)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not args.paths and args.galley is None:
        _error("give files or directories to analyze, or --galley HOST:PORT")
        return EXIT_INPUT
    try:
        files = gather(args.paths)
        deadline = time.monotonic() + args.timeout
        served = asyncio.run(from_galley(args.galley, deadline)) if args.galley else []
    except InputError as error:
        _error(str(error))
        return EXIT_INPUT
    documents, unreadable = read(files)
    for problem in unreadable:
        _error(problem)
    accepted, rejected = validate_all(documents)
    messages = analyze([*served, *accepted], rejected)
    shown = [message for message in messages if message.level >= args.output_threshold]
    if shown or args.output != "log":
        print(render(shown, args.output))
    target = _target(args)
    if not shown:
        if unreadable:
            count = f"{len(unreadable)} file{'s' if len(unreadable) > 1 else ''}"
            print(
                f"No validation issues found when analyzing {target} (but {count} could not be "
                "read).",
                file=sys.stderr,
            )
        else:
            print(f"\u2714 No validation issues found when analyzing {target}.", file=sys.stderr)
    if any(message.level >= args.failure_threshold for message in messages):
        _error(
            f"Analyzers found issues when analyzing {target}.\n"
            f"See {REFERENCE} for more information about causes and resolutions."
        )
        return EXIT_ISSUES
    return EXIT_INPUT if unreadable else 0


def gather(paths: Sequence[Path]) -> list[Path]:
    """The files to read: each file given, and every YAML/JSON file under each directory."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                found
                for found in sorted(path.rglob("*"))
                if found.suffix in SUFFIXES
                and found.is_file()
                and not any(part.startswith(".") for part in found.relative_to(path).parts)
            )
        elif path.is_file():
            if path.suffix in SUFFIXES:
                files.append(path)
            else:
                print(f"Skipping file {path}: not .yaml, .yml or .json", file=sys.stderr)
        else:
            raise InputError(f"{path}: no such file or directory")
    return files


def read(files: Sequence[Path]) -> tuple[list[tuple[Mapping[str, Any], str]], list[str]]:
    """Every document with its file, and a problem line for each file that could not be read."""
    documents: list[tuple[Mapping[str, Any], str]] = []
    problems: list[str] = []
    for file in files:
        origin = str(file)
        try:
            text = file.read_text(encoding="utf-8")
            documents.extend((document, origin) for document in load_documents(text, origin))
        except (OSError, UnicodeDecodeError) as error:
            problems.append(f"{origin}: cannot read: {error}")
        except ConfigValidationError as error:
            problems.append(str(error))
    return documents, problems


async def from_galley(address: str, deadline: float) -> list[Resource]:
    """Every resource galley at `address` distributes, or InputError by `deadline` (monotonic)."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                await channel.channel_ready()
        except TimeoutError:
            raise InputError(f"cannot connect to galley at {address} (is it running?)") from None
    client = ConfigClient(address, all_kinds(), lambda kind, resources: None, node_id="meshctl~0")
    task = asyncio.create_task(client.run())
    try:
        async with asyncio.timeout(deadline - time.monotonic()):
            await client.synced.wait()
    except TimeoutError:
        raise InputError(f"galley at {address} did not send its configuration in time") from None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return [resource for resources in client.current().values() for resource in resources]


def render(messages: Sequence[Message], output: str) -> str:
    if output == "json":
        return json.dumps([message.to_dict() for message in messages], indent=2)
    if output == "yaml":
        dumped: str = yaml.safe_dump(
            [message.to_dict() for message in messages], sort_keys=False, allow_unicode=True
        )
        return dumped.rstrip("\n")
    return "\n".join(str(message) for message in messages)


def _target(args: argparse.Namespace) -> str:
    parts = [f"galley at {args.galley}"] if args.galley else []
    parts.extend(str(path) for path in args.paths)
    return ", ".join(parts)


def _error(text: str) -> None:
    print(f"Error: {text}", file=sys.stderr)


def _address(text: str) -> str:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return text


def _level(text: str) -> Level:
    try:
        return Level.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
