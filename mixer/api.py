"""Mixer's own API (istio.mixer.v1.Mixer): Check and Report with compressed attributes.

Check decodes the request's attributes, runs `Checks` with the quotas the client asked for
(each quota deduplicated by the call's deduplication id, so a retried call is charged once),
and answers the verdict with its valid duration and use count and the referenced attributes
(EXACT for those that were present, ABSENCE for those that were not) a client caches by.
Report decodes every attribute set and dispatches them as one batch. Attributes that refer to
unknown dictionary words are INVALID_ARGUMENT. Stateless.
"""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2

from mixer import compressed
from mixer.adapters.base import QuotaArgs
from mixer.checks import Checks, Verdict
from mixer.metrics import MixerMetrics
from mixer.runtime import DispatchError
from protos.mixer.v1 import mixer_pb2

SERVICE = "istio.mixer.v1.Mixer"

ReferencedAttributes = mixer_pb2.ReferencedAttributes


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(seconds * 1e9))
    return duration


def check_response(verdict: Verdict) -> mixer_pb2.CheckResponse:
    precondition = verdict.precondition
    encoder = compressed.Encoder()
    matches = [
        ReferencedAttributes.AttributeMatch(
            name=encoder.word(reference.name),
            condition=ReferencedAttributes.EXACT
            if reference.present
            else ReferencedAttributes.ABSENCE,
            map_key=encoder.word(reference.key) if reference.key is not None else 0,
        )
        for reference in sorted(precondition.referenced)
    ]
    response = mixer_pb2.CheckResponse(
        precondition=mixer_pb2.CheckResponse.PreconditionResult(
            status=mixer_pb2.Status(
                code=precondition.status.code, message=precondition.status.message
            ),
            valid_duration=_duration(precondition.valid_duration.total_seconds()),
            valid_use_count=precondition.valid_use_count,
            referenced_attributes=ReferencedAttributes(
                words=encoder.words, attribute_matches=matches
            ),
        )
    )
    for name, result in verdict.quotas.items():
        response.quotas[name].CopyFrom(
            mixer_pb2.CheckResponse.QuotaResult(
                valid_duration=_duration(result.valid_duration.total_seconds()),
                granted_amount=result.granted,
            )
        )
    return response


class MixerService:
    """istio.mixer.v1.Mixer."""

    def __init__(self, checks: Checks, metrics: MixerMetrics) -> None:
        self._checks = checks
        self._metrics = metrics

    def handler(self) -> grpc.GenericRpcHandler:
        check = grpc.unary_unary_rpc_method_handler(
            self.check,
            request_deserializer=mixer_pb2.CheckRequest.FromString,
            response_serializer=mixer_pb2.CheckResponse.SerializeToString,
        )
        report = grpc.unary_unary_rpc_method_handler(
            self.report,
            request_deserializer=mixer_pb2.ReportRequest.FromString,
            response_serializer=mixer_pb2.ReportResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(SERVICE, {"Check": check, "Report": report})

    async def check(
        self, request: mixer_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> mixer_pb2.CheckResponse:
        try:
            attributes = compressed.decode(request.attributes)
        except compressed.DecodeError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        dedup = request.deduplication_id
        quotas = {
            name: QuotaArgs(params.amount, params.best_effort, f"{dedup}/{name}" if dedup else "")
            for name, params in request.quotas.items()
        }
        try:
            verdict = await self._checks.check(attributes, quotas)
        except DispatchError as error:
            await context.abort(grpc.StatusCode.INTERNAL, str(error))
        self._metrics.checked("mixer", verdict.status.code, verdict.cache_hit)
        return check_response(verdict)

    async def report(
        self, request: mixer_pb2.ReportRequest, context: grpc.aio.ServicerContext
    ) -> mixer_pb2.ReportResponse:
        try:
            sets = compressed.decode_report(request)
        except compressed.DecodeError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        self._checks.report(sets)
        self._metrics.reported("mixer", len(sets))
        return mixer_pb2.ReportResponse()
