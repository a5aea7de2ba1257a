"""Which pods get a sidecar: Istio's injection policy."""

from __future__ import annotations

from typing import Any

import pytest

from agent.injector import skip_reason


def pod(
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    namespace: str = "default",
    **spec: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "app", "namespace": namespace}
    if labels is not None:
        metadata["labels"] = labels
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"metadata": metadata, "spec": {"containers": [{"name": "app"}], **spec}}


def test_a_plain_pod_is_injected() -> None:
    assert skip_reason(pod()) is None


@pytest.mark.parametrize("value", ["true", "y", "YES", "on", ""])
def test_an_annotation_that_says_yes_or_nothing_injects(value: str) -> None:
    assert skip_reason(pod(annotations={"sidecar.istio.io/inject": value})) is None


@pytest.mark.parametrize("value", ["false", "no", "off", "nonsense"])
def test_an_annotation_saying_anything_else_opts_out(value: str) -> None:
    reason = skip_reason(pod(annotations={"sidecar.istio.io/inject": value}))
    assert reason == f"sidecar.istio.io/inject is {value!r}"


def test_the_label_wins_over_the_annotation() -> None:
    opted_in = pod(
        labels={"sidecar.istio.io/inject": "true"}, annotations={"sidecar.istio.io/inject": "false"}
    )
    opted_out = pod(
        labels={"sidecar.istio.io/inject": "false"}, annotations={"sidecar.istio.io/inject": "true"}
    )

    assert skip_reason(opted_in) is None
    assert skip_reason(opted_out) is not None


def test_host_network_pods_are_never_injected() -> None:
    forced = pod(annotations={"sidecar.istio.io/inject": "true"}, hostNetwork=True)
    assert skip_reason(forced) == "the pod uses the host's network"


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease"])
def test_kubernetes_own_namespaces_are_never_injected(namespace: str) -> None:
    assert skip_reason(pod(namespace=namespace)) == f"namespace {namespace} is never injected"


def test_the_requests_namespace_counts_when_the_pod_has_none() -> None:
    unnamespaced = pod(namespace="")
    assert skip_reason(unnamespaced, "kube-system") is not None
    assert skip_reason(unnamespaced, "default") is None


def test_an_injected_pod_is_not_injected_again() -> None:
    marked = pod(annotations={"sidecar.istio.io/status": "{}"})
    with_proxy = pod()
    with_proxy["spec"]["containers"].append({"name": "istio-proxy"})

    assert skip_reason(marked) == "the pod already has a sidecar"
    assert skip_reason(with_proxy) == "the pod already has a sidecar"


def test_a_template_without_metadata_or_spec_is_injected() -> None:
    assert skip_reason({}) is None
