"""The base of every spec model, the way models report problems, and the value types they share.

Models use Istio's JSON field names (lowerCamelCase), reject unknown fields, and check types
strictly the way the CRD schemas do (a string where an integer belongs is an error, not a
conversion). Semantic rules live beside the fields they constrain, so the error path points at
the field a person has to fix: a `CheckedModel` lists the rules it breaks as (location, reason)
pairs, and each lands on its own nested field (`rules[0].from[0].source.namespaces`) rather than
on the object that owns the rule. Every API group uses this one mechanism.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

Location = tuple[str | int, ...]
Problem = tuple[Location, str]


class SpecModel(BaseModel):
    """Base for spec models: camelCase names, unknown fields rejected, strict types, frozen."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,
        frozen=True,
    )


def raise_problems(model: BaseModel, problems: Iterable[Problem]) -> None:
    """Reject `model` (being validated) with every problem found, each at its own location.

    A ValidationError raised inside a validator keeps its locations, nested under the model's own
    location, so each problem lands on the field it is about.
    """
    found = list(problems)
    if found:
        raise ValidationError.from_exception_data(
            type(model).__name__,
            [
                InitErrorDetails(
                    type=PydanticCustomError("semantic", "{reason}", {"reason": reason}),
                    loc=location,
                    input=model,
                )
                for location, reason in found
            ],
        )


class CheckedModel(SpecModel):
    """A spec model whose `problems()` (cross-field rules) are raised at their own locations."""

    def problems(self) -> Iterator[Problem]:
        """(location relative to this object, reason) for every rule the object breaks."""
        return iter(())

    @model_validator(mode="after")
    def _raise_problems(self) -> Self:
        raise_problems(self, self.problems())
        return self

    def set_fields(self, *names: str) -> list[str]:
        """The JSON names of those of the fields `names` (Python names) that are set."""
        fields = type(self).model_fields
        return [fields[name].alias or name for name in names if getattr(self, name) is not None]

    def only_one_of(self, *names: str) -> Iterator[Problem]:
        """A oneof: at most one of the fields `names` may be set; the second one set is wrong."""
        chosen = self.set_fields(*names)
        if len(chosen) > 1:
            yield (chosen[1],), f"only one of {' or '.join(chosen)} may be set"


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


def _at_least_a_millisecond(text: str) -> str:
    if duration_seconds(text) < 0.001:
        raise ValueError("must be a valid duration greater than 1ms")
    return text


def _check_dns1123_label(text: str) -> str:
    if len(text) > 63 or not _DNS1123_LABEL.match(text):
        raise ValueError(
            f"{text!r} is not a valid DNS-1123 label (lowercase alphanumerics and '-', "
            "at most 63 characters, starting and ending with an alphanumeric)"
        )
    return text


# Any google.protobuf.Duration ("10s", "1m30s", "0s").
Duration = Annotated[str, AfterValidator(_check_duration)]
# Timeouts and intervals that Envoy cannot honour below a millisecond (the CRDs' CEL rule).
AtLeastOneMillisecond = Annotated[Duration, AfterValidator(_at_least_a_millisecond)]
Port = Annotated[int, Field(ge=1, le=65535)]
Percent = Annotated[float, Field(ge=0, le=100)]
DNS1123Label = Annotated[str, AfterValidator(_check_dns1123_label)]
NonEmpty = Annotated[str, Field(min_length=1)]

UInt32 = Annotated[int, Field(ge=0, le=4294967295)]
Int32 = Annotated[int, Field(ge=-2147483648, le=2147483647)]
# int32 fields that istiod rejects when negative (counts, limits, thresholds)
Count = Annotated[int, Field(ge=0, le=2147483647)]
IntPercent = Annotated[int, Field(ge=0, le=100)]
