"""Which quotas a request charges: QuotaSpec and QuotaSpecBinding, applied by Mixer itself.

In Istio the sidecar's Mixer client read these and put the quotas into each Check. Envoy's
ext_authz sends no quotas, so Mixer applies them to the destination of the check: a binding
whose `services` include the destination service attaches its QuotaSpecs, and every rule of
those specs that matches the request charges its quotas (`charge`, default 1).

A binding's service matches by `service` (the host; `*` for every service) or by `name` with
`namespace`, `domain` and `labels` when given. A service without a namespace matches that name
in any namespace (Istio's bookinfo binding in istio-system lists bookinfo's services by bare
name). A spec reference without a namespace means the binding's namespace. A rule `match`
holds if any of its clauses sets holds entirely (exact, prefix or regex on string
attributes); a rule without `match` always holds. Immutable once built; no tasks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from meshconfig import Resource
from meshconfig.policy import QuotaSpecBindingSpec, QuotaSpecSpec
from meshconfig.policy.quota import IstioService, QuotaRule, StringMatch


def _service_matches(service: IstioService, attributes: Mapping[str, Any]) -> bool:
    host = attributes.get("destination.service.host")
    if service.service is not None:
        return service.service == "*" or service.service == host
    name = attributes.get("destination.service.name")
    namespace = attributes.get("destination.service.namespace")
    if isinstance(host, str) and (name is None or namespace is None):
        parts = host.split(".")
        name = name if name is not None else parts[0]
        namespace = namespace if namespace is not None or len(parts) < 2 else parts[1]
    if service.name is not None and service.name != name:
        return False
    if service.namespace is not None and service.namespace != namespace:
        return False
    if service.domain is not None and not (
        isinstance(host, str) and host.endswith(f".{service.domain}")
    ):
        return False
    if service.labels:
        labels = attributes.get("destination.labels") or {}
        if any(labels.get(k) != v for k, v in service.labels.items()):
            return False
    return True


def _string_matches(match: StringMatch, value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if match.exact is not None:
        return value == match.exact
    if match.prefix is not None:
        return value.startswith(match.prefix)
    if match.regex is not None:
        return re.fullmatch(match.regex, value) is not None
    return True


def _rule_matches(rule: QuotaRule, attributes: Mapping[str, Any]) -> bool:
    if not rule.match:
        return True
    return any(
        all(_string_matches(m, attributes.get(name)) for name, m in (clause.clause or {}).items())
        for clause in rule.match
    )


@dataclass(frozen=True)
class _Binding:
    services: tuple[IstioService, ...]
    specs: tuple[tuple[str, str], ...]  # (namespace, name)


@dataclass(frozen=True)
class QuotaSpecs:
    """The QuotaSpecs and bindings in force."""

    specs: Mapping[tuple[str, str], QuotaSpecSpec]
    bindings: tuple[_Binding, ...]

    @classmethod
    def from_resources(cls, resources: Iterable[Resource]) -> QuotaSpecs:
        specs: dict[tuple[str, str], QuotaSpecSpec] = {}
        bindings: list[_Binding] = []
        for resource in resources:
            spec, meta = resource.spec, resource.metadata
            if isinstance(spec, QuotaSpecSpec):
                specs[(meta.namespace, meta.name)] = spec
            elif isinstance(spec, QuotaSpecBindingSpec):
                refs = [(ref.namespace or meta.namespace, ref.name) for ref in spec.quota_specs]
                bindings.append(_Binding(tuple(spec.services), tuple(refs)))
        return cls(specs, tuple(bindings))

    def __bool__(self) -> bool:
        return bool(self.bindings)

    def charges(self, attributes: Mapping[str, Any]) -> dict[str, int]:
        """Quota name -> amount the request described by `attributes` is charged."""
        charges: dict[str, int] = {}
        seen: set[tuple[str, str]] = set()
        for binding in self.bindings:
            if not any(_service_matches(s, attributes) for s in binding.services):
                continue
            for ref in binding.specs:
                spec = self.specs.get(ref)
                if spec is None or ref in seen:
                    continue
                seen.add(ref)
                for rule in spec.rules or ():
                    if _rule_matches(rule, attributes):
                        for quota in rule.quotas or ():
                            charge = 1 if quota.charge is None else quota.charge
                            charges[quota.quota] = charges.get(quota.quota, 0) + charge
        return charges
