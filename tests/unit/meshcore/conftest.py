"""Builders for xDS protocol unit tests: snapshots of tiny resources and decoded responses."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2

from meshcore.xds import types
from meshcore.xds.resource import Resource, Snapshot
from meshcore.xds.status import StreamInfo

_MESSAGES = {
    types.CLUSTER: lambda name, tag: cluster_pb2.Cluster(name=name, alt_stat_name=tag),
    types.ENDPOINT: lambda name, tag: endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[{"locality": {"region": tag}}]
    ),
    types.LISTENER: lambda name, tag: listener_pb2.Listener(name=name, stat_prefix=tag),
    types.ROUTE: lambda name, tag: route_pb2.RouteConfiguration(
        name=name, internal_only_headers=[tag]
    ),
}


def resource(type_url: str, name: str, tag: str = "v1") -> Resource:
    return Resource.from_message(name, _MESSAGES[type_url](name, tag))


def snapshot(**by_short_name: Iterable[str] | dict[str, str]) -> Snapshot:
    """snapshot(cds=["a", "b"], eds={"a": "v2"}): names, or names with content tags."""
    short = {v: k for k, v in types.SHORT_NAMES.items()}
    content: dict[str, list[Resource]] = {}
    for key, names in by_short_name.items():
        tags = names if isinstance(names, dict) else dict.fromkeys(names, "v1")
        content[short[key]] = [resource(short[key], n, t) for n, t in tags.items()]
    return Snapshot.of(content)


def names_in(payload: bytes) -> list[str]:
    response = discovery_pb2.DiscoveryResponse.FromString(payload)
    out = []
    for packed in response.resources:
        message = {
            types.CLUSTER: cluster_pb2.Cluster,
            types.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
            types.LISTENER: listener_pb2.Listener,
            types.ROUTE: route_pb2.RouteConfiguration,
        }[packed.type_url].FromString(packed.value)
        out.append(getattr(message, "cluster_name", "") or message.name)
    return out


@pytest.fixture
def info() -> StreamInfo:
    return StreamInfo(stream_id=7, peer="ipv4:127.0.0.1:1", delta=False, node_id="n")
