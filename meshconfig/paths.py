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

    Errors at the same path (one per branch of an int-or-string union, say) become one line.
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
    return [FieldError(path, " or ".join(messages)) for path, messages in by_path.items()]


def _is_internal(part: str | int) -> bool:
    # pydantic names union branches and function validators in locations; users never wrote those
    return isinstance(part, str) and (
        part.startswith("function-") or "[" in part or part in {"str", "int", "list"}
    )
