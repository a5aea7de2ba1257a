"""Builders shared by the gateway translation tests: Gateway documents, router views, output."""

from __future__ import annotations

from textwrap import dedent, indent

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2

from pilot.generators import gateway_routes, gateways
from pilot.model import NodeType, ProxyView
from pilot.push_context import PushContext

INGRESS_LABELS = {"istio": "ingressgateway"}
ROUTER_IP = "127.0.9.9"
ROUTER_ID = f"router~{ROUTER_IP}~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local"


def gateway(name: str, servers: str, namespace: str = "default", selector: str = "") -> str:
    """A Gateway selecting istio=ingressgateway (or `selector`, a YAML mapping) with the servers
    given as YAML (a list, dedented here)."""
    return (
        "apiVersion: networking.istio.io/v1\nkind: Gateway\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec:\n  selector: {selector or '{istio: ingressgateway}'}\n  servers:\n"
        + indent(dedent(servers), "  ")
    )


def router_view(labels: dict[str, str] | None = None, namespace: str = "istio-system") -> ProxyView:
    chosen = INGRESS_LABELS if labels is None else labels
    return ProxyView(NodeType.ROUTER, namespace, tuple(sorted(chosen.items())))


def listeners(ctx: PushContext, view: ProxyView | None = None) -> dict[str, listener_pb2.Listener]:
    """The router's listeners, bound to ROUTER_IP, by name."""
    chosen = view or router_view()
    unbound = gateways.gateway_listeners(ctx, chosen, gateways.merge(ctx, chosen))
    return {listener.name: listener for listener in gateways.bind(unbound, ROUTER_IP)}


def route_configs(
    ctx: PushContext, view: ProxyView | None = None
) -> dict[str, route_pb2.RouteConfiguration]:
    chosen = view or router_view()
    configs = gateway_routes.gateway_routes(ctx, chosen, gateways.merge(ctx, chosen))
    return {config.name: config for config in configs}


def virtual_hosts(
    ctx: PushContext, config: str, view: ProxyView | None = None
) -> dict[str, route_components_pb2.VirtualHost]:
    return {vh.name: vh for vh in route_configs(ctx, view)[config].virtual_hosts}
