"""All generators together: byte-identical output for equal input, and real Envoy accepts it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import json_format, wrappers_pb2

from meshcore.envoy_binary import envoy_path
from pilot.generators import clusters, endpoints, listeners, routes
from pilot.generators.filters import http_connection_manager
from pilot.generators.proto import socket_address
from pilot.model import Proxy
from pilot.push_context import PushContext
from tests.unit.pilot.conftest import load_directory

MakeProxy = Callable[..., Proxy]
WriteConfig = Callable[..., Path]


def _generate(ctx: PushContext, proxy: Proxy) -> dict[str, list[Any]]:
    return {
        "clusters": clusters.outbound_clusters(ctx, proxy.view)
        + clusters.inbound_clusters(ctx, proxy),
        "endpoints": list(endpoints.load_assignments(ctx, proxy.view)),
        "routes": list(routes.outbound_routes(ctx, proxy.view)),
        "listeners": listeners.outbound_listeners(ctx, proxy.view)
        + listeners.proxy_listeners(ctx, proxy),
    }


def _bytes(generated: dict[str, list[Any]]) -> dict[str, list[bytes]]:
    return {
        kind: [m.SerializeToString(deterministic=True) for m in messages]
        for kind, messages in generated.items()
    }


def test_equal_input_in_any_order_gives_equal_bytes(
    sample_mesh: str, write_config: WriteConfig, tmp_path: Path, sidecar: Proxy
) -> None:
    first = PushContext.build(load_directory(write_config(sample_mesh)), "1")
    documents = sample_mesh.split("\n---\n")
    (tmp_path / "mesh.yaml").unlink()
    write_config("\n---\n".join(documents[::2][::-1]), "b.yaml")
    write_config("\n---\n".join(documents[1::2][::-1]), "a.yaml")
    second = PushContext.build(load_directory(tmp_path), "2")
    assert _bytes(_generate(first, sidecar)) == _bytes(_generate(second, sidecar))


def _bootstrap(proxy: Proxy, generated: dict[str, list[Any]]) -> bootstrap_pb2.Bootstrap:
    """Clusters and listeners as generated (RDS and EDS over an ADS that validation never
    dials); each route config and load assignment checked inline in a listener or cluster."""
    bootstrap = bootstrap_pb2.Bootstrap()
    bootstrap.node.id = proxy.id
    bootstrap.node.cluster = "validate"
    ads = bootstrap.dynamic_resources.ads_config
    ads.api_type = config_source_pb2.ApiConfigSource.GRPC
    ads.transport_api_version = config_source_pb2.ApiVersion.V3
    ads.grpc_services.add().envoy_grpc.cluster_name = "xds-grpc"
    static = bootstrap.static_resources
    static.clusters.extend(generated["clusters"])
    static.listeners.extend(generated["listeners"])
    static.clusters.add(
        name="xds-grpc",
        type=cluster_pb2.Cluster.STATIC,
        load_assignment={"cluster_name": "xds-grpc"},
    )
    for assignment in generated["endpoints"]:
        static.clusters.add(
            name=f"eds-check:{assignment.cluster_name}",
            type=cluster_pb2.Cluster.STATIC,
            load_assignment=assignment,
        )
    for port, config in enumerate(generated["routes"], start=30000):
        static.listeners.add(
            name=f"rds-check:{config.name}",
            address=socket_address("127.0.0.1", port),
            bind_to_port=wrappers_pb2.BoolValue(value=False),
            filter_chains=[
                listener_components_pb2.FilterChain(
                    filters=[http_connection_manager("check", route_config=config)]
                )
            ],
        )
    return bootstrap


def _envoy_validate(
    bootstrap: bootstrap_pb2.Bootstrap, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "bootstrap.json"
    config.write_text(json_format.MessageToJson(bootstrap))
    return subprocess.run(
        [envoy_path(), "--mode", "validate", "-c", config, "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.envoy
@pytest.mark.parametrize(
    "metadata",
    [
        {"INTERCEPTION_MODE": "NONE", "HTTP_PROXY_PORT": "15080", "APP_ADDRESS": "127.0.100.2"},
        {"INTERCEPTION_MODE": "TPROXY"},
        {},
    ],
    ids=["no-capture", "tproxy", "redirect"],
)
def test_envoy_accepts_the_generated_config(
    ctx: PushContext, make_proxy: MakeProxy, tmp_path: Path, metadata: dict[str, str]
) -> None:
    proxy = make_proxy(**metadata)
    generated = _generate(ctx, proxy)
    assert all(generated.values())
    result = _envoy_validate(_bootstrap(proxy, generated), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


@pytest.mark.envoy
def test_envoy_validation_catches_a_broken_route(
    ctx: PushContext, sidecar: Proxy, tmp_path: Path
) -> None:
    """The harness above would notice: a route config listing a domain twice is refused."""
    generated = _generate(ctx, sidecar)
    broken = route_pb2.RouteConfiguration(
        name="broken",
        virtual_hosts=[
            route_components_pb2.VirtualHost(name=name, domains=["same"]) for name in "ab"
        ],
    )
    generated["routes"] = [broken]
    result = _envoy_validate(_bootstrap(sidecar, generated), tmp_path)
    assert result.returncode != 0
    assert "Only unique values for domains are permitted" in result.stdout + result.stderr
