"""Analyzer that turns validation failures into messages (IST0106), one per field error.

A resource the mesh would refuse still belongs in the report, with the field path a person has
to fix; it takes no part in the other analyzers, as it would take no part in the mesh.
"""

from __future__ import annotations

from collections.abc import Iterator

from galley.analysis.context import Context
from galley.analysis.messages import SCHEMA_VALIDATION_ERROR, Message


def schema_errors(context: Context) -> Iterator[Message]:
    """IST0106: every field error of every rejected document."""
    for rejected in context.rejected:
        for error in rejected.errors:
            yield SCHEMA_VALIDATION_ERROR.about(rejected.resource, rejected.source, error)
