"""The service model: protocol parsing as Istio does it, and frozen values."""

from __future__ import annotations

import dataclasses

import pytest

from pilot.model import Protocol, Service, ServicePort, WorkloadInstance


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http", Protocol.HTTP),
        ("HTTP", Protocol.HTTP),
        ("Http2", Protocol.HTTP2),
        ("grpc", Protocol.GRPC),
        ("GRPC-Web", Protocol.GRPC_WEB),
        ("grpc-web", Protocol.GRPC_WEB),
        ("https", Protocol.HTTPS),
        ("TLS", Protocol.TLS),
        ("tcp", Protocol.TCP),
        ("mongo", Protocol.MONGO),
        ("REDIS", Protocol.REDIS),
        ("mysql", Protocol.MYSQL),
        ("udp", Protocol.TCP),
        ("", Protocol.TCP),
        ("thrift", Protocol.TCP),
    ],
)
def test_parse_protocol(value: str, expected: Protocol) -> None:
    assert Protocol.parse(value) is expected


@pytest.mark.parametrize(
    ("protocol", "name", "expected"),
    [
        (None, "http", Protocol.HTTP),
        (None, "http-web", Protocol.HTTP),
        ("", "http2-api", Protocol.HTTP2),
        (None, "grpc", Protocol.GRPC),
        (None, "grpc-api", Protocol.GRPC),
        (None, "grpc-web", Protocol.GRPC_WEB),
        (None, "grpc-web-ui", Protocol.GRPC_WEB),
        (None, "GRPC-WEB", Protocol.GRPC_WEB),
        (None, "mongo-main", Protocol.MONGO),
        (None, "tcp-db", Protocol.TCP),
        (None, "web", Protocol.TCP),
        (None, "httpx", Protocol.TCP),
        ("TCP", "http", Protocol.TCP),
        ("HTTP", "tcp", Protocol.HTTP),
    ],
)
def test_protocol_from_field_or_name(protocol: str | None, name: str, expected: Protocol) -> None:
    assert Protocol.for_port(protocol, name) is expected


def test_http_families() -> None:
    http = {p for p in Protocol if p.is_http}
    assert http == {Protocol.HTTP, Protocol.HTTP2, Protocol.GRPC, Protocol.GRPC_WEB}
    assert {p for p in Protocol if p.is_http2} == http - {Protocol.HTTP}


def test_endpoint_port_precedence() -> None:
    workload = WorkloadInstance("w", "default", "10.0.0.1", ports={"http": 8080})
    assert workload.endpoint_port(ServicePort("http", 80, Protocol.HTTP, 9090)) == 8080
    assert workload.endpoint_port(ServicePort("grpc", 81, Protocol.GRPC, 9091)) == 9091
    assert workload.endpoint_port(ServicePort("tcp", 82, Protocol.TCP)) == 82


def test_values_are_frozen_and_detached_from_inputs() -> None:
    labels = {"app": "a"}
    workload = WorkloadInstance("w", "default", "10.0.0.1", labels=labels)
    labels["app"] = "changed"
    assert workload.labels["app"] == "a"
    with pytest.raises(TypeError):
        workload.labels["app"] = "b"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        workload.address = "10.0.0.2"  # type: ignore[misc]


def test_selector_matches_labels_in_its_namespace() -> None:
    service = Service("a.default.svc.cluster.local", "default", (), workload_selector={"app": "a"})
    assert service.selects(WorkloadInstance("w", "default", "1.1.1.1", {"app": "a", "v": "1"}))
    assert not service.selects(WorkloadInstance("w", "shop", "1.1.1.1", {"app": "a"}))
    assert not service.selects(WorkloadInstance("w", "default", "1.1.1.1", {"app": "b"}))
    without = Service("b.default.svc.cluster.local", "default", ())
    assert not without.selects(WorkloadInstance("w", "default", "1.1.1.1", {}))


def test_vips_are_the_single_ip_addresses() -> None:
    service = Service("a", "default", (), addresses=("10.0.0.1", "10.1.0.0/16", "::1"))
    assert service.vips == ("10.0.0.1", "::1")
