"""The network filters listeners are made of: HTTP connection manager and TCP proxy.

Outbound, inbound and HTTP-proxy listeners differ only in how their HTTP connection manager
finds routes (RDS by name, or an inline route) and in their stat prefix; building the filters
here keeps those listeners identical in every other respect. Every HCM runs Istio's HTTP filter
chain: the workload's authentication and authorization policies (inbound only), fault
injection, CORS, then the router. The fault and CORS filters do nothing until a
route carries per-route config for them (VirtualService `fault` and `corsPolicy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import wrappers_pb2

from pilot.generators.proto import ads, pack

HTTP_CONNECTION_MANAGER: Final = "envoy.filters.network.http_connection_manager"
TCP_PROXY: Final = "envoy.filters.network.tcp_proxy"
ROUTER: Final = "envoy.filters.http.router"
FAULT: Final = "envoy.filters.http.fault"
CORS: Final = "envoy.filters.http.cors"


def _http_filters(policy: Sequence[hcm_pb2.HttpFilter]) -> list[hcm_pb2.HttpFilter]:
    return [
        *policy,
        hcm_pb2.HttpFilter(name=FAULT, typed_config=pack(fault_pb2.HTTPFault())),
        hcm_pb2.HttpFilter(name=CORS, typed_config=pack(cors_pb2.Cors())),
        hcm_pb2.HttpFilter(name=ROUTER, typed_config=pack(router_pb2.Router())),
    ]


def http_connection_manager(
    stat_prefix: str,
    *,
    rds: str | None = None,
    route_config: route_pb2.RouteConfiguration | None = None,
    absolute_urls: bool = False,
    edge: bool = False,
    inbound: bool = False,
    policy_filters: Sequence[hcm_pb2.HttpFilter] = (),
    access_logs: Sequence[accesslog_pb2.AccessLog] = (),
) -> listener_components_pb2.Filter:
    """An HCM taking routes from RDS (`rds` names the route config) or inline.

    `absolute_urls` makes it an explicit HTTP proxy: requests like `GET http://host:port/`
    are accepted and routed by their host:port. `edge` is a gateway's HCM (istiod's
    `buildGatewayConnectionManager`): the client's address is the remote address (appended to
    X-Forwarded-For), and a client certificate header from outside is replaced, not trusted.
    `inbound` is a sidecar's inbound HCM: the mutual TLS peer's identity is appended to
    `x-forwarded-client-cert` for the application. `policy_filters` (authentication and
    authorization) run before all others; `access_logs` record every request.
    """
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        http_filters=_http_filters(policy_filters),
        # Istio's defaults: `/a/../b` and `//b` are matched (and authorized) as `/b`.
        normalize_path=wrappers_pb2.BoolValue(value=True),
        merge_slashes=True,
        access_log=access_logs,
    )
    details = manager.set_current_client_cert_details
    if edge:
        manager.use_remote_address.value = True
        manager.forward_client_cert_details = hcm_pb2.HttpConnectionManager.SANITIZE_SET
        details.subject.value = True
        details.cert = details.uri = details.dns = True
    elif inbound:
        manager.forward_client_cert_details = hcm_pb2.HttpConnectionManager.APPEND_FORWARD
        details.subject.value = True
        details.uri = details.dns = True
    if rds is not None:
        manager.rds.CopyFrom(hcm_pb2.Rds(config_source=ads(), route_config_name=rds))
    elif route_config is not None:
        manager.route_config.CopyFrom(route_config)
    else:
        raise ValueError("an HTTP connection manager needs rds or route_config")
    if absolute_urls:
        manager.http_protocol_options.CopyFrom(
            protocol_pb2.Http1ProtocolOptions(allow_absolute_url=wrappers_pb2.BoolValue(value=True))
        )
    return listener_components_pb2.Filter(name=HTTP_CONNECTION_MANAGER, typed_config=pack(manager))


def tcp_proxy(cluster: str) -> listener_components_pb2.Filter:
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=cluster, cluster=cluster)
    return listener_components_pb2.Filter(name=TCP_PROXY, typed_config=pack(proxy))
