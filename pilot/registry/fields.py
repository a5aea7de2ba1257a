"""Typed reads of untyped (YAML/JSON) resource fields, each failure naming the field path.

The converters read Istio resources that arrive as plain dicts and lists; this keeps the
"is it there, is it the right type, is it in range" checks and their messages in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from pilot.registry.errors import ConfigError, Source

MAX_PORT: Final = 65535
MAX_UINT32: Final = 2**32 - 1


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{type(value).__name__} {value!r}"


class Fields:
    """Reads the fields of one resource, raising `ConfigError` against its `source`."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def error(self, path: str, reason: str) -> ConfigError:
        return ConfigError(self.source, path, reason)

    def mapping(self, value: object, path: str) -> Mapping[str, object]:
        if not isinstance(value, Mapping):
            raise self.error(path, f"must be a mapping, got {_type_name(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.error(path, f"keys must be strings, got {_type_name(key)}")
        return value

    def sequence(self, value: object, path: str) -> Sequence[object]:
        if not isinstance(value, list):
            raise self.error(path, f"must be a list, got {_type_name(value)}")
        return value

    def string(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            raise self.error(path, f"must be a string, got {_type_name(value)}")
        return value

    def optional_string(self, obj: Mapping[str, object], key: str, path: str) -> str:
        """The string at `obj[key]`, or "" when absent or null."""
        value = obj.get(key)
        return "" if value is None else self.string(value, f"{path}.{key}")

    def integer(self, value: object, path: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, f"must be an integer, got {_type_name(value)}")
        if not low <= value <= high:
            raise self.error(path, f"must be between {low} and {high}, got {value}")
        return value

    def port(self, value: object, path: str) -> int:
        return self.integer(value, path, 1, MAX_PORT)

    def string_map(self, value: object, path: str) -> dict[str, str]:
        """A `map<string, string>` such as labels; null means empty."""
        if value is None:
            return {}
        return {
            key: self.string(item, f"{path}.{key}")
            for key, item in self.mapping(value, path).items()
        }

    def port_map(self, value: object, path: str) -> dict[str, int]:
        """A `map<string, port>` such as a workload's named ports; null means empty."""
        if value is None:
            return {}
        return {
            key: self.port(item, f"{path}.{key}") for key, item in self.mapping(value, path).items()
        }
