"""QuotaSpec and QuotaSpecBinding: which quotas a request to a service is charged."""

from __future__ import annotations

from meshconfig import load_documents, validate_document
from mixer.quota_specs import QuotaSpecs
from tests.support.shared import ISTIO_1_4

POLICY = ISTIO_1_4 / "samples" / "bookinfo" / "policy"


def specs_from(file: str) -> QuotaSpecs:
    text = (POLICY / file).read_text()
    return QuotaSpecs.from_resources(validate_document(d) for d in load_documents(text))


def test_productpage_binding_charges_productpage_only() -> None:
    specs = specs_from("mixer-rule-productpage-ratelimit.yaml")
    productpage = {"destination.service.host": "productpage.default.svc.cluster.local"}
    assert specs.charges(productpage) == {"requestcountquota": 1}
    assert specs.charges({"destination.service.host": "ratings.default.svc.cluster.local"}) == {}
    assert specs.charges({}) == {}


def test_bare_service_names_match_any_namespace() -> None:
    specs = specs_from("mixer-rule-ratings-ratelimit.yaml")
    assert specs.charges(
        {"destination.service.name": "ratings", "destination.service.namespace": "default"}
    ) == {"requestcountquota": 1}


def test_rule_matches_and_wildcard_service() -> None:
    documents = load_documents(
        """
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpec
metadata: {name: api, namespace: default}
spec:
  rules:
  - match:
    - clause: {request.path: {prefix: /api}}
    quotas: [{quota: apiquota, charge: 3}]
  - quotas: [{quota: all}]
---
apiVersion: config.istio.io/v1alpha2
kind: QuotaSpecBinding
metadata: {name: api, namespace: default}
spec:
  services: [{service: "*"}]
  quotaSpecs: [{name: api}]
"""
    )
    specs = QuotaSpecs.from_resources(validate_document(d) for d in documents)
    assert specs.charges({"request.path": "/api/v1"}) == {"apiquota": 3, "all": 1}
    assert specs.charges({"request.path": "/"}) == {"all": 1}
