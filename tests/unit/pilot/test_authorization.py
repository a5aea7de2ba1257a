"""AuthorizationPolicy -> Envoy RBAC: one test per translated field, action and TCP rule.

Expectations are written as the JSON Envoy's /config_dump shows (snake_case field names),
which is also how Istio's own builder test data reads.
"""

from __future__ import annotations

import logging
import re
from textwrap import dedent, indent
from typing import Any

import pytest
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from google.protobuf import json_format

from meshconfig import Resource, load_documents, validate_document
from pilot.generators import authorization
from pilot.generators.authorization import http_filters, network_filters

NAME = "ns[default]-policy[p]-rule[0]"
ANY_PERMISSION = {"and_rules": {"rules": [{"any": True}]}}
ANY_PRINCIPAL = {"and_ids": {"ids": [{"any": True}]}}


def policy(
    spec: str, name: str = "p", namespace: str = "default", annotations: str = ""
) -> Resource:
    text = (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        f"metadata: {{name: {name}, namespace: {namespace}{annotations}}}\n"
        f"spec:\n{indent(dedent(spec), '  ')}"
    )
    (document,) = load_documents(text, "test")
    return validate_document(document, "test")


def as_dict(message: Any) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return result


def http_configs(*policies: Resource) -> list[dict[str, Any]]:
    configs = []
    for built in http_filters(policies):
        assert built.name == "envoy.filters.http.rbac"
        config = http_rbac_pb2.RBAC()
        assert built.typed_config.Unpack(config)
        configs.append(as_dict(config))
    return configs


def network_configs(*policies: Resource) -> list[dict[str, Any]]:
    configs = []
    for built in network_filters(policies):
        assert built.name == "envoy.filters.network.rbac"
        config = network_rbac_pb2.RBAC()
        assert built.typed_config.Unpack(config)
        assert config.stat_prefix == "tcp."
        configs.append(as_dict(config))
    return configs


def only_policy(spec: str, *, tcp: bool = False) -> dict[str, Any]:
    """The one RBAC policy the one-rule policy `spec` becomes."""
    configs = network_configs(policy(spec)) if tcp else http_configs(policy(spec))
    (config,) = configs
    policies = config["rules"]["policies"]
    assert list(policies) == [NAME]
    result: dict[str, Any] = policies[NAME]
    return result


def permission_rules(spec: str, **kwargs: bool) -> list[dict[str, Any]]:
    (permission,) = only_policy(spec, **kwargs)["permissions"]
    rules: list[dict[str, Any]] = permission["and_rules"]["rules"]
    return rules


def principal_ids(spec: str, **kwargs: bool) -> list[dict[str, Any]]:
    (principal,) = only_policy(spec, **kwargs)["principals"]
    ids: list[dict[str, Any]] = principal["and_ids"]["ids"]
    return ids


def source(fields: str) -> str:
    return f"  rules: [{{from: [{{source: {{{fields}}}}}]}}]\n"


def operation(fields: str) -> str:
    return f"  rules: [{{to: [{{operation: {{{fields}}}}}]}}]\n"


def when(key: str, values: str = "", not_values: str = "") -> str:
    parts = [f"key: '{key}'"]
    if values:
        parts.append(f"values: {values}")
    if not_values:
        parts.append(f"notValues: {not_values}")
    return f"  rules: [{{when: [{{{', '.join(parts)}}}]}}]\n"


def or_ids(*ids: dict[str, Any]) -> dict[str, Any]:
    return {"or_ids": {"ids": list(ids)}}


def or_rules(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"or_rules": {"rules": list(rules)}}


def identity(matcher: dict[str, Any]) -> dict[str, Any]:
    return {"authenticated": {"principal_name": matcher}}


def regex(pattern: str) -> dict[str, Any]:
    return {"safe_regex": {"regex": pattern}}


def dynamic_metadata(filter_name: str, path: list[str], value: dict[str, Any]) -> dict[str, Any]:
    path_keys = [{"key": key} for key in path]
    matcher = {"filter": filter_name, "path": path_keys, "value": value}
    return {"sourced_metadata": {"metadata_matcher": matcher}}


