"""A VirtualService as pilot reads it, and its HTTP rules with delegates resolved.

Kept apart from the generators (it needs only the configuration, not a push context) so that
both route generation and the Sidecar scope see the same rules: a scope must import the services
a delegate routes to, exactly as routes send traffic there.

Delegation (`http_rules`, istiod's `mergeVirtualServicesIfNeeded`): a VirtualService without
hosts is a delegate, never routed on its own. A root's HTTP rule with `delegate` (namespace: the
root's by default) is replaced by the delegate's rules, each merged with it: the delegate rule's
matches are combined with every root match they do not conflict with (a delegate match without
any compatible root match drops the whole delegate rule), fields the delegate rule leaves unset
are the root rule's, and names join as `<root>-<delegate>`. A delegate that is missing, has
hosts, or is not exported to the root's namespace contributes nothing; a delegate's own
`delegate` rules are skipped (one level only). Each skip is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from meshconfig import Resource
from meshconfig.networking.common import Destination, StringMatch
from meshconfig.networking.virtual_service import (
    Delegate,
    HTTPMatchRequest,
    HTTPRoute,
    VirtualService,
)
from pilot.istio_config import IstioConfig, hosts_match, qualify, qualify_gateway

log = logging.getLogger(__name__)
_V = TypeVar("_V")

# What a delegate rule takes from the root rule when it leaves the field unset.
_INHERITED: Final = (
    "rewrite",
    "direct_response",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirror_percent",
    "mirror_percentage",
    "cors_policy",
    "mirrors",
    "headers",
)
_STRING_MATCHES: Final = ("uri", "scheme", "method", "authority")


@dataclass(frozen=True, slots=True)
class BoundVirtualService:
    """A VirtualService as a sidecar sees it: its typed spec and its hosts, fully qualified."""

    resource: Resource
    spec: VirtualService
    hosts: tuple[str, ...]

    @classmethod
    def of(cls, resource: Resource) -> BoundVirtualService:
        spec = resource.spec
        assert isinstance(spec, VirtualService), resource.label
        namespace = resource.metadata.namespace
        return cls(resource, spec, tuple(qualify(h, namespace) for h in spec.hosts or ()))

    @property
    def name(self) -> str:
        return self.resource.metadata.name

    @property
    def namespace(self) -> str:
        return self.resource.metadata.namespace

    @property
    def config_path(self) -> str:
        """How istiod names the source of generated config in Envoy metadata."""
        kind = self.resource.kind
        return (
            f"/apis/{kind.preferred_api_version}/namespaces/{self.namespace}"
            f"/virtual-service/{self.name}"
        )

    def covers(self, hostname: str) -> bool:
        return any(hosts_match(host, hostname) for host in self.hosts)


def http_rules(vs: BoundVirtualService, config: IstioConfig) -> list[HTTPRoute]:
    """The VirtualService's HTTP rules, each `delegate` rule replaced by its delegate's rules
    merged with it. Merged rules name their hosts and gateways fully qualified, since they come
    from two namespaces."""
    rules: list[HTTPRoute] = []
    for index, rule in enumerate(vs.spec.http or ()):
        if rule.delegate is None:
            rules.append(rule)
        else:
            rules.extend(_delegated(vs, index, rule, rule.delegate, config))
    return rules


def _delegated(
    root: BoundVirtualService, index: int, rule: HTTPRoute, reference: Delegate, config: IstioConfig
) -> list[HTTPRoute]:
    """The rules of the delegate `rule` names, merged with it; none when it cannot be used."""
    namespace = reference.namespace or root.namespace
    where = f"{root.resource.label} http[{index}]: delegate {namespace}/{reference.name}"
    delegate = next(
        (
            vs
            for vs in config.virtual_services
            if (vs.metadata.namespace, vs.metadata.name) == (namespace, reference.name)
        ),
        None,
    )
    if delegate is None:
        log.warning("%s not found; the rule is skipped", where)
        return []
    spec = delegate.spec
    if not isinstance(spec, VirtualService) or spec.hosts:
        log.warning("%s has hosts, so it is no delegate; the rule is skipped", where)
        return []
    # A delegate binds to no gateway, so it is listed for the mesh where it is exported.
    if delegate not in config.virtual_services_for(root.namespace):
        log.warning("%s is not exported to %s; the rule is skipped", where, root.namespace)
        return []
    parent = _qualified(rule, root.namespace)
    merged: list[HTTPRoute] = []
    for number, child in enumerate(spec.http or ()):
        if child.delegate is not None:
            log.warning("%s: its http[%d] delegates again; skipped", where, number)
            continue
        combined = _merge_rule(parent, _qualified(child, namespace))
        if combined is None:
            log.warning("%s: its http[%d] conflicts with the root's match; skipped", where, number)
            continue
        merged.append(combined)
    return merged


def _qualified(rule: HTTPRoute, namespace: str) -> HTTPRoute:
    """The rule with the destination hosts and gateway names it refers to fully qualified."""

    def target(destination: Destination) -> Destination:
        return destination.model_copy(update={"host": qualify(destination.host, namespace)})

    update: dict[str, Any] = {}
    if rule.route:
        update["route"] = [
            d.model_copy(update={"destination": target(d.destination)}) for d in rule.route
        ]
    if rule.mirror is not None:
        update["mirror"] = target(rule.mirror)
    if rule.mirrors:
        update["mirrors"] = [
            m.model_copy(update={"destination": target(m.destination)}) for m in rule.mirrors
        ]
    if rule.match:
        update["match"] = [
            m.model_copy(update={"gateways": [qualify_gateway(g, namespace) for g in m.gateways]})
            if m.gateways
            else m
            for m in rule.match
        ]
    return rule.model_copy(update=update)


def _merge_rule(root: HTTPRoute, leaf: HTTPRoute) -> HTTPRoute | None:
    """istiod's `mergeHTTPRoute`: the delegate rule within the root rule, None on conflict."""
    matches = _merge_matches(root.match or [], leaf.match or [])
    if matches is None:
        return None
    update: dict[str, Any] = {"match": matches, "name": _joined(root.name, leaf.name)}
    for field in _INHERITED:
        if getattr(leaf, field) in (None, []):
            update[field] = getattr(root, field)
    return leaf.model_copy(update=update)


