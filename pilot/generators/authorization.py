"""AuthorizationPolicy as Envoy RBAC filters: who may call a workload, and what they may ask.

The policies that apply to a workload (`security_policies`) become one RBAC filter per action,
in the order Envoy must evaluate them: CUSTOM, AUDIT (Envoy's LOG action: it marks requests
for access logs and never changes the decision), DENY, then ALLOW. A request any DENY rule
matches is refused (403 "RBAC: access denied", or the connection closed on TCP); when the
workload has ALLOW policies, a request none of their rules matches is refused too; without
ALLOW policies everything not denied passes. HTTP ports get `envoy.filters.http.rbac` filters,
other ports `envoy.filters.network.rbac` filters (stat prefix `tcp.`), as in Istio.

Each rule becomes one RBAC policy named `ns[<namespace>]-policy[<name>]-rule[<index>]`. A rule
matches when one of its `from` sources (the policy's principals), one of its `to` operations
(its permissions) and every `when` condition match; a missing part matches anything, so the
rule `{}` matches every request, while a policy without rules (`spec: {}`) matches nothing: an
ALLOW policy with an empty spec denies all. Inside a source or operation, a field matches if
any of its values does (values may be exact, `prefix*`, `*suffix` or `*` for "present"), the
fields must all match, and the `notX` fields match when none of their values does.

What the fields test, following Istio's generator:

- principals, `source.principal`: the mutual TLS peer's certificate (`authenticated`), value
  `cluster.local/ns/<ns>/sa/<sa>` as `spiffe://...`; `*` is any peer with a certificate, so
  these only match mTLS connections. namespaces and `source.namespace`: `.*/ns/<ns>/.*` on
  the same identity; serviceAccounts and `source.serviceAccount` (`<ns>/<sa>`, or `<sa>` in the
  policy's namespace): `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?`; trustDomains: the identity's
  trust domain (our own reading of the field, which Istio documents as exact, prefix, suffix
  or presence).
- ipBlocks and `source.ip`: the connection's peer address (`direct_remote_ip`);
  remoteIpBlocks and `remote.ip`: the client address after X-Forwarded-For (`remote_ip`);
  `destination.ip`, ports and `destination.port`: where the connection arrived;
  `connection.sni`: the TLS server name.
- hosts: `:authority`, case-insensitive. Istio compares the whole header, port included, and
  asks users to list `host:*` too; here a host named without a port also matches it with any
  port, since every request that arrives through a local-mesh sidecar carries one. methods:
  `:method`; paths: the path without its query (`url_path`), or Envoy's URI template matcher
  for `{*}` / `{**}` templates; `request.headers[<name>]`: that header.
- requestPrincipals and `request.auth.principal`: `<iss>/<sub>` (split at the last `/`) on
  the verified JWT payload the `jwt_authn` filter (RequestAuthentication, which runs first)
  leaves in its dynamic metadata under `payload`; `request.auth.audiences` (`aud`),
  `request.auth.presenter` (`azp`) and `request.auth.claims[a][b]` match a claim there,
  whether it is a string or a list holding the value.
- `experimental.envoy.filters.<filter>[<key>]...`: the dynamic metadata of that filter; a
  value written `[v]` matches a list holding `v`.

A TCP port cannot evaluate the HTTP-only fields (hosts, methods, paths, requestPrincipals,
`request.headers` and `request.auth.*`). As in Istio, an ALLOW rule using one is left out of
the network filter (it allows nothing there, so ALLOW policies made only of HTTP rules refuse
every TCP connection), while DENY, AUDIT and CUSTOM rules lose just those fields and so match
more connections rather than fewer.

CUSTOM delegates to an extension provider (ext_authz), and this mesh defines none. Istio
treats a CUSTOM policy whose provider it cannot find by denying what its rules match
(policies suffixed `-deny-due-to-bad-CUSTOM-action`) rather than dropping the check, and so
does this module, with a warning: failing open would silently expose what the policy guards.
A policy annotated `istio.io/dry-run: "true"` goes into the filter's shadow rules (stats
prefixed `istio_dry_run_allow_` / `istio_dry_run_deny_`) and is never enforced.

Validation (`meshconfig.security.authorization`) has already rejected what Istio's webhook
rejects (unknown condition keys, bad IPs and ports, DENY and CUSTOM without rules). Output is
deterministic: RBAC policies are a map, which packing serializes sorted by name.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeAlias, TypeVar

from envoy.config.core.v3 import address_pb2, extension_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, regex_pb2, string_pb2, value_pb2

from meshconfig import Resource
from meshconfig.security.authorization import (
    AuthorizationPolicySpec,
    Condition,
    Operation,
    Rule,
    Source,
)
from pilot.generators.proto import pack

log = logging.getLogger(__name__)

HTTP_RBAC: Final = "envoy.filters.http.rbac"
NETWORK_RBAC: Final = "envoy.filters.network.rbac"
TCP_STAT_PREFIX: Final = "tcp."
JWT_AUTHN: Final = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD: Final = "payload"  # jwt_authn's `payload_in_metadata`
DRY_RUN_ANNOTATION: Final = "istio.io/dry-run"
BAD_CUSTOM_PREFIX: Final = "istio-ext-authz-"
BAD_CUSTOM_SUFFIX: Final = "-deny-due-to-bad-CUSTOM-action"

Permission: TypeAlias = rbac_pb2.Permission
Principal: TypeAlias = rbac_pb2.Principal
RBAC: TypeAlias = rbac_pb2.RBAC
StringMatcher: TypeAlias = string_pb2.StringMatcher

# Istio action -> Envoy action, in the order the filters run.
_ENVOY_ACTIONS: Final = {
    "CUSTOM": RBAC.DENY,
    "AUDIT": RBAC.LOG,
    "DENY": RBAC.DENY,
    "ALLOW": RBAC.ALLOW,
}
_SHADOW_STAT_PREFIXES: Final = {
    RBAC.ALLOW: "istio_dry_run_allow_",
    RBAC.DENY: "istio_dry_run_deny_",
}
_ANY_VALUE: Final = ".+"
_ENDS_WITH_PORT: Final = re.compile(r":[0-9]+$")
_BRACKETED: Final = re.compile(r"\[([^\[\]]+)\]")


def http_filters(policies: Sequence[Resource]) -> list[hcm_pb2.HttpFilter]:
    """The RBAC filters of an inbound HTTP connection manager, in evaluation order."""
    return [
        hcm_pb2.HttpFilter(
            name=HTTP_RBAC,
            typed_config=pack(
                http_rbac_pb2.RBAC(
                    rules=rules.enforced,
                    shadow_rules=rules.shadow,
                    shadow_rules_stat_prefix=rules.shadow_stat_prefix,
                )
            ),
        )
        for rules in _rule_sets(policies, tcp=False)
    ]


def network_filters(policies: Sequence[Resource]) -> list[listener_components_pb2.Filter]:
    """The RBAC filters of an inbound TCP port, in evaluation order (before the TCP proxy)."""
    return [
        listener_components_pb2.Filter(
            name=NETWORK_RBAC,
            typed_config=pack(
                network_rbac_pb2.RBAC(
                    stat_prefix=TCP_STAT_PREFIX,
                    rules=rules.enforced,
                    shadow_rules=rules.shadow,
                    shadow_rules_stat_prefix=rules.shadow_stat_prefix,
                )
            ),
        )
        for rules in _rule_sets(policies, tcp=True)
    ]


# --- policies -> one rule set per action ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RuleSet:
    """The RBAC rules of one filter: enforced ones and dry-run ones (None when there are none)."""

    enforced: rbac_pb2.RBAC | None
    shadow: rbac_pb2.RBAC | None

    @property
    def shadow_stat_prefix(self) -> str:
        return "" if self.shadow is None else _SHADOW_STAT_PREFIXES.get(self.shadow.action, "")


def _rule_sets(policies: Sequence[Resource], *, tcp: bool) -> list[_RuleSet]:
    by_action: dict[str, list[Resource]] = {}
    for policy in sorted(policies, key=lambda p: p.key):
        by_action.setdefault(_spec(policy).action or "ALLOW", []).append(policy)
    return [
        _RuleSet(
            _rbac([p for p in by_action[action] if not _dry_run(p)], action, tcp=tcp),
            _rbac([p for p in by_action[action] if _dry_run(p)], action, tcp=tcp),
        )
        for action in _ENVOY_ACTIONS
        if action in by_action
    ]


def _rbac(policies: Sequence[Resource], action: str, *, tcp: bool) -> rbac_pb2.RBAC | None:
    if not policies:
        return None
    rbac = RBAC(action=_ENVOY_ACTIONS[action])
    for policy in policies:
        for name, built in _policies(policy, action, tcp=tcp):
            rbac.policies[name].CopyFrom(built)
    return rbac


def _spec(policy: Resource) -> AuthorizationPolicySpec:
    spec = policy.spec
    assert isinstance(spec, AuthorizationPolicySpec), policy.label
    return spec


def _dry_run(policy: Resource) -> bool:
    return policy.metadata.annotations.get(DRY_RUN_ANNOTATION, "").lower() == "true"


def _policies(policy: Resource, action: str, *, tcp: bool) -> Iterable[tuple[str, rbac_pb2.Policy]]:
    """(name, RBAC policy) for each rule of `policy` that the filter can evaluate."""
    spec = _spec(policy)
    namespace, name = policy.metadata.namespace, policy.metadata.name
    if action == "CUSTOM":
        _warn_once(
            f"{policy.label}: CUSTOM needs extension provider "
            f"{spec.provider.name if spec.provider else None!r}, which this mesh does not "
            "define; denying the requests its rules match, as Istio does"
        )
    if not spec.rules:
        yield _policy_name(namespace, name, 0, action), _NEVER
    for index, rule in enumerate(spec.rules or ()):
        built = _policy(rule, namespace, allow=action == "ALLOW", tcp=tcp)
        if built is None:
            log.debug(
                "%s rule %d uses HTTP-only fields: left out on TCP ports", policy.label, index
            )
        else:
            yield _policy_name(namespace, name, index, action), built


def _policy_name(namespace: str, name: str, index: int, action: str) -> str:
    base = f"ns[{namespace}]-policy[{name}]-rule[{index}]"
    return f"{BAD_CUSTOM_PREFIX}{base}{BAD_CUSTOM_SUFFIX}" if action == "CUSTOM" else base


@functools.lru_cache(maxsize=256)
def _warn_once(message: str) -> None:
    """Log `message` once, not on every push to every proxy (bounded by the cache size)."""
    log.warning("%s", message)


_NEVER: Final = rbac_pb2.Policy(
    permissions=[Permission(not_rule=Permission(any=True))],
    principals=[Principal(not_id=Principal(any=True))],
)


# --- one rule -> one RBAC policy --------------------------------------------------------------

M = TypeVar("M", Permission, Principal)


@dataclass(frozen=True, slots=True)
class _Check(Generic[M]):
    """One field of a rule: matches when `match(values)` does and `match(not_values)` does not.

    `match` turns a list of values into one matcher that matches if any value does.
    """

    values: Sequence[str]
    not_values: Sequence[str]
    match: Callable[[Sequence[str]], M]
    http_only: bool = False


def _policy(rule: Rule, namespace: str, *, allow: bool, tcp: bool) -> rbac_pb2.Policy | None:
    """The RBAC policy of one rule; None for an ALLOW rule a TCP filter cannot evaluate."""
    when_permissions, when_principals = _when_checks(rule.when or (), namespace)
    principal_sets = [
        [*_source_checks(entry.source, namespace), *when_principals] for entry in rule.from_ or ()
    ] or [when_principals]
    permission_sets = [
        [*_operation_checks(entry.operation), *when_permissions] for entry in rule.to or ()
    ] or [when_permissions]
    if tcp:
        every = itertools.chain(*principal_sets, *permission_sets)
        if allow and any(check.http_only for check in every):
            return None
        principal_sets = [[c for c in s if not c.http_only] for s in principal_sets]
        permission_sets = [[c for c in s if not c.http_only] for s in permission_sets]
    return rbac_pb2.Policy(
        permissions=[_permission(checks) for checks in permission_sets],
        principals=[_principal(checks) for checks in principal_sets],
    )


def _permission(checks: Sequence[_Check[Permission]]) -> Permission:
    rules: list[Permission] = []
    for check in checks:
        if check.values:
            rules.append(check.match(check.values))
        if check.not_values:
            rules.append(Permission(not_rule=check.match(check.not_values)))
    return Permission(and_rules=Permission.Set(rules=rules or [Permission(any=True)]))


def _principal(checks: Sequence[_Check[Principal]]) -> Principal:
    ids: list[Principal] = []
    for check in checks:
        if check.values:
            ids.append(check.match(check.values))
        if check.not_values:
            ids.append(Principal(not_id=check.match(check.not_values)))
    return Principal(and_ids=Principal.Set(ids=ids or [Principal(any=True)]))


def _check(
    values: Sequence[str] | None,
    not_values: Sequence[str] | None,
    match: Callable[[Sequence[str]], M],
    *,
    http_only: bool = False,
) -> list[_Check[M]]:
    """The check of one field, or nothing when the field is unset."""
    if not values and not not_values:
        return []
    return [_Check(values or (), not_values or (), match, http_only)]


def _source_checks(source: Source | None, namespace: str) -> list[_Check[Principal]]:
    if source is None:
        return []
    s = source
    return [
        *_check(s.principals, s.not_principals, _peer_principals),
        *_check(s.request_principals, s.not_request_principals, _requesters, http_only=True),
        *_check(s.service_accounts, s.not_service_accounts, _service_accounts(namespace)),
        *_check(s.trust_domains, s.not_trust_domains, _trust_domains),
        *_check(s.namespaces, s.not_namespaces, _namespaces),
        *_check(s.remote_ip_blocks, s.not_remote_ip_blocks, _remote_ips),
        *_check(s.ip_blocks, s.not_ip_blocks, _direct_ips),
    ]


def _operation_checks(operation: Operation | None) -> list[_Check[Permission]]:
    if operation is None:
        return []
    o = operation
    return [
        *_check(o.hosts, o.not_hosts, _hosts, http_only=True),
        *_check(o.methods, o.not_methods, _methods, http_only=True),
        *_check(o.paths, o.not_paths, _paths, http_only=True),
        *_check(o.ports, o.not_ports, _destination_ports),
    ]


def _when_checks(
    conditions: Iterable[Condition], namespace: str
) -> tuple[list[_Check[Permission]], list[_Check[Principal]]]:
    """The `when` conditions, split into what Envoy tests as permissions and as principals."""
    permissions: list[_Check[Permission]] = []
    principals: list[_Check[Principal]] = []
    for condition in conditions:
        key, values, not_values = condition.key, condition.values, condition.not_values
        if key in _WHEN_PERMISSIONS:
            permissions += _check(values, not_values, _WHEN_PERMISSIONS[key])
        elif key.startswith("experimental.envoy.filters."):
            permissions += _check(values, not_values, _experimental_metadata(key))
        elif key == "source.serviceAccount":
            principals += _check(values, not_values, _service_accounts(namespace))
        elif key in _WHEN_PRINCIPALS:
            match, http_only = _WHEN_PRINCIPALS[key]
            principals += _check(values, not_values, match, http_only=http_only)
        elif key.startswith("request.headers["):
            principals += _check(values, not_values, _header(_brackets(key)[0]), http_only=True)
        else:  # request.auth.claims[...], the last key validation accepts
            principals += _check(values, not_values, _claim(_brackets(key)), http_only=True)
    return permissions, principals


def _brackets(key: str) -> list[str]:
    """The names in a key's brackets: `request.auth.claims[a][b]` -> ["a", "b"]."""
    return _BRACKETED.findall(key)


