"""Validation errors that a person can act on: where (source, resource, field path) and why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem: `path` like `spec.http[0].route[1].weight`, `message` the reason."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigValidationError(ValueError):
    """A resource that Istio would reject; carries every field error found, not just the first."""

    def __init__(self, resource: str, errors: Sequence[FieldError], source: str = "") -> None:
        self.resource = resource  # "VirtualService default/reviews"
        self.errors = tuple(errors)
        self.source = source  # a file path, "kubernetes", "admission", ...
        prefix = f"{source}: " if source else ""
        lines = [f"{prefix}{resource}: {error}" for error in self.errors]
        super().__init__("\n".join(lines))


class UnknownKindError(ConfigValidationError):
    """The document's apiVersion/kind is not one this mesh understands."""
