"""VirtualService HTTP rules as Envoy routes, the way istiod builds them for sidecars and gateways.

`virtual_service_routes` is istiod's `BuildHTTPRoutesForVirtualService`: every HTTP rule (a
`delegate` rule stands for its delegate's rules, merged with it by
`virtual_service_rules.http_rules`) gives one Envoy route per match that applies to this sidecar
on this port (a rule without matches is a catch-all, and nothing after a catch-all is emitted).
The action is a redirect, a direct response or a route to clusters with its timeout, retries,
rewrites, mirrors and header changes; fault injection and CORS travel as per-route config of
the HCM's fault and CORS filters.

`default_route` is the route of a service no VirtualService routes, with the same defaults
(no timeout, istiod's default retry policy), so both kinds of route behave alike.

Not translated, and why:
- JWT claim header matches: istiod supports them on gateways only (validation rejects them).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import regex_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import duration_pb2, struct_pb2, wrappers_pb2

from meshconfig.networking.common import Destination, StringMatch
from meshconfig.networking.virtual_service import (
    Headers,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRoute,
    HTTPRouteDestination,
)
from pilot.generators import names
from pilot.generators.filters import CORS, FAULT
from pilot.generators.proto import duration, pack
from pilot.generators.route_policies import (
    cors_policy,
    fault_config,
    fraction,
    hash_policy,
    hundredths,
    retry_policy,
    string_matcher,
)
from pilot.generators.virtual_services import destination_cluster
from pilot.istio_config import MESH_GATEWAY, qualify, qualify_gateway
from pilot.push_context import PushContext
from pilot.virtual_service_rules import BoundVirtualService, http_rules

DEFAULT_ROUTE: Final = "default"
NO_TIMEOUT: Final = duration_pb2.Duration()
_METHOD, _AUTHORITY, _SCHEME = ":method", ":authority", ":scheme"
_REDIRECT_CODES: Final = {
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}
_APPEND: Final = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
_OVERWRITE: Final = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


@dataclass(frozen=True, slots=True)
class RouteContext:
    """What translating a VirtualService needs besides the rule: who asks, and on which port.

    Sidecars ask as the `mesh` gateway with the labels their view holds (those `sourceLabels`
    matches read); a router asks as one of its Gateways (`<namespace>/<name>`), with its own
    labels.
    """

    ctx: PushContext
    namespace: str  # of the proxy view
    port: int  # the service (or gateway server) port the request arrived on
    gateway: str = MESH_GATEWAY
    labels: Mapping[str, str] | None = None  # None: sourceLabels matches never apply


def virtual_service_routes(vs: BoundVirtualService, at: RouteContext) -> list[rc.Route]:
    """The Envoy routes of `vs` for sidecars of `at.namespace` on `at.port`, in order."""
    routes: list[rc.Route] = []
    for index, rule in enumerate(http_rules(vs, at.ctx.config)):
        if not rule.match:
            routes.append(_route(vs, index, rule, None, at))
            break
        catch_all = False
        for match in rule.match:
            if _applies(match, vs.namespace, at):
                route = _route(vs, index, rule, match, at)
                routes.append(route)
                if is_catch_all(route.match):
                    catch_all = True
                    break
        if catch_all:
            break
    return routes


def default_route(ctx: PushContext, namespace: str, hostname: str, port: int) -> rc.Route:
    """The route of a service port without a VirtualService: everything to its cluster."""
    action = rc.RouteAction(cluster=names.outbound_cluster(port, hostname))
    _set_timeout(action, None)
    hashing = hash_policy(ctx, namespace, hostname, port, "")
    if hashing is not None:
        action.hash_policy.append(hashing)
    retry = retry_policy(None, consistent_hash=hashing is not None)
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    return rc.Route(
        name=DEFAULT_ROUTE,
        match=rc.RouteMatch(prefix="/"),
        route=action,
        decorator=rc.Decorator(operation=f"{hostname}:{port}/*"),
    )


def is_catch_all(match: rc.RouteMatch) -> bool:
    """istiod's `IsCatchAllRoute`: matches every request, so later routes are unreachable."""
    path = match.WhichOneof("path_specifier")
    everything = (
        (path == "prefix" and match.prefix == "/")
        or (path == "path_separated_prefix" and match.path_separated_prefix == "/")
        or (path == "safe_regex" and match.safe_regex.regex == ".*")
    )
    return everything and not match.headers and not match.query_parameters


