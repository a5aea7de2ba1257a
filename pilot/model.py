"""Pilot's service model: what the mesh knows, independent of where it was read from.

Registries (files today, Galley and Kubernetes later) translate their inputs into these frozen
values; the push context and the Envoy config generators read only these. Keeping the model free
of any input format is what lets a registry be replaced without touching the generators.

`Proxy` is the other half of the model: who is asking. It is parsed from the Envoy node of an
xDS stream, and `Proxy.view` is the part of it the shared (outbound) configuration depends on,
so that proxies with equal views share one generated result.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final, TypeVar

from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from meshcore.xds.errors import InvalidNode

CLUSTER_DOMAIN: Final = "cluster.local"
"""DNS suffix of in-mesh service names: `<name>.<namespace>.svc.cluster.local`."""

DEFAULT_APP_ADDRESS: Final = "127.0.0.1"


_V = TypeVar("_V")


def frozen_map(values: Mapping[str, _V]) -> Mapping[str, _V]:
    """A read-only copy, so a frozen model value cannot be changed through a shared dict."""
    return MappingProxyType(dict(values))


@functools.lru_cache(maxsize=1 << 16)  # every endpoint's address, at every push context
def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class Protocol(StrEnum):
    """The application protocol of a port, spelled as Istio spells it."""

    HTTP = "HTTP"
    HTTP2 = "HTTP2"
    GRPC = "GRPC"
    GRPC_WEB = "GRPC-Web"
    HTTPS = "HTTPS"
    TLS = "TLS"
    TCP = "TCP"
    MONGO = "Mongo"
    REDIS = "Redis"
    MYSQL = "MySQL"

    @classmethod
    def parse(cls, value: str) -> Protocol:
        """Case-insensitive; anything unknown is opaque TCP, as in Istio."""
        return _PROTOCOLS_BY_LOWER.get(value.lower(), cls.TCP)

    @classmethod
    def for_port(cls, protocol: str | None, name: str) -> Protocol:
        """The explicit `protocol` field wins; otherwise the port name's prefix (`http-web`)."""
        if protocol:
            return cls.parse(protocol)
        lowered = name.lower()
        if lowered == "grpc-web" or lowered.startswith("grpc-web-"):
            return cls.GRPC_WEB
        return cls.parse(lowered.split("-", 1)[0])

    @property
    def is_http(self) -> bool:
        return self in _HTTP_PROTOCOLS

    @property
    def is_http2(self) -> bool:
        """Upstream connections must speak HTTP/2 (gRPC needs it end to end)."""
        return self in _HTTP2_PROTOCOLS


_PROTOCOLS_BY_LOWER: Final = {p.value.lower(): p for p in Protocol}
_HTTP2_PROTOCOLS: Final = frozenset({Protocol.HTTP2, Protocol.GRPC, Protocol.GRPC_WEB})
_HTTP_PROTOCOLS: Final = _HTTP2_PROTOCOLS | {Protocol.HTTP}


class Resolution(StrEnum):
    """How a service's endpoints are found (ServiceEntry `resolution`)."""

    NONE = "NONE"  # pass through to the address the client asked for
    STATIC = "STATIC"  # the listed endpoint IPs, sent over EDS
    DNS = "DNS"  # Envoy resolves the endpoints' names, using every address returned
    DNS_ROUND_ROBIN = "DNS_ROUND_ROBIN"  # Envoy resolves one name, using the first address


class Location(StrEnum):
    MESH_EXTERNAL = "MESH_EXTERNAL"
    MESH_INTERNAL = "MESH_INTERNAL"


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    number: int
    protocol: Protocol
    target_port: int | None = None


TLS_MODE_LABEL: Final = "security.istio.io/tlsMode"
"""The label Istio's injector puts on a workload with a sidecar; `istio` means it takes mTLS."""
ISTIO_TLS_MODE: Final = "istio"
DISABLED_TLS_MODE: Final = "disabled"