def jwt(path: list[str], value: dict[str, Any]) -> dict[str, Any]:
    return dynamic_metadata("envoy.filters.http.jwt_authn", ["payload", *path], value)


# --- policies, rules and actions --------------------------------------------------------------


def test_no_policy_means_no_filter() -> None:
    assert http_filters([]) == []
    assert network_filters([]) == []


def test_one_filter_per_action_in_evaluation_order() -> None:
    found = http_configs(
        policy("  action: ALLOW\n  rules: [{}]", name="allow"),
        policy("  action: DENY\n  rules: [{}]", name="deny"),
        policy("  action: AUDIT\n  rules: [{}]", name="audit"),
        policy("  action: CUSTOM\n  provider: {name: ext}\n  rules: [{}]", name="custom"),
    )
    assert [(c["rules"].get("action", "ALLOW"), list(c["rules"]["policies"])) for c in found] == [
        (
            "DENY",
            ["istio-ext-authz-ns[default]-policy[custom]-rule[0]-deny-due-to-bad-CUSTOM-action"],
        ),
        ("LOG", ["ns[default]-policy[audit]-rule[0]"]),
        ("DENY", ["ns[default]-policy[deny]-rule[0]"]),
        ("ALLOW", ["ns[default]-policy[allow]-rule[0]"]),
    ]
    assert [c["rules"].get("action", "ALLOW") for c in network_configs(*_all_actions())] == [
        "DENY",
        "LOG",
        "DENY",
        "ALLOW",
    ]


def _all_actions() -> list[Resource]:
    return [
        policy(f"  action: {action}\n{extra}  rules: [{{}}]", name=action.lower())
        for action, extra in (
            ("ALLOW", ""),
            ("DENY", ""),
            ("AUDIT", ""),
            ("CUSTOM", "  provider: {name: ext}\n"),
        )
    ]


def test_action_defaults_to_allow_and_policies_of_an_action_share_one_filter() -> None:
    (config,) = http_configs(
        policy("  rules: [{}, {}]", name="b"),
        policy("  action: ALLOW\n  rules: [{}]", name="a", namespace="istio-system"),
    )
    assert config["rules"].get("action", "ALLOW") == "ALLOW"
    assert sorted(config["rules"]["policies"]) == [
        "ns[default]-policy[b]-rule[0]",
        "ns[default]-policy[b]-rule[1]",
        "ns[istio-system]-policy[a]-rule[0]",
    ]


def test_output_does_not_depend_on_policy_order() -> None:
    policies = [policy("  rules: [{}]", name=n) for n in "abc"] + _all_actions()
    forward = [f.SerializeToString(deterministic=True) for f in http_filters(policies)]
    backward = [f.SerializeToString(deterministic=True) for f in http_filters(policies[::-1])]
    assert forward == backward


def test_empty_rule_matches_everything() -> None:
    assert only_policy("  rules: [{}]") == {
        "permissions": [ANY_PERMISSION],
        "principals": [ANY_PRINCIPAL],
    }


def test_allow_policy_without_rules_matches_nothing_so_denies_all() -> None:
    (config,) = http_configs(policy(" {}"))
    assert config["rules"] == {
        "policies": {
            NAME: {
                "permissions": [{"not_rule": {"any": True}}],
                "principals": [{"not_id": {"any": True}}],
            }
        }
    }


def test_from_entries_are_alternatives_and_when_conditions_apply_to_each() -> None:
    spec = """\
      rules:
      - from:
        - source: {namespaces: [a]}
        - source: {namespaces: [b]}
        to:
        - operation: {methods: [GET]}
        - operation: {ports: ['80']}
        when:
        - {key: 'request.headers[x-user]', values: [alice]}
        - {key: destination.port, values: ['80']}
    """
    built = only_policy(spec)
    header = or_ids({"header": {"name": "x-user", "string_match": {"exact": "alice"}}})
    assert built["principals"] == [
        {"and_ids": {"ids": [or_ids(identity(regex(f".*/ns/{ns}/.*"))), header]}} for ns in "ab"
    ]
    port = or_rules({"destination_port": 80})
    method = or_rules({"header": {"name": ":method", "string_match": {"exact": "GET"}}})
    assert built["permissions"] == [
        {"and_rules": {"rules": [method, port]}},
        {"and_rules": {"rules": [port, port]}},
    ]


