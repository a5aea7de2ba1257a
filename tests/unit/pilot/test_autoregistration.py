"""WorkloadGroup auto-registration: the entry a group makes of a proxy, and its lifecycle.

The entry follows Istio's controller (name, label precedence, network and locality from the
node); the registry gains it when the proxy connects and loses it when the proxy's grace period
runs out, through the same change classification as any other registry change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from envoy.config.core.v3 import base_pb2

from agent.__main__ import parse_args, spec_from_args
from agent.bootstrap import ProxySpec, build_bootstrap
from meshconfig.networking.workload_entry import WorkloadGroup
from meshcore.xds.errors import InvalidNode
from meshcore.xds.status import StreamInfo
from pilot import debug
from pilot.discovery import DiscoveryService
from pilot.metrics import PilotMetrics
from pilot.model import Proxy
from pilot.push_context import PushContext
from pilot.registry import RegistrySnapshot
from pilot.registry.autoregister import (
    AutoRegistration,
    Registration,
    registration,
    workload_entry,
)
from pilot.server import classify_change
from tests.unit.pilot.conftest import MakeNode, WriteConfig, load_directory

HELLO_HOST = "hello.default.svc.cluster.local"
NODE_ID = "sidecar~127.0.1.7~hello-vm.default~default.svc.cluster.local"

SERVICE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hello, namespace: default}
spec:
  hosts: [hello.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http}]
  workloadSelector: {labels: {app: hello}}
"""

GROUP = """
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: hello, namespace: default}
spec:
  metadata: {labels: {tier: backend, version: group}}
  template:
    labels: {app: hello, version: template}
    serviceAccount: hello
    ports: {http: 18080}
"""


def group_spec(config: RegistrySnapshot) -> WorkloadGroup:
    [group] = config.groups
    return group.spec


@pytest.fixture
def config(write_config: WriteConfig) -> RegistrySnapshot:
    return load_directory(write_config(SERVICE + GROUP))


@pytest.fixture
def node(make_node: MakeNode) -> base_pb2.Node:
    return make_node(NODE_ID, AUTO_REGISTER_GROUP="hello", LABELS={"version": "v1"})


def registration_of(node: base_pb2.Node) -> Registration:
    found = registration(Proxy.from_node(node), node)
    assert found is not None
    return found