@dataclass(frozen=True, slots=True)
class WorkloadInstance:
    """A workload: a WorkloadEntry, an endpoint written inline in a ServiceEntry, a Kubernetes
    pod, or an endpoint of a Kubernetes service."""

    name: str  # empty for inline ServiceEntry endpoints and endpoints without a pod
    namespace: str
    address: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)  # port name -> number
    service_account: str = ""
    locality: str = ""  # "region/zone/subzone", any part may be missing
    weight: int = 1
    network: str = ""
    # False: not (yet) serving, so kept out of other proxies' endpoints, while the workload's
    # own proxy still gets its inbound configuration (a Kubernetes pod that is not ready).
    ready: bool = True
    # Its label security.istio.io/tlsMode when set; otherwise Istio's defaults: `istio` for a
    # WorkloadEntry with a service account (`registry.convert`), `disabled` for a pod.
    tls_mode: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", frozen_map(self.labels))
        object.__setattr__(self, "ports", frozen_map(self.ports))
        if not self.tls_mode:
            object.__setattr__(self, "tls_mode", self.labels.get(TLS_MODE_LABEL, DISABLED_TLS_MODE))

    def endpoint_port(self, port: ServicePort) -> int:
        """Where this workload receives traffic for a service port."""
        return self.ports.get(port.name) or port.target_port or port.number


