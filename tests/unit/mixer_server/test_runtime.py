"""The runtime: handlers built through the adapter registry, kept across configurations while
their params stay the same, and snapshots with problems refused whole."""

from __future__ import annotations

import textwrap

import pytest

from meshconfig import Resource, load_documents, validate_document
from meshconfig.policy.attributes import AttributeBag
from mixer.adapters.base import Environment, Handler, QuotaArgs, UnsupportedTemplate
from mixer.runtime import ConfigError, HandlerPool
from tests.support.shared import ISTIO_1_4

POLICY = ISTIO_1_4 / "samples" / "bookinfo" / "policy"


def resources(text: str) -> list[Resource]:
    return [validate_document(d) for d in load_documents(textwrap.dedent(text))]


def sample(name: str) -> list[Resource]:
    return resources((POLICY / name).read_text())


def ratings_request(app: str, version: str) -> AttributeBag:
    return AttributeBag(
        {
            "source.labels": {"app": app, "version": version},
            "destination.labels": {"app": "ratings"},
            "destination.service.host": "ratings.default.svc.cluster.local",
            "destination.service.name": "ratings",
            "destination.service.namespace": "default",
        }
    )


async def test_preconditions_follow_the_rules_and_record_references() -> None:
    pool = HandlerPool(Environment())
    runtime = await pool.runtime(sample("mixer-rule-deny-label.yaml"))
    denied = await runtime.preconditions(ratings_request("reviews", "v3"))
    allowed = await runtime.preconditions(ratings_request("reviews", "v2"))
    assert (denied.status.code, allowed.status.code) == (7, 0)
    assert {(r.name, r.key) for r in denied.referenced} >= {
        ("destination.labels", "app"),
        ("source.labels", "version"),
    }
    await pool.close()


async def test_quota_state_survives_an_unrelated_change() -> None:
    pool = HandlerPool(Environment())
    quota = sample("mixer-rule-ratings-ratelimit.yaml")
    first = await pool.runtime(quota)
    bag = ratings_request("reviews", "v2")
    charges = first.quota_charges(bag)
    assert charges == {"requestcountquota": QuotaArgs(1)}
    assert (await first.quotas(bag, charges))["requestcountquota"].granted == 1
    second = await pool.runtime([*quota, *sample("mixer-rule-deny-label.yaml")])
    await pool.retire_unused()
    # The same memquota handler (same params) still remembers the first request.
    assert (await second.quotas(bag, charges))["requestcountquota"].granted == 0
    await pool.close()


async def test_bad_params_and_unknown_adapters_refuse_the_snapshot() -> None:
    pool = HandlerPool(Environment())
    bad_params = resources(
        """
        apiVersion: config.istio.io/v1alpha2
        kind: handler
        metadata: {name: deny, namespace: istio-system}
        spec: {compiledAdapter: denier, params: {status: {code: seven}}}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: instance
        metadata: {name: nothing, namespace: istio-system}
        spec: {compiledTemplate: checknothing}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: rule
        metadata: {name: deny, namespace: istio-system}
        spec: {actions: [{handler: deny, instances: [nothing]}]}
        """
    )
    with pytest.raises(ConfigError, match=r"handler deny\.handler\.istio-system: params"):
        await pool.runtime(bad_params)
    not_compiled_in = resources(
        """
        apiVersion: config.istio.io/v1alpha2
        kind: handler
        metadata: {name: logs, namespace: istio-system}
        spec: {compiledAdapter: fluentd, params: {address: "fluentd:24224"}}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: instance
        metadata: {name: entry, namespace: istio-system}
        spec: {compiledTemplate: logentry, params: {severity: '"info"'}}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: rule
        metadata: {name: logs, namespace: istio-system}
        spec: {actions: [{handler: logs, instances: [entry]}]}
        """
    )
    with pytest.raises(ConfigError, match="adapter 'fluentd' is not compiled into Mixer"):
        await pool.runtime(not_compiled_in)
    await pool.close()


def test_a_handler_refuses_work_its_adapter_did_not_declare() -> None:
    handler = Handler()
    with pytest.raises(UnsupportedTemplate, match="does not take reports"):
        handler.report([])
