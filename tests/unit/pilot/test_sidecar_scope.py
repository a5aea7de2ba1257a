"""Sidecar scope: which Sidecar applies to a proxy, what its egress hosts let it see, and that
proxies under the same Sidecar share one view."""

from __future__ import annotations

import pytest

from meshcore.xds import types
from pilot.istio_config import config_key
from pilot.model import NodeType, ProxyView
from pilot.snapshots import SnapshotGenerator
from tests.unit.pilot.sidecar_support import (
    A1,
    B1,
    EXTERNAL,
    SYS,
    MakeProxy,
    WriteConfig,
    context,
    generate,
    proxy_in,
    resource_names,
    sidecar,
)

ONLY_OWN_AND_SYSTEM = sidecar("default", "a", 'egress: [{hosts: ["./*", "istio-system/*"]}]')


def test_the_most_specific_sidecar_applies(write_config: WriteConfig) -> None:
    ctx = context(
        write_config,
        sidecar("default", "a", 'egress: [{hosts: ["./*"]}]'),
        sidecar(
            "special", "a", 'workloadSelector: {labels: {app: special}}\negress: [{hosts: ["*/*"]}]'
        ),
        sidecar("only-x", "c", 'workloadSelector: {labels: {app: x}}\negress: [{hosts: ["./*"]}]'),
        sidecar("default", "istio-system", 'egress: [{hosts: ["./*"]}]'),
        sidecar(
            "gateways",
            "istio-system",
            'workloadSelector: {labels: {app: gw}}\negress: [{hosts: ["./*"]}]',
        ),
    )
    config = ctx.config

    def chosen(namespace: str, **labels: str) -> str | None:
        found = config.sidecar_for(namespace, labels)
        return None if found is None else config_key(found)

    assert chosen("a", app="special", version="v1") == "a/special"
    assert chosen("a", app="other") == "a/default"
    assert chosen("c", app="x") == "c/only-x"
    assert chosen("c", app="y") == "istio-system/default"  # selectors alone do not cover c
    assert chosen("d", app="gw") == "istio-system/default"  # root selectors: root only
    assert chosen("istio-system", app="gw") == "istio-system/gateways"


def test_without_any_sidecar_everything_is_visible(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    ctx = context(write_config, ONLY_OWN_AND_SYSTEM)
    proxy = proxy_in(make_proxy, "b")
    assert ctx.view_for(proxy) == ProxyView(NodeType.SIDECAR, "b", http_proxy=True)
    assert {s.hostname for s in ctx.services_for(ctx.view_for(proxy))} == {A1, B1, SYS, EXTERNAL}


def test_egress_hosts_scope_clusters_routes_listeners_and_endpoints(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    ctx = context(write_config, ONLY_OWN_AND_SYSTEM)
    found = resource_names(ctx, proxy_in(make_proxy, "a"))
    assert {n for n in found["cds"] if n.startswith("outbound|")} == {
        f"outbound|8080||{A1}",
        f"outbound|9000||{A1}",
        f"outbound|8080||{SYS}",
    }
    assert {"BlackHoleCluster", "PassthroughCluster"} <= found["cds"]
    assert found["eds"] == {f"outbound|8080||{A1}", f"outbound|9000||{A1}", f"outbound|8080||{SYS}"}
    assert found["rds"] == {"8080", "http_proxy"}
    assert {"0.0.0.0_8080", "0.0.0.0_9000"} <= found["lds"]
    assert not any(B1 in name or EXTERNAL in name for names in found.values() for name in names)

    generated = generate(ctx, proxy_in(make_proxy, "a"))
    hosts = [vh.name for vh in generated.route("8080").virtual_hosts]
    assert hosts == [f"{A1}:8080", f"{SYS}:8080", "allow_any"]
    proxy_hosts = [vh.name for vh in generated.route("http_proxy").virtual_hosts]
    assert proxy_hosts == [f"{A1}:8080", f"{SYS}:8080"]


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        (["*/*"], {A1, B1, SYS, EXTERNAL}),
        (["./*"], {A1}),
        (["~/*"], set()),
        (["b/*"], {B1, EXTERNAL}),
        ([f"*/{B1}"], {B1}),
        ([f"a/{B1}"], set()),  # the host is in b, not a
        (["*/*.example.com"], {EXTERNAL}),
        (["*/*.svc.cluster.local"], {A1, B1, SYS}),
        # An explicit namespace is tried first, then `*/`.
        ([f"b/{EXTERNAL}", f"*/{B1}"], {B1, EXTERNAL}),
    ],
)
def test_egress_host_forms(
    write_config: WriteConfig, make_proxy: MakeProxy, hosts: list[str], expected: set[str]
) -> None:
    quoted = ", ".join(f'"{h}"' for h in hosts)
    ctx = context(write_config, sidecar("default", "a", f"egress: [{{hosts: [{quoted}]}}]"))
    view = ctx.view_for(proxy_in(make_proxy, "a"))
    assert {s.hostname for s in ctx.services_for(view)} == expected


