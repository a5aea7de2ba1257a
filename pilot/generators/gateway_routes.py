"""RDS for routers: the route config of each gateway HTTP server, from its bound VirtualServices.

istiod's `buildGatewayHTTPRouteConfig`, for the route names `gateways.merge` assigns
(`http.<port>` shared by a port's plain-text servers, `https.<port>.<port name>.<gateway>.
<namespace>` per terminating HTTPS server):

- a server sees the VirtualServices bound to its Gateway (`gateways: [name]` is relative to the
  VirtualService's namespace; `ns/name` names another) and visible from the router's namespace;
- a VirtualService applies where its hosts meet the server's (istiod's `Intersection`: the more
  specific of two matching names; server host `*` takes every host, `ns/host` only
  VirtualServices of `ns`); each meeting host becomes one virtual host `<host>:<port>`
  answering to `host` and `host:<port>` (only `*` for `*`);
- several VirtualServices for one host merge, routes in VirtualService order, catch-all routes
  moved last (istiod's `SortVHostRoutes`);
- each rule is translated once per (Gateway, VirtualService, port) by `http_routes`, exactly as
  for sidecars but asking as that Gateway with the router's labels, so `match.gateways`,
  `sourceLabels` and `port` select per gateway;
- an `httpsRedirect` server's hosts require TLS (Envoy answers 301 to https), with or without
  a VirtualService;
- a route config with no virtual host gets istiod's `blackhole:<port>`, answering 404.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.config.route.v3.route_components_pb2 import Route, VirtualHost
from google.protobuf import wrappers_pb2

from pilot.generators.gateways import (
    WILDCARD_HOST,
    GatewayServer,
    MergedGateway,
    gateway_virtual_services,
)
from pilot.generators.http_routes import RouteContext, is_catch_all, virtual_service_routes
from pilot.generators.routes import MAX_DIRECT_RESPONSE_BODY
from pilot.model import ProxyView
from pilot.push_context import PushContext
from pilot.virtual_service_rules import BoundVirtualService

BLACKHOLE_HOST: Final = "blackhole"


def gateway_routes(
    ctx: PushContext, view: ProxyView, merged: MergedGateway
) -> list[route_pb2.RouteConfiguration]:
    """One route config per HTTP route name of the merged servers, sorted by name."""
    planner = _Planner(ctx, view)
    by_route = merged.servers_by_route()
    return [planner.config(name, by_route[name]) for name in sorted(by_route)]


class _Planner:
    """Builds one view's route configs, translating each (gateway, VirtualService, port) once."""

    def __init__(self, ctx: PushContext, view: ProxyView) -> None:
        self.ctx = ctx
        self.view = view
        self.labels = dict(view.labels)
        self._translated: dict[tuple[str, tuple[str, str, str], int], list[Route]] = {}

    def config(self, name: str, servers: Sequence[GatewayServer]) -> route_pb2.RouteConfiguration:
        hosts: dict[str, VirtualHost] = {}
        for server in servers:
            tls = server.server.tls
            redirect = tls is not None and bool(tls.https_redirect)
            for vs in gateway_virtual_services(self.ctx, self.view, server.gateway):
                meeting = _intersection(server.hosts_for(vs.namespace), vs.hosts)
                if not meeting:
                    continue
                routes = self._routes(server, vs)
                for host in meeting:
                    _virtual_host(hosts, host, server.port).routes.extend(routes)
            if redirect:
                for host in server.hosts:
                    bare = host.rpartition("/")[2]
                    _virtual_host(hosts, bare, server.port).require_tls = VirtualHost.ALL
        if not hosts:
            blackhole = VirtualHost(
                name=f"{BLACKHOLE_HOST}:{servers[0].port}", domains=[WILDCARD_HOST]
            )
            hosts[BLACKHOLE_HOST] = blackhole
        for virtual_host in hosts.values():
            _catch_all_last(virtual_host)
        return route_pb2.RouteConfiguration(
            name=name,
            virtual_hosts=sorted(hosts.values(), key=lambda vh: vh.name),
            validate_clusters=wrappers_pb2.BoolValue(value=False),
            max_direct_response_body_size_bytes=wrappers_pb2.UInt32Value(
                value=MAX_DIRECT_RESPONSE_BODY
            ),
        )

    def _routes(self, server: GatewayServer, vs: BoundVirtualService) -> list[Route]:
        key = (server.gateway, vs.resource.key, server.port)
        if key not in self._translated:
            at = RouteContext(
                self.ctx, self.view.namespace, server.port, server.gateway, self.labels
            )
            self._translated[key] = virtual_service_routes(vs, at)
        return self._translated[key]


def _virtual_host(hosts: dict[str, VirtualHost], host: str, port: int) -> VirtualHost:
    """The virtual host of `host`, created on first use."""
    if host not in hosts:
        domains = [host] if host == WILDCARD_HOST else [host, f"{host}:{port}"]
        hosts[host] = VirtualHost(
            name=f"{host}:{port}", domains=domains, include_request_attempt_count=True
        )
    return hosts[host]


def _catch_all_last(virtual_host: route_components_pb2.VirtualHost) -> None:
    routes = list(virtual_host.routes)
    ordered = [r for r in routes if not is_catch_all(r.match)]
    ordered += [r for r in routes if is_catch_all(r.match)]
    del virtual_host.routes[:]
    virtual_host.routes.extend(ordered)


def _intersection(server_hosts: Sequence[str], vs_hosts: Sequence[str]) -> list[str]:
    """istio's `Names.Intersection`: for each pair where one covers the other, the narrower."""
    found: list[str] = []
    for server_host in server_hosts:
        for vs_host in vs_hosts:
            if _subset_of(server_host, vs_host):
                narrower = server_host
            elif _subset_of(vs_host, server_host):
                narrower = vs_host
            else:
                continue
            if narrower not in found:
                found.append(narrower)
    return found


def _subset_of(name: str, other: str) -> bool:
    """istio's `host.Name.SubsetOf`: every name `name` covers is covered by `other`."""
    if name.startswith("*"):
        return other.startswith("*") and name[1:].endswith(other[1:])
    if other.startswith("*"):
        return name.endswith(other[1:])
    return name == other
