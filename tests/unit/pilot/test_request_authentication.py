"""RequestAuthentication -> jwt_authn: providers, Istio's requirement, merging, key sources."""

from __future__ import annotations

import json
from textwrap import dedent
from typing import Any

from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import json_format

from meshconfig import Resource, validate_document
from pilot.config_files import load_config_directory
from pilot.generators.filters import ROUTER
from pilot.generators.listeners import proxy_listeners
from pilot.generators.request_authentication import (
    JWT_AUTHN,
    UNFETCHED_JWKS,
    jwt_filters,
)
from pilot.push_context import PushContext
from tests.unit.pilot.conftest import SAMPLE_MESH, MakeProxy, WriteConfig

JWKS = json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "BBBB"}]})
OTHER_JWKS = json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "x": "CCCC", "y": "DDDD"}]})


def policy(name: str, *rules: dict[str, Any], namespace: str = "default") -> Resource:
    document = {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"jwtRules": list(rules)},
    }
    return validate_document(document)


def config(*policies: Resource, key_sets: dict[str, str] | None = None) -> dict[str, Any]:
    """The one jwt_authn filter's config for `policies`, as Envoy's JSON."""
    (found,) = jwt_filters(policies, key_sets or {})
    return unpacked(found)


def unpacked(http_filter: hcm_pb2.HttpFilter) -> dict[str, Any]:
    assert http_filter.name == JWT_AUTHN
    message = jwt_pb2.JwtAuthentication()
    assert http_filter.typed_config.Unpack(message)
    result: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    # A protobuf map has no order: list providers by their index, as they were made.
    result["providers"] = dict(
        sorted(result["providers"].items(), key=lambda item: int(item[0].removeprefix("origins-")))
    )
    return result


def optional(provider: str) -> dict[str, Any]:
    return {"requires_any": {"requirements": [{"provider_name": provider}, {"allow_missing": {}}]}}


DEFAULT_NORMALIZE = {"space_delimited_claims": ["permission", "scope"]}


def test_no_policies_or_no_rules_make_no_filter() -> None:
    assert jwt_filters([]) == []
    assert jwt_filters([policy("empty")]) == []


def test_one_rule_every_field() -> None:
    rule = {
        "issuer": "https://issuer.example.com",
        "audiences": ["a", "b"],
        "jwks": JWKS,
        "fromHeaders": [{"name": "x-jwt", "prefix": "Token "}, {"name": "x-raw"}],
        "fromParams": ["token"],
        "fromCookies": ["session"],
        "outputPayloadToHeader": "x-jwt-payload",
        "forwardOriginalToken": True,
        "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}],
        "spaceDelimitedClaims": ["roles", "scope"],
        "timeout": "2s",
    }
    assert config(policy("jwt", rule)) == {
        "providers": {
            "origins-0": {
                "issuer": "https://issuer.example.com",
                "audiences": ["a", "b"],
                "local_jwks": {"inline_string": JWKS},
                "forward": True,
                "from_headers": [{"name": "x-jwt", "value_prefix": "Token "}, {"name": "x-raw"}],
                "from_params": ["token"],
                "from_cookies": ["session"],
                "forward_payload_header": "x-jwt-payload",
                "payload_in_metadata": "payload",
                "normalize_payload_in_metadata": {
                    "space_delimited_claims": ["permission", "roles", "scope"]
                },
                "claim_to_headers": [{"header_name": "x-sub", "claim_name": "sub"}],
            }
        },
        "rules": [{"match": {"prefix": "/"}, "requires": optional("origins-0")}],
        "bypass_cors_preflight": True,
    }


def test_defaults_leave_token_locations_to_envoy() -> None:
    """No location: Envoy looks in `Authorization: Bearer` and `?access_token=`; the token is
    not forwarded; the payload still goes to dynamic metadata for authorization."""
    found = config(policy("jwt", {"issuer": "https://issuer.example.com", "jwks": JWKS}))
    assert found["providers"] == {
        "origins-0": {
            "issuer": "https://issuer.example.com",
            "local_jwks": {"inline_string": JWKS},
            "payload_in_metadata": "payload",
            "normalize_payload_in_metadata": DEFAULT_NORMALIZE,
        }
    }


