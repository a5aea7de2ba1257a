"""Which security.istio.io policies apply to a workload, resolved the way istiod resolves them.

PeerAuthentication is hierarchical: a policy in the root namespace without a selector is the
mesh's, one in a namespace without a selector is the namespace's, one whose selector matches
the workload's labels is the workload's. The most specific level that sets a mode decides
(UNSET inherits from the level above), PERMISSIVE when none does; a workload policy's
`portLevelMtls` overrides the mode per port the workload listens on. Where several policies
share a level, the first by name decides (istiod: the oldest).

RequestAuthentication and AuthorizationPolicy are additive: every policy of the root namespace
or the workload's namespace whose selector is absent or matches the workload applies.
Policies that pick their targets by `targetRef(s)` (Gateway API attachment) apply to no
sidecar or gateway here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, Final

from meshconfig import Resource
from meshconfig.security import (
    AuthorizationPolicySpec,
    PeerAuthenticationSpec,
    RequestAuthenticationSpec,
)

ROOT_NAMESPACE = "istio-system"


class MtlsMode(Enum):
    DISABLE = "DISABLE"
    PERMISSIVE = "PERMISSIVE"
    STRICT = "STRICT"


@dataclass(frozen=True, slots=True)
class PeerMtls:
    """A workload's effective inbound mutual TLS: one mode, and overrides by workload port."""

    mode: MtlsMode = MtlsMode.PERMISSIVE
    ports: Mapping[int, MtlsMode] = field(default_factory=lambda: MappingProxyType({}))

    def for_port(self, port: int) -> MtlsMode:
        return self.ports.get(port, self.mode)


_PERMISSIVE: Final = PeerMtls()


def _selects(selector: Any, labels: Mapping[str, str]) -> bool:
    wanted = (selector.match_labels or {}) if selector is not None else {}
    return all(labels.get(key) == value for key, value in wanted.items())


def _targeted(spec: Any) -> bool:
    return spec.target_ref is not None or bool(spec.target_refs)


@dataclass(frozen=True, slots=True)
class SecurityPolicies:
    """The security policies of one configuration generation, each tuple sorted by key."""

    peer_authentications: tuple[Resource, ...] = ()
    request_authentications: tuple[Resource, ...] = ()
    authorization_policies: tuple[Resource, ...] = ()
    # peer_mtls answers by (namespace, labels): every endpoint and inbound port of a push asks,
    # and workloads of one deployment share their labels.
    _peer_mtls: dict[tuple[str, frozenset[tuple[str, str]]], PeerMtls] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def peer_mtls(self, namespace: str, labels: Mapping[str, str]) -> PeerMtls:
        if not self.peer_authentications:
            return _PERMISSIVE
        key = (namespace, frozenset(labels.items()))
        found = self._peer_mtls.get(key)
        if found is None:
            found = self._peer_mtls[key] = self._resolve_peer_mtls(namespace, labels)
        return found

    def _resolve_peer_mtls(self, namespace: str, labels: Mapping[str, str]) -> PeerMtls:
        mesh = namespace_level = workload = None
        for policy in self.peer_authentications:
            spec = policy.spec
            assert isinstance(spec, PeerAuthenticationSpec), policy.label
            policy_namespace = policy.metadata.namespace
            if spec.selector is None:
                if policy_namespace == namespace and namespace_level is None:
                    namespace_level = spec
                elif policy_namespace == ROOT_NAMESPACE and mesh is None:
                    mesh = spec
            elif (
                policy_namespace == namespace
                and workload is None
                and spec.selector.match_labels
                and _selects(spec.selector, labels)
            ):
                workload = spec
        mode = MtlsMode.PERMISSIVE
        for level in (mesh, namespace_level, workload):
            if level is not None:
                mode = _mode(level, mode)
        ports: dict[int, MtlsMode] = {}
        if workload is not None:
            for port, setting in (workload.port_level_mtls or {}).items():
                if setting.mode not in (None, "UNSET"):
                    ports[int(port)] = MtlsMode(setting.mode)
        return PeerMtls(mode, MappingProxyType(ports))

    def request_authentications_for(
        self, namespace: str, labels: Mapping[str, str]
    ) -> tuple[Resource, ...]:
        return self._applying(
            self.request_authentications, RequestAuthenticationSpec, namespace, labels
        )

    def authorization_policies_for(
        self, namespace: str, labels: Mapping[str, str]
    ) -> tuple[Resource, ...]:
        return self._applying(
            self.authorization_policies, AuthorizationPolicySpec, namespace, labels
        )

    @staticmethod
    def _applying(
        policies: tuple[Resource, ...], spec_type: type, namespace: str, labels: Mapping[str, str]
    ) -> tuple[Resource, ...]:
        found = []
        for policy in policies:
            spec = policy.spec
            assert isinstance(spec, spec_type), policy.label
            if policy.metadata.namespace not in (namespace, ROOT_NAMESPACE) or _targeted(spec):
                continue
            if _selects(getattr(spec, "selector", None), labels):
                found.append(policy)
        return tuple(found)


def _mode(spec: PeerAuthenticationSpec, inherited: MtlsMode) -> MtlsMode:
    if spec.mtls is None or spec.mtls.mode in (None, "UNSET"):
        return inherited
    return MtlsMode(spec.mtls.mode)