# --- field values -> Envoy matchers -----------------------------------------------------------


def _any_permission(each: Callable[[str], Permission]) -> Callable[[Sequence[str]], Permission]:
    return lambda values: Permission(or_rules=Permission.Set(rules=[each(v) for v in values]))


def _any_principal(each: Callable[[str], Principal]) -> Callable[[Sequence[str]], Principal]:
    return lambda values: Principal(or_ids=Principal.Set(ids=[each(v) for v in values]))


def _quote(text: str) -> str:
    """`text` as a literal in an RE2 regex (Go's QuoteMeta)."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", text)


def _regex(pattern: str) -> StringMatcher:
    return StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=pattern))


def _string(value: str, prefix: str = "") -> StringMatcher:
    """Istio's value forms with `prefix` before the value: `*` (any non-empty string), `*x`,
    `x*` and exact."""
    if value == "*":
        return _regex(_ANY_VALUE)
    if value.startswith("*"):
        if prefix:
            return _regex(f"{_quote(prefix)}.*{_quote(value[1:])}")
        return StringMatcher(suffix=value[1:])
    if value.endswith("*"):
        return StringMatcher(prefix=prefix + value[:-1])
    return StringMatcher(exact=prefix + value)


def _identity(matcher: StringMatcher) -> Principal:
    """The mutual TLS peer's identity (its certificate's URI SAN) matched by `matcher`."""
    return Principal(authenticated=Principal.Authenticated(principal_name=matcher))


def _peer_principal(value: str) -> Principal:
    return _identity(_string(value, prefix="spiffe://"))


def _namespace(value: str) -> Principal:
    glob = ".*".join(_quote(part) for part in value.split("*"))
    return _identity(_regex(f".*/ns/{glob}/.*"))


def _service_account(namespace: str, value: str) -> Principal:
    account_namespace, slash, account = value.partition("/")
    if not slash:
        account_namespace, account = namespace, value
    pattern = f"spiffe://.+/ns/{_quote(account_namespace)}/(.+/|)sa/{_quote(account)}(/.+)?"
    return _identity(_regex(pattern))


def _trust_domain(value: str) -> Principal:
    glob = "[^/]*".join(_quote(part) for part in value.split("*"))
    return _identity(_regex(f"spiffe://{glob}/.*"))


def _cidr(value: str) -> address_pb2.CidrRange:
    address, slash, length = value.partition("/")
    bits = int(length) if slash else (128 if ":" in address else 32)
    cidr = address_pb2.CidrRange(address_prefix=address)
    cidr.prefix_len.value = bits
    return cidr


def _jwt(claim_path: Sequence[str], value: value_pb2.ValueMatcher) -> Principal:
    """A match on the verified JWT payload that jwt_authn put in its dynamic metadata."""
    return Principal(
        sourced_metadata=_dynamic_metadata(JWT_AUTHN, [JWT_PAYLOAD, *claim_path], value)
    )


def _dynamic_metadata(
    filter_name: str, path: Sequence[str], value: value_pb2.ValueMatcher
) -> rbac_pb2.SourcedMetadata:
    segments = [metadata_pb2.MetadataMatcher.PathSegment(key=key) for key in path]
    matcher = metadata_pb2.MetadataMatcher(filter=filter_name, path=segments, value=value)
    return rbac_pb2.SourcedMetadata(metadata_matcher=matcher)


def _one_of(matchers: Sequence[value_pb2.ValueMatcher]) -> value_pb2.ValueMatcher:
    """Any of `matchers` (Envoy's OrMatcher takes two or more)."""
    if len(matchers) == 1:
        return matchers[0]
    return value_pb2.ValueMatcher(or_match=value_pb2.OrMatcher(value_matchers=matchers))


def _requester(value: str) -> Principal:
    """requestPrincipals `<iss>/<sub>`: Istio splits at the last `/` (issuers are URLs), and a
    `*` at either end widens the part it touches."""
    issuer, slash, subject = value.rpartition("/")
    if not slash:
        issuer, subject = value, ""
    match_any = _regex(_ANY_VALUE)
    if value == "*":
        iss, sub = match_any, match_any
    elif value.startswith("*"):
        if slash:
            iss = match_any if issuer == "*" else StringMatcher(suffix=issuer[1:])
            sub = StringMatcher(exact=subject)
        else:
            iss, sub = match_any, StringMatcher(suffix=value[1:])
    elif value.endswith("*"):
        if slash:
            iss = StringMatcher(exact=issuer)
            sub = match_any if subject == "*" else StringMatcher(prefix=subject[:-1])
        else:
            iss, sub = StringMatcher(prefix=value[:-1]), match_any
    else:
        iss, sub = StringMatcher(exact=issuer), StringMatcher(exact=subject)
    claims = (("iss", iss), ("sub", sub))
    ids = [_jwt([claim], value_pb2.ValueMatcher(string_match=m)) for claim, m in claims]
    return Principal(and_ids=Principal.Set(ids=ids))


def _claim(path: Sequence[str]) -> Callable[[Sequence[str]], Principal]:
    """A claim holding one of the values, as a string or as an element of a list."""

    def match(values: Sequence[str]) -> Principal:
        strings = _one_of([value_pb2.ValueMatcher(string_match=_string(v)) for v in values])
        in_list = value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=strings))
        return _jwt(path, _one_of([in_list, strings]))

    return match


