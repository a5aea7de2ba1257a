"""Route policies that several kinds of route share: retries, faults, CORS, hashing, fractions.

istiod's `retry.ConvertPolicy`, `TranslateFault`, `TranslateCORSPolicy` and the request hash a
DestinationRule's consistent-hash load balancing needs. VirtualService routes and the default
route of a service both use them, so a service behaves the same with or without a
VirtualService (same retries, same hashing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2,
)
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from meshconfig.base import duration_seconds
from meshconfig.networking.common import Percentage, StringMatch
from meshconfig.networking.destination_rule import (
    ConsistentHashLB,
    DestinationRule,
    LoadBalancerSettings,
    PortTrafficPolicy,
)
from meshconfig.networking.virtual_service import CorsPolicy, HTTPFaultInjection, HTTPRetry
from pilot.generators.proto import duration, pack
from pilot.push_context import PushContext

DEFAULT_RETRY_ON: Final = (
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
)
DEFAULT_RETRY_ATTEMPTS: Final = 2
PREVIOUS_HOSTS: Final = "envoy.retry_host_predicates.previous_hosts"
PREVIOUS_PRIORITIES: Final = "envoy.retry_priorities.previous_priorities"
_HOST_SELECTION_RETRY_MAX_ATTEMPTS: Final = 5
_PREVIOUS_PRIORITIES_UPDATE_FREQUENCY: Final = 2
_HTTP_STATUS_CODES: Final = range(100, 600)
# The same for every route that retries on other hosts (most routes), so packed once; message
# fields copy what they are given, so sharing it is safe.
_PREVIOUS_HOSTS_PREDICATE: Final = rc.RetryPolicy.RetryHostPredicate(
    name=PREVIOUS_HOSTS, typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate())
)


def retry_policy(retries: HTTPRetry | None, *, consistent_hash: bool) -> rc.RetryPolicy | None:
    """istiod's `retry.ConvertPolicy`. Without `retries`, Istio's default: 2 retries on
    connection failures, refused streams and gRPC unavailable/cancelled, preferring other hosts;
    503 is no longer retried by default (EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY, Istio 1.22+).
    `attempts: 0` disables retries. Consistent hashing keeps retries on the same host."""
    policy = rc.RetryPolicy(
        num_retries=wrappers_pb2.UInt32Value(value=DEFAULT_RETRY_ATTEMPTS),
        retry_on=DEFAULT_RETRY_ON,
        host_selection_retry_max_attempts=_HOST_SELECTION_RETRY_MAX_ATTEMPTS,
    )
    if not consistent_hash:
        policy.retry_host_predicate.append(_PREVIOUS_HOSTS_PREDICATE)
    if retries is None:
        return policy
    if not retries.attempts or retries.attempts <= 0:
        return None
    policy.num_retries.value = retries.attempts
    if retries.retry_on:
        conditions, codes = _parse_retry_on(retries.retry_on)
        if codes and "retriable-status-codes" not in conditions:
            conditions.append("retriable-status-codes")
        policy.retry_on = ",".join(conditions)
        policy.retriable_status_codes.extend(codes)
    if retries.per_try_timeout:
        policy.per_try_timeout.CopyFrom(duration(retries.per_try_timeout))
    if retries.retry_ignore_previous_hosts is not None:
        del policy.retry_host_predicate[:]
        if retries.retry_ignore_previous_hosts:
            policy.retry_host_predicate.append(_PREVIOUS_HOSTS_PREDICATE)
    if retries.retry_remote_localities:
        policy.retry_priority.name = PREVIOUS_PRIORITIES
        policy.retry_priority.typed_config.CopyFrom(
            pack(
                previous_priorities_config_pb2.PreviousPrioritiesConfig(
                    update_frequency=_PREVIOUS_PRIORITIES_UPDATE_FREQUENCY
                )
            )
        )
    if retries.backoff:
        policy.retry_back_off.base_interval.CopyFrom(duration(retries.backoff))
    return policy


def _parse_retry_on(text: str) -> tuple[list[str], list[int]]:
    """Split `retryOn` into Envoy conditions and the HTTP status codes listed among them."""
    conditions: list[str] = []
    codes: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if part.isdigit() and int(part) in _HTTP_STATUS_CODES:
            codes.append(int(part))
        elif part:
            conditions.append(part)
    return conditions, codes


def fault_config(fault: HTTPFaultInjection) -> fault_pb2.HTTPFault | None:
    """istiod's `TranslateFault`: fixed delays and HTTP/gRPC aborts; a percentage that is not
    given means none of the requests (Istio's API: "if not specified, no request")."""
    out = fault_pb2.HTTPFault()
    delay = fault.delay
    if delay is not None and delay.fixed_delay:
        out.delay.fixed_delay.CopyFrom(duration(delay.fixed_delay))
        out.delay.percentage.CopyFrom(_percentage(delay.percentage, delay.percent))
    abort = fault.abort
    if abort is not None and (abort.http_status is not None or abort.grpc_status is not None):
        if abort.percentage is not None:
            out.abort.percentage.CopyFrom(_percentage(abort.percentage, None))
        if abort.http_status is not None:
            out.abort.http_status = abort.http_status
        else:
            out.abort.grpc_status = grpc.StatusCode[abort.grpc_status or "OK"].value[0]
    if not out.HasField("delay") and not out.HasField("abort"):
        return None
    return out


def _percentage(
    percentage: Percentage | None, percent: int | None
) -> percent_pb2.FractionalPercent:
    """`percentage`, else the deprecated integer `percent`, else 0."""
    if percentage is not None:
        return millionths(percentage.value)
    return hundredths(percent or 0)


def cors_policy(policy: CorsPolicy) -> cors_pb2.CorsPolicy:
    """istiod's `TranslateCORSPolicy`: per-route policy for the CORS filter, always enabled."""
    out = cors_pb2.CorsPolicy(
        allow_methods=",".join(policy.allow_methods or ()),
        allow_headers=",".join(policy.allow_headers or ()),
        expose_headers=",".join(policy.expose_headers or ()),
        # Envoy's default before 1.30; Istio keeps it unless told to ignore such preflights.
        forward_not_matching_preflights=wrappers_pb2.BoolValue(
            value=policy.unmatched_preflights != "IGNORE"
        ),
        filter_enabled=base_pb2.RuntimeFractionalPercent(default_value=hundredths(100)),
    )
    if policy.allow_origins is not None:
        out.allow_origin_string_match.extend(string_matcher(o) for o in policy.allow_origins)
    elif policy.allow_origin is not None:
        out.allow_origin_string_match.extend(
            string_pb2.StringMatcher(exact=o) for o in policy.allow_origin
        )
    if policy.allow_credentials is not None:
        out.allow_credentials.value = policy.allow_credentials
    if policy.max_age is not None:
        out.max_age = str(int(duration_seconds(policy.max_age)))
    return out


def hash_policy(
    ctx: PushContext, namespace: str, hostname: str, port: int | None, subset: str
) -> rc.RouteAction.HashPolicy | None:
    """The request hash a DestinationRule's consistent-hash load balancing needs: the most
    specific of subset port settings, subset, port settings and the rule's own policy."""
    resource = ctx.config.destination_rule_for(hostname, namespace)
    if resource is None or not isinstance(resource.spec, DestinationRule):
        return None
    rule = resource.spec
    candidates: list[ConsistentHashLB | None] = []
    for subset_rule in rule.subsets or ():
        if subset_rule.name == subset and subset_rule.traffic_policy is not None:
            policy = subset_rule.traffic_policy
            candidates += [
                _port_hash(policy.port_level_settings, port),
                _hash_of(policy.load_balancer),
            ]
    if rule.traffic_policy is not None:
        policy = rule.traffic_policy
        candidates += [_port_hash(policy.port_level_settings, port), _hash_of(policy.load_balancer)]
    found = next((c for c in candidates if c is not None), None)
    return None if found is None else _to_hash_policy(found)


def _hash_of(balancer: LoadBalancerSettings | None) -> ConsistentHashLB | None:
    return None if balancer is None else balancer.consistent_hash


def _port_hash(
    settings: Sequence[PortTrafficPolicy] | None, port: int | None
) -> ConsistentHashLB | None:
    for setting in settings or ():
        if port is not None and setting.port is not None and setting.port.number == port:
            return _hash_of(setting.load_balancer)
    return None


def _to_hash_policy(consistent: ConsistentHashLB) -> rc.RouteAction.HashPolicy | None:
    Hash = rc.RouteAction.HashPolicy
    if consistent.http_header_name:
        return Hash(header=Hash.Header(header_name=consistent.http_header_name))
    if consistent.http_cookie is not None:
        cookie = Hash.Cookie(
            name=consistent.http_cookie.name, path=consistent.http_cookie.path or ""
        )
        if consistent.http_cookie.ttl:
            cookie.ttl.CopyFrom(duration(consistent.http_cookie.ttl))
        return Hash(cookie=cookie)
    if consistent.use_source_ip:
        return Hash(connection_properties=Hash.ConnectionProperties(source_ip=True))
    if consistent.http_query_parameter_name:
        return Hash(query_parameter=Hash.QueryParameter(name=consistent.http_query_parameter_name))
    return None


def fraction(percentage: Percentage) -> percent_pb2.FractionalPercent | None:
    """A positive percentage; None for 0 (an explicit 0 turns mirroring off)."""
    return millionths(percentage.value) if percentage.value else None


def millionths(value: float | None) -> percent_pb2.FractionalPercent:
    """A percentage with Istio's precision (a ten-thousandth of a percent)."""
    return percent_pb2.FractionalPercent(
        numerator=int((value or 0) * 10_000), denominator=percent_pb2.FractionalPercent.MILLION
    )


def hundredths(value: int) -> percent_pb2.FractionalPercent:
    return percent_pb2.FractionalPercent(
        numerator=value, denominator=percent_pb2.FractionalPercent.HUNDRED
    )


def string_matcher(value: StringMatch) -> string_pb2.StringMatcher:
    """An Istio StringMatch (exact, prefix or RE2 regex) as Envoy's matcher."""
    if value.exact is not None:
        return string_pb2.StringMatcher(exact=value.exact)
    if value.prefix is not None:
        return string_pb2.StringMatcher(prefix=value.prefix)
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=value.regex or ""))