def _merge_matches(
    roots: list[HTTPMatchRequest], leaves: list[HTTPMatchRequest]
) -> list[HTTPMatchRequest] | None:
    """Every delegate match combined with each root match it fits in; None when some delegate
    match fits in none (istiod drops the whole delegate rule then)."""
    if not roots or not leaves:
        return leaves or roots
    merged: list[HTTPMatchRequest] = []
    for leaf in leaves:
        fitting = [_merge_match(root, leaf) for root in roots if not _conflicts(root, leaf)]
        if not fitting:
            return None
        merged.extend(fitting)
    return merged


def _merge_match(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> HTTPMatchRequest:
    """The delegate's conditions, with the root's where the delegate sets none; maps merge,
    the delegate's entries winning."""
    update: dict[str, Any] = {"name": _joined(root.name, leaf.name)}
    for field in (*_STRING_MATCHES, "port", "source_namespace", "stat_prefix"):
        if getattr(leaf, field) in (None, ""):
            update[field] = getattr(root, field)
    if not leaf.gateways:
        update["gateways"] = root.gateways
    for field in ("headers", "without_headers", "query_params", "source_labels"):
        update[field] = _merged_map(getattr(root, field), getattr(leaf, field))
    return leaf.model_copy(update=update)


def _merged_map(
    root: Mapping[str, _V] | None, leaf: Mapping[str, _V] | None
) -> dict[str, _V] | None:
    return {**(root or {}), **(leaf or {})} or None


def _joined(root: str | None, leaf: str | None) -> str | None:
    return f"{root}-{leaf}" if root and leaf else leaf or root


def _conflicts(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> bool:
    """istiod's `hasConflict`: the delegate match asks for something the root match excludes."""
    for field in _STRING_MATCHES:
        if _string_conflict(getattr(root, field), getattr(leaf, field)):
            return True
    for field in ("headers", "without_headers", "query_params"):
        ours: Mapping[str, StringMatch] = getattr(root, field) or {}
        theirs: Mapping[str, StringMatch] = getattr(leaf, field) or {}
        if any(_string_conflict(ours.get(key), value) for key, value in theirs.items()):
            return True
    if bool(root.ignore_uri_case) != bool(leaf.ignore_uri_case):
        return True
    if root.port and leaf.port and root.port != leaf.port:
        return True
    if root.source_namespace and leaf.source_namespace != root.source_namespace:
        return True
    root_labels = root.source_labels or {}
    if any(root_labels.get(k, v) != v for k, v in (leaf.source_labels or {}).items()):
        return True
    # Gateway names are qualified by now (`_qualified`); the root's must cover the delegate's.
    return bool(root.gateways and leaf.gateways and not set(leaf.gateways) <= set(root.gateways))


def _string_conflict(root: StringMatch | None, leaf: StringMatch | None) -> bool:
    """istiod's `stringMatchConflict`: with both set, only an equal exact value, or a delegate
    prefix or exact value within the root's prefix, fits; a regex never does."""
    if root is None or leaf is None:
        return False
    if root.regex or leaf.regex:
        return True
    if root.exact:
        return leaf.exact != root.exact
    within = leaf.prefix or leaf.exact
    return not (root.prefix and within and within.startswith(root.prefix))
