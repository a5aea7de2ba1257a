"""AuthorizationPolicy on a workload's inbound listeners: where the RBAC filters go, which
policies reach which workload, and real Envoy accepting every translated field
(`envoy --mode validate`)."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent, indent

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from pilot.config_files import load_config_directory
from pilot.generators.listeners import proxy_listeners
from pilot.model import InterceptionMode, NodeType, Proxy
from pilot.push_context import PushContext
from tests.unit.pilot.conftest import WriteConfig
from tests.unit.pilot.test_gen_whole_config import _bootstrap, _envoy_validate, _generate

REGISTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc, namespace: default}
spec:
  hosts: [svc.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http}, {number: 5432, name: tcp}]
  workloadSelector: {labels: {app: svc}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: svc-v1, namespace: default}
spec: {address: 10.0.0.1, labels: {app: svc}, serviceAccount: svc}
"""

# Every field and condition key, every value form, every action.
EVERYTHING = """\
rules:
- from:
  - source:
      principals: [cluster.local/ns/a/sa/b, 'cluster.local/ns/a/*', '*/sa/b', '*']
      notPrincipals: [cluster.local/ns/c/sa/d]
      requestPrincipals: ['https://issuer.example/alice', '*', 'https://issuer.example/*']
      notRequestPrincipals: ['*/mallory']
      namespaces: [a, 'team-*']
      notNamespaces: [c]
      trustDomains: [cluster.local, 'corp.*']
      ipBlocks: [10.0.0.0/8, 127.0.0.1, 'fd00::/8']
      notIpBlocks: [10.1.0.0/16]
      remoteIpBlocks: [192.168.0.0/16]
      notRemoteIpBlocks: [192.168.1.1]
  - source: {serviceAccounts: [shop/cart], notServiceAccounts: [shop/evil]}
  to:
  - operation:
      hosts: [svc.default.svc.cluster.local, '*.example.com', 'api.*', 'svc:8080', '*']
      notHosts: [evil.example.com]
      methods: [GET, 'P*', '*']
      notMethods: [DELETE]
      paths: [/exact, '/prefix/*', '*.png', '*', '/api/{*}/items/{**}']
      notPaths: [/admin]
      ports: ['8080', '5432']
      notPorts: ['9999']
  when:
  - {key: 'request.headers[x-user]', values: [alice, 'bob*', '*'], notValues: [mallory]}
  - {key: source.ip, values: [10.0.0.1], notValues: [10.0.0.2/32]}
  - {key: remote.ip, values: [10.0.0.0/8]}
  - {key: source.namespace, values: [default]}
  - {key: source.principal, values: [cluster.local/ns/default/sa/client]}
  - {key: source.serviceAccount, values: [client, other/x]}
  - {key: request.auth.principal, values: ['https://issuer.example/alice']}
  - {key: request.auth.audiences, values: [svc, 'svc-*']}
  - {key: request.auth.presenter, values: [app]}
  - {key: 'request.auth.claims[groups]', values: [admin]}
  - {key: 'request.auth.claims[realm][roles]', notValues: [guest]}
  - {key: destination.ip, values: [10.0.0.1]}
  - {key: destination.port, values: ['8080']}
  - {key: connection.sni, values: ['*.example.com']}
  - {key: 'experimental.envoy.filters.network.mysql_proxy[db.table]', values: ['[update]']}
- {}
"""

CUSTOM_FIELDS = """\
rules:
- from: [{source: {ipBlocks: [10.0.0.0/8], notRemoteIpBlocks: [192.168.1.1]}}]
  to: [{operation: {methods: [GET], paths: ['/api/*'], ports: ['8080', '5432']}}]
  when: [{key: 'request.headers[x-user]', values: [alice]}]
"""


def authorization_policy(spec: str, name: str = "p", namespace: str = "default") -> str:
    return (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec:\n{indent(dedent(spec), '  ')}"
    )