@dataclass(frozen=True, slots=True)
class Service:
    hostname: str
    namespace: str
    ports: tuple[ServicePort, ...]
    addresses: tuple[str, ...] = ()  # VIPs: IPs or CIDR ranges
    resolution: Resolution = Resolution.NONE
    location: Location = Location.MESH_EXTERNAL
    workload_selector: Mapping[str, str] | None = None
    endpoints: tuple[WorkloadInstance, ...] = ()  # written inline in the ServiceEntry
    # Whether sidecars ask Mixer before letting a request to it through (when the mesh does at
    # all): the annotation policy.pymesh.dev/check: disable on its ServiceEntry turns it off.
    policy_checks: bool = True
    # The addresses that are single IPs (CIDR ranges cannot name a listener or a host): asked
    # for each service of each view, so found once.
    vips: tuple[str, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.workload_selector is not None:
            object.__setattr__(self, "workload_selector", frozen_map(self.workload_selector))
        object.__setattr__(self, "vips", tuple(a for a in self.addresses if is_ip(a)))

    def selects(self, workload: WorkloadInstance) -> bool:
        selector = self.workload_selector
        if selector is None or workload.namespace != self.namespace:
            return False
        return all(workload.labels.get(k) == v for k, v in selector.items())


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One address:port serving a service port, with what load balancing needs to know."""

    address: str
    port: int
    weight: int = 1
    locality: str = ""
    network: str = ""
    service_account: str = ""
    # The workload's labels, which DestinationRule subsets select by; not part of the hash
    # (a mapping is not hashable), but part of equality.
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    # Whether the endpoint accepts Istio mutual TLS (auto mTLS sends it there): its workload's
    # TLS mode is `istio` and its PeerAuthentication does not DISABLE mTLS on the port.
    istio_mtls: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", frozen_map(self.labels))

    @classmethod
    def of(
        cls, workload: WorkloadInstance, port: ServicePort, *, istio_mtls: bool = False
    ) -> Endpoint:
        return cls(
            address=workload.address,
            port=workload.endpoint_port(port),
            weight=workload.weight,
            locality=workload.locality,
            network=workload.network,
            service_account=workload.service_account,
            labels=workload.labels,
            istio_mtls=istio_mtls,
        )

    def has_labels(self, selector: Mapping[str, str]) -> bool:
        """Whether every label of `selector` is on this endpoint (an empty selector picks all)."""
        return all(self.labels.get(key) == value for key, value in selector.items())


@dataclass(frozen=True, slots=True)
class ServiceInstance:
    """A service port that a proxy's own workload serves, and where the workload listens."""

    service: Service
    port: ServicePort
    endpoint: Endpoint


class NodeType(StrEnum):
    SIDECAR = "sidecar"
    ROUTER = "router"  # a gateway


class InterceptionMode(StrEnum):
    REDIRECT = "REDIRECT"  # iptables NAT redirect (Istio's default)
    TPROXY = "TPROXY"
    NONE = "NONE"  # no capture: the proxy binds each inbound port itself


@dataclass(frozen=True, slots=True)
class ProxyView:
    """Everything the shared (outbound) configuration depends on; equal views share it.

    Outbound clusters, routes, listeners and the endpoints of EDS clusters are functions of
    (push context, view). Inbound clusters and listeners, and the listeners bound to the
    proxy's own address, are per proxy: they depend on its IP and the instances it backs.
    A router's labels pick the Gateways it serves, so they are part of its view (sorted
    pairs). A sidecar's labels matter through the Sidecar resource they select, so its view
    holds that Sidecar's `<namespace>/<name>` (empty when none applies), and through
    VirtualService `sourceLabels` matches, so it holds the labels those matches read (none
    in most meshes): all sidecars of a namespace under the same Sidecar share one view.
    Whether the proxy has a workload certificate (`sds`) decides if its clusters use mutual
    TLS. Whether a sidecar listens as an explicit HTTP proxy (`http_proxy`: HTTP_PROXY_PORT)
    decides if it gets the `http_proxy` route configuration, a virtual host per service port
    that the many sidecars without that listener would never ask for.
    """

    type: NodeType
    namespace: str
    labels: tuple[tuple[str, str], ...] = ()
    sidecar: str = ""
    sds: bool = False
    http_proxy: bool = False


_METADATA_STRING_KEYS: Final = (
    "NAMESPACE",
    "SERVICE_ACCOUNT",
    "INSTANCE_IPS",
    "INTERCEPTION_MODE",
    "APP_ADDRESS",
    "NAME",
    "CLUSTER_ID",
    "GENERATOR",
    "SDS",
)


POLICY_CHECK_ANNOTATION: Final = "policy.pymesh.dev/check"
"""A ServiceEntry annotated `disable` here is exempt from Mixer's policy checks."""

GRPC_GENERATOR: Final = "grpc"
"""Node metadata GENERATOR of Istio's proxyless gRPC clients (`generators.grpc_proxyless`)."""


@dataclass(frozen=True, slots=True)
class Proxy:
    """An Envoy connected to pilot, parsed from its xDS node."""

    id: str
    type: NodeType
    ip: str
    pod_name: str
    namespace: str
    dns_domain: str
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str = ""
    instance_ips: tuple[str, ...] = ()
    interception_mode: InterceptionMode = InterceptionMode.REDIRECT
    http_proxy_port: int | None = None
    app_address: str = DEFAULT_APP_ADDRESS
    name: str = ""
    cluster_id: str = ""
    generator: str = ""  # metadata GENERATOR: which config generator serves the node
    # Metadata SDS "true" (Istio 1.x's flag): the agent serves the workload certificate over
    # SDS. A proxy without one gets no mutual TLS, which it could neither offer nor accept.
    sds: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", frozen_map(self.labels))

    @property
    def proxyless_grpc(self) -> bool:
        """A gRPC application's own xDS client (Istio's `GENERATOR: grpc`), not an Envoy."""
        return self.generator == GRPC_GENERATOR

    @property
    def view(self) -> ProxyView:
        """The view without a Sidecar; `PushContext.view_for` adds the one that applies."""
        if self.type is NodeType.ROUTER:
            labels = tuple(sorted(self.labels.items()))
            return ProxyView(self.type, self.namespace, labels, sds=self.sds)
        http_proxy = self.http_proxy_port is not None and not self.proxyless_grpc
        return ProxyView(self.type, self.namespace, sds=self.sds, http_proxy=http_proxy)

    @property
    def ip_addresses(self) -> tuple[str, ...]:
        """The id's IP first, then any other INSTANCE_IPS."""
        return (self.ip, *(ip for ip in self.instance_ips if ip != self.ip))

    @classmethod
    def from_node(cls, node: base_pb2.Node) -> Proxy:
        """Parse the id `<type>~<ip>~<pod>.<namespace>~<dns domain>` and the node metadata."""
        node_id: str = node.id
        parts = node_id.split("~")
        if len(parts) != 4:
            raise _bad_id(node_id, f"has {len(parts)} '~'-separated parts, want 4")
        kind, ip, pod_dot_ns, dns_domain = parts
        try:
            node_type = NodeType(kind)
        except ValueError:
            raise _bad_id(node_id, f"type {kind!r} is not 'sidecar' or 'router'") from None
        if not is_ip(ip):
            raise _bad_id(node_id, f"{ip!r} is not an IP address")
        pod, _, namespace = pod_dot_ns.partition(".")
        if not pod or not namespace:
            raise _bad_id(node_id, f"{pod_dot_ns!r} is not '<pod>.<namespace>'")
        if not dns_domain:
            raise _bad_id(node_id, "DNS domain (the last part) is empty")

        meta = _Metadata(node_id, node.metadata)
        if meta.strings.get("NAMESPACE", namespace) != namespace:
            raise meta.error(
                "NAMESPACE", f"{meta.strings['NAMESPACE']!r} disagrees with the id's {namespace!r}"
            )
        return cls(
            id=node_id,
            type=node_type,
            ip=ip,
            pod_name=pod,
            namespace=namespace,
            dns_domain=dns_domain,
            labels=meta.labels(),
            service_account=meta.strings.get("SERVICE_ACCOUNT", ""),
            instance_ips=meta.instance_ips(),
            interception_mode=meta.interception_mode(),
            http_proxy_port=meta.http_proxy_port(),
            app_address=meta.app_address(),
            name=meta.strings.get("NAME", ""),
            cluster_id=meta.strings.get("CLUSTER_ID", ""),
            generator=meta.strings.get("GENERATOR", ""),
            sds=meta.strings.get("SDS", "") == "true",
        )


def _bad_id(node_id: str, reason: str) -> InvalidNode:
    return InvalidNode(f"node id {node_id!r}: {reason}")


class _Metadata:
    """Typed access to node metadata, with errors naming the node and the key."""

    def __init__(self, node_id: str, metadata: struct_pb2.Struct) -> None:
        self.node_id = node_id
        self.fields = metadata.fields
        self.strings: dict[str, str] = {}
        for key in _METADATA_STRING_KEYS:
            if key in self.fields:
                self.strings[key] = self.string(key, self.fields[key])

    def error(self, key: str, reason: str) -> InvalidNode:
        return InvalidNode(f"node {self.node_id!r}: metadata {key}: {reason}")

    def string(self, key: str, value: struct_pb2.Value) -> str:
        if value.WhichOneof("kind") != "string_value":
            raise self.error(key, f"must be a string, got {value.WhichOneof('kind')}")
        return value.string_value

    def labels(self) -> dict[str, str]:
        if "LABELS" not in self.fields:
            return {}
        value = self.fields["LABELS"]
        if value.WhichOneof("kind") != "struct_value":
            raise self.error("LABELS", "must be a struct of strings")
        return {k: self.string(f"LABELS.{k}", v) for k, v in value.struct_value.fields.items()}

    def instance_ips(self) -> tuple[str, ...]:
        raw = self.strings.get("INSTANCE_IPS", "")
        ips = tuple(ip.strip() for ip in raw.split(",") if ip.strip())
        for ip in ips:
            if not is_ip(ip):
                raise self.error("INSTANCE_IPS", f"{ip!r} is not an IP address")
        return ips

    def interception_mode(self) -> InterceptionMode:
        raw = self.strings.get("INTERCEPTION_MODE", InterceptionMode.REDIRECT.value)
        try:
            return InterceptionMode(raw)
        except ValueError:
            raise self.error(
                "INTERCEPTION_MODE",
                f"{raw!r} is not one of {', '.join(m.value for m in InterceptionMode)}",
            ) from None

    def http_proxy_port(self) -> int | None:
        if "HTTP_PROXY_PORT" not in self.fields:
            return None
        raw = self.string("HTTP_PROXY_PORT", self.fields["HTTP_PROXY_PORT"])
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise self.error("HTTP_PROXY_PORT", f"{raw!r} is not a port number (1-65535)")
        return int(raw)

    def app_address(self) -> str:
        address = self.strings.get("APP_ADDRESS", DEFAULT_APP_ADDRESS)
        if not is_ip(address):
            raise self.error("APP_ADDRESS", f"{address!r} is not an IP address")
        return address
