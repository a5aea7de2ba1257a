"""The Istio traffic configuration pilot translates, besides the service registry.

VirtualServices, DestinationRules, Gateways and Sidecars, validated by `meshconfig`, and the
Kubernetes Secrets gateways take their TLS credentials from, kept as an immutable set with the
lookups translation needs resolved the way Istio resolves them: which VirtualServices a proxy
sees (exportTo, the gateways they bind to), which DestinationRule applies to a host from a
namespace (the client's namespace first, then the host's, then the root namespace), which
Sidecar applies to a workload (one selecting its labels in its namespace, then its namespace's
Sidecar without selector, then the root namespace's), and how a short host name in a resource
becomes a fully qualified one. The security.istio.io policies come along as `security`
(`security_policies`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from meshconfig import Resource
from meshconfig.networking.sidecar import Sidecar
from pilot.model import CLUSTER_DOMAIN
from pilot.security_policies import ROOT_NAMESPACE, SecurityPolicies

NETWORKING = "networking.istio.io"
KINDS = ("VirtualService", "DestinationRule", "Gateway", "Sidecar")
SECRET = "core/Secret"
# The kinds read, by `Kind.id`, in the order of IstioConfig's fields.
_KIND_IDS = (*(f"{NETWORKING}/{kind}" for kind in KINDS), SECRET)
# The security.istio.io kinds, in the order of SecurityPolicies' fields.
_SECURITY_KIND_IDS = tuple(
    f"security.istio.io/{kind}"
    for kind in ("PeerAuthentication", "RequestAuthentication", "AuthorizationPolicy")
)
MESH_GATEWAY = "mesh"


def qualify(host: str, namespace: str) -> str:
    """Istio's host resolution: a short name is relative to the resource's namespace."""
    if host == "*" or host.startswith("*.") or "." in host:
        return host
    return f"{host}.{namespace}.svc.{CLUSTER_DOMAIN}"


def hosts_match(first: str, second: str) -> bool:
    """istio's `host.Name.Matches`: equal names, or a `*.suffix` wildcard covering the other."""
    first_wild, second_wild = first.startswith("*"), second.startswith("*")
    if first_wild and second_wild:
        shorter, longer = sorted((first[1:], second[1:]), key=len)
        return longer.endswith(shorter)
    if first_wild:
        return second.endswith(first[1:])
    if second_wild:
        return first.endswith(second[1:])
    return first == second


def host_subset_of(host: str, pattern: str) -> bool:
    """istio's `host.Name.SubsetOf`: every name `host` covers is covered by `pattern`."""
    if pattern.startswith("*"):
        return host.removeprefix("*").endswith(pattern[1:])
    return not host.startswith("*") and host == pattern


def config_key(resource: Resource) -> str:
    """`<namespace>/<name>`, how a proxy view names the Sidecar that scopes it."""
    return f"{resource.metadata.namespace}/{resource.metadata.name}"


def _exported_to(resource: Resource, namespace: str) -> bool:
    export_to: list[str] = list(getattr(resource.spec, "export_to", None) or ["*"])
    own = resource.metadata.namespace
    return "*" in export_to or namespace in export_to or ("." in export_to and namespace == own)


def qualify_gateway(name: str, namespace: str) -> str:
    """A gateway reference as `<namespace>/<name>`, a short name being in `namespace`."""
    return name if name == MESH_GATEWAY or "/" in name else f"{namespace}/{name}"


def gateway_names(resource: Resource) -> list[str]:
    """The gateways a VirtualService binds to, namespace-qualified; ["mesh"] by default."""
    names = list(getattr(resource.spec, "gateways", None) or [MESH_GATEWAY])
    return [qualify_gateway(g, resource.metadata.namespace) for g in names]


