"""Messages several networking kinds share: destinations, ports, percentages, string matches.

Istio defines these once in its networking API and reuses them (a VirtualService route and a
Sidecar's egress proxy are both a `Destination`); so do we, with the rules istiod applies to
them wherever they appear. The `matchLabels` selector and policy target references shared with
the other API groups are in `meshconfig.selector`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from pydantic import Field

from meshconfig.base import CheckedModel, Location, Percent, Port, Problem
from meshconfig.networking.checks import (
    is_dns_label,
    port_name_error,
    protocol_error,
    regex_error,
    wildcard_domain_error,
)
from meshconfig.selector import LabelValue, selector_errors


class PortSelector(CheckedModel):
    """A port of the destination service, by number."""

    number: Port | None = None


class Destination(CheckedModel):
    """A service (and optionally subset and port) that traffic is sent to."""

    host: str
    subset: str | None = None
    port: PortSelector | None = None

    def problems(self) -> Iterator[Problem]:
        if self.host == "*":
            yield ("host",), "a destination host cannot be '*'"
        else:
            invalid = wildcard_domain_error(self.host)
            if invalid:
                yield ("host",), invalid
        if self.subset is not None and not is_dns_label(self.subset):
            yield ("subset",), f"invalid subset name {self.subset!r} (must be a DNS-1123 label)"
        if self.port is not None and self.port.number is None:
            yield ("port", "number"), "is required"


class Percentage(CheckedModel):
    """A fraction of traffic, 0.0 to 100.0."""

    value: Percent | None = None


class StringMatch(CheckedModel):
    """Match a string exactly, by prefix, or by RE2 regex (at most one of them)."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    def problems(self) -> Iterator[Problem]:
        chosen = [name for name in ("exact", "prefix", "regex") if getattr(self, name) is not None]
        if len(chosen) > 1:
            yield (), f"only one of exact, prefix or regex may be set, got {', '.join(chosen)}"


def string_match_problems(
    match: StringMatch | None, location: Location, allow_empty_prefix: bool = False
) -> Iterator[Problem]:
    """istiod's checks on a match used for routing: a usable prefix and a compilable regex."""
    if match is None:
        return
    if match.prefix == "" and not allow_empty_prefix:
        yield (*location, "prefix"), "prefix must not be empty"
    if match.regex is not None:
        invalid = regex_error(match.regex)
        if invalid:
            yield (*location, "regex"), invalid


def port_problems(name: str | None, protocol: str | None) -> Iterator[Problem]:
    """A service or listener port's name (a DNS label, when there is one) and protocol."""
    if name is not None:
        invalid = port_name_error(name)
        if invalid:
            yield ("name",), invalid
    invalid = protocol_error(protocol or "")
    if invalid:
        yield ("protocol",), invalid


class WorkloadSelector(CheckedModel):
    """Select workloads by labels (Sidecar, ServiceEntry): networking.v1alpha3's own selector."""

    labels: Annotated[dict[str, LabelValue], Field(max_length=256)] | None = None

    def problems(self) -> Iterator[Problem]:
        for key, reason in selector_errors(self.labels or {}):
            yield ("labels", key), reason
