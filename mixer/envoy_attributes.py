"""Envoy's own messages as Istio attributes: ext_authz checks and access-log entries.

Stock Envoy has no Mixer filter, so Mixer reads what Envoy sends anyway: the external
authorization request (`envoy.service.auth.v3`, an AttributeContext) becomes a Check's
attributes, and each access-log entry (`envoy.service.accesslog.v3`) one Report's. Envoy knows
the connection and the request; what it does not know about the workloads comes from three
places, later ones overriding earlier ones:

- the reporting proxy's node metadata (NAMESPACE, NAME, LABELS, WORKLOAD_NAME, as our agent and
  Istio's write it), which describes the source of an outbound and the destination of an
  inbound request (the ALS stream's identifier);
- the `x-istio-attributes` request header a client sidecar adds (base64 of an `Attributes`
  message, Istio's attribute forwarding), which tells an inbound check who the source is;
- attributes pilot writes into the Envoy config: the ext_authz per-route `context_extensions`
  and the access logger's `custom_tags`, keyed by attribute name. Values are text, parsed by
  the attribute's type in Istio's vocabulary: integers, `true`/`false`, addresses, and string
  maps (labels) written `k=v,k2=v2`.

Values have the Python types of `meshconfig.policy.attributes` (IP addresses are `ipaddress`
objects).
Principals drop the `spiffe://` scheme as Istio's did (`cluster.local/ns/default/sa/reviews`).
Pure functions, no state.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from meshconfig.policy.attributes import ISTIO_VOCABULARY, ValueType
from mixer.compressed import Attributes, Value
from protos.mixer.v1 import attributes_pb2

log = logging.getLogger(__name__)

FORWARDED_ATTRIBUTES_HEADER = "x-istio-attributes"
SPIFFE = "spiffe://"
INBOUND, OUTBOUND = "inbound", "outbound"
IDENTITY_ATTRIBUTES = frozenset(
    {"source.principal", "source.user", "destination.principal", "connection.mtls"}
)

# Envoy's response flags by their short names (%RESPONSE_FLAGS%), Istio's proxy_error_code.
_RESPONSE_FLAGS = (
    ("failed_local_healthcheck", "LH"),
    ("no_healthy_upstream", "UH"),
    ("upstream_request_timeout", "UT"),
    ("local_reset", "LR"),
    ("upstream_remote_reset", "UR"),
    ("upstream_connection_failure", "UF"),
    ("upstream_connection_termination", "UC"),
    ("upstream_overflow", "UO"),
    ("no_route_found", "NR"),
    ("delay_injected", "DI"),
    ("fault_injected", "FI"),
    ("rate_limited", "RL"),
    ("rate_limit_service_error", "RLSE"),
    ("downstream_connection_termination", "DC"),
    ("upstream_retry_limit_exceeded", "URX"),
    ("stream_idle_timeout", "SI"),
    ("invalid_envoy_request_headers", "IH"),
    ("downstream_protocol_error", "DPE"),
    ("no_cluster_found", "NC"),
)


def principal(uri: str) -> str:
    """A SPIFFE URI as Istio's principal attribute (the scheme dropped)."""
    return uri.removeprefix(SPIFFE)


def _parsed(value_type: ValueType | None, text: str) -> Any:
    if value_type is ValueType.STRING_MAP:
        pairs = (item.partition("=") for item in text.split(",") if item)
        return {key.strip(): value.strip() for key, _, value in pairs}
    if value_type is ValueType.INT64:
        return int(text)
    if value_type is ValueType.DOUBLE:
        return float(text)
    if value_type is ValueType.BOOL:
        if text not in ("true", "false"):
            raise ValueError(f"{text!r} is not true or false")
        return text == "true"
    if value_type is ValueType.IP_ADDRESS:
        return ipaddress.ip_address(text)
    return text


def extension_attributes(values: Mapping[str, str]) -> Attributes:
    """Attributes written into Envoy's config as text (context extensions, custom tags)."""
    result: Attributes = {}
    for name, text in values.items():
        value_type = ISTIO_VOCABULARY.get(name)
        try:
            result[name] = _parsed(value_type, text)
        except ValueError as error:
            log.warning("attribute %s: cannot read %r: %s; ignored", name, text, error)
    return result


def workload_attributes(prefix: str, metadata: Mapping[str, Any]) -> Attributes:
    """A proxy's own workload (its node metadata) as `source.*` or `destination.*`."""
    result: Attributes = {}
    namespace = metadata.get("NAMESPACE")
    name = metadata.get("NAME")
    if isinstance(namespace, str) and namespace:
        result[f"{prefix}.namespace"] = namespace
        result[f"{prefix}.workload.namespace"] = namespace
    if isinstance(name, str) and name:
        result[f"{prefix}.name"] = name
        if namespace:
            result[f"{prefix}.uid"] = f"kubernetes://{name}.{namespace}"
    workload = metadata.get("WORKLOAD_NAME") or name
    if isinstance(workload, str) and workload:
        result[f"{prefix}.workload.name"] = workload
    labels = metadata.get("LABELS")
    if isinstance(labels, Mapping):
        result[f"{prefix}.labels"] = {str(k): str(v) for k, v in labels.items()}
    return result


