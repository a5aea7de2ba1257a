"""Mixer in the data plane, for stock Envoy: ext_authz asks Mixer's Check, the gRPC access log
feeds its Report.

Istio 1.4's sidecars ran a Mixer filter; stock Envoy has none, so when the mesh config turns
policy checks on (`MeshConfig.policy_checks`) each inbound HTTP connection manager gets an
`envoy.filters.http.ext_authz` filter calling Mixer's ext_authz front (fail-open or closed as
`policyCheckFailOpen` says, with a timeout), and when telemetry reports are on, an
`envoy.access_loggers.http_grpc` access log streaming every request to Mixer's access-log
front. Envoy does not know Istio's attributes, so pilot writes what Mixer cannot learn from the
request into the config: the destination workload's attributes as the inbound route's ext_authz
`context_extensions` and the access log's `custom_tags` (string maps as `k=v,k2=v2`), and a
client sidecar's own attributes (source labels and workload) as the `x-istio-attributes` header
(an `istio.mixer.v1.Attributes`, base64) that its HTTP proxy listener sets on every request,
replacing whatever the application sent. Sidecars reach Mixer through the Istio-named cluster
of the configured server (`outbound|9091||istio-policy...`), which pilot adds when the registry
does not already give the proxy one.

A service whose ServiceEntry is annotated `policy.pymesh.dev/check: disable` is exempt: its
inbound routes turn ext_authz off (`ExtAuthzPerRoute.disabled`). Not translated: the source
header on captured outbound listeners (shared by every proxy of a view, they cannot carry one
proxy's identity), mutual TLS to Mixer's 15004, and quotas through Envoy's rate limit service
(Mixer charges QuotaSpecs itself on Check).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Final

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.upstreams.http.v3.http_protocol_options_pb2 import HttpProtocolOptions
from envoy.type.tracing.v3 import custom_tag_pb2
from google.protobuf import any_pb2, duration_pb2

from pilot.generators import names
from pilot.generators.endpoints import cluster_load_assignment
from pilot.generators.proto import pack, seconds
from pilot.mesh_config import MeshConfig, split_host_port
from pilot.model import Endpoint, Proxy, ProxyView, Service, is_ip
from pilot.push_context import PushContext
from protos.mixer.v1 import attributes_pb2

EXT_AUTHZ: Final = "envoy.filters.http.ext_authz"
HEADER_MUTATION: Final = "envoy.filters.http.header_mutation"
HTTP_GRPC_ACCESS_LOG: Final = "envoy.access_loggers.http_grpc"
ATTRIBUTES_HEADER: Final = "x-istio-attributes"
_PROTOCOL_OPTIONS: Final = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_CONNECT_TIMEOUT: Final = 1
_FLUSH_INTERVAL: Final = 1
Literal = custom_tag_pb2.CustomTag.Literal


def _cluster_name(server: str) -> str:
    host, port = split_host_port(server)
    return names.outbound_cluster(port, host)


def _grpc_service(server: str) -> grpc_service_pb2.GrpcService:
    return grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=_cluster_name(server))
    )


def check_filter(mesh: MeshConfig) -> hcm_pb2.HttpFilter | None:
    """The inbound ext_authz filter calling Mixer's Check; None with policy checks off."""
    if not mesh.policy_checks:
        return None
    service = _grpc_service(mesh.mixer_check_server)
    timeout = duration_pb2.Duration()
    timeout.FromNanoseconds(round(mesh.policy_check_timeout * 1e9))
    service.timeout.CopyFrom(timeout)
    config = ext_authz_pb2.ExtAuthz(
        grpc_service=service,
        transport_api_version=config_source_pb2.ApiVersion.V3,
        failure_mode_allow=mesh.policy_check_fail_open,
    )
    return hcm_pb2.HttpFilter(name=EXT_AUTHZ, typed_config=pack(config))


def destination_attributes(ctx: PushContext, proxy: Proxy, port: int) -> dict[str, str]:
    """What Mixer cannot learn from an inbound request on `port`: the workload it reached and
    the service it was sent to (the first by hostname that the workload backs on that port)."""
    attributes = {
        "destination.labels": _string_map(proxy.labels),
        "destination.workload.name": proxy.name or proxy.pod_name,
        "destination.workload.namespace": proxy.namespace,
        "destination.namespace": proxy.namespace,
    }
    service = _destination_service(ctx, proxy, port)
    if service is not None:
        attributes["destination.service.host"] = service.hostname
        attributes["destination.service.name"] = service.hostname.split(".")[0]
        attributes["destination.service.namespace"] = service.namespace
    return attributes


