"""A Sidecar scope imports the services a delegate VirtualService routes to, as routes use them."""

from __future__ import annotations

from pilot.config_files import load_config_directory
from pilot.push_context import PushContext
from tests.unit.pilot.conftest import MakeProxy, WriteConfig

MESH = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a, namespace: default}
spec:
  hosts: [a.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.5.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: b, namespace: other}
spec:
  hosts: [b.other.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.5.2}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress: [{hosts: ["./*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - match: [{uri: {prefix: /api}}]
    delegate: {name: api, namespace: default}
  - route: [{destination: {host: a}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: default}
spec:
  http:
  - route: [{destination: {host: b.other.svc.cluster.local, port: {number: 8080}}}]
"""


def test_delegate_destinations_are_imported(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    loaded = load_config_directory(write_config(MESH))
    ctx = PushContext.build(loaded.registry, "1", loaded.istio)
    proxy = make_proxy("sidecar~127.0.6.1~c.default~default.svc.cluster.local")
    hostnames = {s.hostname for s in ctx.services_for(ctx.view_for(proxy))}
    assert hostnames == {"a.default.svc.cluster.local", "b.other.svc.cluster.local"}
