"""Analyzer of mTLS agreement between clients (DestinationRule) and servers (PeerAuthentication).

A DestinationRule whose TLS mode is ISTIO_MUTUAL makes clients send mTLS; DISABLE makes them send
plain text. The PeerAuthentication in force for the destination's workloads decides what the
servers accept: STRICT refuses plain text, DISABLE refuses mTLS, PERMISSIVE takes both. Where
they disagree every request fails, which is what this reports.

Which PeerAuthentication is in force follows Istio: one selecting the service's workloads, else
the namespace's (no selector), else the mesh's (no selector, in the root namespace
`istio-system`); a policy that leaves its mode UNSET defers to the next. Which DestinationRule
applies to a host: the one naming it exactly, else the most specific wildcard. Port-level
settings are not analyzed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from galley.analysis.context import DESTINATION_RULE, PEER_AUTHENTICATION, Context
from galley.analysis.messages import MTLS_POLICY_CONFLICT, Message
from galley.analysis.registry import CLUSTER_SUFFIX, ServiceIndex, selects, to_fqdn
from meshconfig import Resource
from meshconfig.networking import DestinationRule
from meshconfig.networking.checks import host_subset_of
from meshconfig.security import PeerAuthenticationSpec

ROOT_NAMESPACE = "istio-system"
_CLIENT_MTLS = {"ISTIO_MUTUAL": True, "DISABLE": False}
_REFUSES = {True: "DISABLE", False: "STRICT"}  # server mode that refuses what the client sends


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    namespace: str
    selector: dict[str, str] | None  # labels of the service's workloads, if known


def _targets(index: ServiceIndex, rules: list[tuple[Resource, DestinationRule]]) -> list[_Target]:
    """Hosts to check: every known service, and every exact rule host that names none."""
    found: dict[str, _Target] = {}
    for service in index.services:
        if not service.host.startswith("*"):
            selector = dict(service.selector) if service.selector is not None else None
            found.setdefault(service.host, _Target(service.host, service.namespace, selector))
    for resource, rule in rules:
        host = to_fqdn(rule.host, resource.metadata.namespace)
        if not host.startswith("*") and host not in found:
            found[host] = _Target(host, _namespace_of(host, resource.metadata.namespace), None)
    return [found[host] for host in sorted(found)]


def _namespace_of(host: str, default: str) -> str:
    """`reviews.prod.svc.cluster.local` lives in `prod`; any other host in `default`."""
    namespace, _, suffix = host.partition(".")[2].partition(".")
    return namespace if namespace and suffix == CLUSTER_SUFFIX else default


def _rule_for(
    host: str, rules: list[tuple[Resource, DestinationRule]]
) -> tuple[Resource, DestinationRule] | None:
    best: tuple[Resource, DestinationRule] | None = None
    best_length = -1
    for resource, rule in rules:
        pattern = to_fqdn(rule.host, resource.metadata.namespace)
        if pattern == host:
            return resource, rule
        if pattern.startswith("*") and host_subset_of(host, pattern) and len(pattern) > best_length:
            best, best_length = (resource, rule), len(pattern)
    return best


def _policy_for(
    target: _Target, policies: list[tuple[Resource, PeerAuthenticationSpec]]
) -> tuple[Resource, str] | None:
    """The PeerAuthentication deciding the target's mode, and the mode; None if none does."""
    workload, namespace, mesh = [], [], []
    for resource, policy in policies:
        labels = policy.selector.match_labels if policy.selector else None
        where = resource.metadata.namespace
        if labels:
            if where == target.namespace and target.selector and selects(labels, target.selector):
                workload.append((resource, policy))
        elif where == target.namespace:
            namespace.append((resource, policy))
        elif where == ROOT_NAMESPACE:
            mesh.append((resource, policy))
    for resource, policy in [*workload, *namespace, *mesh]:
        mode = policy.mtls.mode if policy.mtls else None
        if mode and mode != "UNSET":
            return resource, mode
    return None


def mtls_conflicts(context: Context) -> Iterator[Message]:
    """IST0113: clients send what the servers of the same host refuse."""
    policies = context.of(PEER_AUTHENTICATION, PeerAuthenticationSpec)
    rules = [
        (resource, rule)
        for resource, rule in context.of(DESTINATION_RULE, DestinationRule)
        if rule.workload_selector is None
    ]
    if not policies or not rules:
        return
    for target in _targets(ServiceIndex(context), rules):
        chosen = _rule_for(target.host, rules)
        if chosen is None:
            continue
        rule_resource, rule = chosen
        tls = rule.traffic_policy.tls if rule.traffic_policy else None
        wants_mtls = _CLIENT_MTLS.get(tls.mode or "") if tls else None
        decided = _policy_for(target, policies)
        if wants_mtls is None or decided is None:
            continue
        policy_resource, mode = decided
        if mode == _REFUSES[wants_mtls]:
            yield MTLS_POLICY_CONFLICT.at(
                rule_resource,
                target.host,
                _name(rule_resource),
                str(wants_mtls).lower(),
                _name(policy_resource),
                mode,
            )


def _name(resource: Resource) -> str:
    return f"{resource.metadata.namespace}/{resource.metadata.name}"
