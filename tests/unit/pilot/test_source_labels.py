"""VirtualService `sourceLabels` on sidecars: only the labels such matches read split views."""

from __future__ import annotations

from meshcore.xds import types
from pilot.config_files import load_config_directory
from pilot.model import Proxy
from pilot.push_context import PushContext
from pilot.snapshots import SnapshotGenerator
from tests.unit.pilot.conftest import SAMPLE_MESH, MakeProxy, WriteConfig

VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceLabels: {app: productpage}}]
    route: [{destination: {host: reviews, port: {number: 9080}}}]
    timeout: 3s
  - route: [{destination: {host: reviews, port: {number: 9080}}}]
"""


def context(write_config: WriteConfig, with_vs: bool) -> PushContext:
    text = SAMPLE_MESH + ("---\n" + VS if with_vs else "")
    loaded = load_config_directory(write_config(text))
    return PushContext.build(loaded.registry, "1", loaded.istio)


def proxy(make_proxy: MakeProxy, name: str, app: str) -> Proxy:
    return make_proxy(
        f"sidecar~127.0.3.{len(name)}~{name}.default~default.svc.cluster.local",
        LABELS={"app": app, "pod-template-hash": name},
    )


def test_without_source_labels_sidecar_views_ignore_labels(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    ctx = context(write_config, with_vs=False)
    one, two = proxy(make_proxy, "a", "productpage"), proxy(make_proxy, "bb", "client")
    assert ctx.view_for(one) == ctx.view_for(two)


def test_source_labels_route_only_for_matching_workloads(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    ctx = context(write_config, with_vs=True)
    page, client = proxy(make_proxy, "a", "productpage"), proxy(make_proxy, "bb", "client")
    assert ctx.view_for(page).labels == (("app", "productpage"),)  # only the key matches read
    generator = SnapshotGenerator()
    page_routes = generator.full(ctx, page).types[types.ROUTE].resources["9080"]
    client_routes = generator.full(ctx, client).types[types.ROUTE].resources["9080"]
    assert page_routes.version != client_routes.version
    other_client = proxy(make_proxy, "ccc", "client")
    assert generator.full(ctx, other_client).types[types.ROUTE].resources["9080"] is client_routes
