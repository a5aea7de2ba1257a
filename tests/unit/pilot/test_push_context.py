"""The push context: endpoints resolved from selectors and inline endpoints, instances per proxy."""

from __future__ import annotations

from collections.abc import Callable

from pilot.model import (
    Endpoint,
    NodeType,
    Protocol,
    Proxy,
    ProxyView,
    Resolution,
    Service,
    ServicePort,
    WorkloadInstance,
)
from pilot.push_context import PushContext
from pilot.registry import RegistrySnapshot

MakeProxy = Callable[..., Proxy]

HTTP = ServicePort("http", 80, Protocol.HTTP, 8080)
TCP = ServicePort("tcp", 5000, Protocol.TCP)
REVIEWS_V1_LABELS = {"app": "reviews", "version": "v1"}


def _service(hostname: str, **kwargs: object) -> Service:
    kwargs.setdefault("resolution", Resolution.STATIC)
    kwargs.setdefault("ports", (HTTP, TCP))
    return Service(hostname, kwargs.pop("namespace", "default"), **kwargs)  # type: ignore[arg-type]


def test_lookup_and_version(ctx: PushContext) -> None:
    assert ctx.version == "1"
    hostnames = [s.hostname for s in ctx.services]
    assert hostnames == sorted(hostnames)
    assert ctx.services_for(ProxyView(NodeType.SIDECAR, "anywhere")) == ctx.services
    assert ctx.service("www.googleapis.com") is not None
    assert ctx.service("nope.example.com") is None
    assert ctx.endpoints("nope.example.com", 80) == ()
    assert ctx.endpoints("reviews.default.svc.cluster.local", 1) == ()


def test_endpoint_ports_follow_workload_then_target_then_service_port(ctx: PushContext) -> None:
    host = "reviews.default.svc.cluster.local"
    assert ctx.endpoints(host, 9080) == (
        Endpoint("127.0.1.3", 9080, weight=3, labels={"app": "reviews", "version": "v2"}),
        # the workload's named port
        Endpoint("127.0.1.2", 19080, locality="us-east/zone-a", labels=REVIEWS_V1_LABELS),
    )
    assert [(e.address, e.port) for e in ctx.endpoints(host, 9090)] == [
        ("127.0.1.3", 19090),  # targetPort
        ("127.0.1.2", 19090),
    ]
    assert [(e.address, e.port) for e in ctx.endpoints(host, 3306)] == [
        ("127.0.1.3", 3306),
        ("127.0.1.2", 3306),
    ]
    assert ctx.endpoints("ratings.shop.svc.cluster.local", 9080) == (Endpoint("127.0.2.1", 9080),)


def test_selector_picks_labelled_workloads_of_its_own_namespace() -> None:
    workloads = (
        WorkloadInstance("match", "default", "10.0.0.1", {"app": "a", "v": "1"}, {"http": 9999}),
        WorkloadInstance("other-app", "default", "10.0.0.2", {"app": "b"}),
        WorkloadInstance("other-namespace", "shop", "10.0.0.3", {"app": "a"}),
    )
    service = _service("a.default.svc.cluster.local", workload_selector={"app": "a"})
    ctx = PushContext.build(RegistrySnapshot((service,), workloads), "7")
    labels = {"app": "a", "v": "1"}
    assert ctx.endpoints(service.hostname, 80) == (Endpoint("10.0.0.1", 9999, labels=labels),)
    assert ctx.endpoints(service.hostname, 5000) == (Endpoint("10.0.0.1", 5000, labels=labels),)


def test_static_endpoints_are_ips_but_dns_ones_may_be_names() -> None:
    workloads = (
        WorkloadInstance("ip", "default", "10.0.0.1", {"app": "a"}),
        WorkloadInstance("vm", "default", "vm1.example.com", {"app": "a"}),
    )
    static = _service("s.example.com", workload_selector={"app": "a"})
    dns = _service("d.example.com", workload_selector={"app": "a"}, resolution=Resolution.DNS)
    ctx = PushContext.build(RegistrySnapshot((static, dns), workloads), "1")
    assert [e.address for e in ctx.endpoints("s.example.com", 5000)] == ["10.0.0.1"]
    assert [e.address for e in ctx.endpoints("d.example.com", 5000)] == [
        "10.0.0.1",
        "vm1.example.com",
    ]


def test_instances_of_a_proxy(ctx: PushContext, make_proxy: MakeProxy) -> None:
    instances = ctx.instances_for(make_proxy())
    assert [(i.service.hostname, i.port.name, i.endpoint.port) for i in instances] == [
        ("reviews.default.svc.cluster.local", "tcp-db", 3306),
        ("reviews.default.svc.cluster.local", "http", 19080),
        ("reviews.default.svc.cluster.local", "grpc-api", 19090),
    ]
    assert ctx.instances_for(make_proxy("sidecar~127.0.9.9~x.default~default.svc")) == ()


def test_instances_by_instance_ips_and_inline_endpoints(
    ctx: PushContext, make_proxy: MakeProxy
) -> None:
    proxy = make_proxy("sidecar~10.1.1.1~ratings.shop~shop.svc", INSTANCE_IPS="127.0.2.1")
    (instance,) = ctx.instances_for(proxy)
    assert (instance.service.hostname, instance.endpoint) == (
        "ratings.shop.svc.cluster.local",
        Endpoint("127.0.2.1", 9080),
    )


def test_same_registry_in_any_order_builds_the_same_context() -> None:
    workloads = tuple(
        WorkloadInstance(f"w{i}", "default", f"10.0.0.{i}", {"app": "a"}, locality=f"r{i % 2}")
        for i in range(1, 6)
    )
    services = (
        _service("a.example.com", workload_selector={"app": "a"}),
        _service("b.example.com", workload_selector={"app": "a"}),
    )
    one = PushContext.build(RegistrySnapshot(services, workloads), "1")
    other = PushContext.build(RegistrySnapshot(services[::-1], workloads[::-1]), "1")
    assert one.services == other.services
    for service in services:
        for port in service.ports:
            assert one.endpoints(service.hostname, port.number) == other.endpoints(
                service.hostname, port.number
            )
