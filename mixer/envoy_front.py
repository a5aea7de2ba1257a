"""Mixer in the protocols stock Envoy speaks: ext_authz v3 for Check, access-log service v3
for Report.

`Authorization.Check` reads the AttributeContext as attributes (`envoy_attributes`), charges
the quotas the QuotaSpecBindings attach to the destination, and answers OK or a denial whose
HTTP status follows Istio's mapping of google.rpc codes (PERMISSION_DENIED 403,
RESOURCE_EXHAUSTED 429, UNAUTHENTICATED 401, ...), with the reason as the body. A check that
cannot be evaluated is a gRPC error, and Envoy decides what that, or a late answer, means
(`failure_mode_allow` or `status_on_error`, the filter's timeout).

`AccessLogService.StreamAccessLogs` takes the stream of batches a proxy's http_grpc and
tcp_grpc access loggers send: the first message names the proxy (its node metadata describes
the reporting workload) and the log; every entry becomes one attribute set, reported in a batch
per message. Both servicers are stateless apart from what `Checks` and the current quota
specs hold.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.type.v3 import http_status_pb2
from google.rpc import status_pb2

from mixer import envoy_attributes
from mixer.adapters.base import Status
from mixer.checks import Checks
from mixer.metrics import MixerMetrics
from mixer.runtime import DispatchError

log = logging.getLogger(__name__)

AUTHORIZATION = "envoy.service.auth.v3.Authorization"
ACCESS_LOG = "envoy.service.accesslog.v3.AccessLogService"

# google.rpc.Code -> HTTP status, as Istio's proxy turned Mixer's answers into responses.
HTTP_STATUS = {
    1: 499,  # CANCELLED
    2: 500,  # UNKNOWN
    3: 400,  # INVALID_ARGUMENT
    4: 504,  # DEADLINE_EXCEEDED
    5: 404,  # NOT_FOUND
    6: 409,  # ALREADY_EXISTS
    7: 403,  # PERMISSION_DENIED
    8: 429,  # RESOURCE_EXHAUSTED
    9: 400,  # FAILED_PRECONDITION
    10: 409,  # ABORTED
    11: 400,  # OUT_OF_RANGE
    12: 501,  # UNIMPLEMENTED
    13: 500,  # INTERNAL
    14: 503,  # UNAVAILABLE
    15: 500,  # DATA_LOSS
    16: 401,  # UNAUTHENTICATED
}


def denied(status: Status) -> external_auth_pb2.CheckResponse:
    http = HTTP_STATUS.get(status.code, 403)
    body = f"{_CODE_NAMES.get(status.code, 'PERMISSION_DENIED')}:{status.message}"
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=status.code, message=status.message),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=http),
            body=body,
        ),
    )


_CODE_NAMES = {
    3: "INVALID_ARGUMENT",
    5: "NOT_FOUND",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    14: "UNAVAILABLE",
    16: "UNAUTHENTICATED",
}
_ALLOWED = external_auth_pb2.CheckResponse(
    status=status_pb2.Status(code=0), ok_response=external_auth_pb2.OkHttpResponse()
)


class AuthorizationService:
    """envoy.service.auth.v3.Authorization."""

    def __init__(self, checks: Checks, metrics: MixerMetrics) -> None:
        self._checks = checks
        self._metrics = metrics

    def handler(self) -> grpc.GenericRpcHandler:
        check = grpc.unary_unary_rpc_method_handler(
            self.check,
            request_deserializer=external_auth_pb2.CheckRequest.FromString,
            response_serializer=external_auth_pb2.CheckResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(AUTHORIZATION, {"Check": check})

    async def check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        attributes = envoy_attributes.check_attributes(request)
        try:
            verdict = await self._checks.check(attributes, None)
        except DispatchError as error:
            self._metrics.checked("ext_authz", grpc.StatusCode.INTERNAL.value[0], False)
            await context.abort(grpc.StatusCode.INTERNAL, str(error))
        status = verdict.status
        self._metrics.checked("ext_authz", status.code, verdict.cache_hit)
        return _ALLOWED if status.ok else denied(status)


class AccessLogService:
    """envoy.service.accesslog.v3.AccessLogService."""

    def __init__(self, checks: Checks, metrics: MixerMetrics) -> None:
        self._checks = checks
        self._metrics = metrics

    def handler(self) -> grpc.GenericRpcHandler:
        stream = grpc.stream_unary_rpc_method_handler(
            self.stream_access_logs,
            request_deserializer=als_pb2.StreamAccessLogsMessage.FromString,
            response_serializer=als_pb2.StreamAccessLogsResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(ACCESS_LOG, {"StreamAccessLogs": stream})

    async def stream_access_logs(
        self,
        request_iterator: AsyncIterator[als_pb2.StreamAccessLogsMessage],
        context: grpc.aio.ServicerContext,
    ) -> als_pb2.StreamAccessLogsResponse:
        reporter: dict[str, Any] = {}
        log_name = ""
        async for message in request_iterator:
            if message.HasField("identifier"):
                reporter = envoy_attributes.node_metadata(message.identifier.node)
                log_name = message.identifier.log_name
            if message.HasField("http_logs"):
                sets = [
                    envoy_attributes.http_log_attributes(entry, reporter, log_name)
                    for entry in message.http_logs.log_entry
                ]
            else:
                sets = [
                    envoy_attributes.tcp_log_attributes(entry, reporter, log_name)
                    for entry in message.tcp_logs.log_entry
                ]
            self._checks.report(sets)
            self._metrics.reported("access_log", len(sets))
        return als_pb2.StreamAccessLogsResponse()
