"""Envoy's bootstrap for one workload: who the proxy is and where pilot is.

Everything else (listeners, routes, clusters, secrets) comes from pilot over ADS; the bootstrap
only names the node the way Istio does (pilot keys its per-proxy view on it; a workload that
announces a WorkloadGroup with `AUTO_REGISTER_GROUP` is registered by pilot), points ADS at
pilot, and adds the fixed static pieces: the admin interface on 15000, the Prometheus stats
listener on 15090 and, when the agent serves SDS, the `sds-grpc` cluster reaching its Unix
socket (the secrets pilot's mutual TLS configuration names come from there, and with
`pilot_mtls` the certificate the proxy presents to pilot's port 15011). Every port
is bound to the workload's own address, so many Envoys share one host with Istio's fixed
ports; with traffic capture (a pod of its own) the admin interface is on the pod's loopback
instead, as in Istio. A pure function of a `ProxySpec`: no tasks, no I/O.
"""

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from meshcore.identity import CONTROL_PLANE_HOST

ADMIN_PORT = 15000
STATS_PORT = 15090
PILOT_PORT = 15010
XDS_CLUSTER = "xds-grpc"
SDS_CLUSTER = "sds-grpc"
STATS_CLUSTER = "prometheus_stats"

_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "envoy.extensions.filters.http.router.v3.Router"
_UPSTREAM_TLS = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


class ProxyType(StrEnum):
    SIDECAR = "sidecar"
    ROUTER = "router"


class XdsApi(StrEnum):
    """ADS flavour: state of the world or incremental (delta)."""

    GRPC = "GRPC"
    DELTA_GRPC = "DELTA_GRPC"


class InterceptionMode(StrEnum):
    NONE = "NONE"
    REDIRECT = "REDIRECT"


@dataclass(frozen=True)
class ProxySpec:
    """Identity of one workload's proxy and the pilot it talks to."""

    ip: str
    pod: str
    namespace: str
    pilot: str = f"127.0.0.1:{PILOT_PORT}"
    proxy_type: ProxyType = ProxyType.SIDECAR
    xds_api: XdsApi = XdsApi.GRPC
    service_account: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    instance_ips: tuple[str, ...] = ()
    interception: InterceptionMode = InterceptionMode.NONE
    http_proxy_port: int | None = None
    app_address: str = "127.0.0.1"
    cluster_id: str = "Kubernetes"
    mesh_id: str = "cluster.local"
    # How long Envoy waits for its first CDS/LDS before going live without them; 0 waits for
    # pilot forever, as Istio does (listeners, 15090 included, accept nothing until then).
    initial_fetch_timeout: float = 0.0
    # The WorkloadGroup (in `namespace`) pilot registers this workload in; empty: none.
    auto_register_group: str = ""
    # The agent's SDS Unix socket; None: no `sds-grpc` cluster (no mesh certificates).
    sds_socket: str | None = None
    # Reach pilot over mutual TLS (its port 15011) with the workload certificate from SDS,
    # verifying pilot as istiod against the mesh root.
    pilot_mtls: bool = False

    @property
    def node_id(self) -> str:
        ns = self.namespace
        return f"{self.proxy_type}~{self.ip}~{self.pod}.{ns}~{ns}.svc.cluster.local"

    @property
    def node_cluster(self) -> str:
        return f"{self.labels.get('app', self.pod)}.{self.namespace}"

    @property
    def admin_host(self) -> str:
        """Where Envoy's admin API listens: the workload's address without capture; with
        capture the pod's own loopback, as in Istio, since the proxy's connections to its pod
        address are redirected to inbound (and nothing outside the pod needs the admin API)."""
        if self.interception is InterceptionMode.NONE:
            return self.ip
        return "::1" if ":" in self.ip else "127.0.0.1"

    @property
    def admin_url(self) -> str:
        return f"http://{_url_host(self.admin_host)}:{ADMIN_PORT}"


def parse_host_port(address: str, default_port: int) -> tuple[str, int]:
    """Split `host`, `host:port` or `[v6]:port`; raise ValueError if malformed."""
    parts = urlsplit(f"//{address}")
    if not parts.hostname:
        raise ValueError(f"no host in address {address!r}")
    return parts.hostname, parts.port or default_port


def build_bootstrap(spec: ProxySpec) -> dict[str, Any]:
    """The bootstrap as plain JSON-ready data (Envoy's v3 Bootstrap schema)."""
    if spec.pilot_mtls and spec.sds_socket is None:
        raise ValueError("mutual TLS to pilot needs the workload certificate (sds_socket)")
    clusters = [_xds_cluster(spec.pilot, spec.pilot_mtls), _stats_cluster(spec.admin_host)]
    if spec.sds_socket is not None:
        clusters.append(_sds_cluster(spec.sds_socket))
    ads = {
        "ads": {},
        "resource_api_version": "V3",
        "initial_fetch_timeout": f"{spec.initial_fetch_timeout:.3f}s",
    }
    return {
        "node": {
            "id": spec.node_id,
            "cluster": spec.node_cluster,
            "metadata": _node_metadata(spec),
        },
        "admin": {"address": _socket(spec.admin_host, ADMIN_PORT)},
        "dynamic_resources": {
            "ads_config": {
                "api_type": str(spec.xds_api),
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
                "set_node_on_first_message_only": True,
            },
            "cds_config": ads,
            "lds_config": dict(ads),
        },
        "static_resources": {
            "clusters": clusters,
            "listeners": [_stats_listener(spec.ip)],
        },
    }