def test_fields_of_one_source_must_all_match_and_not_fields_negate() -> None:
    ids = principal_ids(source("namespaces: [a, b], notNamespaces: [c], ipBlocks: [10.0.0.1]"))
    assert ids == [
        or_ids(identity(regex(".*/ns/a/.*")), identity(regex(".*/ns/b/.*"))),
        {"not_id": or_ids(identity(regex(".*/ns/c/.*")))},
        or_ids({"direct_remote_ip": {"address_prefix": "10.0.0.1", "prefix_len": 32}}),
    ]


def test_audit_logs_and_does_not_decide() -> None:
    (config,) = http_configs(
        policy("  action: AUDIT\n  rules: [{to: [{operation: {paths: [/a]}}]}]")
    )
    assert config["rules"]["action"] == "LOG"


def test_custom_denies_what_it_matches_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    authorization._warn_once.cache_clear()
    caplog.set_level(logging.WARNING, logger=authorization.__name__)
    custom = policy(
        "  action: CUSTOM\n  provider: {name: opa}\n  rules: [{to: [{operation: {paths: [/x]}}]}]"
    )
    for _ in range(3):
        (config,) = http_configs(custom)
    assert config["rules"]["action"] == "DENY"
    (name,) = config["rules"]["policies"]
    assert name.endswith("-deny-due-to-bad-CUSTOM-action")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "AuthorizationPolicy default/p" in warnings[0] and "'opa'" in warnings[0]


def test_dry_run_policies_are_shadow_rules_only() -> None:
    dry = ", annotations: {istio.io/dry-run: 'true'}"
    (config,) = http_configs(policy("  action: DENY\n  rules: [{}]", annotations=dry))
    assert "rules" not in config
    assert list(config["shadow_rules"]["policies"]) == [NAME]
    assert config["shadow_rules_stat_prefix"] == "istio_dry_run_deny_"
    (mixed,) = http_configs(
        policy("  rules: [{}]", name="wet"), policy("  rules: [{}]", name="dry", annotations=dry)
    )
    assert list(mixed["rules"]["policies"]) == ["ns[default]-policy[wet]-rule[0]"]
    assert list(mixed["shadow_rules"]["policies"]) == ["ns[default]-policy[dry]-rule[0]"]
    assert mixed["shadow_rules_stat_prefix"] == "istio_dry_run_allow_"


# --- sources ----------------------------------------------------------------------------------


def test_principals_are_spiffe_ids_of_the_mtls_peer() -> None:
    ids = principal_ids(
        source("principals: [cluster.local/ns/a/sa/b, 'cluster.local/ns/a/*', '*/sa/b', '*']")
    )
    assert ids == [
        or_ids(
            identity({"exact": "spiffe://cluster.local/ns/a/sa/b"}),
            identity({"prefix": "spiffe://cluster.local/ns/a/"}),
            identity(regex("spiffe://.*/sa/b")),
            identity(regex(".+")),
        )
    ]


def test_not_principals() -> None:
    ids = principal_ids(source("notPrincipals: [cluster.local/ns/a/sa/b]"))
    assert ids == [{"not_id": or_ids(identity({"exact": "spiffe://cluster.local/ns/a/sa/b"}))}]


def test_namespaces_with_wildcards() -> None:
    ids = principal_ids(source("namespaces: [prod, 'team-*', '*-test', '*']"))
    assert ids == [
        or_ids(
            identity(regex(".*/ns/prod/.*")),
            identity(regex(".*/ns/team-.*/.*")),
            identity(regex(".*/ns/.*-test/.*")),
            identity(regex(".*/ns/.*/.*")),
        )
    ]