def _applies(match: HTTPMatchRequest, vs_namespace: str, at: RouteContext) -> bool:
    """istiod's `sourceMatchHTTP`: the conditions a match puts on the client, known when
    generating config. Gateway names in a match are relative to the VirtualService."""
    if match.port is not None and match.port != at.port:
        return False
    if match.gateways:
        return at.gateway in {qualify_gateway(g, vs_namespace) for g in match.gateways}
    if match.source_labels:
        labels = at.labels
        if labels is None or any(labels.get(k) != v for k, v in match.source_labels.items()):
            return False
    return match.source_namespace is None or match.source_namespace == at.namespace


def _route_name(
    vs: BoundVirtualService, index: int, rule: HTTPRoute, match: HTTPMatchRequest | None
) -> str:
    """The rule's name (with `.<match name>`, as istiod), or `<vs>.<namespace>.<rule index>`."""
    base = rule.name or f"{vs.name}.{vs.namespace}.{index}"
    return f"{base}.{match.name}" if match is not None and match.name else base


def _route(
    vs: BoundVirtualService,
    index: int,
    rule: HTTPRoute,
    match: HTTPMatchRequest | None,
    at: RouteContext,
) -> rc.Route:
    route = rc.Route(name=_route_name(vs, index, rule, match), match=route_match(match))
    route.metadata.filter_metadata["istio"].CopyFrom(
        struct_pb2.Struct(fields={"config": struct_pb2.Value(string_value=vs.config_path)})
    )
    if match is not None and match.stat_prefix:
        route.stat_prefix = match.stat_prefix
    authority = ""
    if rule.headers is not None:
        authority = _add_header_operations(route, rule.headers)
    if rule.redirect is not None:
        route.redirect.CopyFrom(_redirect(rule.redirect, at.port))
    elif rule.direct_response is not None:
        response = rule.direct_response
        route.direct_response.status = response.status
        if response.body is not None and response.body.string is not None:
            route.direct_response.body.inline_string = response.body.string
        elif response.body is not None and response.body.bytes_ is not None:
            route.direct_response.body.inline_bytes = base64.b64decode(response.body.bytes_)
    else:
        route.route.CopyFrom(_route_action(vs, rule, route, authority, at))
    route.decorator.operation = _operation(route, vs.name, at.port)
    if rule.fault is not None:
        fault = fault_config(rule.fault)
        if fault is not None:
            route.typed_per_filter_config[FAULT].CopyFrom(pack(fault))
    if rule.cors_policy is not None:
        route.typed_per_filter_config[CORS].CopyFrom(pack(cors_policy(rule.cors_policy)))
    return route


# --- matching ----------------------------------------------------------------------------------


def route_match(match: HTTPMatchRequest | None) -> rc.RouteMatch:
    """istiod's `TranslateRouteMatch`; no match is the catch-all prefix `/`."""
    out = rc.RouteMatch(prefix="/")
    if match is None:
        return out
    headers = [_header_matcher(name, value) for name, value in (match.headers or {}).items()]
    for name, value in (match.without_headers or {}).items():
        matcher = _header_matcher(name, value)
        matcher.invert_match = True
        # treat_missing_header_as_empty conflicts with present_match.
        if not _is_present_match(value):
            matcher.treat_missing_header_as_empty = True
        headers.append(matcher)
    out.headers.extend(sorted(headers, key=lambda h: h.name))
    if match.uri is not None:
        if match.uri.exact is not None:
            out.path = match.uri.exact
        elif match.uri.prefix is not None:
            out.prefix = match.uri.prefix
        elif match.uri.regex is not None:
            out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=match.uri.regex))
    out.case_sensitive.value = not match.ignore_uri_case
    for name, pseudo in (
        (_METHOD, match.method),
        (_AUTHORITY, match.authority),
        (_SCHEME, match.scheme),
    ):
        if pseudo is not None:
            out.headers.append(_header_matcher(name, pseudo))
    for name, value in sorted((match.query_params or {}).items()):
        parameter = rc.QueryParameterMatcher(name=name)
        if _is_present_match(value):
            parameter.present_match = True
        else:
            parameter.string_match.CopyFrom(string_matcher(value))
        out.query_parameters.append(parameter)
    return out


def _is_present_match(value: StringMatch) -> bool:
    """An empty match, or the regex `*` (not RE2: Istio's spelling of "present")."""
    return value.regex == "*" or (
        value.exact is None and value.prefix is None and value.regex is None
    )