class Changes:
    """Counts the pushes AutoRegistration asks for."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# The entry


def test_entry_from_group_and_proxy(config: RegistrySnapshot, node: base_pb2.Node) -> None:
    node.locality.CopyFrom(base_pb2.Locality(region="eu", zone="eu-1"))
    node.metadata.update({"NETWORK": "net-a"})
    wanted = registration_of(node)
    assert wanted == Registration(
        "hello", "default", "127.0.1.7", {"version": "v1"}, "net-a", "eu/eu-1"
    )
    assert wanted.entry_name == "hello-127.0.1.7-net-a"

    entry = workload_entry(group_spec(config), wanted)
    assert entry.address == "127.0.1.7"
    # Node labels win over the group's metadata labels, which win over the template's.
    assert entry.labels == {"app": "hello", "tier": "backend", "version": "v1"}
    assert entry.service_account == "hello"
    assert entry.ports == {"http": 18080}
    assert (entry.network, entry.locality) == ("net-a", "eu/eu-1")


def test_entry_keeps_the_template_network_and_locality_without_node_ones() -> None:
    group = WorkloadGroup.model_validate(
        {"template": {"network": "vpc", "locality": "us/a", "labels": {"istio-locality": "x"}}}
    )
    entry = workload_entry(group, Registration("g", "ns", "10.0.0.1"))
    assert (entry.network, entry.locality, entry.labels) == ("vpc", "us/a", {})


def test_entry_names_as_istio() -> None:
    assert Registration("g", "ns", "10.0.0.1").entry_name == "g-10.0.0.1"
    assert Registration("g", "ns", "fd00::1", network="n").entry_name == "g-fd00--1-n"
    long = Registration("x" * 300, "ns", "10.0.0.1")
    assert long.entry_name == ("x" * 300 + "-10.0.0.1")[-253:]


def test_no_group_no_registration_and_a_bad_group_is_refused(make_node: MakeNode) -> None:
    plain = make_node(NODE_ID)
    assert registration(Proxy.from_node(plain), plain) is None
    bad = make_node(NODE_ID, AUTO_REGISTER_GROUP=3)
    with pytest.raises(InvalidNode, match="AUTO_REGISTER_GROUP: must be a string"):
        registration(Proxy.from_node(bad), bad)


def test_agent_announces_the_group() -> None:
    args = parse_args(["--ip", "127.0.1.7", "--pod", "vm", "--auto-register", "hello"])
    metadata = build_bootstrap(spec_from_args(args))["node"]["metadata"]
    assert metadata["AUTO_REGISTER_GROUP"] == "hello"
    plain = build_bootstrap(ProxySpec(ip="127.0.1.7", pod="vm", namespace="default"))
    assert "AUTO_REGISTER_GROUP" not in plain["node"]["metadata"]


# The registry


async def test_registered_entry_joins_the_registry_as_an_eds_change(
    config: RegistrySnapshot, node: base_pb2.Node
) -> None:
    changes = Changes()
    registrations = AutoRegistration(10.0, changes)
    registrations.connect(node.id, registration_of(node))
    assert changes.count == 1

    registry = registrations.registry(config)
    [workload] = registry.workloads
    assert (workload.name, workload.address, workload.service_account) == (
        "hello-127.0.1.7",
        "127.0.1.7",
        "hello",
    )
    context = PushContext.build(registry, "1")
    [endpoint] = context.endpoints(HELLO_HOST, 8080)
    assert (endpoint.address, endpoint.port) == ("127.0.1.7", 18080)

    request = classify_change(config, registry)
    assert not request.full
    assert request.endpoints == {HELLO_HOST}
    assert request.workload_addresses == {"127.0.1.7"}
    registrations.close()


async def test_missing_group_is_logged_and_registered_when_it_appears(
    write_config: WriteConfig, node: base_pb2.Node, caplog: pytest.LogCaptureFixture
) -> None:
    without_group = load_directory(write_config(SERVICE))
    registrations = AutoRegistration(10.0, Changes())
    registrations.connect(node.id, registration_of(node))
    with caplog.at_level(logging.WARNING, "pilot.registry.autoregister"):
        assert registrations.registry(without_group) == without_group
        registrations.registry(without_group)
    [message] = [r.getMessage() for r in caplog.records]
    assert "WorkloadGroup default/hello does not exist" in message
    assert node.id in message

    with_group = load_directory(write_config(SERVICE + GROUP))
    assert [w.name for w in registrations.registry(with_group).workloads] == ["hello-127.0.1.7"]
    registrations.close()


async def test_configured_entry_of_the_same_name_wins(
    write_config: WriteConfig, node: base_pb2.Node
) -> None:
    configured = """
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: hello-127.0.1.7, namespace: default}
spec: {address: 127.0.1.7, labels: {app: hello}, serviceAccount: configured}
"""
    config = load_directory(write_config(SERVICE + GROUP + configured))
    registrations = AutoRegistration(10.0, Changes())
    registrations.connect(node.id, registration_of(node))
    assert registrations.registry(config) == config
    [state] = registrations.describe().values()
    assert "configured WorkloadEntry default/hello-127.0.1.7" in state["problem"]
    registrations.close()


async def test_deleting_the_group_drops_its_entries(
    write_config: WriteConfig, config: RegistrySnapshot, node: base_pb2.Node
) -> None:
    registrations = AutoRegistration(10.0, Changes())
    registrations.connect(node.id, registration_of(node))
    assert registrations.registry(config).workloads
    assert not registrations.registry(load_directory(write_config(SERVICE))).workloads
    registrations.close()


# The lifecycle


async def test_entry_outlives_the_proxy_by_the_grace_period(
    config: RegistrySnapshot, node: base_pb2.Node
) -> None:
    changes = Changes()
    registrations = AutoRegistration(0.05, changes)
    wanted = registration_of(node)
    registrations.connect(node.id, wanted)
    registrations.disconnect(node.id, wanted)
    assert changes.count == 1  # a disconnect alone changes nothing yet
    assert registrations.registry(config).workloads
    assert registrations.describe()[wanted.key]["expires_at"] is not None

    await until(lambda: changes.count == 2, "the grace period to expire")
    assert not registrations.registry(config).workloads
    assert registrations.describe() == {}


async def test_reconnect_within_the_grace_period_keeps_the_entry(
    config: RegistrySnapshot, node: base_pb2.Node
) -> None:
    changes = Changes()
    registrations = AutoRegistration(0.05, changes)
    wanted = registration_of(node)
    registrations.connect(node.id, wanted)
    registrations.disconnect(node.id, wanted)
    registrations.connect(node.id, wanted)
    await asyncio.sleep(0.15)
    assert changes.count == 1
    assert registrations.registry(config).workloads
    assert registrations.describe()[wanted.key]["disconnected_at"] is None
    registrations.close()


async def test_entry_stays_while_another_proxy_at_the_address_is_connected(
    config: RegistrySnapshot, node: base_pb2.Node, make_node: MakeNode
) -> None:
    changes = Changes()
    registrations = AutoRegistration(0.01, changes)
    other = make_node(NODE_ID.replace("hello-vm", "hello-vm2"), AUTO_REGISTER_GROUP="hello")
    registrations.connect(node.id, registration_of(node))
    registrations.connect(other.id, registration_of(other))  # same key, new labels
    assert changes.count == 2
    registrations.disconnect(node.id, registration_of(node))
    await asyncio.sleep(0.05)
    [workload] = registrations.registry(config).workloads
    assert workload.labels["version"] == "group"  # the second proxy's node has no labels
    registrations.close()


async def test_discovery_reports_first_open_and_last_close(
    config: RegistrySnapshot, node: base_pb2.Node
) -> None:
    registrations = AutoRegistration(10.0, Changes())
    discovery = DiscoveryService(
        PushContext.build(config, "1"), PilotMetrics(), registrations=registrations
    )
    streams = [StreamInfo(n, "peer", False, node.id, node) for n in (1, 2)]
    for stream in streams:
        stream.cache_key = discovery.on_stream_open(stream)
    [state] = registrations.describe().values()
    assert state["proxies"] == [node.id]

    discovery.on_stream_closed(streams[0])
    assert registrations.describe()[("default", "hello-127.0.1.7")]["disconnected_at"] is None
    discovery.on_stream_closed(streams[1])
    assert registrations.describe()[("default", "hello-127.0.1.7")]["disconnected_at"] is not None
    registrations.close()


async def test_registryz_marks_the_origin(config: RegistrySnapshot, node: base_pb2.Node) -> None:
    registrations = AutoRegistration(10.0, Changes())
    registrations.connect(node.id, registration_of(node))
    page = debug.registryz(registrations.registry(config), registrations.describe())
    [service] = page["services"]
    assert (service["hostname"], service["origin"]) == (HELLO_HOST, "config")
    [workload] = page["workloads"]
    assert workload["origin"] == "auto-registered"
    assert workload["registration"]["group"] == "hello"
    assert page["workload_groups"] == [{"namespace": "default", "name": "hello"}]
    assert [r["name"] for r in page["registrations"]] == ["hello-127.0.1.7"]
    registrations.close()
