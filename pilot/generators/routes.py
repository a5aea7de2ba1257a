"""RDS: outbound route configurations, one per HTTP port plus one for the explicit HTTP proxy.

A request reaches `0.0.0.0_<port>` and is routed by its Host header through the route config
named `"<port>"`: one virtual host per service on that port, answering to every name a client
may use for it (FQDN, short forms, VIPs, each with and without the port), and Istio's
`allow_any` host passing anything else through. The `http_proxy` config serves applications
that use the sidecar as HTTP_PROXY: absolute-URI requests carry `host:port`, so every service
port is there under its `:<port>` names. Envoy rejects a domain listed twice in one config, so
the first virtual host (by hostname) to claim a domain keeps it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Final

from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import wrappers_pb2

from pilot.generators import names
from pilot.generators.proto import seconds
from pilot.model import CLUSTER_DOMAIN, NodeType, ProxyView, Service, ServicePort
from pilot.push_context import PushContext

ALLOW_ANY: Final = "allow_any"
DEFAULT_ROUTE: Final = "default"
DEFAULT_HTTP_PORT: Final = 80
# Routes may name clusters the proxy does not have yet; Envoy must not reject them for that.
_NO: Final = wrappers_pb2.BoolValue(value=False)


def outbound_routes(ctx: PushContext, view: ProxyView) -> list[route_pb2.RouteConfiguration]:
    """`"<port>"` for each HTTP service port, and `http_proxy`; none for gateways (yet)."""
    if view.type is not NodeType.SIDECAR:
        return []
    http_ports = [
        (service, port)
        for service in ctx.services_for(view.namespace)
        for port in service.ports
        if port.protocol.is_http
    ]
    by_number: dict[int, list[tuple[Service, ServicePort]]] = defaultdict(list)
    for service, port in http_ports:
        by_number[port.number].append((service, port))
    configs = [
        _config(
            str(number), _virtual_hosts(by_number[number], view, proxy_form=False), allow_any=True
        )
        for number in sorted(by_number)
    ]
    configs.append(
        _config(
            names.HTTP_PROXY_ROUTE,
            _virtual_hosts(http_ports, view, proxy_form=True),
            allow_any=False,
        )
    )
    return configs


def inbound_route(port: int) -> route_pb2.RouteConfiguration:
    """The inline route of an inbound HTTP filter chain: everything to `inbound|<port>||`."""
    cluster = names.inbound_cluster(port)
    return route_pb2.RouteConfiguration(
        name=cluster,
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name=f"inbound|http|{port}", domains=["*"], routes=[_route(DEFAULT_ROUTE, cluster)]
            )
        ],
        validate_clusters=_NO,
    )


def _host_names(service: Service, namespace: str) -> list[str]:
    """The names (without port) a client in `namespace` may use for the service.

    Kubernetes-style `<name>.<ns>.svc.cluster.local` hosts also answer to `<name>.<ns>.svc` and
    `<name>.<ns>`, and to `<name>` from their own namespace, as cluster DNS search paths allow.
    """
    result = [service.hostname]
    short = service.hostname.removesuffix(f".{service.namespace}.svc.{CLUSTER_DOMAIN}")
    if short != service.hostname and "." not in short:
        if namespace == service.namespace:
            result.append(short)
        result += [f"{short}.{service.namespace}", f"{short}.{service.namespace}.svc"]
    result += [f"[{vip}]" if ":" in vip else vip for vip in service.vips]
    return result


def _virtual_hosts(
    ports: Iterable[tuple[Service, ServicePort]], view: ProxyView, *, proxy_form: bool
) -> list[route_components_pb2.VirtualHost]:
    claimed: set[str] = set()
    virtual_hosts = []
    for service, port in sorted(ports, key=lambda sp: (sp[0].hostname, sp[1].number)):
        domains = []
        for name in _host_names(service, view.namespace):
            with_port = f"{name}:{port.number}"
            if proxy_form:
                # An absolute URI names its port unless it is HTTP's default.
                forms = [with_port, name] if port.number == DEFAULT_HTTP_PORT else [with_port]
            else:
                forms = [name, with_port]
            domains += [d for d in forms if d not in claimed]
            claimed.update(forms)
        if domains:
            cluster = names.outbound_cluster(port.number, service.hostname)
            virtual_hosts.append(
                route_components_pb2.VirtualHost(
                    name=f"{service.hostname}:{port.number}",
                    domains=domains,
                    routes=[_route(DEFAULT_ROUTE, cluster)],
                )
            )
    return virtual_hosts


def _config(
    name: str, virtual_hosts: list[route_components_pb2.VirtualHost], *, allow_any: bool
) -> route_pb2.RouteConfiguration:
    if allow_any:
        virtual_hosts.append(
            route_components_pb2.VirtualHost(
                name=ALLOW_ANY,
                domains=["*"],
                routes=[_route(ALLOW_ANY, names.PASSTHROUGH_CLUSTER)],
            )
        )
    return route_pb2.RouteConfiguration(
        name=name, virtual_hosts=virtual_hosts, validate_clusters=_NO
    )


def _route(name: str, cluster: str) -> route_components_pb2.Route:
    """Prefix `/` to one cluster, with no route timeout (as Istio: streams may be long-lived)."""
    return route_components_pb2.Route(
        name=name,
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(cluster=cluster, timeout=seconds(0)),
    )