def node_metadata(node: base_pb2.Node) -> dict[str, Any]:
    return json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {}


def forwarded_attributes(header: str) -> Attributes:
    """The attributes a client sidecar forwarded (base64 of an `Attributes` message).

    Identities are never taken from it (`source.principal`, `source.user`): only the TLS peer
    certificate vouches for those, and a header is whatever the client wrote.
    """
    try:
        message = attributes_pb2.Attributes.FromString(base64.b64decode(header, validate=True))
    except (binascii.Error, DecodeError) as error:
        log.warning("ignoring a malformed %s header: %s", FORWARDED_ATTRIBUTES_HEADER, error)
        return {}
    result: Attributes = {}
    for name, value in message.attributes.items():
        if name in IDENTITY_ATTRIBUTES:
            continue
        kind = value.WhichOneof("value")
        if kind == "string_map_value":
            result[name] = dict(value.string_map_value.entries)
        elif kind == "timestamp_value":
            result[name] = value.timestamp_value.ToDatetime(datetime.UTC)
        elif kind == "duration_value":
            result[name] = value.duration_value.ToTimedelta()
        elif kind is not None:
            result[name] = getattr(value, kind)
    return result


def forward_header(attributes: Mapping[str, Value]) -> str:
    """The `x-istio-attributes` value carrying string and string-map attributes."""
    message = attributes_pb2.Attributes()
    for name, value in attributes.items():
        if isinstance(value, str):
            message.attributes[name].string_value = value
        elif isinstance(value, dict):
            message.attributes[name].string_map_value.entries.update(value)
    return base64.b64encode(message.SerializeToString()).decode()


def _address(attributes: Attributes, prefix: str, address: address_pb2.Address) -> None:
    socket = address.socket_address
    if not socket.address:
        return
    try:
        attributes[f"{prefix}.ip"] = ipaddress.ip_address(socket.address)
    except ValueError:
        return
    if socket.port_value and prefix == "destination":
        attributes["destination.port"] = socket.port_value


def _request_line(attributes: Attributes, path: str) -> None:
    attributes["request.path"] = path
    url_path, _, query = path.partition("?")
    attributes["request.url_path"] = url_path
    if query:
        attributes["request.query_params"] = dict(parse_qsl(query, keep_blank_values=True))


def _protocol(headers: Mapping[str, str]) -> str:
    return "grpc" if headers.get("content-type", "").startswith("application/grpc") else "http"


def check_attributes(request: external_auth_pb2.CheckRequest) -> Attributes:
    """An ext_authz check as the attributes of a Mixer Check."""
    context = request.attributes
    attributes: Attributes = {}
    _peer(attributes, "source", context.source)
    _peer(attributes, "destination", context.destination)
    attributes["connection.mtls"] = bool(context.source.principal)
    if context.tls_session.sni:
        attributes["connection.requested_server_name"] = context.tls_session.sni
    http = context.request.http
    headers = dict(http.headers)
    attributes["request.headers"] = headers
    if http.path:
        _request_line(attributes, http.path)
    for name, value in (
        ("request.host", http.host),
        ("request.method", http.method),
        ("request.scheme", http.scheme),
        ("request.id", http.id),
        ("request.useragent", headers.get("user-agent", "")),
        ("request.referer", headers.get("referer", "")),
    ):
        if value:
            attributes[name] = value
    if http.size > 0:
        attributes["request.size"] = http.size
    if context.request.HasField("time"):
        attributes["request.time"] = context.request.time.ToDatetime(datetime.UTC)
    attributes["context.protocol"] = _protocol(headers)
    forwarded = headers.get(FORWARDED_ATTRIBUTES_HEADER)
    if forwarded:
        attributes.update(forwarded_attributes(forwarded))
    attributes.update(extension_attributes(context.context_extensions))
    return attributes


def _peer(
    attributes: Attributes, prefix: str, peer: attribute_context_pb2.AttributeContext.Peer
) -> None:
    _address(attributes, prefix, peer.address)
    if peer.principal:
        attributes[f"{prefix}.principal"] = principal(peer.principal)
        if prefix == "source":
            attributes["source.user"] = principal(peer.principal)
    if peer.labels:
        attributes[f"{prefix}.labels"] = dict(peer.labels)


def reporter_kind(log_name: str, common: accesslog_pb2.AccessLogCommon) -> str:
    """inbound or outbound: a custom tag says so, else the log name, else the cluster name."""
    kind = common.custom_tags.get("context.reporter.kind") or log_name
    if kind in (INBOUND, OUTBOUND):
        return kind
    return INBOUND if common.upstream_cluster.startswith("inbound|") else OUTBOUND


