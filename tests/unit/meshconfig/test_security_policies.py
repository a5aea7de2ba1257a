"""security.istio.io kinds: valid policies are accepted, each broken variant names its field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from meshconfig import ConfigValidationError, Resource, validate_document
from meshconfig.security import AuthorizationPolicySpec, PeerAuthenticationSpec

VALID = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-viewer, namespace: bookinfo}
spec:
  selector:
    matchLabels: {app: reviews}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/bookinfo/sa/bookinfo-productpage"]
        ipBlocks: ["10.0.0.0/8", "192.168.1.7", "fd00::/8"]
    to:
    - operation:
        methods: [GET, HEAD]
        paths: ["/reviews/*", "/api/{*}/ratings"]
        ports: ["9080"]
    when:
    - key: request.headers[x-user]
      values: [jason]
    - key: request.auth.claims[groups][admin]
      notValues: ["false"]
    - key: source.ip
      values: ["10.1.2.3", "10.2.0.0/16"]
    - key: destination.port
      values: ["9080"]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: bookinfo}
spec:
  action: DENY
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: istio-system}
spec:
  targetRefs:
  - {group: gateway.networking.k8s.io, kind: Gateway, name: ingress}
  action: CUSTOM
  provider: {name: oauth2-proxy}
  rules:
  - to:
    - operation:
        hosts: ["*.example.com"]
        notPaths: ["/oauth2/*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-service-account}
spec:
  action: AUDIT
  rules:
  - from:
    - source:
        serviceAccounts: [bookinfo/bookinfo-productpage]
        trustDomains: [cluster.local]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: ratings, namespace: bookinfo}
spec:
  selector:
    matchLabels: {app: ratings}
  mtls: {mode: PERMISSIVE}
  portLevelMtls:
    9080: {mode: DISABLE}
    "15021": {mode: UNSET}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: bookinfo}
spec:
  selector:
    matchLabels: {app: productpage}
  jwtRules:
  - issuer: testing@secure.istio.io
    jwksUri: https://raw.githubusercontent.com/istio/istio/release-1.20/security/tools/jwt/samples/jwks.json
    audiences: [bookinfo]
    fromHeaders: [{name: x-jwt-assertion, prefix: "Bearer "}]
    fromParams: [token]
    fromCookies: [session]
    forwardOriginalToken: true
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders: [{header: x-jwt-sub, claim: sub}]
    spaceDelimitedClaims: [scope]
    timeout: 5s
    presence: REQUIRED
  - issuer: inline@example.com
    jwks: '{"keys": [{"kty": "RSA", "e": "AQAB", "n": "xAE7eB6q"}]}'
  - jwks_uri: http://keys.example.com:8080/jwks.json
"""


def documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(VALID) if d]


@pytest.mark.parametrize("document", documents(), ids=lambda d: d["metadata"]["name"])
def test_valid_documents_are_accepted(document: dict[str, Any]) -> None:
    resource = validate_document(document, "test.yaml")
    assert isinstance(resource, Resource)
    assert resource.kind.group == "security.istio.io"


def test_models_keep_the_fields_and_round_trip() -> None:
    by_name = {d["metadata"]["name"]: validate_document(d) for d in documents()}
    viewer = by_name["reviews-viewer"].spec
    assert isinstance(viewer, AuthorizationPolicySpec)
    assert viewer.rules is not None and viewer.rules[0].from_ is not None
    source = viewer.rules[0].from_[0].source
    assert source is not None and source.ip_blocks == ["10.0.0.0/8", "192.168.1.7", "fd00::/8"]
    ratings = by_name["ratings"].spec
    assert isinstance(ratings, PeerAuthenticationSpec)
    assert ratings.port_level_mtls is not None and set(ratings.port_level_mtls) == {"9080", "15021"}
    dumped = by_name["reviews-viewer"].spec_dict()
    assert dumped["rules"][0]["from"][0]["source"]["ipBlocks"][0] == "10.0.0.0/8"
    again = validate_document(by_name["jwt"].to_document())
    assert again.spec == by_name["jwt"].spec


def base(name: str) -> dict[str, Any]:
    return copy.deepcopy(next(d for d in documents() if d["metadata"]["name"] == name))


def errors_of(document: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigValidationError) as caught:
        validate_document(document, "policy.yaml")
    return [str(error) for error in caught.value.errors]


DELETE = object()


def mutated(name: str, path: str, value: Any) -> dict[str, Any]:
    """`base(name)` with the value at a dotted path (`spec.rules.0.from`) replaced or deleted."""
    document = base(name)
    *parents, last = path.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return document


