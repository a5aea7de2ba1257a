"""Envoy's ext_authz checks and access-log entries read as Istio attributes."""

from __future__ import annotations

import datetime
import ipaddress

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2
from google.protobuf import struct_pb2

from mixer import envoy_attributes

Context = attribute_context_pb2.AttributeContext


def _address(ip: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=ip, port_value=port)
    )


def _check_request(**headers: str) -> external_auth_pb2.CheckRequest:
    context = Context(
        source=Context.Peer(
            address=_address("127.0.0.5", 40000),
            principal="spiffe://cluster.local/ns/default/sa/reviews",
        ),
        destination=Context.Peer(address=_address("127.0.0.6", 9080)),
        request=Context.Request(
            http=Context.HttpRequest(
                id="req-1",
                method="GET",
                path="/ratings/0?user=john&x",
                host="ratings:9080",
                scheme="http",
                headers={"user-agent": "curl/8", **headers},
                size=-1,
            )
        ),
        context_extensions={
            "destination.labels": "app=ratings,version=v1",
            "destination.service.host": "ratings.default.svc.cluster.local",
            "destination.port": "9080",
        },
    )
    context.request.time.FromDatetime(datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC))
    return external_auth_pb2.CheckRequest(attributes=context)


def test_check_request_maps_peers_request_and_extensions() -> None:
    attributes = envoy_attributes.check_attributes(_check_request())
    assert attributes["source.ip"] == ipaddress.ip_address("127.0.0.5")
    assert attributes["destination.ip"] == ipaddress.ip_address("127.0.0.6")
    assert attributes["destination.port"] == 9080
    assert attributes["source.principal"] == "cluster.local/ns/default/sa/reviews"
    assert attributes["source.user"] == "cluster.local/ns/default/sa/reviews"
    assert attributes["connection.mtls"] is True
    assert attributes["request.path"] == "/ratings/0?user=john&x"
    assert attributes["request.url_path"] == "/ratings/0"
    assert attributes["request.query_params"] == {"user": "john", "x": ""}
    assert attributes["request.host"] == "ratings:9080"
    assert attributes["request.method"] == "GET"
    assert attributes["request.id"] == "req-1"
    assert attributes["request.useragent"] == "curl/8"
    assert "request.size" not in attributes
    assert attributes["request.time"] == datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC)
    assert attributes["context.protocol"] == "http"
    assert attributes["destination.labels"] == {"app": "ratings", "version": "v1"}
    assert attributes["destination.service.host"] == "ratings.default.svc.cluster.local"


def test_forwarded_source_attributes_come_from_the_client_sidecar() -> None:
    header = envoy_attributes.forward_header(
        {"source.labels": {"app": "reviews", "version": "v3"}, "source.namespace": "default"}
    )
    request = _check_request(**{"x-istio-attributes": header, "content-type": "application/grpc"})
    attributes = envoy_attributes.check_attributes(request)
    assert attributes["source.labels"] == {"app": "reviews", "version": "v3"}
    assert attributes["source.namespace"] == "default"
    assert attributes["context.protocol"] == "grpc"


def test_identities_are_never_taken_from_the_forwarded_header() -> None:
    forged = envoy_attributes.forward_header({"source.principal": "cluster.local/ns/x/sa/admin"})
    request = _check_request(**{"x-istio-attributes": forged})
    attributes = envoy_attributes.check_attributes(request)
    assert attributes["source.principal"] == "cluster.local/ns/default/sa/reviews"


def test_malformed_forwarded_header_is_ignored() -> None:
    attributes = envoy_attributes.check_attributes(_check_request(**{"x-istio-attributes": "%%"}))
    assert "source.labels" not in attributes


def test_bad_extension_value_is_dropped() -> None:
    assert envoy_attributes.extension_attributes({"destination.port": "http"}) == {}
    assert envoy_attributes.extension_attributes({"connection.mtls": "true"}) == {
        "connection.mtls": True
    }


def _node(**metadata: object) -> dict[str, object]:
    struct = struct_pb2.Struct()
    struct.update(metadata)
    return envoy_attributes.node_metadata(base_pb2.Node(id="x", metadata=struct))


