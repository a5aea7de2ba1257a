"""A listener whose TLS certificate and roots come from the agent's SDS server.

Pilot only references `default` and `ROOTCA` through `sds-grpc`; tests of the agent's SDS need a
consumer of those secrets without pilot, so this builds one as static bootstrap JSON, using the
same `SdsSecretConfig` pilot generates. The echo filter proves data flows after the handshake.
"""

from __future__ import annotations

from typing import Any

from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import json_format

from pilot.generators.traffic_policy import SDS_ROOT_CA, SDS_WORKLOAD_CERT, sds_secret

_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
_ECHO = "type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo"


def sds_tls_listener(ip: str, port: int) -> dict[str, Any]:
    """A TCP echo listener terminating TLS with `default` and `ROOTCA` from `sds-grpc`."""
    context = tls_pb2.DownstreamTlsContext()
    common = context.common_tls_context
    common.tls_certificate_sds_secret_configs.append(sds_secret(SDS_WORKLOAD_CERT))
    common.validation_context_sds_secret_config.CopyFrom(sds_secret(SDS_ROOT_CA))
    context_json = json_format.MessageToDict(context, preserving_proto_field_name=True)
    return {
        "name": "sds-tls",
        "address": {"socket_address": {"address": ip, "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.echo", "typed_config": {"@type": _ECHO}}
                ],
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {"@type": _TLS, **context_json},
                },
            }
        ],
    }
