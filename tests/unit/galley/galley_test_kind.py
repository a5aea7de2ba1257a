"""A kind of the tests' own, so galley's tests never depend on which Istio kinds exist yet.

`Widget` (test.pymesh.io/v1) has a required `host` and a `port` that must be 1..65535, enough
to write a valid document and an invalid one whose error names a field path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from meshconfig import Kind, kinds
from meshconfig.base import Port, SpecModel

GROUP = "test.pymesh.io"


class WidgetSpec(SpecModel):
    host: str
    port: Port = 80


WIDGET = Kind(GROUP, "Widget", "widgets", ("v1",), WidgetSpec)


@contextmanager
def widget_kind() -> Iterator[Kind]:
    """Make the mesh accept Widgets for the duration (the kinds table has no public hook)."""
    table = kinds._table()
    table[GROUP, "Widget"] = WIDGET
    try:
        yield WIDGET
    finally:
        del table[GROUP, "Widget"]


def widget(name: str, host: str = "a.example.com", port: object = 80, ns: str = "default") -> str:
    """One Widget document as YAML; pass a bad `port` for an invalid one."""
    return (
        f"apiVersion: {GROUP}/v1\nkind: Widget\n"
        f"metadata: {{name: {name}, namespace: {ns}}}\n"
        f"spec: {{host: {host}, port: {port}}}\n"
    )


def documents(*texts: str) -> str:
    return "---\n".join(texts)