def _header_matcher(name: str, value: str) -> route_components_pb2.HeaderMatcher:
    if value == "*":
        return route_components_pb2.HeaderMatcher(name=name, present_match=True)
    return route_components_pb2.HeaderMatcher(name=name, string_match=_string(value))


def _header(name: str) -> Callable[[Sequence[str]], Principal]:
    return _any_principal(lambda value: Principal(header=_header_matcher(name, value)))


def _host(value: str) -> Permission:
    """`:authority` case-insensitively; a value without a port also matches it with one."""
    if value == "*":
        return Permission(header=_header_matcher(":authority", value))
    if value.startswith("*"):
        pattern = ".*" + _quote(value[1:])
    elif value.endswith("*"):
        pattern = _quote(value[:-1]) + ".*"
    else:
        pattern = _quote(value)
    if not value.endswith("*") and not _ENDS_WITH_PORT.search(value):
        pattern += "(:[0-9]+)?"
    matcher = _regex(f"(?i){pattern}")
    return Permission(
        header=route_components_pb2.HeaderMatcher(name=":authority", string_match=matcher)
    )


def _path(value: str) -> Permission:
    if "{*}" in value or "{**}" in value:
        template = value.replace("{**}", "**").replace("{*}", "*")
        config = uri_template_match_pb2.UriTemplateMatchConfig(path_template=template)
        extension = extension_pb2.TypedExtensionConfig(
            name="uri-template", typed_config=pack(config)
        )
        return Permission(uri_template=extension)
    return Permission(url_path=path_pb2.PathMatcher(path=_string(value)))


