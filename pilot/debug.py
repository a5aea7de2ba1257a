"""Pilot's debug views: `/debug/syncz` (per proxy and type sync state), `/debug/registryz` (the
registry pilot serves, auto-registered workloads marked) and a config dump.

These are read-only renderings of state owned elsewhere: stream status from the xDS server,
the registry and registrations from pilot, snapshots from the cache. The config dump uses
Envoy's own admin `ConfigDump` shape, so it can be compared field by field with what the
proxy's `/config_dump` says it holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from envoy.admin.v3 import config_dump_pb2, config_dump_shared_pb2
from google.protobuf import any_pb2, json_format

from meshcore.xds import types
from meshcore.xds.resource import Snapshot, TypeSnapshot
from meshcore.xds.status import StreamInfo
from pilot.model import Service, WorkloadInstance
from pilot.registry import RegistrySnapshot


def proxy_id(node_id: str) -> str:
    """Istio's proxy id (`<pod>.<namespace>`) from a node id, or the node id if it has none."""
    parts = node_id.split("~")
    return parts[2] if len(parts) == 4 else node_id


def syncz(streams: Iterable[StreamInfo]) -> list[dict[str, Any]]:
    """One entry per open stream: for each type, sent and acked version/nonce and the state."""
    out = []
    for stream in sorted(streams, key=lambda s: (s.node_id, s.stream_id)):
        entry: dict[str, Any] = {
            "proxy": proxy_id(stream.node_id),
            "node_id": stream.node_id,
            "stream_id": stream.stream_id,
            "delta": stream.delta,
            "peer": stream.peer,
            "connected_at": stream.connected_at,
        }
        for type_url, status in sorted(stream.types.items()):
            entry[types.short_name(type_url)] = {
                "state": status.state.value,
                "sent_version": status.sent_version,
                "sent_nonce": status.sent_nonce,
                "acked_version": status.acked_version,
                "acked_nonce": status.acked_nonce,
                "nack_error": status.nack_error,
            }
        out.append(entry)
    return out


def registryz(
    registry: RegistrySnapshot, registrations: Mapping[tuple[str, str], dict[str, Any]]
) -> dict[str, Any]:
    """Services, workloads (each with its origin: `config`, or `auto-registered` with its
    registration), WorkloadGroups, and every registration, including those that made no entry.

    `registrations` is `AutoRegistration.describe()`, keyed by (namespace, entry name).
    """
    workloads = []
    for workload in registry.workloads:
        entry = _workload(workload)
        registration = registrations.get((workload.namespace, workload.name))
        if registration is not None and not registration["problem"]:
            entry.update(origin="auto-registered", registration=registration)
        workloads.append(entry)
    return {
        "services": [_service(service) for service in registry.services],
        "workloads": workloads,
        "workload_groups": [{"namespace": g.namespace, "name": g.name} for g in registry.groups],
        "registrations": [
            {"namespace": namespace, "name": name, **state}
            for (namespace, name), state in registrations.items()
        ],
    }


def _service(service: Service) -> dict[str, Any]:
    selector = service.workload_selector
    return {
        "hostname": service.hostname,
        "namespace": service.namespace,
        "addresses": list(service.addresses),
        "ports": [
            {"name": p.name, "number": p.number, "protocol": p.protocol.value}
            for p in service.ports
        ],
        "resolution": service.resolution.value,
        "location": service.location.value,
        "workload_selector": None if selector is None else dict(selector),
        "endpoints": [_workload(endpoint) for endpoint in service.endpoints],
        "origin": "config",
    }


def _workload(workload: WorkloadInstance) -> dict[str, Any]:
    return {
        "name": workload.name,
        "namespace": workload.namespace,
        "address": workload.address,
        "labels": dict(workload.labels),
        "ports": dict(workload.ports),
        "service_account": workload.service_account,
        "locality": workload.locality,
        "network": workload.network,
        "weight": workload.weight,
        "ready": workload.ready,
        "origin": "config",
    }


def _packed(any_bytes: bytes) -> any_pb2.Any:
    return any_pb2.Any.FromString(any_bytes)


def _ordered(snapshot: TypeSnapshot | None) -> list[Any]:
    if snapshot is None:
        return []
    return [snapshot.resources[name] for name in sorted(snapshot.resources)]


def config_dump(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot pilot serves to one proxy, as an Envoy admin ConfigDump (JSON-ready)."""
    shared = config_dump_shared_pb2
    clusters = snapshot.get(types.CLUSTER)
    listeners = snapshot.get(types.LISTENER)
    dump = config_dump_pb2.ConfigDump()
    dump.configs.add().Pack(
        shared.ClustersConfigDump(
            version_info=clusters.version if clusters else "",
            dynamic_active_clusters=[
                shared.ClustersConfigDump.DynamicCluster(
                    version_info=r.version, cluster=_packed(r.any_bytes)
                )
                for r in _ordered(clusters)
            ],
        )
    )
    dump.configs.add().Pack(
        shared.ListenersConfigDump(
            version_info=listeners.version if listeners else "",
            dynamic_listeners=[
                shared.ListenersConfigDump.DynamicListener(
                    name=r.name,
                    active_state=shared.ListenersConfigDump.DynamicListenerState(
                        version_info=r.version, listener=_packed(r.any_bytes)
                    ),
                )
                for r in _ordered(listeners)
            ],
        )
    )
    dump.configs.add().Pack(
        shared.RoutesConfigDump(
            dynamic_route_configs=[
                shared.RoutesConfigDump.DynamicRouteConfig(
                    version_info=r.version, route_config=_packed(r.any_bytes)
                )
                for r in _ordered(snapshot.get(types.ROUTE))
            ]
        )
    )
    dump.configs.add().Pack(
        shared.EndpointsConfigDump(
            dynamic_endpoint_configs=[
                shared.EndpointsConfigDump.DynamicEndpointConfig(
                    version_info=r.version, endpoint_config=_packed(r.any_bytes)
                )
                for r in _ordered(snapshot.get(types.ENDPOINT))
            ]
        )
    )
    result: dict[str, Any] = json_format.MessageToDict(dump)
    return result
