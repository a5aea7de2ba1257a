"""AuthorizationPolicy (security.istio.io): who may call which workload, and how.

The fields follow Istio's CRD schema; the semantic checks follow what Istio's validation webhook
rejects (empty `from`/`to`/`when` entries, malformed IPs and ports, unknown condition keys,
DENY/CUSTOM policies without rules, CUSTOM without a provider or with identity-based matches
the external authorizer cannot see). Pilot's RBAC filter generator reads these models.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from meshconfig.base import CheckedModel, Location, Problem, SpecModel
from meshconfig.selector import TargetedSpec

Action = Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"]


def _not_empty(value: str) -> str:
    if not value:
        raise ValueError("empty value not allowed")
    return value


def _ip_or_cidr(value: str) -> str:
    try:
        if "/" in value:
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        kind = "CIDR range" if "/" in value else "IP address"
        raise ValueError(f"bad {kind} {value!r}") from None
    return value


def _port(value: str) -> str:
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 65535:
        raise ValueError(f"bad port {value!r}: must be a number in 1-65535")
    return value


def _service_account(value: str) -> str:
    namespace, slash, name = value.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise ValueError(f"service account {value!r} must have the form <namespace>/<name>")
    return value


# `{*}` and `{**}` path templates are supported, but not with named variables, empty braces
# or bare `*`/`**` segments beside them.
_UNSUPPORTED_TEMPLATE = re.compile(r"/\{\w+=\*\*?\}|\{\w*\}|/\*\*?|\*\*?/")


def _path(value: str) -> str:
    _not_empty(value)
    if ("{*}" in value or "{**}" in value) and _UNSUPPORTED_TEMPLATE.search(value):
        raise ValueError(f"invalid or unsupported path template {value!r}")
    return value


Value = Annotated[str, AfterValidator(_not_empty)]
IpBlock = Annotated[str, AfterValidator(_not_empty), AfterValidator(_ip_or_cidr)]
PortValue = Annotated[str, AfterValidator(_port)]
PathValue = Annotated[str, AfterValidator(_path)]
ServiceAccount = Annotated[str, Field(max_length=320), AfterValidator(_service_account)]


class Source(CheckedModel):
    """The peer identity, namespace or address a request must (not) come from."""

    principals: list[Value] | None = None
    not_principals: list[Value] | None = None
    request_principals: list[Value] | None = None
    not_request_principals: list[Value] | None = None
    namespaces: list[Value] | None = None
    not_namespaces: list[Value] | None = None
    service_accounts: Annotated[list[ServiceAccount], Field(max_length=16)] | None = None
    not_service_accounts: Annotated[list[ServiceAccount], Field(max_length=16)] | None = None
    trust_domains: list[str] | None = None
    not_trust_domains: list[str] | None = None
    ip_blocks: list[IpBlock] | None = None
    not_ip_blocks: list[IpBlock] | None = None
    remote_ip_blocks: list[IpBlock] | None = None
    not_remote_ip_blocks: list[IpBlock] | None = None

    def problems(self) -> Iterator[Problem]:
        by_identity = self.principals or self.not_principals
        by_namespace = self.namespaces or self.not_namespaces
        if (self.service_accounts or self.not_service_accounts) and (by_identity or by_namespace):
            yield (), "cannot set serviceAccounts with namespaces or principals"
        if not any(getattr(self, name) for name in type(self).model_fields):
            yield (), "source must set at least one field"


class Operation(CheckedModel):
    """The request (host, port, method, path) a rule matches."""

    hosts: list[Value] | None = None
    not_hosts: list[Value] | None = None
    ports: list[PortValue] | None = None
    not_ports: list[PortValue] | None = None
    methods: list[Value] | None = None
    not_methods: list[Value] | None = None
    paths: list[PathValue] | None = None
    not_paths: list[PathValue] | None = None

    def problems(self) -> Iterator[Problem]:
        if not any(getattr(self, name) for name in type(self).model_fields):
            yield (), "operation must set at least one field"


class From(CheckedModel):
    source: Source | None = None

    def problems(self) -> Iterator[Problem]:
        if self.source is None:
            yield ("source",), "must be set"


class To(CheckedModel):
    operation: Operation | None = None

    def problems(self) -> Iterator[Problem]:
        if self.operation is None:
            yield ("operation",), "must be set"


_IP_KEYS = frozenset({"source.ip", "remote.ip", "destination.ip"})
_PLAIN_KEYS = _IP_KEYS | {
    "source.namespace",
    "source.principal",
    "source.serviceAccount",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "destination.port",
    "connection.sni",
}
_MAP_KEYS = (
    re.compile(r"request\.headers\[[^\[\]]+\]"),
    re.compile(r"request\.auth\.claims(\[[^\[\]]+\])+"),
    re.compile(r"experimental\.envoy\.filters\.[^\[\]]+(\[[^\[\]]+\])+"),
)
_RETIRED_KEYS = {
    "destination.namespace": "is replaced by the policy's metadata.namespace",
    "destination.name": "is only supported in v1alpha1 (deprecated)",
    "destination.user": "is only supported in v1alpha1 (deprecated)",
}


def _attribute(key: str) -> str:
    if key in _PLAIN_KEYS or any(pattern.fullmatch(key) for pattern in _MAP_KEYS):
        return key
    if key in _RETIRED_KEYS:
        raise ValueError(f"attribute {key} {_RETIRED_KEYS[key]}")
    if key.startswith("destination.labels"):
        raise ValueError(f"attribute {key} is replaced by the workload selector")
    if key.startswith(("request.headers", "request.auth.claims", "experimental.envoy.filters.")):
        raise ValueError(f"bad key {key!r}: should have the form name[key]")
    raise ValueError(f"unknown attribute {key!r}")


class Condition(CheckedModel):
    """An extra condition on an Istio attribute (`request.headers[x-user]`, `source.ip`, ...)."""

    key: Annotated[str, AfterValidator(_attribute)]
    values: list[Value] | None = None
    not_values: list[Value] | None = None

    def problems(self) -> Iterator[Problem]:
        if not self.values and not self.not_values:
            yield (), f"at least one of values or notValues must be set for key {self.key}"
        if self.key in _IP_KEYS:
            check = _ip_or_cidr
        elif self.key == "destination.port":
            check = _port
        else:
            return
        for field, values in (("values", self.values), ("notValues", self.not_values)):
            for index, value in enumerate(values or ()):
                try:
                    check(value)
                except ValueError as error:
                    yield (field, index), str(error)


def _not_empty_list(entries: list[Any]) -> list[Any]:
    if not entries:
        raise ValueError("must not be empty when set")
    return entries


class Rule(SpecModel):
    """Matches a request when every present part (from, to, when) matches."""

    from_: Annotated[list[From], Field(max_length=512), AfterValidator(_not_empty_list)] | None = (
        Field(None, alias="from")
    )
    to: Annotated[list[To], AfterValidator(_not_empty_list)] | None = None
    when: list[Condition] | None = None


class ExtensionProvider(SpecModel):
    name: str | None = None


# What an external authorizer (CUSTOM) cannot match on: the peer and request identities.
_CUSTOM_UNSUPPORTED_SOURCE = (
    "namespaces",
    "not_namespaces",
    "service_accounts",
    "not_service_accounts",
    "principals",
    "not_principals",
    "request_principals",
    "not_request_principals",
)
_CUSTOM_UNSUPPORTED_KEYS = ("source.namespace", "source.serviceAccount", "source.principal")


class AuthorizationPolicySpec(TargetedSpec):
    """Allow, deny, audit or delegate (CUSTOM) requests to the selected workloads."""

    action: Action | None = None
    provider: ExtensionProvider | None = None
    rules: Annotated[list[Rule], Field(max_length=512)] | None = None

    def problems(self) -> Iterator[Problem]:
        yield from super().problems()
        action = self.action or "ALLOW"
        if action in ("DENY", "CUSTOM") and not self.rules:
            yield (
                ("rules",),
                f"{action} action without rules is never triggered; "
                "add an empty rule {} to trigger it for every request",
            )
        if action == "CUSTOM":
            if self.provider is None or not self.provider.name:
                yield ("provider", "name"), "must be set for the CUSTOM action"
            for index, rule in enumerate(self.rules or ()):
                yield from _custom_rule_problems(rule, ("rules", index))
        elif self.provider is not None:
            yield ("provider",), f"must not be set with the {action} action"


def _custom_rule_problems(rule: Rule, where: Location) -> Iterator[Problem]:
    for index, entry in enumerate(rule.from_ or ()):
        source = entry.source
        for name in _CUSTOM_UNSUPPORTED_SOURCE:
            if source is not None and getattr(source, name):
                alias = Source.model_fields[name].alias or name
                location = (*where, "from", index, "source", alias)
                yield location, "is not supported with the CUSTOM action"
    for index, condition in enumerate(rule.when or ()):
        key = condition.key
        if key in _CUSTOM_UNSUPPORTED_KEYS or key.startswith("request.auth."):
            location = (*where, "when", index, "key")
            yield location, f"{key} is not supported with the CUSTOM action"
