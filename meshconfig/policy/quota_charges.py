"""Which quotas a request is charged: QuotaSpec and QuotaSpecBinding, compiled once.

In Istio the sidecar's Mixer client read these and put the quotas into each Check. Envoy's
ext_authz sends no quotas, so Mixer applies them to the destination of the check: a binding
whose `services` include the destination service attaches its QuotaSpecs, and every rule of
those specs that matches the request charges its quotas (`charge`, default 1; a quota charged
by several rules is charged their sum; a spec bound twice counts once).

A binding's service matches by `service` (the host; `*` for every service) or by `name` with
`namespace`, `domain` and `labels` when given. A service without a namespace matches that name
in any namespace (Istio's bookinfo binding in istio-system lists bookinfo's services by bare
name, and the ratings rate-limit sample needs it). A spec reference without a namespace means
the binding's namespace; a reference to a spec that does not exist charges nothing. A rule
`match` holds if any of its clause sets holds entirely (exact, prefix or whole-value regex on
STRING attributes; a clause with none of them: the attribute is a string); a rule without
`match` always holds.

Compiling checks what Istio's Mixer client would trip over: every clause must name a STRING
attribute of the vocabulary and every regex must compile; `compile_quota_spec` reports each
problem with its field path. The result is immutable; no tasks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from meshconfig import Resource
from meshconfig.policy.attributes import Attributes, ValueType
from meshconfig.policy.quota import (
    IstioService,
    QuotaSpecBindingSpec,
    QuotaSpecSpec,
    StringMatch,
)

Match = Callable[[Attributes], bool]
# Reports one problem of the resource being compiled: (field path, message).
Problem = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class QuotaCharge:
    quota: str  # a quota instance's name, as the QuotaSpec writes it
    charge: int


@dataclass(frozen=True, slots=True)
class QuotaSpecRule:
    """Charge `quotas` when any of `matches` holds (no matches: always)."""

    matches: tuple[Match, ...]
    quotas: tuple[QuotaCharge, ...]

    def applies(self, bag: Attributes) -> bool:
        return not self.matches or any(match(bag) for match in self.matches)


@dataclass(frozen=True, slots=True)
class CompiledQuotaSpec:
    name: str
    namespace: str
    rules: tuple[QuotaSpecRule, ...]

    def charges(self, bag: Attributes) -> list[QuotaCharge]:
        return [charge for rule in self.rules if rule.applies(bag) for charge in rule.quotas]


@dataclass(frozen=True, slots=True)
class QuotaBinding:
    """Which services charge which QuotaSpecs (`specs`: (namespace, name))."""

    name: str
    namespace: str
    services: tuple[IstioService, ...]
    specs: tuple[tuple[str, str], ...]

    def binds(self, bag: Attributes) -> bool:
        """Whether the request's destination is one of `services`."""
        return any(_service_matches(service, bag) for service in self.services)


@dataclass(frozen=True, slots=True)
class QuotaSpecs:
    """The QuotaSpecs and bindings of one snapshot."""

    specs: Mapping[tuple[str, str], CompiledQuotaSpec]  # by (namespace, name)
    bindings: tuple[QuotaBinding, ...]

    def __bool__(self) -> bool:
        return bool(self.bindings)

    def charges(self, bag: Attributes) -> dict[str, int]:
        """Quota name -> the amount the request described by `bag` is charged."""
        charged: dict[str, int] = {}
        if not self.bindings:
            return charged
        bound = dict.fromkeys(key for b in self.bindings if b.binds(bag) for key in b.specs)
        for key in bound:
            spec = self.specs.get(key)
            if spec is None:
                continue
            for charge in spec.charges(bag):
                charged[charge.quota] = charged.get(charge.quota, 0) + charge.charge
        return charged


NO_QUOTAS = QuotaSpecs(MappingProxyType({}), ())


def _service_matches(service: IstioService, bag: Attributes) -> bool:
    host = bag.lookup("destination.service.host")
    if service.service is not None:
        return service.service in ("*", host)
    parts = host.split(".") if isinstance(host, str) else []
    name = bag.lookup("destination.service.name")
    if name is None and parts:
        name = parts[0]
    namespace = bag.lookup("destination.service.namespace")
    if namespace is None and len(parts) > 1:
        namespace = parts[1]
    if service.name is not None and service.name != name:
        return False
    if service.namespace is not None and service.namespace != namespace:
        return False
    if service.domain is not None and not (
        isinstance(host, str) and host.endswith(f".{service.domain}")
    ):
        return False
    return not service.labels or all(
        bag.lookup_key("destination.labels", key) == value for key, value in service.labels.items()
    )


def compile_quota_spec(
    resource: Resource, vocabulary: Mapping[str, ValueType], problem: Problem
) -> CompiledQuotaSpec:
    """A QuotaSpec's rules as closures; each clause on an attribute that is not a STRING of
    `vocabulary`, and each regex that does not compile, is reported to `problem`."""
    spec = resource.spec
    assert isinstance(spec, QuotaSpecSpec)
    rules = []
    for index, rule in enumerate(spec.rules or []):
        matches = []
        for position, match in enumerate(rule.match or []):
            clauses = []
            for attribute, string_match in (match.clause or {}).items():
                where = f"spec.rules[{index}].match[{position}].clause.{attribute}"
                found = vocabulary.get(attribute)
                if found is not ValueType.STRING:
                    reason = "unknown attribute" if found is None else f"a {found.value}"
                    problem(where, f"{reason}: clauses match STRING attributes")
                try:
                    clauses.append(_clause(attribute, string_match))
                except re.error as error:
                    problem(f"{where}.regex", f"invalid regex: {error}")
            matches.append(_all(tuple(clauses)))
        quotas = tuple(
            QuotaCharge(q.quota, 1 if q.charge is None else q.charge) for q in rule.quotas or []
        )
        rules.append(QuotaSpecRule(tuple(matches), quotas))
    return CompiledQuotaSpec(resource.metadata.name, resource.metadata.namespace, tuple(rules))


def compile_quota_binding(resource: Resource) -> QuotaBinding:
    spec = resource.spec
    assert isinstance(spec, QuotaSpecBindingSpec)
    namespace = resource.metadata.namespace
    return QuotaBinding(
        resource.metadata.name,
        namespace,
        tuple(spec.services),
        tuple((ref.namespace or namespace, ref.name) for ref in spec.quota_specs),
    )


def _clause(attribute: str, match: StringMatch) -> Match:
    """One clause: the attribute is a string and matches (exact, prefix or whole-value regex;
    none set: present). re.error if the regex is invalid."""
    exact, prefix = match.exact, match.prefix
    fullmatch = re.compile(match.regex).fullmatch if match.regex is not None else None

    def clause(bag: Attributes) -> bool:
        value = bag.lookup(attribute)
        if not isinstance(value, str):
            return False
        if exact is not None:
            return value == exact
        if prefix is not None:
            return value.startswith(prefix)
        return fullmatch is None or fullmatch(value) is not None

    return clause


def _all(clauses: tuple[Match, ...]) -> Match:
    return lambda bag: all(clause(bag) for clause in clauses)