def test_several_policies_merge_sorted_by_issuer() -> None:
    """Rules of all policies, in policy order, stable-sorted by issuer, named by position; the
    requirement is any single provider, or every provider optional."""
    first = policy(
        "a-first",
        {"issuer": "https://z.example.com", "jwks": JWKS},
        {"issuer": "https://b.example.com", "jwks": JWKS},
    )
    second = policy(
        "b-second",
        {"issuer": "https://a.example.com", "jwks": OTHER_JWKS},
        {"issuer": "https://b.example.com", "jwks": OTHER_JWKS},
        namespace="istio-system",
    )
    found = config(first, second)
    providers = found["providers"]
    assert [
        (name, p["issuer"], p["local_jwks"]["inline_string"]) for name, p in providers.items()
    ] == [
        ("origins-0", "https://a.example.com", OTHER_JWKS),
        ("origins-1", "https://b.example.com", JWKS),
        ("origins-2", "https://b.example.com", OTHER_JWKS),
        ("origins-3", "https://z.example.com", JWKS),
    ]
    names = list(providers)
    assert found["rules"] == [
        {
            "match": {"prefix": "/"},
            "requires": {
                "requires_any": {
                    "requirements": [
                        *({"provider_name": name} for name in names),
                        {"requires_all": {"requirements": [optional(name) for name in names]}},
                    ]
                }
            },
        }
    ]


def test_output_is_deterministic() -> None:
    policies = [
        policy("p", *({"issuer": f"https://{n}.example.com", "jwks": JWKS} for n in "qwertyuiop"))
    ]
    encoded = {jwt_filters(policies)[0].SerializeToString(deterministic=True) for _ in range(5)}
    assert len(encoded) == 1


def test_fetched_key_sets_by_jwks_uri_or_discovery() -> None:
    """A `jwksUri` rule takes the keys fetched from it, an issuer-only rule those of its OpenID
    discovery document; keys not fetched (or no URL to fetch) verify nothing."""
    by_uri = {"issuer": "https://a.example.com", "jwksUri": "https://keys.example.com/jwks"}
    discovered = {"issuer": "https://b.example.com/"}
    unfetched = {"issuer": "https://c.example.com", "jwksUri": "https://keys.example.com/other"}
    not_a_url = {"issuer": "d@example.com", "jwksUri": "https://keys.example.com/other"}
    key_sets = {
        "https://keys.example.com/jwks": JWKS,
        "https://b.example.com/.well-known/openid-configuration": OTHER_JWKS,
    }
    found = config(policy("p", by_uri, discovered, unfetched, not_a_url), key_sets=key_sets)
    assert [p["local_jwks"]["inline_string"] for p in found["providers"].values()] == [
        UNFETCHED_JWKS,  # d@example.com sorts first
        JWKS,
        OTHER_JWKS,
        UNFETCHED_JWKS,
    ]


def test_unfetched_jwks_is_a_public_key_set() -> None:
    (key,) = json.loads(UNFETCHED_JWKS)["keys"]
    assert (key["kty"], key["alg"], key["e"]) == ("RSA", "RS256", "AQAB")
    assert "d" not in key  # no private part


def test_inbound_listener_runs_jwt_authn_first(
    write_config: WriteConfig, make_proxy: MakeProxy
) -> None:
    """The reviews workload's inbound HTTP ports verify tokens before any other filter, with
    only the policy that selects it; its outbound connection manager verifies nothing."""
    policies = dedent(
        f"""\
        apiVersion: security.istio.io/v1
        kind: RequestAuthentication
        metadata: {{name: reviews, namespace: default}}
        spec:
          selector: {{matchLabels: {{app: reviews}}}}
          jwtRules: [{{issuer: "https://issuer.example.com", jwks: '{JWKS}'}}]
        ---
        apiVersion: security.istio.io/v1
        kind: RequestAuthentication
        metadata: {{name: ratings, namespace: default}}
        spec:
          selector: {{matchLabels: {{app: ratings}}}}
          jwtRules: [{{issuer: "https://ratings.example.com", jwks: '{JWKS}'}}]
        """
    )
    loaded = load_config_directory(write_config(SAMPLE_MESH + "---\n" + policies))
    ctx = PushContext.build(loaded.registry, "1", loaded.istio)
    sidecar = make_proxy(
        INTERCEPTION_MODE="NONE",
        LABELS={"app": "reviews", "version": "v1"},
        APP_ADDRESS="127.0.100.2",
        HTTP_PROXY_PORT="15080",
    )
    managers = {}
    for listener in proxy_listeners(ctx, sidecar):
        for chain in listener.filter_chains:
            for network_filter in chain.filters:
                manager = hcm_pb2.HttpConnectionManager()
                if network_filter.typed_config.Unpack(manager):
                    managers[manager.stat_prefix] = list(manager.http_filters)
    names = {prefix: [f.name for f in filters] for prefix, filters in managers.items()}
    policy_chain = [JWT_AUTHN, "envoy.filters.http.fault", "envoy.filters.http.cors", ROUTER]
    assert (
        names
        == {
            "inbound_0.0.0.0_19080": policy_chain,  # http
            "inbound_0.0.0.0_19090": policy_chain,  # grpc-api
            "outbound_127.0.1.2_15080": policy_chain[1:],  # the HTTP proxy listener
        }
    )
    providers = unpacked(managers["inbound_0.0.0.0_19080"][0])["providers"]
    assert [p["issuer"] for p in providers.values()] == ["https://issuer.example.com"]