VIEWER_SOURCE = "spec.rules.0.from.0.source"
VIEWER_OPERATION = "spec.rules.0.to.0.operation"
VIEWER_WHEN = "spec.rules.0.when"
SOURCE_AT = "spec.rules[0].from[0].source"
OPERATION_AT = "spec.rules[0].to[0].operation"

CASES = [
    # schema: types, unknown fields, enums, required fields, limits
    ("reviews-viewer", "spec.action", "PERMIT", "spec.action", "Input should be 'ALLOW'"),
    ("reviews-viewer", "spec.rules.0.to", "nope", "spec.rules[0].to", "valid list"),
    ("reviews-viewer", f"{VIEWER_OPERATION}.ports", [9080], f"{OPERATION_AT}.ports[0]", "string"),
    ("reviews-viewer", f"{VIEWER_SOURCE}.principal", ["x"], f"{SOURCE_AT}.principal", "Extra"),
    ("reviews-viewer", "spec.rules.0.when.0.key", DELETE, "spec.rules[0].when[0].key", "required"),
    (
        "reviews-viewer",
        "spec.selector.matchLabels.app",
        "r" * 64,
        "spec.selector.matchLabels.app",
        "63",
    ),
    ("reviews-viewer", "spec.rules.0.from", [{}] * 513, "spec.rules[0].from", "at most 512"),
    ("ext-authz", "spec.targetRefs.0.name", DELETE, "spec.targetRefs[0].name", "required"),
    ("ext-authz", "spec.targetRefs.0.kind", "a b", "spec.targetRefs[0].kind", "pattern"),
    # CEL rules of the CRD
    (
        "reviews-viewer",
        "spec.selector.matchLabels",
        {"app*": "x"},
        "spec.selector.matchLabels.app*",
        "wildcard",
    ),
    (
        "reviews-viewer",
        "spec.selector.matchLabels",
        {"app": "r*"},
        "spec.selector.matchLabels.app",
        "wildcard",
    ),
    (
        "reviews-viewer",
        "spec.selector.matchLabels",
        {"": "x"},
        "spec.selector.matchLabels.",
        "empty",
    ),
    (
        "reviews-viewer",
        "spec.targetRef",
        {"kind": "Service", "name": "r"},
        "spec",
        "only one of targetRefs or selector",
    ),
    (
        "ext-authz",
        "spec.targetRefs.0.namespace",
        "other",
        "spec.targetRefs[0].namespace",
        "cross namespace",
    ),
    (
        "by-service-account",
        "spec.rules.0.from.0.source.namespaces",
        ["bookinfo"],
        "spec.rules[0].from[0].source",
        "cannot set serviceAccounts with namespaces",
    ),
    # Istio's semantic checks
    (
        "ext-authz",
        "spec.targetRefs.0.kind",
        "Deployment",
        "spec.targetRefs[0].kind",
        "can only target",
    ),
    ("reviews-viewer", "spec.rules.0.from", [], "spec.rules[0].from", "must not be empty"),
    ("reviews-viewer", "spec.rules.0.to", [], "spec.rules[0].to", "must not be empty"),
    (
        "reviews-viewer",
        "spec.rules.0.from.0.source",
        DELETE,
        "spec.rules[0].from[0].source",
        "must be set",
    ),
    (
        "reviews-viewer",
        "spec.rules.0.to.0.operation",
        DELETE,
        "spec.rules[0].to[0].operation",
        "must be set",
    ),
    ("reviews-viewer", VIEWER_SOURCE, {}, SOURCE_AT, "at least one field"),
    ("reviews-viewer", VIEWER_OPERATION, {"hosts": []}, OPERATION_AT, "at least one field"),
    (
        "reviews-viewer",
        f"{VIEWER_SOURCE}.principals",
        ["a", ""],
        f"{SOURCE_AT}.principals[1]",
        "empty value",
    ),
    (
        "reviews-viewer",
        f"{VIEWER_SOURCE}.ipBlocks",
        ["10.0.0.0/33"],
        f"{SOURCE_AT}.ipBlocks[0]",
        "bad CIDR range",
    ),
    (
        "reviews-viewer",
        f"{VIEWER_SOURCE}.notRemoteIpBlocks",
        ["10.0.0.300"],
        f"{SOURCE_AT}.notRemoteIpBlocks[0]",
        "bad IP address",
    ),
    ("reviews-viewer", f"{VIEWER_OPERATION}.ports", ["0"], f"{OPERATION_AT}.ports[0]", "bad port"),
    (
        "reviews-viewer",
        f"{VIEWER_OPERATION}.notPorts",
        ["65536"],
        f"{OPERATION_AT}.notPorts[0]",
        "bad port",
    ),
    (
        "reviews-viewer",
        f"{VIEWER_OPERATION}.ports",
        ["http"],
        f"{OPERATION_AT}.ports[0]",
        "bad port",
    ),
    (
        "reviews-viewer",
        f"{VIEWER_OPERATION}.paths",
        ["/{name}/{*}"],
        f"{OPERATION_AT}.paths[0]",
        "path template",
    ),
    (
        "by-service-account",
        "spec.rules.0.from.0.source.serviceAccounts",
        ["productpage"],
        "spec.rules[0].from[0].source.serviceAccounts[0]",
        "<namespace>/<name>",
    ),
    (
        "reviews-viewer",
        f"{VIEWER_WHEN}.0.key",
        "request.host",
        "spec.rules[0].when[0].key",
        "unknown attribute",
    ),
    (
        "reviews-viewer",
        f"{VIEWER_WHEN}.0.key",
        "request.headers",
        "spec.rules[0].when[0].key",
        "bad key",
    ),
    (
        "reviews-viewer",
        f"{VIEWER_WHEN}.0.key",
        "destination.labels[app]",
        "spec.rules[0].when[0].key",
        "workload selector",
    ),
    (
        "reviews-viewer",
        f"{VIEWER_WHEN}.0.key",
        "destination.namespace",
        "spec.rules[0].when[0].key",
        "metadata.namespace",
    ),
    (
        "reviews-viewer",
        f"{VIEWER_WHEN}.0.values",
        DELETE,
        "spec.rules[0].when[0]",
        "at least one of values or notValues",
    ),
    (
        "reviews-viewer",
        f"{VIEWER_WHEN}.2.values",
        ["10.1.2.3", "ten"],
        "spec.rules[0].when[2].values[1]",
        "bad IP address",
    ),
    (
        "reviews-viewer",
        f"{VIEWER_WHEN}.3.values",
        ["99999"],
        "spec.rules[0].when[3].values[0]",
        "bad port",
    ),
    ("deny-all", "spec.rules", DELETE, "spec.rules", "DENY action without rules"),
    ("deny-all", "spec.rules", [], "spec.rules", "DENY action without rules"),
    (
        "deny-all",
        "spec.provider",
        {"name": "x"},
        "spec.provider",
        "must not be set with the DENY action",
    ),
    (
        "ext-authz",
        "spec.provider",
        DELETE,
        "spec.provider.name",
        "must be set for the CUSTOM action",
    ),
    ("ext-authz", "spec.rules", DELETE, "spec.rules", "CUSTOM action without rules"),
    (
        "ext-authz",
        "spec.rules.0.from",
        [{"source": {"requestPrincipals": ["*"]}}],
        "spec.rules[0].from[0].source.requestPrincipals",
        "not supported with the CUSTOM action",
    ),
    (
        "ext-authz",
        "spec.rules.0.when",
        [{"key": "request.auth.claims[iss]", "values": ["x"]}],
        "spec.rules[0].when[0].key",
        "not supported with the CUSTOM action",
    ),
    (
        "ext-authz",
        "spec.rules.0.when",
        [{"key": "source.principal", "values": ["x"]}],
        "spec.rules[0].when[0].key",
        "not supported with the CUSTOM action",
    ),
    # PeerAuthentication
    ("default", "spec.mtls.mode", "ON", "spec.mtls.mode", "Input should be 'UNSET'"),
    ("default", "spec.mtls", {"mode": "STRICT", "enabled": True}, "spec.mtls.enabled", "Extra"),
    (
        "default",
        "spec.portLevelMtls",
        {"8080": {"mode": "DISABLE"}},
        "spec.portLevelMtls",
        "requires a selector",
    ),
    ("ratings", "spec.portLevelMtls", {}, "spec.portLevelMtls", "at least 1 item"),
    (
        "ratings",
        "spec.portLevelMtls",
        {"70000": {"mode": "STRICT"}},
        "spec.portLevelMtls.70000",
        "1-65535",
    ),
    (
        "ratings",
        "spec.portLevelMtls",
        {"http": {"mode": "STRICT"}},
        "spec.portLevelMtls.http",
        "1-65535",
    ),
    (
        "ratings",
        "spec.portLevelMtls",
        {8080: "STRICT"},
        "spec.portLevelMtls.8080",
        "valid dictionary",
    ),
    # RequestAuthentication
    ("jwt", "spec.jwtRules.0.issuer", 7, "spec.jwtRules[0].issuer", "valid string"),
    (
        "jwt",
        "spec.jwtRules.0.presence",
        "MAYBE",
        "spec.jwtRules[0].presence",
        "'OPTIONAL' or 'REQUIRED'",
    ),
    (
        "jwt",
        "spec.jwtRules.0.fromHeaders",
        [{"prefix": "Bearer "}],
        "spec.jwtRules[0].fromHeaders[0].name",
        "required",
    ),
    (
        "jwt",
        "spec.jwtRules.0.audiences",
        [""],
        "spec.jwtRules[0].audiences[0]",
        "at least 1 character",
    ),
    (
        "jwt",
        "spec.jwtRules.0.outputClaimToHeaders",
        [{"header": "x jwt", "claim": "sub"}],
        "spec.jwtRules[0].outputClaimToHeaders[0].header",
        "pattern",
    ),
    (
        "jwt",
        "spec.jwtRules.0.spaceDelimitedClaims",
        ["s"] * 65,
        "spec.jwtRules[0].spaceDelimitedClaims",
        "at most 64",
    ),
    ("jwt", "spec.jwtRules.0.timeout", "0.5ms", "spec.jwtRules[0].timeout", "greater than 1ms"),
    ("jwt", "spec.jwtRules.0.timeout", "5", "spec.jwtRules[0].timeout", "invalid duration"),
    (
        "jwt",
        "spec.jwtRules.0.jwksUri",
        "ftp://keys.example.com/jwks",
        "spec.jwtRules[0].jwksUri",
        "http:// or https://",
    ),
    (
        "jwt",
        "spec.jwtRules.0.jwksUri",
        "https://keys.example.com:port/",
        "spec.jwtRules[0].jwksUri",
        "invalid URL",
    ),
    (
        "jwt",
        "spec.jwtRules.0.jwks",
        '{"keys": [{"kty": "RSA"}]}',
        "spec.jwtRules[0]",
        "only one of jwks or jwksUri",
    ),
    (
        "jwt",
        "spec.jwtRules.0.jwks_uri",
        "https://other.example.com/",
        "spec.jwtRules[0]",
        "only one of jwks or jwksUri",
    ),
    ("jwt", "spec.jwtRules.1.jwks", "not json", "spec.jwtRules[1].jwks", "not valid JSON"),
    ("jwt", "spec.jwtRules.1.jwks", '{"keys": []}', "spec.jwtRules[1].jwks", "JSON Web Key Set"),
    (
        "jwt",
        "spec.jwtRules.1.issuer",
        DELETE,
        "spec.jwtRules[1].issuer",
        "issuer or jwksUri must be set",
    ),
    ("jwt", "spec.jwtRules", [{"issuer": "a"}] * 4097, "spec.jwtRules", "at most 4096"),
]