def _header_matcher(name: str, value: StringMatch) -> rc.HeaderMatcher:
    matcher = rc.HeaderMatcher(name=name)
    if _is_present_match(value):
        matcher.present_match = True
    else:
        matcher.string_match.CopyFrom(string_matcher(value))
    return matcher


# --- actions -----------------------------------------------------------------------------------


def _route_action(
    vs: BoundVirtualService, rule: HTTPRoute, route: rc.Route, authority: str, at: RouteContext
) -> rc.RouteAction:
    action = rc.RouteAction()
    _set_timeout(action, rule.timeout)
    if rule.rewrite is not None:
        if rule.rewrite.uri_regex_rewrite is not None:
            regex = rule.rewrite.uri_regex_rewrite
            action.regex_rewrite.pattern.regex = regex.match or ""
            action.regex_rewrite.substitution = regex.rewrite or ""
        elif rule.rewrite.uri:
            action.prefix_rewrite = rule.rewrite.uri
        authority = rule.rewrite.authority or authority
    if authority:
        action.host_rewrite_literal = authority
    action.request_mirror_policies.extend(_mirrors(vs, rule, at))
    destinations = rule.route or []
    consistent_hash = False
    if len(destinations) == 1:
        consistent_hash = _single_destination(vs, destinations[0], route, action, at)
    else:
        for destination in destinations:
            if destination.weight:
                action.weighted_clusters.clusters.append(_weighted(vs, destination, action, at))
    retry = retry_policy(rule.retries, consistent_hash=consistent_hash)
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    return action


def _set_timeout(action: rc.RouteAction, timeout: str | None) -> None:
    """No timeout unless the rule sets one (Istio); gRPC's own timeout header is honoured up to
    the same limit. Like istiod, through the deprecated `max_grpc_timeout`: setting its
    replacement, `max_stream_duration`, makes Envoy ignore the route `timeout`."""
    action.timeout.CopyFrom(duration(timeout) if timeout else NO_TIMEOUT)
    action.max_grpc_timeout.CopyFrom(action.timeout)


def _single_destination(
    vs: BoundVirtualService,
    destination: HTTPRouteDestination,
    route: rc.Route,
    action: rc.RouteAction,
    at: RouteContext,
) -> bool:
    """Route to one cluster; the destination's header changes join the route's. Returns whether
    the destination hashes consistently (retries then stay on the same host)."""
    action.cluster = destination_cluster(at.ctx, destination.destination, vs.namespace, at.port)
    if destination.headers is not None:
        authority = _add_header_operations(route, destination.headers)
        if authority and not action.host_rewrite_literal:
            action.host_rewrite_literal = authority
    hash_policy = _destination_hash(vs, destination.destination, at)
    if hash_policy is not None:
        action.hash_policy.append(hash_policy)
    return hash_policy is not None


def _weighted(
    vs: BoundVirtualService,
    destination: HTTPRouteDestination,
    action: rc.RouteAction,
    at: RouteContext,
) -> rc.WeightedCluster.ClusterWeight:
    weight = rc.WeightedCluster.ClusterWeight(
        name=destination_cluster(at.ctx, destination.destination, vs.namespace, at.port),
        weight=wrappers_pb2.UInt32Value(value=destination.weight or 0),
    )
    if destination.headers is not None:
        authority = _add_header_operations(weight, destination.headers)
        if authority:
            weight.host_rewrite_literal = authority
    hash_policy = _destination_hash(vs, destination.destination, at)
    if hash_policy is not None:
        action.hash_policy.append(hash_policy)
    return weight


def _redirect(redirect: HTTPRedirect, port: int) -> rc.RedirectAction:
    out = rc.RedirectAction(
        response_code=_REDIRECT_CODES.get(
            redirect.redirect_code or 301, rc.RedirectAction.MOVED_PERMANENTLY
        )
    )
    if redirect.authority:
        out.host_redirect = redirect.authority
    if redirect.prefix_rewrite:
        out.prefix_rewrite = redirect.prefix_rewrite
    elif redirect.uri:
        out.path_redirect = redirect.uri
    if redirect.scheme:
        out.scheme_redirect = redirect.scheme
    if redirect.port is not None or redirect.derive_port is not None:
        if redirect.port is not None:
            out.port_redirect = redirect.port
        elif redirect.derive_port == "FROM_REQUEST_PORT":
            # Envoy cannot derive it, but routes are generated per request port.
            out.port_redirect = port
        # An explicit default port is left out of the Location header.
        if (redirect.scheme or "http", out.port_redirect) in {("http", 80), ("https", 443)}:
            out.port_redirect = 0
    return out


