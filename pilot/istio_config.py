"""The Istio traffic configuration pilot translates, besides the service registry.

VirtualServices, DestinationRules, Gateways and Sidecars, validated by `meshconfig`, kept as an
immutable set with the lookups translation needs resolved the way Istio resolves them: which
VirtualServices a proxy sees (exportTo, the gateways they bind to), which DestinationRule
applies to a host from a namespace (the client's namespace first, then the host's, then the
root namespace), and how a short host name in a resource becomes a fully qualified one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from meshconfig import Resource
from pilot.model import CLUSTER_DOMAIN

NETWORKING = "networking.istio.io"
KINDS = ("VirtualService", "DestinationRule", "Gateway", "Sidecar")
MESH_GATEWAY = "mesh"
ROOT_NAMESPACE = "istio-system"


def qualify(host: str, namespace: str) -> str:
    """Istio's host resolution: a short name is relative to the resource's namespace."""
    if host == "*" or host.startswith("*.") or "." in host:
        return host
    return f"{host}.{namespace}.svc.{CLUSTER_DOMAIN}"


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

    @classmethod
    def from_resources(cls, resources: Iterable[Resource]) -> IstioConfig:
        by_kind: dict[str, list[Resource]] = {kind: [] for kind in KINDS}
        for resource in resources:
            if resource.kind.group == NETWORKING and resource.kind.kind in by_kind:
                by_kind[resource.kind.kind].append(resource)

        def ordered(kind: str) -> tuple[Resource, ...]:
            return tuple(sorted(by_kind[kind], key=lambda r: r.key))

        return cls(
            ordered("VirtualService"),
            ordered("DestinationRule"),
            ordered("Gateway"),
            ordered("Sidecar"),
        )

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

    def gateway(self, namespaced_name: str) -> Resource | None:
        namespace, _, name = namespaced_name.partition("/")
        for gateway in self.gateways:
            if gateway.metadata.namespace == namespace and gateway.metadata.name == name:
                return gateway
        return None


def _spec(resource: Resource) -> dict[str, Any]:
    return resource.spec_dict()


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