@pytest.mark.parametrize(("name", "path", "value", "where", "reason"), CASES)
def test_broken_variants_name_the_field(
    name: str, path: str, value: Any, where: str, reason: str
) -> None:
    found = errors_of(mutated(name, path, value))
    matching = [e for e in found if e.startswith(f"{where}: ") and reason in e]
    assert matching, f"expected {where}: ...{reason}... in {found}"


def test_all_problems_are_reported_with_source_and_resource() -> None:
    document = base("reviews-viewer")
    source = document["spec"]["rules"][0]["from"][0]["source"]
    source["ipBlocks"] = ["nope", "10.0.0.0/8", "1.2.3.4/99"]
    with pytest.raises(ConfigValidationError) as caught:
        validate_document(document, "authz.yaml")
    lines = str(caught.value).splitlines()
    prefix = "authz.yaml: AuthorizationPolicy bookinfo/reviews-viewer: "
    assert lines == [
        f"{prefix}spec.rules[0].from[0].source.ipBlocks[0]: bad IP address 'nope'",
        f"{prefix}spec.rules[0].from[0].source.ipBlocks[2]: bad CIDR range '1.2.3.4/99'",
    ]


def test_served_versions() -> None:
    document = base("default")
    document["apiVersion"] = "security.istio.io/v1alpha1"
    expected = r"version 'v1alpha1' of PeerAuthentication is not served"
    with pytest.raises(ConfigValidationError, match=expected):
        validate_document(document)
