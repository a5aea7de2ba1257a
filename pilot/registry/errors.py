"""The one error a registry raises for bad input, saying exactly where and why.

A user with a directory of YAML must be able to fix a mistake from the message alone, so every
error names the file, the resource (kind namespace/name), the field path and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Source:
    """Where a resource came from: a file, and the resource within it once known."""

    file: str
    kind: str = ""
    namespace: str = ""
    name: str = ""

    def __str__(self) -> str:
        if not self.kind:
            return self.file
        return f"{self.file}: {self.kind} {self.namespace}/{self.name}"


class ConfigError(ValueError):
    """Invalid registry input; the message reads `<file>: <kind> <ns>/<name>: <field>: <reason>`."""

    def __init__(self, source: Source, field: str, reason: str) -> None:
        self.source = source
        self.field = field
        self.reason = reason
        where = f"{source}: {field}" if field else str(source)
        super().__init__(f"{where}: {reason}")
