"""Mixer's configuration model (config.istio.io/v1alpha2): handlers, instances and rules.

Modelled after Istio 1.4's policy.v1beta1 protos. A handler configures an adapter, an instance
maps request attributes to a template's fields through expressions, and a rule sends the
instances to handlers when its match expression holds. Before `handler` and `instance` existed
each adapter and template had its own kind (`kind: denier`, `kind: listentry`): their spec is
the handler's or instance's `params`.

What one resource can be judged on alone is checked here: every expression (template params,
rule `match`, header operation values) must be a string and must parse (`meshconfig.policy.
expr`), the error naming the field and the line and column. Whether an expression's attributes
exist and its type fits the field, and whether a rule's handlers and instances exist, depend on
the rest of the snapshot (attributemanifests extend the vocabulary; the handler may be in
another file): `meshconfig.policy.compiled.validate_mixer_resources` checks those, and galley
runs it before accepting a change.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, RootModel, model_validator

from meshconfig.base import (
    CheckedModel,
    Duration,
    Location,
    NonEmpty,
    Problem,
    SpecModel,
    UInt32,
    raise_problems,
)
from meshconfig.policy.expr import ParseError
from meshconfig.policy.expr.parser import parse


def _syntax_problems(text: str, where: Location) -> Iterator[Problem]:
    """The expression's syntax error, if any ("line 1, column 12: expected an operand ...")."""
    try:
        parse(text)
    except ParseError as error:
        yield where, str(error)


def _parses(text: str) -> str:
    try:
        parse(text)
    except ParseError as error:
        raise ValueError(str(error)) from None
    return text


def _parses_unless_blank(text: str) -> str:
    return _parses(text) if text.strip() else text


# An attribute expression, which must parse; a rule's match, which may also be blank (always).
Expression = Annotated[str, AfterValidator(_parses)]
Match = Annotated[str, AfterValidator(_parses_unless_blank)]


def _expression_problems(params: Mapping[str, Any], where: Location) -> Iterator[Problem]:
    """Template params are expressions (strings), possibly grouped in maps; nothing else."""
    for key, value in params.items():
        if isinstance(value, Mapping):
            yield from _expression_problems(value, (*where, key))
        elif not isinstance(value, str):
            yield (
                (*where, key),
                f"must be an attribute expression string, got {type(value).__name__} "
                '(quote literals, e.g. "1")',
            )
        else:
            yield from _syntax_problems(value, (*where, key))


class OAuth(SpecModel):
    client_id: str | None = None
    client_secret: str | None = None
    token_url: str | None = None
    scopes: list[str] | None = None
    endpoint_params: dict[str, str] | None = None


class Tls(CheckedModel):
    """TLS to an out-of-process adapter, with a token (from a file or OAuth) in each call."""

    ca_certificates: str | None = None
    token_path: str | None = None
    oauth: OAuth | None = None
    auth_header: Literal["PLAIN", "BEARER"] | None = None
    custom_header: str | None = None
    server_name: str | None = None

    def problems(self) -> Iterator[Problem]:
        if self.token_path is not None and self.oauth is not None:
            yield ("oauth",), "only one of tokenPath or oauth can be set"
        if self.auth_header is not None and self.custom_header is not None:
            yield ("customHeader",), "only one of authHeader or customHeader can be set"


class Mutual(SpecModel):
    private_key: str | None = None
    client_certificate: str | None = None
    ca_certificates: str | None = None
    server_name: str | None = None


class Authentication(CheckedModel):
    tls: Tls | None = None
    mutual: Mutual | None = None

    def problems(self) -> Iterator[Problem]:
        if self.tls is not None and self.mutual is not None:
            yield (), "only one of tls or mutual can be set"


class Connection(SpecModel):
    """How Mixer reaches an out-of-process adapter."""

    address: str | None = None
    timeout: Duration | None = None
    authentication: Authentication | None = None


class HandlerSpec(CheckedModel):
    """An adapter configured: compiled into Mixer (compiledAdapter) or out of process (adapter)."""

    name: str | None = None
    compiled_adapter: str | None = None
    adapter: str | None = None
    params: dict[str, Any] | None = None
    connection: Connection | None = None

    def problems(self) -> Iterator[Problem]:
        if self.compiled_adapter and self.adapter:
            yield ("adapter",), "only one of compiledAdapter or adapter can be set"
        if not self.compiled_adapter and not self.adapter:
            yield ("compiledAdapter",), "one of compiledAdapter or adapter is required"


class InstanceSpec(CheckedModel):
    """Request attributes mapped onto a template's fields, by one expression per field."""

    name: str | None = None
    compiled_template: str | None = None
    template: str | None = None
    params: dict[str, Any] | None = None
    attribute_bindings: dict[str, str] | None = None

    def problems(self) -> Iterator[Problem]:
        if self.compiled_template and self.template:
            yield ("template",), "only one of compiledTemplate or template can be set"
        if not self.compiled_template and not self.template:
            yield ("compiledTemplate",), "one of compiledTemplate or template is required"
        yield from _expression_problems(self.params or {}, ("params",))


class RuleAction(SpecModel):
    """Which handler receives which instances; `name` lets header operations use the result."""

    handler: NonEmpty
    instances: Annotated[list[NonEmpty], Field(min_length=1)]
    name: str | None = None


class HeaderOperation(SpecModel):
    """A header set, appended or removed; each value is an expression."""

    name: NonEmpty
    values: list[Expression] | None = None
    operation: Literal["REPLACE", "REMOVE", "APPEND"] | None = None


class FractionalPercent(SpecModel):
    numerator: UInt32 | None = None
    denominator: Literal["HUNDRED", "TEN_THOUSAND"] | None = None


class RandomSampling(SpecModel):
    attribute_expression: str | None = None
    percent_sampled: FractionalPercent | None = None
    use_independent_randomness: bool | None = None


class RateLimitSampling(SpecModel):
    sampling_duration: Duration | None = None
    max_unsampled_entries: Annotated[int, Field(ge=0)] | None = None
    sampling_rate: Annotated[int, Field(ge=0)] | None = None


class Sampling(SpecModel):
    random: RandomSampling | None = None
    rate_limit: RateLimitSampling | None = None


class RuleSpec(SpecModel):
    """When `match` holds (empty means always), run the actions."""

    match: Match | None = None
    actions: list[RuleAction] | None = None
    request_header_operations: list[HeaderOperation] | None = None
    response_header_operations: list[HeaderOperation] | None = None
    sampling: Sampling | None = None


class AdapterParams(RootModel[dict[str, Any]]):
    """The spec of a legacy per-adapter kind (`kind: denier`): the adapter's own params."""

    model_config = ConfigDict(strict=True, frozen=True)


class TemplateParams(RootModel[dict[str, Any]]):
    """The spec of a legacy per-template kind (`kind: listentry`): field expressions."""

    model_config = ConfigDict(strict=True, frozen=True)

    @model_validator(mode="after")
    def _expressions(self) -> TemplateParams:
        raise_problems(self, _expression_problems(self.root, ()))
        return self