@dataclass(frozen=True, slots=True)
class IstioConfig:
    virtual_services: tuple[Resource, ...] = ()
    destination_rules: tuple[Resource, ...] = ()
    gateways: tuple[Resource, ...] = ()
    sidecars: tuple[Resource, ...] = ()
    secrets: tuple[Resource, ...] = ()
    security: SecurityPolicies = field(default_factory=SecurityPolicies)
    # Sidecars by namespace (in key order) and by `config_key`: every proxy looks its one up.
    _sidecars_in: Mapping[str, tuple[Resource, ...]] = field(init=False, compare=False)
    _sidecar_by_key: Mapping[str, Resource] = field(init=False, compare=False)
    _secret_by_key: Mapping[str, Resource] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        grouped: dict[str, list[Resource]] = {}
        for sidecar in self.sidecars:
            grouped.setdefault(sidecar.metadata.namespace, []).append(sidecar)
        in_namespace = {namespace: tuple(found) for namespace, found in grouped.items()}
        object.__setattr__(self, "_sidecars_in", MappingProxyType(in_namespace))
        by_key = {config_key(sidecar): sidecar for sidecar in self.sidecars}
        object.__setattr__(self, "_sidecar_by_key", MappingProxyType(by_key))
        secrets = {config_key(secret): secret for secret in self.secrets}
        object.__setattr__(self, "_secret_by_key", MappingProxyType(secrets))

    @classmethod
    def from_resources(cls, resources: Iterable[Resource]) -> IstioConfig:
        by_kind: dict[str, list[Resource]] = {k: [] for k in (*_KIND_IDS, *_SECURITY_KIND_IDS)}
        for resource in resources:
            found = by_kind.get(resource.kind.id)
            if found is not None:
                found.append(resource)
        ordered = {k: tuple(sorted(found, key=lambda r: r.key)) for k, found in by_kind.items()}
        security = SecurityPolicies(*(ordered[k] for k in _SECURITY_KIND_IDS))
        virtual_services, destination_rules, gateways, sidecars, secrets = (
            ordered[k] for k in _KIND_IDS
        )
        return cls(virtual_services, destination_rules, gateways, sidecars, secrets, security)

    def virtual_services_for(self, namespace: str, gateway: str = MESH_GATEWAY) -> list[Resource]:
        """VirtualServices visible from `namespace` and bound to `gateway`, oldest key first."""
        return [
            vs
            for vs in self.virtual_services
            if _exported_to(vs, namespace) and gateway in gateway_names(vs)
        ]

    def destination_rule_for(self, hostname: str, namespace: str) -> Resource | None:
        """The DestinationRule for `hostname` as seen from a proxy in `namespace`.

        Istio's precedence: a rule in the proxy's own namespace, then one in the host's
        namespace, then one in the root namespace; a wildcard host matches by suffix, and the
        most specific host wins within a namespace.
        """
        host_namespace = _host_namespace(hostname)
        for candidate_ns in (namespace, host_namespace, ROOT_NAMESPACE):
            best: tuple[int, Resource] | None = None
            for rule in self.destination_rules:
                if rule.metadata.namespace != candidate_ns or not _exported_to(rule, namespace):
                    continue
                host = qualify(str(_spec(rule).get("host", "")), rule.metadata.namespace)
                score = _host_match(host, hostname)
                if score and (best is None or score > best[0]):
                    best = (score, rule)
            if best is not None:
                return best[1]
        return None

    def sidecar_for(self, namespace: str, labels: Mapping[str, str]) -> Resource | None:
        """The Sidecar that applies to a workload with `labels` in `namespace`, or None.

        Istio's choice: a Sidecar of the namespace whose workloadSelector the labels satisfy,
        else the namespace's Sidecar without selector, else the root namespace's Sidecar
        without selector; the first by key (istiod: the oldest) where several qualify.
        """
        own = self._sidecars_in.get(namespace, ())
        for sidecar in own:
            selector = _sidecar_spec(sidecar).workload_selector
            if selector is not None:
                wanted = selector.labels or {}
                if all(labels.get(key) == value for key, value in wanted.items()):
                    return sidecar
        for sidecar in (*own, *self._sidecars_in.get(ROOT_NAMESPACE, ())):
            if _sidecar_spec(sidecar).workload_selector is None:
                return sidecar
        return None

    def sidecar(self, key: str) -> Resource | None:
        """The Sidecar named by `config_key`."""
        return self._sidecar_by_key.get(key)

    def secret(self, namespace: str, name: str) -> Resource | None:
        """The Kubernetes Secret `name` in `namespace`."""
        return self._secret_by_key.get(f"{namespace}/{name}")

    def gateway(self, namespaced_name: str) -> Resource | None:
        namespace, _, name = namespaced_name.partition("/")
        for gateway in self.gateways:
            if gateway.metadata.namespace == namespace and gateway.metadata.name == name:
                return gateway
        return None


def _spec(resource: Resource) -> dict[str, Any]:
    return resource.spec_dict()


def _sidecar_spec(resource: Resource) -> Sidecar:
    spec = resource.spec
    assert isinstance(spec, Sidecar), resource.label
    return spec


def _host_namespace(hostname: str) -> str:
    suffix = f".svc.{CLUSTER_DOMAIN}"
    if hostname.endswith(suffix):
        parts = hostname.removesuffix(suffix).split(".")
        if len(parts) == 2:
            return parts[1]
    return ""


def _host_match(pattern: str, hostname: str) -> int:
    """0 if `pattern` does not cover `hostname`; otherwise larger for more specific patterns."""
    if pattern == hostname:
        return 10_000
    if pattern == "*":
        return 1
    if pattern.startswith("*.") and hostname.endswith(pattern[1:]):
        return len(pattern)
    return 0