def test_service_accounts_and_the_policy_namespace_default() -> None:
    ids = principal_ids(source("serviceAccounts: [shop/cart]"))
    assert ids == [or_ids(identity(regex("spiffe://.+/ns/shop/(.+/|)sa/cart(/.+)?")))]
    ids = principal_ids(when("source.serviceAccount", values="[cart]"))
    assert ids == [or_ids(identity(regex("spiffe://.+/ns/default/(.+/|)sa/cart(/.+)?")))]


def test_trust_domains() -> None:
    ids = principal_ids(source("trustDomains: [cluster.local, 'corp.*'], notTrustDomains: ['*']"))
    assert ids == [
        or_ids(
            identity(regex(r"spiffe://cluster\.local/.*")),
            identity(regex(r"spiffe://corp\.[^/]*/.*")),
        ),
        {"not_id": or_ids(identity(regex("spiffe://[^/]*/.*")))},
    ]


def test_ip_blocks_are_the_peer_address_and_remote_ip_blocks_the_client() -> None:
    ids = principal_ids(
        source("ipBlocks: [10.1.2.3, 10.0.0.0/8, 'fd00::1'], notRemoteIpBlocks: [192.168.0.0/16]")
    )
    assert ids == [
        {"not_id": or_ids({"remote_ip": {"address_prefix": "192.168.0.0", "prefix_len": 16}})},
        or_ids(
            {"direct_remote_ip": {"address_prefix": "10.1.2.3", "prefix_len": 32}},
            {"direct_remote_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}},
            {"direct_remote_ip": {"address_prefix": "fd00::1", "prefix_len": 128}},
        ),
    ]


EXACT_ANY = {"string_match": regex(".+")}


@pytest.mark.parametrize(
    ("value", "iss", "sub"),
    [
        ("https://issuer.example/alice", {"exact": "https://issuer.example"}, {"exact": "alice"}),
        ("*", regex(".+"), regex(".+")),
        ("https://issuer.example/*", {"exact": "https://issuer.example"}, regex(".+")),
        ("https://issuer.example/al*", {"exact": "https://issuer.example"}, {"prefix": "al"}),
        ("*/alice", regex(".+"), {"exact": "alice"}),
        ("*example/alice", {"suffix": "example"}, {"exact": "alice"}),
        ("issuer-*", {"prefix": "issuer-"}, regex(".+")),
        ("*-subject", regex(".+"), {"suffix": "-subject"}),
        ("no-slash", {"exact": "no-slash"}, {"exact": ""}),
    ],
)
def test_request_principals_match_iss_and_sub_of_the_jwt(
    value: str, iss: dict[str, Any], sub: dict[str, Any]
) -> None:
    ids = principal_ids(source(f"requestPrincipals: ['{value}']"))
    pair = {
        "and_ids": {
            "ids": [jwt(["iss"], {"string_match": iss}), jwt(["sub"], {"string_match": sub})]
        }
    }
    assert ids == [or_ids(pair)]
    assert principal_ids(when("request.auth.principal", values=f"['{value}']")) == ids


# --- operations -------------------------------------------------------------------------------


def host_regex(value: str) -> str:
    (rule,) = permission_rules(operation(f"hosts: ['{value}']"))
    (host,) = rule["or_rules"]["rules"]
    assert host["header"]["name"] == ":authority"
    pattern: str = host["header"]["string_match"]["safe_regex"]["regex"]
    return pattern


@pytest.mark.parametrize(
    ("value", "matching", "not_matching"),
    [
        ("a.example", ["a.example", "A.Example", "a.example:8080"], ["b.example", "axexample"]),
        ("a.example:8080", ["a.example:8080", "A.EXAMPLE:8080"], ["a.example", "a.example:80"]),
        ("*.example", ["x.example", "x.y.example:80"], ["example", "x.example.org"]),
        ("a.*", ["a.example", "a.b:80"], ["b.a"]),
        ("a.example:*", ["a.example:1"], ["a.example"]),
    ],
)
def test_hosts_are_case_insensitive_and_port_insensitive_without_a_port(
    value: str, matching: list[str], not_matching: list[str]
) -> None:
    pattern = host_regex(value)
    assert pattern.startswith("(?i)")
    for host in matching:
        assert re.fullmatch(pattern, host), (pattern, host)
    for host in not_matching:
        assert not re.fullmatch(pattern, host), (pattern, host)


def test_any_host_is_a_present_authority() -> None:
    rules = permission_rules(operation("notHosts: ['*']"))
    assert rules == [
        {"not_rule": or_rules({"header": {"name": ":authority", "present_match": True}})}
    ]


def test_methods() -> None:
    rules = permission_rules(operation("methods: [GET, 'P*'], notMethods: ['*']"))
    method = ":method"
    assert rules == [
        or_rules(
            {"header": {"name": method, "string_match": {"exact": "GET"}}},
            {"header": {"name": method, "string_match": {"prefix": "P"}}},
        ),
        {"not_rule": or_rules({"header": {"name": method, "present_match": True}})},
    ]


def test_paths_exact_prefix_suffix_any_and_templates() -> None:
    rules = permission_rules(operation("paths: [/a, '/b/*', '*.png', '*', '/c/{*}/d/{**}']"))
    template = {
        "name": "uri-template",
        "typed_config": {
            "@type": "type.googleapis.com/"
            "envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig",
            "path_template": "/c/*/d/**",
        },
    }
    assert rules == [
        or_rules(
            {"url_path": {"path": {"exact": "/a"}}},
            {"url_path": {"path": {"prefix": "/b/"}}},
            {"url_path": {"path": {"suffix": ".png"}}},
            {"url_path": {"path": regex(".+")}},
            {"uri_template": template},
        )
    ]


def test_ports_and_not_paths() -> None:
    rules = permission_rules(operation("ports: ['8080', '9090'], notPaths: [/admin]"))
    assert rules == [
        {"not_rule": or_rules({"url_path": {"path": {"exact": "/admin"}}})},
        or_rules({"destination_port": 8080}, {"destination_port": 9090}),
    ]


# --- when conditions --------------------------------------------------------------------------


def test_request_header_condition() -> None:
    ids = principal_ids(
        when("request.headers[x-user]", values="[alice, 'bob-*']", not_values="['*']")
    )
    assert ids == [
        or_ids(
            {"header": {"name": "x-user", "string_match": {"exact": "alice"}}},
            {"header": {"name": "x-user", "string_match": {"prefix": "bob-"}}},
        ),
        {"not_id": or_ids({"header": {"name": "x-user", "present_match": True}})},
    ]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "source.ip",
            "10.0.0.0/8",
            {"direct_remote_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}},
        ),
        ("remote.ip", "1.2.3.4", {"remote_ip": {"address_prefix": "1.2.3.4", "prefix_len": 32}}),
        ("source.namespace", "prod", identity(regex(".*/ns/prod/.*"))),
        (
            "source.principal",
            "cluster.local/ns/a/sa/b",
            identity({"exact": "spiffe://cluster.local/ns/a/sa/b"}),
        ),
    ],
)
def test_principal_side_conditions(key: str, value: str, expected: dict[str, Any]) -> None:
    assert principal_ids(when(key, values=f"['{value}']")) == [or_ids(expected)]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "destination.ip",
            "10.0.0.1",
            {"destination_ip": {"address_prefix": "10.0.0.1", "prefix_len": 32}},
        ),
        ("destination.port", "8080", {"destination_port": 8080}),
        ("connection.sni", "*.example.com", {"requested_server_name": {"suffix": ".example.com"}}),
    ],
)
def test_permission_side_conditions(key: str, value: str, expected: dict[str, Any]) -> None:
    assert permission_rules(when(key, values=f"['{value}']")) == [or_rules(expected)]