def test_inbound_http_log_describes_the_reporting_workload_as_destination() -> None:
    reporter = _node(NAMESPACE="default", NAME="ratings-v1", LABELS={"app": "ratings"})
    common = accesslog_pb2.AccessLogCommon(
        downstream_remote_address=_address("127.0.0.5", 40000),
        downstream_local_address=_address("127.0.0.6", 9080),
        upstream_cluster="inbound|9080||",
        custom_tags={"destination.service.host": "ratings.default.svc.cluster.local"},
        tls_properties=accesslog_pb2.TLSProperties(
            peer_certificate_properties=accesslog_pb2.TLSProperties.CertificateProperties(
                subject_alt_name=[
                    accesslog_pb2.TLSProperties.CertificateProperties.SubjectAltName(
                        uri="spiffe://cluster.local/ns/default/sa/reviews"
                    )
                ]
            )
        ),
    )
    common.start_time.FromDatetime(datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC))
    common.time_to_last_downstream_tx_byte.FromMilliseconds(12)
    common.response_flags.no_healthy_upstream = True
    entry = accesslog_pb2.HTTPAccessLogEntry(
        common_properties=common,
        request=accesslog_pb2.HTTPRequestProperties(
            request_method=base_pb2.GET,
            path="/ratings/0",
            authority="ratings:9080",
            request_body_bytes=0,
            request_headers_bytes=100,
        ),
        response=accesslog_pb2.HTTPResponseProperties(
            response_body_bytes=42, response_headers_bytes=50
        ),
    )
    entry.response.response_code.value = 503
    attributes = envoy_attributes.http_log_attributes(entry, reporter, "inbound")
    assert attributes["context.reporter.kind"] == "inbound"
    assert attributes["destination.workload.name"] == "ratings-v1"
    assert attributes["destination.workload.namespace"] == "default"
    assert attributes["destination.labels"] == {"app": "ratings"}
    assert attributes["destination.uid"] == "kubernetes://ratings-v1.default"
    assert attributes["destination.service.host"] == "ratings.default.svc.cluster.local"
    assert attributes["source.principal"] == "cluster.local/ns/default/sa/reviews"
    assert attributes["connection.mtls"] is True
    assert attributes["response.code"] == 503
    assert attributes["response.size"] == 42
    assert attributes["response.total_size"] == 92
    assert attributes["request.total_size"] == 100
    assert attributes["request.method"] == "GET"
    assert attributes["response.duration"] == datetime.timedelta(milliseconds=12)
    assert attributes["context.proxy_error_code"] == "UH"


def test_outbound_http_log_names_the_destination_service_from_the_cluster() -> None:
    reporter = _node(NAMESPACE="default", NAME="reviews-v3", LABELS={"app": "reviews"})
    entry = accesslog_pb2.HTTPAccessLogEntry(
        common_properties=accesslog_pb2.AccessLogCommon(
            upstream_cluster="outbound|9080|v1|ratings.default.svc.cluster.local",
            upstream_remote_address=_address("127.0.0.6", 9080),
        )
    )
    attributes = envoy_attributes.http_log_attributes(entry, reporter, "")
    assert attributes["context.reporter.kind"] == "outbound"
    assert attributes["source.workload.name"] == "reviews-v3"
    assert attributes["destination.service.host"] == "ratings.default.svc.cluster.local"
    assert attributes["destination.service.name"] == "ratings"
    assert attributes["destination.service.namespace"] == "default"
    assert attributes["destination.ip"] == ipaddress.ip_address("127.0.0.6")
    assert attributes["context.proxy_error_code"] == "-"


def test_tcp_log_entries_are_connection_events() -> None:
    common = accesslog_pb2.AccessLogCommon(access_log_type=accesslog_pb2.TcpUpstreamConnected)
    opened = accesslog_pb2.TCPAccessLogEntry(common_properties=common)
    closed = accesslog_pb2.TCPAccessLogEntry(
        connection_properties=accesslog_pb2.ConnectionProperties(received_bytes=10, sent_bytes=20)
    )
    first = envoy_attributes.tcp_log_attributes(opened, {}, "inbound")
    last = envoy_attributes.tcp_log_attributes(closed, {}, "inbound")
    assert (first["connection.event"], last["connection.event"]) == ("open", "close")
    assert last["context.protocol"] == "tcp"
    assert (last["connection.received.bytes"], last["connection.sent.bytes"]) == (10, 20)
