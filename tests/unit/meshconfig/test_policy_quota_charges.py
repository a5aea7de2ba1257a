"""QuotaSpec and QuotaSpecBinding compiled: which quotas a request to a service is charged, and
the problems compiling finds (clauses on attributes that are not STRINGs, regexes that do not
compile), all through `compile_mixer_config` as mixer and galley use it."""

from __future__ import annotations

import textwrap

import pytest

from meshconfig import Resource, load_documents, validate_document
from meshconfig.policy.attributes import AttributeBag
from meshconfig.policy.compiled import MixerConfig, compile_mixer_config, validate_mixer_resources
from tests.support.shared import ISTIO_1_4

POLICY = ISTIO_1_4 / "samples" / "bookinfo" / "policy"


def resources(text: str) -> list[Resource]:
    return [validate_document(d) for d in load_documents(textwrap.dedent(text))]


def sample(file: str) -> MixerConfig:
    config = compile_mixer_config(resources((POLICY / file).read_text()))
    assert config.problems == ()
    return config


def test_productpage_binding_charges_productpage_only() -> None:
    config = sample("mixer-rule-productpage-ratelimit.yaml")
    productpage = {"destination.service.host": "productpage.default.svc.cluster.local"}
    assert config.quota_charges(AttributeBag(productpage)) == {"requestcountquota": 1}
    ratings = {"destination.service.host": "ratings.default.svc.cluster.local"}
    assert config.quota_charges(AttributeBag(ratings)) == {}
    assert config.quota_charges(AttributeBag({})) == {}


def test_bare_service_names_match_any_namespace() -> None:
    # Istio's ratings rate-limit binding lives in istio-system and names `ratings` bare.
    config = sample("mixer-rule-ratings-ratelimit.yaml")
    by_name = {"destination.service.name": "ratings", "destination.service.namespace": "default"}
    assert config.quota_charges(AttributeBag(by_name)) == {"requestcountquota": 1}
    elsewhere = {"destination.service.host": "reviews.other.svc.cluster.local"}
    assert config.quota_charges(AttributeBag(elsewhere)) == {"requestcountquota": 1}
    assert config.quota_charges(AttributeBag({"destination.service.name": "mongodb"})) == {}


def test_services_by_namespace_domain_and_labels() -> None:
    config = compile_mixer_config(
        resources(
            """
            apiVersion: config.istio.io/v1alpha2
            kind: QuotaSpec
            metadata: {name: q, namespace: default}
            spec: {rules: [{quotas: [{quota: q}]}]}
            ---
            apiVersion: config.istio.io/v1alpha2
            kind: QuotaSpecBinding
            metadata: {name: b, namespace: default}
            spec:
              services:
              - {name: ratings, namespace: prod, domain: svc.cluster.local, labels: {v: "1"}}
              quotaSpecs: [{name: q, namespace: default}]
            """
        )
    )
    host = "ratings.prod.svc.cluster.local"
    labelled = {"destination.service.host": host, "destination.labels": {"v": "1"}}
    assert config.quota_charges(AttributeBag(labelled)) == {"q": 1}
    assert config.quota_charges(AttributeBag({"destination.service.host": host})) == {}
    other_ns = {**labelled, "destination.service.host": "ratings.dev.svc.cluster.local"}
    assert config.quota_charges(AttributeBag(other_ns)) == {}
    other_domain = {**labelled, "destination.service.host": "ratings.prod.example.com"}
    assert config.quota_charges(AttributeBag(other_domain)) == {}


QUOTA_SPECS = """
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpec
metadata: {name: q, namespace: default}
spec:
  rules:
  - match:
    - clause: {request.path: {prefix: /books}, request.method: {exact: POST}}
    - clause: {request.path: {regex: "/admin/[0-9]+"}}
    quotas: [{quota: writes, charge: 3}]
  - quotas: [{quota: all}]
  - match: [{clause: {request.path: {prefix: /admin}}}]
    quotas: [{quota: all, charge: 2}]
---
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpecBinding
metadata: {name: b, namespace: default}
spec:
  services: [{service: "*"}]
  quotaSpecs: [{name: q}, {name: missing}]
---
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpecBinding
metadata: {name: again, namespace: default}
spec:
  services: [{service: "*"}]
  quotaSpecs: [{name: q}]
"""


@pytest.mark.parametrize(
    ("attributes", "charged"),
    [
        ({"request.path": "/books/1", "request.method": "POST"}, {"writes": 3, "all": 1}),
        ({"request.path": "/books/1", "request.method": "GET"}, {"all": 1}),
        ({"request.path": "/admin/12"}, {"writes": 3, "all": 3}),
        ({"request.path": "/admin/12/x"}, {"all": 3}),
        ({}, {"all": 1}),
    ],
)
def test_rules_match_and_charges_add_up(
    attributes: dict[str, str], charged: dict[str, int]
) -> None:
    # A spec bound twice counts once; a binding's reference to a missing spec charges nothing.
    config = compile_mixer_config(resources(QUOTA_SPECS))
    assert config.problems == ()
    assert config.quota_charges(AttributeBag(attributes)) == charged


def test_no_bindings_no_charges() -> None:
    assert compile_mixer_config([]).quota_charges(AttributeBag({"request.path": "/"})) == {}


def test_clauses_must_be_string_attributes_and_regexes_must_compile() -> None:
    (error,) = validate_mixer_resources(
        resources(
            """
            apiVersion: config.istio.io/v1alpha2
            kind: QuotaSpec
            metadata: {name: q, namespace: default}
            spec:
              rules:
              - match: [{clause: {request.size: {exact: "1"}, request.path: {regex: "("}}}]
              - match: [{clause: {a.b: {}}}]
            """
        )
    )
    assert error.resource == "QuotaSpec default/q"
    found = [str(e) for e in error.errors]
    assert found[0] == (
        "spec.rules[0].match[0].clause.request.size: a INT64: clauses match STRING attributes"
    )
    assert found[1].startswith("spec.rules[0].match[0].clause.request.path.regex: invalid regex")
    assert found[2] == (
        "spec.rules[1].match[0].clause.a.b: unknown attribute: clauses match STRING attributes"
    )