def claim_value(*strings: dict[str, Any]) -> dict[str, Any]:
    """A claim that is one of the strings, or a list holding one."""
    matchers = [{"string_match": s} for s in strings]
    either = matchers[0] if len(matchers) == 1 else {"or_match": {"value_matchers": matchers}}
    return {"or_match": {"value_matchers": [{"list_match": {"one_of": either}}, either]}}


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("request.auth.audiences", ["aud"]),
        ("request.auth.presenter", ["azp"]),
        ("request.auth.claims[groups]", ["groups"]),
        ("request.auth.claims[realm][roles]", ["realm", "roles"]),
    ],
)
def test_jwt_claim_conditions(key: str, path: list[str]) -> None:
    ids = principal_ids(when(key, values="[a, 'b*']", not_values="[c]"))
    assert ids == [
        jwt(path, claim_value({"exact": "a"}, {"prefix": "b"})),
        {"not_id": jwt(path, claim_value({"exact": "c"}))},
    ]


def test_experimental_envoy_filter_metadata() -> None:
    key = "experimental.envoy.filters.a.b[c][d]"
    in_list = {"list_match": {"one_of": {"string_match": {"exact": "y"}}}}
    either = {"or_match": {"value_matchers": [{"string_match": {"exact": "x"}}, in_list]}}
    assert permission_rules(when(key, values="[x, '[y]']")) == [
        dynamic_metadata("envoy.filters.a.b", ["c", "d"], either)
    ]
    assert permission_rules(when(key, not_values="['[y]']")) == [
        {"not_rule": dynamic_metadata("envoy.filters.a.b", ["c", "d"], in_list)}
    ]