def _node_metadata(spec: ProxySpec) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "NAMESPACE": spec.namespace,
        "NAME": spec.pod,
        "LABELS": dict(spec.labels),
        "SERVICE_ACCOUNT": spec.service_account,
        "INSTANCE_IPS": ",".join(spec.instance_ips or (spec.ip,)),
        "INTERCEPTION_MODE": str(spec.interception),
        "APP_ADDRESS": spec.app_address,
        "CLUSTER_ID": spec.cluster_id,
        "MESH_ID": spec.mesh_id,
    }
    if spec.http_proxy_port is not None:
        metadata["HTTP_PROXY_PORT"] = str(spec.http_proxy_port)
    if spec.auto_register_group:
        metadata["AUTO_REGISTER_GROUP"] = spec.auto_register_group
    if spec.sds_socket is not None:
        metadata["SDS"] = "true"  # pilot may configure mutual TLS: this agent serves certificates
    return metadata


def _xds_cluster(pilot: str, mtls: bool) -> dict[str, Any]:
    host, port = parse_host_port(pilot, PILOT_PORT)
    http2 = {"connection_keepalive": {"interval": "30s", "timeout": "10s"}}
    cluster: dict[str, Any] = {
        "name": XDS_CLUSTER,
        "type": "STATIC" if _is_ip(host) else "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": _load_assignment(XDS_CLUSTER, _socket(host, port)),
        "upstream_connection_options": {"tcp_keepalive": {"keepalive_time": 300}},
        "typed_extension_protocol_options": _http2_options(http2),
    }
    if not _is_ip(host):
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    if mtls:
        cluster["transport_socket"] = _pilot_mtls()
    return cluster


def _pilot_mtls() -> dict[str, Any]:
    """The workload certificate from the agent's SDS (`default`), and pilot verified as
    istiod (its DNS SAN, also sent as SNI) against the mesh root (`ROOTCA`)."""
    sds = {
        "sds_config": {
            "api_config_source": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": SDS_CLUSTER}}],
            },
            "resource_api_version": "V3",
        }
    }
    context = {
        "@type": _type_url(_UPSTREAM_TLS),
        "sni": CONTROL_PLANE_HOST,
        "common_tls_context": {
            "tls_certificate_sds_secret_configs": [{"name": "default", **sds}],
            "combined_validation_context": {
                "default_validation_context": {
                    "match_typed_subject_alt_names": [
                        {"san_type": "DNS", "matcher": {"exact": CONTROL_PLANE_HOST}}
                    ]
                },
                "validation_context_sds_secret_config": {"name": "ROOTCA", **sds},
            },
            "alpn_protocols": ["h2"],
        },
    }
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}


def _stats_cluster(admin_host: str) -> dict[str, Any]:
    return {
        "name": STATS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "0.250s",
        "load_assignment": _load_assignment(STATS_CLUSTER, _socket(admin_host, ADMIN_PORT)),
    }


def _sds_cluster(socket_path: str) -> dict[str, Any]:
    """Istio's `sds-grpc`: gRPC (HTTP/2) to the agent's SDS server on a Unix socket."""
    return {
        "name": SDS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": _load_assignment(SDS_CLUSTER, {"pipe": {"path": socket_path}}),
        "typed_extension_protocol_options": _http2_options({}),
    }


def _http2_options(http2: dict[str, Any]) -> dict[str, Any]:
    return {
        _PROTOCOL_OPTIONS: {
            "@type": _type_url(_PROTOCOL_OPTIONS),
            "explicit_http_config": {"http2_protocol_options": http2},
        }
    }


def _stats_listener(ip: str) -> dict[str, Any]:
    route = {"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": STATS_CLUSTER}}
    manager = {
        "@type": _type_url(_HCM),
        "stat_prefix": "stats",
        "codec_type": "AUTO",
        "route_config": {
            "virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": [route]}]
        },
        "http_filters": [
            {"name": "envoy.filters.http.router", "typed_config": {"@type": _type_url(_ROUTER)}}
        ],
    }
    return {
        "name": STATS_CLUSTER,
        "address": _socket(ip, STATS_PORT),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }


def _load_assignment(name: str, address: dict[str, Any]) -> dict[str, Any]:
    endpoint = {"endpoint": {"address": address}}
    return {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]}


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _type_url(name: str) -> str:
    return f"type.googleapis.com/{name}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _url_host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip
