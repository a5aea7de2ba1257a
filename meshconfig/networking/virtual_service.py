"""VirtualService: how requests for a set of hosts are matched and routed.

Pilot turns these into Envoy route configurations. Beyond the CRD schema, the rules checked
here follow istiod's validating webhook (the module docstring of `meshconfig.networking` lists
the few deliberate differences).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Sequence
from typing import Annotated, Literal, Protocol

from pydantic import AliasChoices, Field

from meshconfig.base import (
    CheckedModel,
    Int32,
    IntPercent,
    Port,
    Problem,
    UInt32,
    duration_seconds,
)
from meshconfig.networking.checks import (
    GRPC_STATUSES,
    HTTP_METHODS,
    Timeout,
    export_to_problems,
    gateway_name_error,
    header_name_error,
    header_value_error,
    host_subset_of,
    hosts_overlap,
    ip_or_cidr_error,
    is_dns_label,
    is_ip,
    is_jwt_claim,
    is_retry_on_policy,
    label_errors,
    regex_error,
    wildcard_domain_error,
)
from meshconfig.networking.common import (
    Destination,
    Percentage,
    StringMatch,
    string_match_problems,
)

MESH_GATEWAY = "mesh"
Weight = Annotated[int, Field(ge=0, le=100)]


class HeaderOperations(CheckedModel):
    set_: dict[str, str] | None = Field(None, alias="set")
    add: dict[str, str] | None = None
    remove: list[str] | None = None


class Headers(CheckedModel):
    """Header changes for requests sent upstream and responses sent back."""

    request: HeaderOperations | None = None
    response: HeaderOperations | None = None

    def problems(self) -> Iterator[Problem]:
        for side, operations in (("request", self.request), ("response", self.response)):
            if operations is None:
                continue
            for verb, values in (("set", operations.set_), ("add", operations.add)):
                for name, value in (values or {}).items():
                    invalid = _header_operation_error(name, side == "request")
                    if invalid:
                        yield (side, verb, name), invalid
                    invalid = header_value_error(value)
                    if invalid:
                        yield (side, verb, name), invalid
            for index, name in enumerate(operations.remove or []):
                invalid = _header_operation_error(name, False)
                if invalid:
                    yield (side, "remove", index), invalid

    def authority_values(self) -> list[str]:
        """Values this sets for the request's authority (`:authority` or `host`)."""
        request = self.request
        if request is None:
            return []
        return [
            value
            for values in (request.set_, request.add)
            for name, value in (values or {}).items()
            if name.lower() in {":authority", "host"}
        ]


def _header_operation_error(name: str, may_set_authority: bool) -> str | None:
    if not name:
        return "header name must not be empty"
    if may_set_authority and name.lower() in {":authority", "host"}:
        return None
    if name.lower() == "host":
        return "the Host header cannot be changed here"
    if name.startswith(":"):
        return f"pseudo-header {name!r} cannot be changed"
    return None


class HTTPMatchRequest(CheckedModel):
    """Conditions a request must meet (all of them) for its route to apply."""

    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] | None = None
    port: Port | None = None
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    query_params: dict[str, StringMatch] | None = None
    ignore_uri_case: bool | None = None
    without_headers: dict[str, StringMatch] | None = None
    source_namespace: str | None = None
    stat_prefix: str | None = None

    def problems(self) -> Iterator[Problem]:
        yield from string_match_problems(self.uri, ("uri",), allow_empty_prefix=True)
        for field in ("scheme", "method", "authority"):
            yield from string_match_problems(getattr(self, field), (field,))
        for name, match in (self.headers or {}).items():
            invalid = header_name_error(name, allow_claim=True)
            if invalid:
                yield ("headers", name), invalid
            yield from string_match_problems(match, ("headers", name))
        for name, match in (self.without_headers or {}).items():
            invalid = header_name_error(name, allow_claim=True)
            if invalid:
                yield ("withoutHeaders", name), invalid
            if match.regex != "*":  # `*` means "header present", not a regex
                yield from string_match_problems(match, ("withoutHeaders", name))
        for name, match in (self.query_params or {}).items():
            yield from string_match_problems(match, ("queryParams", name))
        yield from _l4_source_problems(self.source_labels, self.gateways, self.source_namespace)


def _l4_source_problems(
    labels: dict[str, str] | None, gateways: list[str] | None, namespace: str | None
) -> Iterator[Problem]:
    for key, reason in label_errors(labels or {}):
        yield ("sourceLabels", key), reason
    for index, gateway in enumerate(gateways or []):
        invalid = gateway_name_error(gateway)
        if invalid:
            yield ("gateways", index), invalid
    if namespace is not None and not is_dns_label(namespace):
        yield ("sourceNamespace",), f"invalid namespace {namespace!r}"


class HTTPRouteDestination(CheckedModel):
    destination: Destination
    weight: Weight | None = None
    headers: Headers | None = None


class RouteDestination(CheckedModel):
    destination: Destination
    weight: Weight | None = None


class _Weighted(Protocol):
    @property
    def weight(self) -> int | None: ...


def _weight_problems(route: Sequence[_Weighted] | None) -> Iterator[Problem]:
    """Traffic split across several destinations must add up to exactly 100."""
    if route and len(route) > 1:
        total = sum(destination.weight or 0 for destination in route)
        if total != 100:
            yield ("route",), f"weights must sum to 100, got {total}"


class HTTPRedirect(CheckedModel):
    uri: str | None = None
    authority: str | None = None
    port: Port | None = None
    derive_port: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: str | None = None
    redirect_code: UInt32 | None = None
    prefix_rewrite: str | None = None

    def problems(self) -> Iterator[Problem]:
        yield from self.only_one_of("port", "derive_port")
        targets = (self.uri, self.authority, self.scheme, self.port, self.derive_port)
        if not any(targets) and not self.prefix_rewrite:
            yield (), "a redirect must set at least one of uri, authority, scheme or port"
        if self.redirect_code and not 300 <= self.redirect_code <= 399:
            yield ("redirectCode",), f"{self.redirect_code} is not a 3xx redirect code"
        if self.scheme and self.scheme not in {"http", "https"}:
            yield ("scheme",), f"redirect scheme must be http or https, got {self.scheme!r}"


class HTTPBody(CheckedModel):
    string: str | None = None
    bytes_: str | None = Field(None, alias="bytes")

    def problems(self) -> Iterator[Problem]:
        yield from self.only_one_of("string", "bytes_")
        size = len(self.string or "")
        if self.bytes_ is not None:
            try:
                size = len(base64.b64decode(self.bytes_, validate=True))
            except binascii.Error:
                yield ("bytes",), "must be base64-encoded"
        if size > 1024 * 1024:
            yield (), "a direct response body must be smaller than 1MB"


class HTTPDirectResponse(CheckedModel):
    status: UInt32
    body: HTTPBody | None = None

    def problems(self) -> Iterator[Problem]:
        if not 200 <= self.status <= 599:
            yield ("status",), f"HTTP status {self.status} is not in the range 200-599"


class Delegate(CheckedModel):
    name: str | None = None
    namespace: str | None = None


class RegexRewrite(CheckedModel):
    match: str | None = None
    rewrite: str | None = None

    def problems(self) -> Iterator[Problem]:
        if not self.match:
            yield ("match",), "is required"
        else:
            invalid = regex_error(self.match)
            if invalid:
                yield ("match",), invalid
        if not self.rewrite:
            yield ("rewrite",), "is required"


class HTTPRewrite(CheckedModel):
    uri: str | None = None
    authority: str | None = None
    uri_regex_rewrite: RegexRewrite | None = None

    def problems(self) -> Iterator[Problem]:
        if self.uri and self.uri_regex_rewrite is not None:
            yield ("uriRegexRewrite",), "only one of uri or uriRegexRewrite may be set"
        if not self.uri and self.uri_regex_rewrite is None and not self.authority:
            yield (), "a rewrite must set uri, uriRegexRewrite or authority"


class HTTPRetry(CheckedModel):
    attempts: Int32 | None = None
    per_try_timeout: Timeout | None = None
    retry_on: str | None = None
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: Timeout | None = None

    def problems(self) -> Iterator[Problem]:
        attempts = self.attempts or 0
        if attempts < 0:
            yield ("attempts",), "attempts cannot be negative"
        elif attempts == 0 and (
            self.per_try_timeout or self.retry_on or self.retry_remote_localities is not None
        ):
            yield ("attempts",), "retry settings are given but attempts is 0 (retries disabled)"
        for policy in self.retry_on.split(",") if self.retry_on else []:
            if not is_retry_on_policy(policy):
                yield ("retryOn",), f"{policy!r} is not a valid retryOn policy"


class CorsPolicy(CheckedModel):
    allow_origin: list[str] | None = None
    allow_origins: list[StringMatch] | None = None
    allow_methods: list[str] | None = None
    allow_headers: list[str] | None = None
    expose_headers: list[str] | None = None
    max_age: Timeout | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] | None = None

    def problems(self) -> Iterator[Problem]:
        for index, origin in enumerate(self.allow_origins or []):
            if not (origin.exact or origin.prefix or origin.regex):
                yield ("allowOrigins", index), "an origin match must not be empty"
            yield from string_match_problems(origin, ("allowOrigins", index))
        for index, method in enumerate(self.allow_methods or []):
            if method not in HTTP_METHODS:
                yield ("allowMethods", index), f"{method!r} is not a supported HTTP method"
        for field, names in (
            ("allowHeaders", self.allow_headers),
            ("exposeHeaders", self.expose_headers),
        ):
            for index, name in enumerate(names or []):
                invalid = header_name_error(name, allow_star=True)
                if invalid:
                    yield (field, index), invalid
        if self.max_age is not None and not duration_seconds(self.max_age).is_integer():
            yield ("maxAge",), "maxAge is only accurate to whole seconds"


def _fraction_problems(percentage: Percentage | None) -> Iterator[Problem]:
    value = percentage.value if percentage is not None else None
    if value is not None and 0 < value < 0.0001:
        yield ("percentage", "value"), f"percentage {value} is neither 0 nor at least 0.0001"


class Delay(CheckedModel):
    fixed_delay: Timeout | None = None
    exponential_delay: Timeout | None = None
    percent: IntPercent | None = None
    percentage: Percentage | None = None

    def problems(self) -> Iterator[Problem]:
        yield from self.only_one_of("fixed_delay", "exponential_delay")
        if self.fixed_delay is None and self.exponential_delay is not None:
            yield ("exponentialDelay",), "exponentialDelay is not supported yet"
        yield from _fraction_problems(self.percentage)


class Abort(CheckedModel):
    http_status: Int32 | None = None
    grpc_status: str | None = None
    http2_error: str | None = None
    percentage: Percentage | None = None

    def problems(self) -> Iterator[Problem]:
        yield from self.only_one_of("http_status", "grpc_status", "http2_error")
        if self.http_status is not None and not 200 <= self.http_status <= 599:
            yield ("httpStatus",), f"HTTP status {self.http_status} is not in the range 200-599"
        if self.grpc_status is not None and self.grpc_status not in GRPC_STATUSES:
            yield ("grpcStatus",), f"{self.grpc_status!r} is not a gRPC status name"
        if self.http2_error is not None:
            yield ("http2Error",), "HTTP/2 abort fault injection is not supported yet"
        yield from _fraction_problems(self.percentage)


class HTTPFaultInjection(CheckedModel):
    delay: Delay | None = None
    abort: Abort | None = None

    def problems(self) -> Iterator[Problem]:
        if self.delay is None and self.abort is None:
            yield (), "a fault must have a delay, an abort, or both"


class HTTPMirrorPolicy(CheckedModel):
    destination: Destination
    percentage: Percentage | None = None


class HTTPRoute(CheckedModel):
    """One HTTP rule: its matches and what happens to requests that meet them."""

    name: str | None = None
    match: list[HTTPMatchRequest] | None = None
    route: list[HTTPRouteDestination] | None = None
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Timeout | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: list[HTTPMirrorPolicy] | None = None
    # Istio's CRD lists both spellings of this deprecated field.
    mirror_percent: IntPercent | None = Field(
        None, validation_alias=AliasChoices("mirrorPercent", "mirror_percent")
    )
    mirror_percentage: Percentage | None = None
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None

    def problems(self) -> Iterator[Problem]:
        yield from self._action_problems()
        if self.mirror is not None and self.mirrors:
            yield ("mirrors",), "cannot be used together with mirror"
        yield from _weight_problems(self.route)
        authorities = (self.headers.authority_values() if self.headers else []) + (
            [self.rewrite.authority] if self.rewrite and self.rewrite.authority else []
        )
        if len(authorities) > 1:
            yield ("headers", "request"), "the authority is rewritten more than once"

    def _action_problems(self) -> Iterator[Problem]:
        """A rule does exactly one thing: route, redirect, respond directly, or delegate."""
        alongside_route: dict[str, object] = {
            "route": self.route,
            "fault": self.fault,
            "rewrite": self.rewrite,
        }
        conflicts: dict[str, object]
        if self.delegate is not None:
            action, conflicts = "delegate", {"route": self.route, "redirect": self.redirect}
        elif self.redirect is not None:
            action = "redirect"
            conflicts = {**alongside_route, "directResponse": self.direct_response}
        elif self.direct_response is not None:
            action, conflicts = "directResponse", alongside_route
        else:
            if not self.route:
                yield (), "one of route, redirect, directResponse or delegate is required"
            return
        for alias, value in conflicts.items():
            if value:
                yield (action,), f"cannot be used together with {alias}"


class TLSMatchAttributes(CheckedModel):
    sni_hosts: list[str]
    destination_subnets: list[str] | None = None
    port: Port | None = None
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    source_namespace: str | None = None

    def problems(self) -> Iterator[Problem]:
        if not self.sni_hosts:
            yield ("sniHosts",), "at least one SNI host is required"
        yield from _subnet_problems(self.destination_subnets)
        yield from _l4_source_problems(self.source_labels, self.gateways, self.source_namespace)