def context(write_config: WriteConfig, *documents: str) -> PushContext:
    loaded = load_config_directory(write_config("\n---\n".join([REGISTRY, *documents])))
    return PushContext.build(loaded.registry, "1", loaded.istio)


def svc_proxy() -> Proxy:
    return Proxy(
        id="sidecar~10.0.0.1~svc-v1.default~default.svc.cluster.local",
        type=NodeType.SIDECAR,
        ip="10.0.0.1",
        pod_name="svc-v1",
        namespace="default",
        dns_domain="default.svc.cluster.local",
        labels={"app": "svc"},
        interception_mode=InterceptionMode.NONE,
    )


def listeners(ctx: PushContext) -> dict[str, listener_pb2.Listener]:
    return {listener.name: listener for listener in proxy_listeners(ctx, svc_proxy())}


def http_filter_names(listener: listener_pb2.Listener) -> list[str]:
    (chain,) = listener.filter_chains
    (manager_filter,) = chain.filters
    manager = hcm_pb2.HttpConnectionManager()
    manager_filter.typed_config.Unpack(manager)
    return [f.name for f in manager.http_filters]


def network_filter_names(listener: listener_pb2.Listener) -> list[str]:
    (chain,) = listener.filter_chains
    return [f.name for f in chain.filters]


def test_rbac_filters_run_before_the_others(write_config: WriteConfig) -> None:
    ctx = context(
        write_config,
        authorization_policy("action: DENY\nrules: [{to: [{operation: {paths: [/admin]}}]}]"),
        authorization_policy("rules: [{to: [{operation: {methods: [GET]}}]}]", name="allow"),
    )
    found = listeners(ctx)
    assert http_filter_names(found["10.0.0.1_8080"]) == [
        "envoy.filters.http.rbac",
        "envoy.filters.http.rbac",
        "envoy.filters.http.fault",
        "envoy.filters.http.cors",
        "envoy.filters.http.router",
    ]
    assert network_filter_names(found["10.0.0.1_5432"]) == [
        "envoy.filters.network.rbac",
        "envoy.filters.network.rbac",
        "envoy.filters.network.tcp_proxy",
    ]
    inbound = found["virtualInbound"]
    assert {len(chain.filters) for chain in inbound.filter_chains} == {1, 3}  # HCM; 2 RBAC + TCP


@pytest.mark.parametrize(
    ("namespace", "selector"),
    [("default", "{matchLabels: {app: other}}"), ("shop", None), ("istio-system", "{}")],
    ids=["other-selector", "other-namespace", "root-namespace"],
)
def test_which_policies_apply_to_the_workload(
    write_config: WriteConfig, namespace: str, selector: str | None
) -> None:
    spec = "action: DENY\nrules: [{}]" + (f"\nselector: {selector}" if selector else "")
    ctx = context(write_config, authorization_policy(spec, namespace=namespace))
    names = http_filter_names(listeners(ctx)["10.0.0.1_8080"])
    applies = namespace == "istio-system"  # the root namespace's policies apply mesh-wide
    assert ("envoy.filters.http.rbac" in names) is applies


@pytest.mark.envoy
@pytest.mark.parametrize("action", ["ALLOW", "DENY", "AUDIT", "CUSTOM"])
def test_envoy_accepts_every_translated_field(
    write_config: WriteConfig, tmp_path: Path, action: str
) -> None:
    if action == "CUSTOM":  # identities are not for an external authorizer: validation refuses
        spec = f"action: CUSTOM\nprovider: {{name: ext}}\n{CUSTOM_FIELDS}"
    else:
        spec = f"action: {action}\n{EVERYTHING}"
    dry_run = authorization_policy("rules: [{}]", name="dry").replace(
        "namespace: default}", "namespace: default, annotations: {istio.io/dry-run: 'true'}}"
    )
    ctx = context(
        write_config, authorization_policy(spec), authorization_policy(" {}", "none"), dry_run
    )
    proxy = svc_proxy()
    result = _envoy_validate(_bootstrap(proxy, _generate(ctx, proxy)), tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Deprecated field: type envoy.config.rbac" not in output
