"""Builders shared by the VirtualService translation tests: services, contexts, lookups."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from textwrap import dedent, indent

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2

from pilot.config_files import load_config_directory
from pilot.generators import listeners, routes
from pilot.model import NodeType, ProxyView
from pilot.push_context import PushContext

WriteConfig = Callable[..., Path]
BOOKINFO_APPS = ("productpage", "reviews", "ratings", "details")


def service(
    name: str,
    *ports: int,
    namespace: str = "default",
    protocol: str = "HTTP",
    addresses: Sequence[str] = (),
    host: str | None = None,
) -> str:
    """A mesh-internal ServiceEntry for `<name>.<namespace>.svc.cluster.local` (or `host`)."""
    port_list = ", ".join(
        f"{{number: {p}, name: p{p}, protocol: {protocol}}}" for p in ports or (9080,)
    )
    address_line = f"addresses: [{', '.join(addresses)}]" if addresses else ""
    return dedent(
        f"""\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          hosts: [{host or f"{name}.{namespace}.svc.cluster.local"}]
          location: MESH_INTERNAL
          resolution: STATIC
          ports: [{port_list}]
          {address_line}
          workloadSelector: {{labels: {{app: {name}}}}}
        """
    )


def virtual_service(name: str, spec: str, namespace: str = "default") -> str:
    """A VirtualService whose spec is given as YAML (dedented here)."""
    header = (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n"
    )
    return header + indent(dedent(spec), "  ")


BOOKINFO = "\n---\n".join(service(app) for app in BOOKINFO_APPS)


def build(write_config: WriteConfig, *documents: str) -> PushContext:
    """A push context with the registry and the Istio config of the documents."""
    loaded = load_config_directory(write_config("\n---\n".join(documents)))
    return PushContext.build(loaded.registry, "1", loaded.istio)


def route_configs(
    ctx: PushContext, namespace: str = "default"
) -> dict[str, route_pb2.RouteConfiguration]:
    """Every route config of a sidecar in `namespace`, `http_proxy` included."""
    view = ProxyView(NodeType.SIDECAR, namespace, http_proxy=True)
    return {c.name: c for c in routes.outbound_routes(ctx, view)}


def virtual_host(
    ctx: PushContext, name: str, config: str = "9080", namespace: str = "default"
) -> route_components_pb2.VirtualHost:
    """The virtual host `name` (`<host>:<port>`) of route config `config`."""
    found = {vh.name: vh for vh in route_configs(ctx, namespace)[config].virtual_hosts}
    return found[name]


def vs_routes(
    ctx: PushContext, host: str = "reviews", port: int = 9080, config: str | None = None
) -> list[route_components_pb2.Route]:
    """The routes of the virtual host of `<host>.default.svc.cluster.local:<port>`."""
    fqdn = host if "." in host else f"{host}.default.svc.cluster.local"
    return list(virtual_host(ctx, f"{fqdn}:{port}", config or str(port)).routes)


def outbound_listener(
    ctx: PushContext, name: str, namespace: str = "default"
) -> listener_pb2.Listener:
    found = {
        listener.name: listener
        for listener in listeners.outbound_listeners(ctx, ProxyView(NodeType.SIDECAR, namespace))
    }
    return found[name]