# --- TCP ports --------------------------------------------------------------------------------

HTTP_AND_TCP_RULES = """\
  rules:
  - to: [{operation: {paths: [/admin], ports: ['5432']}}]
  - from: [{source: {requestPrincipals: ['*'], namespaces: [a]}}]
  - when: [{key: 'request.headers[x-user]', values: [alice]}]
  - to: [{operation: {ports: ['5432']}}]
"""


def test_tcp_allow_leaves_out_rules_with_http_fields() -> None:
    (config,) = network_configs(policy(f"  action: ALLOW\n{HTTP_AND_TCP_RULES}"))
    assert config["rules"]["policies"] == {
        "ns[default]-policy[p]-rule[3]": {
            "permissions": [{"and_rules": {"rules": [or_rules({"destination_port": 5432})]}}],
            "principals": [ANY_PRINCIPAL],
        }
    }


def test_tcp_allow_made_only_of_http_rules_allows_nothing() -> None:
    (config,) = network_configs(policy("  rules: [{to: [{operation: {methods: [GET]}}]}]"))
    assert config["rules"] == {}  # ALLOW with no policy: Envoy refuses every connection


@pytest.mark.parametrize("action", ["DENY", "AUDIT"])
def test_tcp_deny_and_audit_keep_only_the_tcp_fields(action: str) -> None:
    (config,) = network_configs(policy(f"  action: {action}\n{HTTP_AND_TCP_RULES}"))
    policies = config["rules"]["policies"]
    port_only = {"and_rules": {"rules": [or_rules({"destination_port": 5432})]}}
    assert policies["ns[default]-policy[p]-rule[0]"]["permissions"] == [port_only]
    assert policies["ns[default]-policy[p]-rule[1]"]["principals"] == [
        {"and_ids": {"ids": [or_ids(identity(regex(".*/ns/a/.*")))]}}
    ]
    assert policies["ns[default]-policy[p]-rule[2]"] == {
        "permissions": [ANY_PERMISSION],
        "principals": [ANY_PRINCIPAL],  # the header condition is gone: denies every connection
    }
    assert policies["ns[default]-policy[p]-rule[3]"]["permissions"] == [port_only]


def test_http_filter_keeps_the_http_fields() -> None:
    (config,) = http_configs(policy(f"  action: ALLOW\n{HTTP_AND_TCP_RULES}"))
    assert len(config["rules"]["policies"]) == 4
