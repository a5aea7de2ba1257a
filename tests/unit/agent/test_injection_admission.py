"""The injector's AdmissionReview answers, without sockets."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonpatch
import pytest

from agent.injector import InjectionConfig, inject
from agent.injector import admission as admission_module
from agent.injector.admission import admission_response
from meshcore.admission import MalformedReview

CONFIG = InjectionConfig()


def pod(**annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "web-", "labels": {"app": "web"}, "annotations": annotations},
        "spec": {"containers": [{"name": "web", "image": "web:1"}]},
    }


def review(obj: Any, operation: str = "CREATE", namespace: str = "shop") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0c9d-42",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "operation": operation,
            "namespace": namespace,
            "object": obj,
        },
    }


def test_a_new_pod_gets_a_json_patch_to_the_injected_pod() -> None:
    answer = admission_response(review(pod()), CONFIG)
    response = answer["response"]

    assert (answer["apiVersion"], answer["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    assert (response["uid"], response["allowed"], response["patchType"]) == (
        "0c9d-42",
        True,
        "JSONPatch",
    )
    patch = json.loads(base64.b64decode(response["patch"]))
    assert jsonpatch.apply_patch(pod(), patch) == inject(pod(), CONFIG)


@pytest.mark.parametrize(
    "body",
    [
        review(pod(**{"sidecar.istio.io/inject": "false"})),
        review(pod(), operation="UPDATE"),
        review(pod(), namespace="kube-system"),
    ],
    ids=["opted-out", "update", "kube-system"],
)
def test_a_pod_the_policy_skips_is_allowed_unchanged(body: dict[str, Any]) -> None:
    assert admission_response(body, CONFIG)["response"] == {"uid": "0c9d-42", "allowed": True}


def test_a_pod_that_cannot_be_injected_is_let_through_with_a_warning() -> None:
    bad = pod(**{"traffic.sidecar.istio.io/excludeInboundPorts": "http"})

    response = admission_response(review(bad), CONFIG)["response"]

    assert response["allowed"] is True
    assert "patch" not in response
    [warning] = response["warnings"]
    assert warning.startswith("sidecar not injected: traffic.sidecar.istio.io/excludeInboundPorts")


def test_a_fault_of_ours_also_lets_the_pod_through(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("bug")

    monkeypatch.setattr(admission_module, "inject", broken)

    response = admission_response(review(pod()), CONFIG)["response"]

    assert response == {
        "uid": "0c9d-42",
        "allowed": True,
        "warnings": ["sidecar not injected: bug"],
    }
    assert "injecting shop/web-* failed" in caplog.text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "expected a JSON object"),
        ({**review(pod()), "apiVersion": "admission.k8s.io/v1beta1"}, "expected apiVersion"),
        ({**review(pod()), "request": None}, "request is required"),
        ({**review(pod()), "request": {"object": pod()}}, "request.uid is required"),
        ({**review(pod()), "request": {"uid": "u"}}, "request.object is required"),
    ],
)
def test_a_body_that_is_no_admission_review_is_malformed(body: Any, message: str) -> None:
    with pytest.raises(MalformedReview, match=message):
        admission_response(body, CONFIG)