def _experimental_metadata(key: str) -> Callable[[Sequence[str]], Permission]:
    """`experimental.envoy.filters.<filter>[<key>]...`: that filter's dynamic metadata."""
    filter_name = key.removeprefix("experimental.").partition("[")[0]

    def one(value: str) -> value_pb2.ValueMatcher:
        if value.startswith("[") and value.endswith("]"):
            element = value_pb2.ValueMatcher(string_match=_string(value[1:-1]))
            return value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=element))
        return value_pb2.ValueMatcher(string_match=_string(value))

    def match(values: Sequence[str]) -> Permission:
        value = _one_of([one(v) for v in values])
        return Permission(sourced_metadata=_dynamic_metadata(filter_name, _brackets(key), value))

    return match


def _service_accounts(namespace: str) -> Callable[[Sequence[str]], Principal]:
    """serviceAccounts `<ns>/<sa>`, or `<sa>` in the policy's `namespace`."""
    return _any_principal(functools.partial(_service_account, namespace))


_peer_principals = _any_principal(_peer_principal)
_namespaces = _any_principal(_namespace)
_trust_domains = _any_principal(_trust_domain)
_direct_ips = _any_principal(lambda value: Principal(direct_remote_ip=_cidr(value)))
_remote_ips = _any_principal(lambda value: Principal(remote_ip=_cidr(value)))
_requesters = _any_principal(_requester)
_hosts = _any_permission(_host)
_methods = _any_permission(lambda value: Permission(header=_header_matcher(":method", value)))
_paths = _any_permission(_path)
_destination_ports = _any_permission(lambda value: Permission(destination_port=int(value)))

_WHEN_PERMISSIONS: Final[dict[str, Callable[[Sequence[str]], Permission]]] = {
    "destination.ip": _any_permission(lambda value: Permission(destination_ip=_cidr(value))),
    "destination.port": _destination_ports,
    "connection.sni": _any_permission(
        lambda value: Permission(requested_server_name=_string(value))
    ),
}
# key -> (matcher, HTTP only)
_WHEN_PRINCIPALS: Final[dict[str, tuple[Callable[[Sequence[str]], Principal], bool]]] = {
    "source.ip": (_direct_ips, False),
    "remote.ip": (_remote_ips, False),
    "source.namespace": (_namespaces, False),
    "source.principal": (_peer_principals, False),
    "request.auth.principal": (_requesters, True),
    "request.auth.audiences": (_claim(["aud"]), True),
    "request.auth.presenter": (_claim(["azp"]), True),
}
