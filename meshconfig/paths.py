"""Field paths in Kubernetes style (`spec.http[0].route[1].weight`) from pydantic locations."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import ValidationError

from meshconfig.errors import FieldError


def format_path(location: Iterable[str | int], prefix: str = "") -> str:
    path = prefix
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not path:
            path = part
        else:
            path += f".{part}"
    return path


def field_errors(error: ValidationError, prefix: str) -> list[FieldError]:
    """Every error of a pydantic validation, with its path under `prefix` ("spec").

    Errors at the same path (one per branch of an int-or-string union, say) become one line,
    which names the types once: "Input should be a valid integer or string".
    """
    by_path: dict[str, list[str]] = {}
    for item in error.errors(include_url=False):
        location = [part for part in item["loc"] if not _is_internal(part)]
        message = item["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        messages = by_path.setdefault(format_path(location, prefix), [])
        if message not in messages:
            messages.append(message)
    return [FieldError(path, _merged(messages)) for path, messages in by_path.items()]


_VALID = "Input should be a valid "


def _merged(messages: list[str]) -> str:
    """Several messages at one path as one: "Input should be a valid integer or string"."""
    types = [_type_named(m) for m in messages if m.startswith(_VALID)]
    if len(types) > 1:
        first = next(index for index, m in enumerate(messages) if m.startswith(_VALID))
        messages = [m for m in messages if not m.startswith(_VALID)]
        messages.insert(first, _VALID + ", ".join(types[:-1]) + " or " + types[-1])
    return " or ".join(messages)


def _type_named(message: str) -> str:
    """The type a type message names; a detail after a comma goes in parentheses.

    "Input should be a valid integer, got a number with a fractional part" names
    "integer (got a number with a fractional part)".
    """
    name, _, detail = message.removeprefix(_VALID).partition(", ")
    return f"{name} ({detail})" if detail else name


_SCALAR_BRANCHES = frozenset({"str", "int", "float", "bool", "list"})


def _is_internal(part: str | int) -> bool:
    # pydantic names union branches and function validators in locations; users never wrote those
    return isinstance(part, str) and (
        part.startswith("function-") or "[" in part or part in _SCALAR_BRANCHES
    )
