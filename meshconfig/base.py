"""The base of every spec model, and the small value types Istio's APIs share.

Models use Istio's JSON field names (lowerCamelCase), reject unknown fields, and check types
strictly the way the CRD schemas do (a string where an integer belongs is an error, not a
conversion). Semantic rules live beside the fields they constrain, so the error path points at
the field a person has to fix.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class SpecModel(BaseModel):
    """Base for spec models: camelCase names, unknown fields rejected, strict types, frozen."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,
        frozen=True,
    )


_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def duration_seconds(text: str) -> float:
    """Parse a Go/protobuf duration ("1.5s", "100ms", "1h30m") into seconds."""
    if not _DURATION.match(text):
        raise ValueError(f"invalid duration {text!r}: expected a number with a unit, like 1.5s")
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(
        float(number) * units[unit]
        for number, _, unit in re.findall(r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    )


def _check_duration(text: str) -> str:
    duration_seconds(text)
    return text


def _check_dns1123_label(text: str) -> str:
    if len(text) > 63 or not _DNS1123_LABEL.match(text):
        raise ValueError(
            f"{text!r} is not a valid DNS-1123 label (lowercase alphanumerics and '-', "
            "at most 63 characters, starting and ending with an alphanumeric)"
        )
    return text


Duration = Annotated[str, AfterValidator(_check_duration)]
Port = Annotated[int, Field(ge=1, le=65535)]
Percent = Annotated[float, Field(ge=0, le=100)]
DNS1123Label = Annotated[str, AfterValidator(_check_dns1123_label)]
