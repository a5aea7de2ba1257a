"""`meshctl kube-inject`: every pod template in a manifest gets the webhook's sidecar."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agent.injector import InjectionConfig, inject
from meshctl.__main__ import main
from meshctl.kube_inject import TEMPLATE_PATHS, inject_document
from tests.support.shared import ISTIO

BOOKINFO = ISTIO / "samples" / "bookinfo" / "platform" / "kube" / "bookinfo.yaml"
TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "web", "image": "web:1"}]},
}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[Any], str]:
    code = main(["kube-inject", *args])
    captured = capsys.readouterr()
    documents = list(yaml.safe_load_all(captured.out)) if code == 0 else []
    return code, documents, captured.err


def proxies(document: dict[str, Any]) -> list[str]:
    template = document["spec"]["template"]
    return [c["name"] for c in template["spec"]["containers"] if c["name"] == "istio-proxy"]


def test_bookinfo_deployments_get_a_sidecar_and_the_rest_passes_through(
    capsys: pytest.CaptureFixture[str],
) -> None:
    original = [doc for doc in yaml.safe_load_all(BOOKINFO.read_text()) if doc]

    code, documents, _ = run(capsys, "-f", str(BOOKINFO))

    assert code == 0
    assert len(documents) == len(original)
    for before, after in zip(original, documents, strict=True):
        if before["kind"] != "Deployment":
            assert after == before
            continue
        assert proxies(after) == ["istio-proxy"]
        assert after["spec"]["template"] == inject(
            before["spec"]["template"], InjectionConfig(), workload=before["metadata"]["name"]
        )
        kubernetes_validate.validate(after, kubernetes_validate.latest_version(), strict=True)


def _workload(kind: str) -> dict[str, Any]:
    document: dict[str, Any] = {"kind": kind, "metadata": {"name": "web"}}
    node = document
    path = TEMPLATE_PATHS[kind]
    if not path:
        return {**document, **TEMPLATE}
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = TEMPLATE
    return document


@pytest.mark.parametrize("kind", sorted(TEMPLATE_PATHS))
def test_every_workload_kind_has_its_template_injected(kind: str) -> None:
    injected = inject_document(_workload(kind), InjectionConfig())

    node = injected
    for key in TEMPLATE_PATHS[kind]:
        node = node[key]
    assert [c["name"] for c in node["spec"]["containers"]] == ["web", "istio-proxy"]
    if kind != "Pod":
        assert injected["metadata"] == {"name": "web"}


def test_lists_are_injected_item_by_item() -> None:
    listed = {"kind": "List", "items": [_workload("Deployment"), {"kind": "Service"}]}

    injected = inject_document(listed, InjectionConfig())

    assert proxies(injected["items"][0]) == ["istio-proxy"]
    assert injected["items"][1] == {"kind": "Service"}


def test_templates_the_policy_skips_are_unchanged() -> None:
    opted_out = _workload("Deployment")
    opted_out["spec"]["template"] = {
        **TEMPLATE,
        "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
    }
    host_network = _workload("DaemonSet")
    host_network["spec"]["template"] = {
        **TEMPLATE,
        "spec": {**TEMPLATE["spec"], "hostNetwork": True},
    }

    for document in (opted_out, host_network, {"kind": "Deployment", "spec": {}}, "text"):
        assert inject_document(document, InjectionConfig()) == document


def test_the_workloads_name_is_the_canonical_name_without_app_labels() -> None:
    document = _workload("StatefulSet")
    document["spec"]["template"] = {"spec": TEMPLATE["spec"]}

    injected = inject_document(document, InjectionConfig())

    labels = injected["spec"]["template"]["metadata"]["labels"]
    assert labels["service.istio.io/canonical-name"] == "web"


def test_settings_flags_and_output_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifest, output, mesh = tmp_path / "in.yaml", tmp_path / "out.yaml", tmp_path / "mesh"
    manifest.write_text(yaml.safe_dump(_workload("Deployment")))
    mesh.write_text("defaultConfig: {discoveryAddress: pilot.mesh:15011}\n")

    code, _, _ = run(
        capsys,
        *("-f", str(manifest), "-o", str(output), "--proxy-image", "img:2"),
        *("--mesh-config", str(mesh), "--cni", "--cluster-id", "east"),
    )

    assert code == 0
    expected = InjectionConfig(image="img:2", pilot="pilot.mesh:15011", cluster_id="east", cni=True)
    assert yaml.safe_load(output.read_text()) == inject_document(_workload("Deployment"), expected)


def test_stdin_is_read_for_dash(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(yaml.safe_dump(_workload("Job"))))

    code, documents, _ = run(capsys, "-f", "-")

    assert code == 0
    assert documents == [inject_document(_workload("Job"), InjectionConfig())]


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, (), "No such file"),
        ("kind: [", (), "while parsing"),
        (
            "kind: Deployment\nmetadata: {name: api}\nspec:\n  template:\n    metadata:\n"
            "      annotations: {traffic.sidecar.istio.io/excludeInboundPorts: http}\n",
            (),
            "Deployment api: traffic.sidecar.istio.io/excludeInboundPorts: 'http'",
        ),
        ("kind: Service\n", ("--mesh-config", "MESH"), "trustDomain must be"),
    ],
    ids=["missing", "not-yaml", "bad-annotation", "bad-mesh-config"],
)
def test_unusable_input_exits_2_saying_why(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    content: str | None,
    extra: tuple[str, ...],
    message: str,
) -> None:
    manifest, mesh = tmp_path / "in.yaml", tmp_path / "mesh"
    mesh.write_text("trustDomain: 7\n")
    if content is not None:
        manifest.write_text(content)

    code, _, err = run(
        capsys, "-f", str(manifest), *(str(mesh) if a == "MESH" else a for a in extra)
    )

    assert code == 2
    assert message in err


def test_a_bare_pods_workload_is_derived_as_the_webhook_derives_it() -> None:
    owned = {
        "kind": "Pod",
        "metadata": {
            "name": "web-7c9-x2",
            "labels": {"pod-template-hash": "7c9"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7c9", "controller": True}],
        },
        "spec": TEMPLATE["spec"],
    }

    injected = inject_document(owned, InjectionConfig())

    assert injected["metadata"]["labels"]["service.istio.io/canonical-name"] == "web"