def _subnet_problems(subnets: list[str] | None) -> Iterator[Problem]:
    for index, subnet in enumerate(subnets or []):
        invalid = ip_or_cidr_error(subnet)
        if invalid:
            yield ("destinationSubnets", index), invalid


class L4MatchAttributes(CheckedModel):
    destination_subnets: list[str] | None = None
    port: Port | None = None
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    source_namespace: str | None = None
    source_subnet: str | None = None

    def problems(self) -> Iterator[Problem]:
        yield from _subnet_problems(self.destination_subnets)
        yield from _l4_source_problems(self.source_labels, self.gateways, self.source_namespace)


class TLSRoute(CheckedModel):
    match: list[TLSMatchAttributes]
    route: list[RouteDestination] | None = None

    def problems(self) -> Iterator[Problem]:
        if not self.match:
            yield ("match",), "a TLS route needs at least one match"
        if not self.route:
            yield ("route",), "a TLS route needs at least one destination"
        yield from _weight_problems(self.route)


class TCPRoute(CheckedModel):
    match: list[L4MatchAttributes] | None = None
    route: list[RouteDestination] | None = None

    def problems(self) -> Iterator[Problem]:
        if not self.route:
            yield ("route",), "a TCP route needs at least one destination"
        yield from _weight_problems(self.route)


class VirtualService(CheckedModel):
    """The spec of networking.istio.io VirtualService."""

    hosts: list[str] | None = None
    gateways: list[str] | None = None
    http: list[HTTPRoute] | None = None
    tls: list[TLSRoute] | None = None
    tcp: list[TCPRoute] | None = None
    export_to: list[str] | None = None

    @property
    def applies_to_gateways(self) -> bool:
        """Bound to gateways only (listed, and `mesh` is not among them)."""
        return bool(self.gateways) and MESH_GATEWAY not in (self.gateways or [])

    def problems(self) -> Iterator[Problem]:
        if not self.http and not self.tcp and not self.tls:
            yield (), "at least one of http, tcp or tls routes is required"
        if self.hosts:
            yield from self._host_problems(self.hosts)
        else:
            yield from self._delegate_problems()
        for index, gateway in enumerate(self.gateways or []):
            invalid = gateway_name_error(gateway)
            if invalid:
                yield ("gateways", index), invalid
        if not self.applies_to_gateways:
            yield from self._claim_routing_problems()
        yield from self._sni_problems()
        yield from export_to_problems(self.export_to or [], allow_nobody=False)

    def _host_problems(self, hosts: list[str]) -> Iterator[Problem]:
        gateway = self.applies_to_gateways
        sni = any(match.sni_hosts for route in self.tls or [] for match in route.match)
        valid = True
        for index, host in enumerate(hosts):
            invalid = wildcard_domain_error(host, sni=gateway and sni)
            if invalid and not is_ip(host):
                valid = False
                yield ("hosts", index), invalid
            elif host == "*" and not gateway:
                valid = False
                yield ("hosts", index), "'*' is only allowed when bound to gateways, not the mesh"
        if valid:
            for index, host in enumerate(hosts):
                for other in hosts[index + 1 :]:
                    if hosts_overlap(host, other):
                        yield ("hosts", index), f"hosts {host!r} and {other!r} overlap"

    def _delegate_problems(self) -> Iterator[Problem]:
        """A VirtualService without hosts is a delegate: only HTTP routes, no further delegation."""
        for alias, value in (("gateways", self.gateways), ("tls", self.tls), ("tcp", self.tcp)):
            if value:
                yield (alias,), "must be empty in a delegate VirtualService (one without hosts)"
        for index, route in enumerate(self.http or []):
            if route.delegate is not None:
                yield ("http", index, "delegate"), "a delegate VirtualService cannot delegate again"

    def _claim_routing_problems(self) -> Iterator[Problem]:
        for index, route in enumerate(self.http or []):
            for number, match in enumerate(route.match or []):
                for field, headers in (
                    ("headers", match.headers),
                    ("withoutHeaders", match.without_headers),
                ):
                    for name in headers or {}:
                        if is_jwt_claim(name):
                            yield (
                                ("http", index, "match", number, field, name),
                                "routing on JWT claims is only supported on gateways",
                            )

    def _sni_problems(self) -> Iterator[Problem]:
        gateway = self.applies_to_gateways
        for index, route in enumerate(self.tls or []):
            for number, match in enumerate(route.match):
                for position, sni in enumerate(match.sni_hosts):
                    location = ("tls", index, "match", number, "sniHosts", position)
                    invalid = wildcard_domain_error(sni, sni=gateway)
                    if invalid:
                        if not is_ip(sni):
                            yield location, invalid
                    elif not any(host_subset_of(sni, host) for host in self.hosts or []):
                        yield location, f"SNI host {sni!r} is not covered by the hosts"
