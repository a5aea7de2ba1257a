"""RequestAuthentication as Envoy's jwt_authn HTTP filter, with Istio's semantics.

All the RequestAuthentications that apply to a workload become one `envoy.filters.http.jwt_authn`
filter, first in its inbound HTTP filter chain. Their `jwtRules` are concatenated in policy
order and sorted by issuer (a stable sort, as istiod does), and rule n becomes provider
`origins-<n>`. RequestAuthentication only says which tokens are valid, never that one is
needed (that is AuthorizationPolicy's `requestPrincipals`), so the requirement, like istiod's:

- one provider: `requires_any [origins-0, allow_missing]`: no token passes; a token in the
  provider's locations must verify (signature, issuer, expiry) or the request gets 401, and name
  one of the `audiences` if there are any, or it gets 403;
- several: `requires_any [origins-0, ..., origins-n, requires_all [requires_any [origins-i,
  allow_missing] for each i]]`. The inner AND rejects a token that one provider finds and
  cannot verify; the bare providers before it accept a token that verifies with one provider
  although others look in the same place (the `Authorization` header by default) and fail on
  it, which the AND alone would reject.

Every provider writes the verified payload to the dynamic metadata of `envoy.filters.http.jwt_authn`
under one key, `payload`, where the RBAC filters that follow read `requestPrincipals` and
`request.auth.claims`. Envoy keeps a request's verified payloads in one struct keyed by
`payload_in_metadata`, so when a request carries tokens of several providers the one verified
last is the payload (istiod shares the key the same way). The claims `scope` and `permission`,
and the rule's `spaceDelimitedClaims`, are split into lists there, so that a claim rule can match
one scope of "read write".

Token locations left empty keep Envoy's defaults (`Authorization: Bearer <token>`, then the
`access_token` query parameter). Keys come from the rule's inline `jwks`, or from the key sets
pilot fetched (`pilot.jwks`: `jwksUri`, or the issuer's OpenID discovery document); a rule whose
keys are not (yet) fetched gets a key whose private half nobody holds, so that its tokens are
rejected rather than the filter being left out (fail closed, as istiod's fake JWKS). `timeout`
bounds pilot's fetch and does not appear here; `presence` is not translated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import empty_pb2

from meshconfig import Resource
from meshconfig.security.authentication import JwtRule, RequestAuthenticationSpec
from pilot.generators.proto import pack
from pilot.jwks import jwks_location

JWT_AUTHN: Final = "envoy.filters.http.jwt_authn"
PAYLOAD_METADATA_KEY: Final = "payload"
SPACE_DELIMITED_CLAIMS: Final = frozenset({"permission", "scope"})
NO_KEY_SETS: Final[Mapping[str, str]] = MappingProxyType({})
_ALLOW_MISSING: Final = jwt_pb2.JwtRequirement(allow_missing=empty_pb2.Empty())
# An RSA public key generated for this purpose, its private key discarded: no token verifies.
UNFETCHED_JWKS: Final = json.dumps(
    {
        "keys": [
            {
                "kty": "RSA",
                "kid": "unfetched",
                "alg": "RS256",
                "e": "AQAB",
                "n": "Q75tV8Ds9u8lL-A8lfzfxm8MeP2GGcn0oIk16IKR6IbYOFI_3qWKJS9tML_xaQ9jqlflNJkzpLg_"
                "-xWRKRYIqhYMHDjUeC-45HMSI_U1__k58tncSAXqKDiAhdqnSYAzP2ZojlDpFejYsBliaLFUhZ8XqAV4"
                "RpnBP3Da0Ap-oMtdm5sQGaXhzgR4e_yDEdtBDTbj4OvtT5FZodfdgewKtP4EJ8-Ws1gDtkJBzIfKHhJj"
                "mRjRserelGmMGguM4KrhLlf7hcwa0yi2aN5_Wyy-eHiAK4B5DTUdyfJOEoHym5u6vM1Rd88MLm1OUGHy"
                "gQnhau6KTjfT-hXHMJ_IpgRrdQ",
            }
        ]
    },
    separators=(",", ":"),
)


def jwt_filters(
    policies: Sequence[Resource], key_sets: Mapping[str, str] = NO_KEY_SETS
) -> list[hcm_pb2.HttpFilter]:
    """The jwt_authn filter for the RequestAuthentications that apply to a workload (none when
    they have no rules). `key_sets` maps the URLs of `pilot.jwks.jwks_location` to fetched keys."""
    rules = _rules(policies)
    if not rules:
        return []
    providers = {f"origins-{index}": _provider(rule, key_sets) for index, rule in enumerate(rules)}
    config = jwt_pb2.JwtAuthentication(
        providers=providers,
        rules=[
            jwt_pb2.RequirementRule(
                match=route_components_pb2.RouteMatch(prefix="/"),
                requires=_requirement(list(providers)),
            )
        ],
        bypass_cors_preflight=True,
    )
    return [hcm_pb2.HttpFilter(name=JWT_AUTHN, typed_config=pack(config))]


def _rules(policies: Sequence[Resource]) -> list[JwtRule]:
    rules: list[JwtRule] = []
    for policy in policies:
        spec = policy.spec
        assert isinstance(spec, RequestAuthenticationSpec), policy.label
        rules.extend(spec.jwt_rules or ())
    return sorted(rules, key=lambda rule: rule.issuer or "")


def _provider(rule: JwtRule, key_sets: Mapping[str, str]) -> jwt_pb2.JwtProvider:
    return jwt_pb2.JwtProvider(
        issuer=rule.issuer or "",
        audiences=rule.audiences or (),
        local_jwks=base_pb2.DataSource(inline_string=_jwks(rule, key_sets)),
        forward=bool(rule.forward_original_token),
        from_headers=[
            jwt_pb2.JwtHeader(name=header.name, value_prefix=header.prefix or "")
            for header in rule.from_headers or ()
        ],
        from_params=rule.from_params or (),
        from_cookies=rule.from_cookies or (),
        forward_payload_header=rule.output_payload_to_header or "",
        payload_in_metadata=PAYLOAD_METADATA_KEY,
        normalize_payload_in_metadata=jwt_pb2.JwtProvider.NormalizePayload(
            space_delimited_claims=_space_delimited(rule)
        ),
        claim_to_headers=[
            jwt_pb2.JwtClaimToHeader(header_name=output.header, claim_name=output.claim)
            for output in rule.output_claim_to_headers or ()
        ],
    )


def _space_delimited(rule: JwtRule) -> list[str]:
    return sorted(SPACE_DELIMITED_CLAIMS.union(rule.space_delimited_claims or ()))


def _jwks(rule: JwtRule, key_sets: Mapping[str, str]) -> str:
    if rule.jwks is not None:
        return rule.jwks
    location = jwks_location(rule)
    return UNFETCHED_JWKS if location is None else key_sets.get(location, UNFETCHED_JWKS)


def _requirement(providers: list[str]) -> jwt_pb2.JwtRequirement:
    optional = [_any([_named(name), _ALLOW_MISSING]) for name in providers]
    if len(optional) == 1:
        return optional[0]
    all_optional = jwt_pb2.JwtRequirement(
        requires_all=jwt_pb2.JwtRequirementAndList(requirements=optional)
    )
    return _any([*map(_named, providers), all_optional])


def _named(provider: str) -> jwt_pb2.JwtRequirement:
    return jwt_pb2.JwtRequirement(provider_name=provider)


def _any(requirements: list[jwt_pb2.JwtRequirement]) -> jwt_pb2.JwtRequirement:
    return jwt_pb2.JwtRequirement(
        requires_any=jwt_pb2.JwtRequirementOrList(requirements=requirements)
    )