def _common(attributes: Attributes, common: accesslog_pb2.AccessLogCommon, kind: str) -> None:
    if kind == INBOUND:
        _address(attributes, "source", common.downstream_remote_address)
        _address(attributes, "destination", common.downstream_local_address)
    else:
        _address(attributes, "source", common.downstream_remote_address)
        _address(attributes, "destination", common.upstream_remote_address)
        _cluster_service(attributes, common.upstream_cluster)
    tls = common.tls_properties
    peer_uris = [san.uri for san in tls.peer_certificate_properties.subject_alt_name if san.uri]
    local_uris = [san.uri for san in tls.local_certificate_properties.subject_alt_name if san.uri]
    if kind == INBOUND:
        attributes["connection.mtls"] = bool(peer_uris)
        if peer_uris:
            attributes["source.principal"] = attributes["source.user"] = principal(peer_uris[0])
        if local_uris:
            attributes["destination.principal"] = principal(local_uris[0])
    if tls.tls_sni_hostname:
        attributes["connection.requested_server_name"] = tls.tls_sni_hostname
    if common.HasField("start_time"):
        attributes["request.time"] = start = common.start_time.ToDatetime(datetime.UTC)
        if common.HasField("time_to_last_downstream_tx_byte"):
            elapsed = common.time_to_last_downstream_tx_byte.ToTimedelta()
            attributes["response.duration"] = elapsed
            attributes["response.time"] = start + elapsed
    flags = [code for field, code in _RESPONSE_FLAGS if getattr(common.response_flags, field)]
    attributes["context.proxy_error_code"] = ",".join(flags) or "-"
    attributes["context.reporter.kind"] = kind


def _cluster_service(attributes: Attributes, cluster: str) -> None:
    """`outbound|9080|v1|ratings.default.svc.cluster.local` names the destination service."""
    parts = cluster.split("|")
    if len(parts) != 4 or parts[0] != OUTBOUND or not parts[3]:
        return
    host = parts[3]
    attributes["destination.service.host"] = host
    labels = host.split(".")
    if len(labels) >= 2:
        attributes["destination.service.name"] = labels[0]
        attributes["destination.service.namespace"] = labels[1]


def http_log_attributes(
    entry: accesslog_pb2.HTTPAccessLogEntry, reporter: Mapping[str, Any], log_name: str
) -> Attributes:
    """One HTTP access-log entry of the proxy with node metadata `reporter` as attributes."""
    common = entry.common_properties
    kind = reporter_kind(log_name, common)
    attributes = workload_attributes("destination" if kind == INBOUND else "source", reporter)
    _common(attributes, common, kind)
    request, response = entry.request, entry.response
    headers = dict(request.request_headers)
    attributes["request.headers"] = headers
    if request.path:
        _request_line(attributes, request.path)
    for name, value in (
        ("request.host", request.authority),
        (
            "request.method",
            base_pb2.RequestMethod.Name(request.request_method) if request.request_method else "",
        ),
        ("request.scheme", request.scheme),
        ("request.id", request.request_id),
        ("request.useragent", request.user_agent),
        ("request.referer", request.referer),
    ):
        if value:
            attributes[name] = value
    attributes["request.size"] = request.request_body_bytes
    attributes["request.total_size"] = request.request_headers_bytes + request.request_body_bytes
    if response.HasField("response_code"):
        attributes["response.code"] = response.response_code.value
    attributes["response.size"] = response.response_body_bytes
    attributes["response.total_size"] = (
        response.response_headers_bytes + response.response_body_bytes
    )
    response_headers = dict(response.response_headers)
    if response_headers:
        attributes["response.headers"] = response_headers
    grpc_status = response.response_trailers.get("grpc-status") or response_headers.get(
        "grpc-status"
    )
    if grpc_status:
        attributes["response.grpc_status"] = grpc_status
    protocol = _protocol(headers) if "content-type" in headers else _protocol(response_headers)
    attributes["context.protocol"] = protocol
    forwarded = headers.get(FORWARDED_ATTRIBUTES_HEADER)
    if forwarded and kind == INBOUND:
        attributes.update(forwarded_attributes(forwarded))
    attributes.update(extension_attributes(common.custom_tags))
    return attributes


_CONNECTION_EVENTS = {
    accesslog_pb2.TcpUpstreamConnected: "open",
    accesslog_pb2.TcpPeriodic: "continue",
}


def tcp_log_attributes(
    entry: accesslog_pb2.TCPAccessLogEntry, reporter: Mapping[str, Any], log_name: str
) -> Attributes:
    """One TCP access-log entry (a connection opened, still open, or closed) as attributes."""
    common = entry.common_properties
    kind = reporter_kind(log_name, common)
    attributes = workload_attributes("destination" if kind == INBOUND else "source", reporter)
    _common(attributes, common, kind)
    attributes["context.protocol"] = "tcp"
    attributes["connection.event"] = _CONNECTION_EVENTS.get(common.access_log_type, "close")
    received = entry.connection_properties.received_bytes
    sent = entry.connection_properties.sent_bytes
    attributes["connection.received.bytes"] = received
    attributes["connection.sent.bytes"] = sent
    attributes["connection.received.bytes_total"] = received
    attributes["connection.sent.bytes_total"] = sent
    if common.HasField("duration"):
        attributes["connection.duration"] = common.duration.ToTimedelta()
    attributes.update(extension_attributes(common.custom_tags))
    return attributes