def test_an_egress_listener_port_imports_only_that_port(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    spec = """
        egress:
        - port: {number: 8080, protocol: HTTP, name: http}
          hosts: ["b/*"]
        - hosts: ["./*"]
    """
    ctx = context(write_config, sidecar("default", "a", spec))
    found = resource_names(ctx, proxy_in(make_proxy, "a"))
    outbound = {n for n in found["cds"] if n.startswith("outbound|")}
    assert outbound == {f"outbound|8080||{A1}", f"outbound|9000||{A1}", f"outbound|8080||{B1}"}


def test_sidecars_with_one_scope_share_one_view(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    ctx = context(
        write_config,
        ONLY_OWN_AND_SYSTEM,
        sidecar("wide", "a", 'workloadSelector: {labels: {app: wide}}\negress: [{hosts: ["*/*"]}]'),
    )
    one = proxy_in(make_proxy, "a", "127.0.6.1", app="one", version="v1")
    two = proxy_in(make_proxy, "a", "127.0.6.2", app="two")
    wide = proxy_in(make_proxy, "a", "127.0.6.3", app="wide")
    assert (
        ctx.view_for(one)
        == ctx.view_for(two)
        == ProxyView(NodeType.SIDECAR, "a", sidecar="a/default", http_proxy=True)
    )
    assert ctx.view_for(wide) == ProxyView(NodeType.SIDECAR, "a", sidecar="a/wide", http_proxy=True)
    assert ctx.scope(ctx.view_for(one)) is ctx.scope(ctx.view_for(two))

    generator = SnapshotGenerator()
    first, second, third = (generator.full(ctx, p) for p in (one, two, wide))
    assert first.types[types.ROUTE] is second.types[types.ROUTE]
    assert first.types[types.ENDPOINT] is second.types[types.ENDPOINT]
    assert f"outbound|8080||{B1}" not in first.types[types.CLUSTER].resources
    assert f"outbound|8080||{B1}" in third.types[types.CLUSTER].resources

    # Without any Sidecar in the namespace, labels do not split the view either.
    elsewhere = [proxy_in(make_proxy, "b", f"127.0.7.{n}", app=f"app{n}") for n in (1, 2)]
    assert (
        ctx.view_for(elsewhere[0])
        == ctx.view_for(elsewhere[1])
        == ProxyView(NodeType.SIDECAR, "b", http_proxy=True)
    )


def test_a_root_namespace_sidecar_applies_in_the_proxys_namespace(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    ctx = context(write_config, sidecar("default", "istio-system", 'egress: [{hosts: ["./*"]}]'))
    for namespace, expected in (("a", {A1}), ("b", {B1, EXTERNAL})):
        view = ctx.view_for(proxy_in(make_proxy, namespace))
        assert view.sidecar == "istio-system/default"
        assert {s.hostname for s in ctx.services_for(view)} == expected


VS_IN_A = f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: a1-to-b1, namespace: a}}
spec:
  hosts: [a1]
  http:
  - match: [{{sourceNamespace: elsewhere}}]
    route: [{{destination: {{host: {EXTERNAL}}}}}]
  - route: [{{destination: {{host: {B1}, port: {{number: 8080}}}}}}]
"""
VS_IN_B = f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: b1-retries, namespace: b}}
spec:
  hosts: [{B1}]
  http: [{{route: [{{destination: {{host: {B1}}}}}], retries: {{attempts: 7}}}}]
"""


def test_virtual_services_follow_the_egress_hosts_and_import_their_destinations(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    """As istiod: a VirtualService is imported by its own namespace's hosts, and the services
    it routes to come with it, only on the ports it names (never those of rules for other
    source namespaces)."""
    ctx = context(
        write_config, sidecar("default", "a", 'egress: [{hosts: ["./*"]}]'), VS_IN_A, VS_IN_B
    )
    proxy = proxy_in(make_proxy, "a")
    scope = ctx.scope(ctx.view_for(proxy))
    assert [config_key(vs) for vs in scope.virtual_services] == ["a/a1-to-b1"]
    assert {n for n in resource_names(ctx, proxy)["cds"] if n.startswith("outbound|")} == {
        f"outbound|8080||{A1}",
        f"outbound|9000||{A1}",
        f"outbound|8080||{B1}",
    }
    routes = generate(ctx, proxy).route("8080")
    by_name = {vh.name: vh for vh in routes.virtual_hosts}
    (route,) = by_name[f"{A1}:8080"].routes
    assert route.route.cluster == f"outbound|8080||{B1}"
    # b1's own VirtualService is not imported: the proxy routes b1 by default, no retries.
    (default,) = by_name[f"{B1}:8080"].routes
    assert default.route.cluster == f"outbound|8080||{B1}"
    assert default.route.retry_policy.num_retries.value != 7

    # Without a Sidecar both apply.
    unscoped = ctx.scope(ctx.view_for(proxy_in(make_proxy, "c")))
    assert [config_key(vs) for vs in unscoped.virtual_services] == ["a/a1-to-b1", "b/b1-retries"]