def route_check_settings(
    ctx: PushContext, proxy: Proxy, port: int, attributes: Mapping[str, str]
) -> dict[str, any_pb2.Any]:
    """`typed_per_filter_config` for an inbound route: the destination's attributes, or the
    check turned off for a service exempt from policy checks."""
    if not ctx.mesh.policy_checks:
        return {}
    per_route = ext_authz_pb2.ExtAuthzPerRoute()
    service = _destination_service(ctx, proxy, port)
    if service is not None and not service.policy_checks:
        per_route.disabled = True
    else:
        per_route.check_settings.context_extensions.update(attributes)
    return {EXT_AUTHZ: pack(per_route)}


def _destination_service(ctx: PushContext, proxy: Proxy, port: int) -> Service | None:
    for instance in ctx.instances_for(proxy):
        if instance.endpoint.port == port:
            return instance.service
    return None


def access_logs(
    mesh: MeshConfig, attributes: Mapping[str, str], reporter: str
) -> list[accesslog_pb2.AccessLog]:
    """Every request streamed to Mixer's Report, tagged with `attributes`; none with telemetry
    reports off."""
    if not mesh.telemetry_reports:
        return []
    common = als_pb2.CommonGrpcAccessLogConfig(
        log_name=reporter,
        grpc_service=_grpc_service(mesh.mixer_report_server),
        transport_api_version=config_source_pb2.ApiVersion.V3,
        buffer_flush_interval=seconds(_FLUSH_INTERVAL),
        custom_tags=[
            custom_tag_pb2.CustomTag(
                tag=name, literal=custom_tag_pb2.CustomTag.Literal(value=value)
            )
            for name, value in sorted({**attributes, "context.reporter.kind": reporter}.items())
        ],
    )
    config = als_pb2.HttpGrpcAccessLogConfig(
        common_config=common, additional_request_headers_to_log=[ATTRIBUTES_HEADER]
    )
    return [accesslog_pb2.AccessLog(name=HTTP_GRPC_ACCESS_LOG, typed_config=pack(config))]


def source_header_filter(mesh: MeshConfig, proxy: Proxy) -> hcm_pb2.HttpFilter | None:
    """For a client's HTTP proxy listener: set `x-istio-attributes` to the proxy's identity."""
    if not (mesh.policy_checks or mesh.telemetry_reports):
        return None
    message = attributes_pb2.Attributes()
    for name, value in (
        ("source.workload.name", proxy.name or proxy.pod_name),
        ("source.workload.namespace", proxy.namespace),
        ("source.namespace", proxy.namespace),
    ):
        message.attributes[name].string_value = value
    message.attributes["source.labels"].string_map_value.entries.update(proxy.labels)
    header = base64.b64encode(message.SerializeToString(deterministic=True)).decode()
    mutation = header_mutation_pb2.HeaderMutation()
    append = mutation.mutations.request_mutations.add().append
    append.header.key = ATTRIBUTES_HEADER
    append.header.value = header
    append.append_action = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    return hcm_pb2.HttpFilter(name=HEADER_MUTATION, typed_config=pack(mutation))


def clusters(ctx: PushContext, view: ProxyView, mesh: MeshConfig) -> list[cluster_pb2.Cluster]:
    """The clusters reaching the Mixer servers the view's proxies call, unless the registry
    already gives them one by that name."""
    servers = set()
    if mesh.policy_checks:
        servers.add(mesh.mixer_check_server)
    if mesh.telemetry_reports:
        servers.add(mesh.mixer_report_server)
    known = {
        names.outbound_cluster(port.number, service.hostname)
        for service in ctx.services_for(view)
        for port in service.ports
    }
    return [
        _mixer_cluster(server) for server in sorted(servers) if _cluster_name(server) not in known
    ]


def _mixer_cluster(server: str) -> cluster_pb2.Cluster:
    host, port = split_host_port(server)
    name = _cluster_name(server)
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC if is_ip(host) else cluster_pb2.Cluster.STRICT_DNS,
        connect_timeout=seconds(_CONNECT_TIMEOUT),
    )
    if not is_ip(host):
        cluster.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
    cluster.load_assignment.CopyFrom(cluster_load_assignment(name, [Endpoint(host, port)]))
    options = HttpProtocolOptions()
    options.explicit_http_config.http2_protocol_options.SetInParent()
    cluster.typed_extension_protocol_options[_PROTOCOL_OPTIONS].CopyFrom(pack(options))
    return cluster


def _string_map(values: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(values.items()))