def _operation(route: rc.Route, vs_name: str, port: int) -> str:
    """istiod's trace operation: `<host>:<port><path>` for one cluster, else the VS name."""
    path = "/*"
    which = route.match.WhichOneof("path_specifier")
    if which == "prefix":
        path = route.match.prefix + "*"
    elif which == "path":
        path = route.match.path
    elif which == "safe_regex":
        path = route.match.safe_regex.regex
    cluster = names.parse_outbound_cluster(route.route.cluster)
    if cluster is not None:
        return f"{cluster.hostname}:{cluster.port}{path}"
    return f"{vs_name}:{port}{path}"


# --- headers -----------------------------------------------------------------------------------


def _add_header_operations(
    target: rc.Route | rc.WeightedCluster.ClusterWeight, headers: Headers
) -> str:
    """Append the header changes to a route or weighted cluster; return the authority a
    `set` (else an `add`) of `:authority`/`host` asks for, which Envoy takes as a host rewrite."""
    request, response = headers.request, headers.response
    authority = ""
    if request is not None:
        authority = _authority(request.set_) or _authority(request.add)
        target.request_headers_to_add.extend(_header_options(request.set_, _OVERWRITE))
        target.request_headers_to_add.extend(_header_options(request.add, _APPEND))
        target.request_headers_to_remove.extend(_settable(request.remove or []))
    if response is not None:
        target.response_headers_to_add.extend(_header_options(response.set_, _OVERWRITE))
        target.response_headers_to_add.extend(_header_options(response.add, _APPEND))
        target.response_headers_to_remove.extend(_settable(response.remove or []))
    return authority


def _authority(values: Mapping[str, str] | None) -> str:
    found = [v for k, v in (values or {}).items() if k.lower() in {":authority", "host"}]
    return found[-1] if found else ""


def _settable(names: Sequence[str]) -> list[str]:
    """Pseudo-headers and Host are Envoy's own; changing them is done otherwise or not at all."""
    return [n for n in names if not n.startswith(":") and n.lower() != "host"]


def _header_options(
    values: Mapping[str, str] | None, action: base_pb2.HeaderValueOption.HeaderAppendAction
) -> list[base_pb2.HeaderValueOption]:
    given = values or {}
    return [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=key, value=given[key]), append_action=action
        )
        for key in _settable(sorted(given))
    ]


# --- mirrors and hashing -------------------------------------------------------------------


def _mirrors(
    vs: BoundVirtualService, rule: HTTPRoute, at: RouteContext
) -> list[rc.RouteAction.RequestMirrorPolicy]:
    """`mirror` with `mirrorPercentage` (or the deprecated `mirrorPercent`), and `mirrors`;
    100% unless a percentage is given, none at an explicit 0."""
    wanted: list[tuple[Destination, percent_pb2.FractionalPercent | None]] = []
    if rule.mirror is not None:
        share = hundredths(100)
        if rule.mirror_percentage is not None:
            share = fraction(rule.mirror_percentage)
        elif rule.mirror_percent is not None:
            share = hundredths(rule.mirror_percent) if rule.mirror_percent else None
        wanted.append((rule.mirror, share))
    for mirror in rule.mirrors or ():
        share = hundredths(100) if mirror.percentage is None else fraction(mirror.percentage)
        wanted.append((mirror.destination, share))
    return [
        rc.RouteAction.RequestMirrorPolicy(
            cluster=destination_cluster(at.ctx, destination, vs.namespace, at.port),
            runtime_fraction=base_pb2.RuntimeFractionalPercent(default_value=share),
            trace_sampled=wrappers_pb2.BoolValue(value=False),
        )
        for destination, share in wanted
        if share is not None
    ]


def _destination_hash(
    vs: BoundVirtualService, destination: Destination, at: RouteContext
) -> rc.RouteAction.HashPolicy | None:
    port = destination.port.number if destination.port is not None else None
    hostname = qualify(destination.host, vs.namespace)
    return hash_policy(at.ctx, at.namespace, hostname, port, destination.subset or "")
