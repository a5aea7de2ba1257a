"""RDS: outbound route configurations, one per HTTP port plus one for the explicit HTTP proxy.

A request reaches `0.0.0.0_<port>` and is routed by its Host header through the route config
named `"<port>"`: one virtual host per service on that port (named `<fqdn>:<port>`, as Istio),
answering to every name a client may use for it (FQDN, short forms, VIPs, each with and without
the port), and Istio's `allow_any` host passing anything else through, or under the Sidecar's
REGISTRY_ONLY policy its `block_all` host answering 502. The `http_proxy` config serves
applications that use the sidecar as HTTP_PROXY: absolute-URI requests carry `host:port`, so
every service port is there under its `:<port>` names. Only views whose sidecars have that
listener (HTTP_PROXY_PORT, `ProxyView.http_proxy`) get it: no other sidecar asks for it, and it
is as large as all the port configs together. It has the same last virtual host,
except that it does not pass through to PassthroughCluster: that needs traffic capture (an
explicit proxy's connections are addressed to the proxy itself, so the original destination is
the proxy).

The services and VirtualServices are those of the view's Sidecar scope (`sidecar_scope`).

A service port's routes are those of the VirtualService that routes the service
(`virtual_services.http_owner`) translated for that port, or the default route when there is
none or none of its rules applies on that port. As in istiod, a VirtualService host that is not
a service gets a virtual host of its own (`<host>:<port>`, answering to the host itself) on the
ports of the services the VirtualService routes, or on port 80 when it routes none. For the
HTTP proxy istiod builds routes without a port; we build each port's virtual host with that
port's routes, so `match.port` and multi-port destinations resolve as on the port listeners.

Envoy rejects a domain listed twice in one config, so the first virtual host to claim a domain
keeps it: VirtualService-only hosts (oldest VirtualService first), then services by hostname.

A service port's default route depends on the view only through the DestinationRule that
applies (its consistent hashing), so it is built once per push context for all views that
agree on that rule (`PushContext.memo`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final

from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.config.route.v3.route_components_pb2 import Route, VirtualHost
from google.protobuf import any_pb2, wrappers_pb2

from pilot.generators import names
from pilot.generators.clusters import catch_all_cluster
from pilot.generators.http_routes import (
    DEFAULT_ROUTE,
    NO_TIMEOUT,
    RouteContext,
    default_route,
    virtual_service_routes,
)
from pilot.generators.virtual_services import http_owner, mesh_virtual_services
from pilot.istio_config import hosts_match
from pilot.model import CLUSTER_DOMAIN, NodeType, ProxyView, Service
from pilot.push_context import PushContext
from pilot.virtual_service_rules import BoundVirtualService

ALLOW_ANY: Final = "allow_any"
BLOCK_ALL: Final = "block_all"
BLOCKED_STATUS: Final = 502
DEFAULT_HTTP_PORT: Final = 80
# Istio's limit for direct response bodies (its validation allows up to 1 MB; Envoy's default
# is 4 KB).
MAX_DIRECT_RESPONSE_BODY: Final = 1024 * 1024
INBOUND_RETRY_ON: Final = "reset-before-request"
INBOUND_RETRIES: Final = 2
# Routes may name clusters the proxy does not have yet; Envoy must not reject them for that.
_NO: Final = wrappers_pb2.BoolValue(value=False)
_MAX_BODY: Final = wrappers_pb2.UInt32Value(value=MAX_DIRECT_RESPONSE_BODY)


@dataclass(frozen=True, slots=True)
class _Host:
    """One virtual host to be: its name, the names it answers to (without port), its routes."""

    hostname: str
    port: int
    names: Sequence[str]
    routes: Sequence[Route]


def outbound_routes(ctx: PushContext, view: ProxyView) -> list[route_pb2.RouteConfiguration]:
    """`"<port>"` for each HTTP service port, and `http_proxy` if the view's sidecars listen as
    an HTTP proxy; none for routers, whose route configs come from their Gateways
    (`gateway_routes`)."""
    if view.type is not NodeType.SIDECAR:
        return []
    hosts = _Planner(ctx, view).hosts()
    by_number: dict[int, list[_Host]] = defaultdict(list)
    for host in hosts:
        by_number[host.port].append(host)
    service_ports = sorted(
        {p.number for s in ctx.services_for(view) for p in s.ports if p.protocol.is_http}
    )
    unknown = catch_all_cluster(ctx, view)
    catch_all = _catch_all(unknown)
    configs = [
        _config(str(number), by_number[number], catch_all, proxy_form=False)
        for number in service_ports
    ]
    if view.http_proxy:
        last = None if unknown == names.PASSTHROUGH_CLUSTER else catch_all
        configs.append(_config(names.HTTP_PROXY_ROUTE, hosts, last, proxy_form=True))
    return configs


def inbound_route(
    port: int, per_filter: Mapping[str, any_pb2.Any] | None = None
) -> route_pb2.RouteConfiguration:
    """The inline route of an inbound HTTP filter chain: everything to `inbound|<port>||`.

    Like Istio, no timeout, and a request reset before reaching the application is retried.
    `per_filter` is the route's per-filter config (Mixer's check attributes).
    """
    cluster = names.inbound_cluster(port)
    action = route_components_pb2.RouteAction(cluster=cluster, timeout=NO_TIMEOUT)
    action.max_stream_duration.max_stream_duration.CopyFrom(NO_TIMEOUT)
    action.max_stream_duration.grpc_timeout_header_max.CopyFrom(NO_TIMEOUT)
    action.retry_policy.retry_on = INBOUND_RETRY_ON
    action.retry_policy.num_retries.value = INBOUND_RETRIES
    route = Route(
        name=DEFAULT_ROUTE, match=route_components_pb2.RouteMatch(prefix="/"), route=action
    )
    for name, config in sorted((per_filter or {}).items()):
        route.typed_per_filter_config[name].CopyFrom(config)
    return route_pb2.RouteConfiguration(
        name=cluster,
        virtual_hosts=[VirtualHost(name=f"inbound|http|{port}", domains=["*"], routes=[route])],
        validate_clusters=_NO,
    )


class _Planner:
    """Decides every virtual host of one view, translating each (VirtualService, port) once."""

    def __init__(self, ctx: PushContext, view: ProxyView) -> None:
        self.ctx = ctx
        self.view = view
        self.services = ctx.services_for(view)
        self.virtual_services = mesh_virtual_services(ctx, view)
        self.owners = {
            s.hostname: http_owner(s.hostname, self.virtual_services) for s in self.services
        }
        self._translated: dict[tuple[tuple[str, str, str], int], list[Route]] = {}

    def hosts(self) -> list[_Host]:
        hosts = [h for vs in self.virtual_services for h in self._virtual_service_hosts(vs)]
        for service in self.services:
            http_ports = [port.number for port in service.ports if port.protocol.is_http]
            if not http_ports:
                continue
            owner = self.owners[service.hostname]
            host_names = _host_names(service, self.view)
            for port in http_ports:
                routes = [] if owner is None else self._routes(owner, port)
                if not routes:
                    routes = [self._default_route(service.hostname, port)]
                hosts.append(_Host(service.hostname, port, host_names, routes))
        return hosts

    def _default_route(self, hostname: str, port: int) -> Route:
        """The port's default route, shared with every view the same DestinationRule applies
        to (callers copy it into their virtual hosts)."""
        rule = self.ctx.config.destination_rule_for(hostname, self.view.namespace)
        key = ("default-route", hostname, port, rule and rule.key)
        build = partial(default_route, self.ctx, self.view.namespace, hostname, port)
        return self.ctx.memo(key, build)

    def _routes(self, vs: BoundVirtualService, port: int) -> list[Route]:
        key = (vs.resource.key, port)
        if key not in self._translated:
            at = RouteContext(self.ctx, self.view.namespace, port, labels=dict(self.view.labels))
            self._translated[key] = virtual_service_routes(vs, at)
        return self._translated[key]

    def _virtual_service_hosts(self, vs: BoundVirtualService) -> Iterable[_Host]:
        """Virtual hosts for the VirtualService's hosts that name no service (istiod's
        `separateVSHostsAndServices`), on the ports of the services it routes, or on 80."""
        others = [h for h in vs.hosts if not _names_a_service(h, self.owners.keys())]
        if not others:
            return
        ports = {
            port.number
            for service in self.services
            if service.hostname in vs.hosts or self.owners[service.hostname] is vs
            for port in service.ports
            if port.protocol.is_http
        }
        for port in sorted(ports or {DEFAULT_HTTP_PORT}):
            routes = self._routes(vs, port)
            if routes:
                yield from (_Host(host, port, [host], routes) for host in others)


def _names_a_service(host: str, hostnames: Collection[str]) -> bool:
    """An exact host names a service by equality; a wildcard if it covers any service."""
    if host.startswith("*"):
        return any(hosts_match(host, hostname) for hostname in hostnames)
    return host in hostnames


def _host_names(service: Service, view: ProxyView) -> list[str]:
    """The names (without port) a client in the view's namespace may use for the service.

    Kubernetes-style `<name>.<ns>.svc.cluster.local` hosts also answer to `<name>.<ns>.svc` and
    `<name>.<ns>`, and to `<name>` from their own namespace, as cluster DNS search paths allow.
    """
    result = [service.hostname]
    short = service.hostname.removesuffix(f".{service.namespace}.svc.{CLUSTER_DOMAIN}")
    if short != service.hostname and "." not in short:
        if view.namespace == service.namespace:
            result.append(short)
        result += [f"{short}.{service.namespace}", f"{short}.{service.namespace}.svc"]
    result += [f"[{vip}]" if ":" in vip else vip for vip in service.vips]
    return result


def _claim_domains(hosts: Iterable[_Host], *, proxy_form: bool) -> list[tuple[_Host, list[str]]]:
    """Claim domains in the given order; the hosts left with any, by (hostname, port)."""
    claimed: set[str] = set()
    found = []
    for host in hosts:
        domains = []
        suffix = f":{host.port}"
        for name in host.names:
            with_port = name + suffix
            if proxy_form:
                # An absolute URI names its port unless it is HTTP's default.
                forms = (with_port, name) if host.port == DEFAULT_HTTP_PORT else (with_port,)
            else:
                forms = (name, with_port)
            for domain in forms:
                if domain not in claimed:
                    claimed.add(domain)
                    domains.append(domain)
        if domains:
            found.append((host, domains))
    found.sort(key=lambda item: (item[0].hostname, item[0].port))
    return found


def _catch_all(cluster: str) -> VirtualHost:
    """Istio's last virtual host, for hosts no service claims: `allow_any` passes them on
    to `cluster` (PassthroughCluster or the Sidecar's egress proxy), `block_all` answers 502
    (REGISTRY_ONLY)."""
    match = route_components_pb2.RouteMatch(prefix="/")
    if cluster == names.BLACKHOLE_CLUSTER:
        blocked = route_components_pb2.DirectResponseAction(status=BLOCKED_STATUS)
        route = Route(name=BLOCK_ALL, match=match, direct_response=blocked)
        return VirtualHost(name=BLOCK_ALL, domains=["*"], routes=[route])
    action = route_components_pb2.RouteAction(cluster=cluster, timeout=NO_TIMEOUT)
    action.max_grpc_timeout.CopyFrom(NO_TIMEOUT)
    route = Route(name=ALLOW_ANY, match=match, route=action)
    return VirtualHost(name=ALLOW_ANY, domains=["*"], routes=[route])


def _config(
    name: str, hosts: Iterable[_Host], last: VirtualHost | None, *, proxy_form: bool
) -> route_pb2.RouteConfiguration:
    """The config of `hosts` (their domains claimed in `proxy_form` or not), then `last`.
    Virtual hosts are built in place: a built one would be copied into the config again."""
    config = route_pb2.RouteConfiguration(
        name=name, validate_clusters=_NO, max_direct_response_body_size_bytes=_MAX_BODY
    )
    virtual_hosts = config.virtual_hosts
    for host, domains in _claim_domains(hosts, proxy_form=proxy_form):
        virtual_hosts.add(name=f"{host.hostname}:{host.port}", domains=domains, routes=host.routes)
    if last is not None:
        virtual_hosts.append(last)
    return config
