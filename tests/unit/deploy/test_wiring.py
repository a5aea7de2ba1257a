"""The base hangs together: every command line is one its service's CLI accepts, every address
names a Service port that reaches a container port, the webhooks reach their servers, RBAC
grants exactly what each service reads, and the in-cluster injector is `meshctl kube-inject`
with its defaults.
"""

from __future__ import annotations

import argparse
import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.injector import InjectionConfig
from agent.injector.cli import config_from
from agent.injector.config import DEFAULT_IMAGE
from galley.sources.kubernetes import default_kinds
from tests.unit.deploy.conftest import BASE, Find

DEPLOYMENTS = ("istio-galley", "istiod", "istio-citadel", "istio-mixer", "istio-sidecar-injector")
_ADDRESS = re.compile(r"\b([a-z0-9-]+)\.istio-system\.svc:(\d+)\b")
_ENV_REFERENCE = re.compile(r"\$\((\w+)\)")


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _expanded_args(container: dict[str, Any]) -> list[str]:
    """The arguments as the kubelet runs them: $(VAR) replaced from the container's env."""
    env = {item["name"]: item["value"] for item in container.get("env", ()) if "value" in item}
    return [_ENV_REFERENCE.sub(lambda match: env[match[1]], arg) for arg in container["args"]]


def _parse(module: str, args: list[str]) -> argparse.Namespace:
    parsed: argparse.Namespace = importlib.import_module(f"{module}.__main__").parse_args(args)
    return parsed


def _mesh_config(find: Find) -> str:
    mesh: str = find("ConfigMap", "istio")["data"]["mesh"]
    return mesh


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_each_command_line_is_accepted_by_its_service(name: str, find: Find) -> None:
    container = _container(find("Deployment", name))
    python, flag, module = container["command"]

    assert (python, flag) == ("python", "-m")
    _parse(module, _expanded_args(container))


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_each_service_reaches_its_deployments_ports(name: str, find: Find) -> None:
    deployment, service = find("Deployment", name), find("Service", name)
    template = deployment["spec"]["template"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    container_ports = {
        port["containerPort"]: port["name"] for port in _container(deployment)["ports"]
    }

    assert selector.items() <= template["metadata"]["labels"].items()
    assert service["spec"]["selector"] == selector
    for port in service["spec"]["ports"]:
        target = port.get("targetPort", port["port"])
        assert target in container_ports, f"{name} port {port['name']} reaches no container port"
        assert container_ports[target] == port["name"]


def _addresses(find: Find) -> Iterator[tuple[str, str, int]]:
    texts = [("the mesh config", _mesh_config(find))]
    texts += [
        (name, " ".join(_container(find("Deployment", name))["args"])) for name in DEPLOYMENTS
    ]
    for where, text in texts:
        for service, port in _ADDRESS.findall(text):
            yield where, service, int(port)


def test_every_address_is_a_service_port(find: Find) -> None:
    addresses = list(_addresses(find))
    assert len(addresses) >= 4  # pilot's and mixer's galley, pilot, citadel
    for where, service, port in addresses:
        ports = {item["port"] for item in find("Service", service)["spec"]["ports"]}
        assert port in ports, f"{where} names {service}:{port}, a port the Service lacks"


def test_the_cluster_injector_injects_as_kube_inject_does_by_default(
    find: Find, tmp_path: Path
) -> None:
    container = _container(find("Deployment", "istio-sidecar-injector"))
    args = _expanded_args(container)
    mesh = tmp_path / "mesh"
    mesh.write_text(_mesh_config(find))
    args[args.index("--mesh-config") + 1] = str(mesh)

    assert config_from(_parse("agent.injector", args)) == InjectionConfig()


def test_every_container_runs_the_project_image(manifests: list[dict[str, Any]]) -> None:
    deployments = [doc for doc in manifests if doc["kind"] == "Deployment"]
    for deployment in deployments:
        container = _container(deployment)
        assert container["image"] == DEFAULT_IMAGE
        for item in container.get("env", ()):
            if item["name"] == "PROXY_IMAGE":
                assert item["value"] == DEFAULT_IMAGE


def test_the_mutating_webhook_sends_new_pods_of_injected_namespaces_to_the_injector(
    find: Find,
) -> None:
    [webhook] = find("MutatingWebhookConfiguration", "istio-sidecar-injector")["webhooks"]
    service = webhook["clientConfig"]["service"]
    [port] = [p for p in find("Service", service["name"])["spec"]["ports"] if p["port"] == 443]
    args = _container(find("Deployment", service["name"]))["args"]

    assert (service["namespace"], service["path"]) == ("istio-system", "/inject")
    assert args[args.index("--port") + 1] == str(port["targetPort"])
    assert webhook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert webhook["namespaceSelector"] == {"matchLabels": {"istio-injection": "enabled"}}
    assert webhook["objectSelector"]["matchExpressions"] == [
        {"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]}
    ]
    assert webhook["admissionReviewVersions"] == ["v1"]


def test_the_validating_webhook_sends_istio_config_to_galley(
    find: Find, manifests: list[dict[str, Any]]
) -> None:
    [webhook] = find("ValidatingWebhookConfiguration", "istio-galley-istio-system")["webhooks"]
    service = webhook["clientConfig"]["service"]
    [port] = [p for p in find("Service", service["name"])["spec"]["ports"] if p["port"] == 443]
    args = _container(find("Deployment", service["name"]))["args"]
    crd_groups = {
        doc["spec"]["group"] for doc in manifests if doc["kind"] == "CustomResourceDefinition"
    }
    [rule] = webhook["rules"]

    assert (service["namespace"], service["path"]) == ("istio-system", "/validate")
    assert args[args.index("--webhook-port") + 1] == str(port["targetPort"])
    assert set(rule["apiGroups"]) == crd_groups
    assert rule["operations"] == ["CREATE", "UPDATE"]
    assert webhook["admissionReviewVersions"] == ["v1"]


def _rules(find: Find, kind: str, name: str) -> set[tuple[str, str, str, str]]:
    """(group, resource, verb, resourceName or "") for every grant of the role."""
    return {
        (group, resource, verb, resource_name)
        for rule in find(kind, name)["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for resource_name in rule.get("resourceNames", [""])
    }


def test_galley_may_read_exactly_the_kinds_it_watches(find: Find) -> None:
    expected = {
        (kind.group, kind.plural, verb, "")
        for kind in default_kinds()
        for verb in ("get", "list", "watch")
    }
    assert _rules(find, "ClusterRole", "istio-galley-istio-system") == expected


def test_citadel_may_review_tokens_and_keep_only_its_ca_secrets(find: Find) -> None:
    assert _rules(find, "ClusterRole", "istio-citadel-istio-system") == {
        ("authentication.k8s.io", "tokenreviews", "create", "")
    }
    assert _rules(find, "Role", "istio-citadel") == {
        ("", "secrets", "get", "istio-ca-secret"),
        ("", "secrets", "get", "cacerts"),
        ("", "secrets", "update", "istio-ca-secret"),
        ("", "secrets", "create", ""),
    }


def test_each_role_is_bound_to_its_services_account_only(
    find: Find, manifests: list[dict[str, Any]]
) -> None:
    bindings = [doc for doc in manifests if doc["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    bound = set()
    for binding in bindings:
        role = binding["roleRef"]
        find(role["kind"], role["name"])
        [subject] = binding["subjects"]
        find("ServiceAccount", subject["name"])
        bound.add(subject["name"])
    assert bound == {"istio-galley-service-account", "istio-citadel-service-account"}


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_only_services_that_call_the_api_get_a_token(name: str, find: Find) -> None:
    pod = find("Deployment", name)["spec"]["template"]["spec"]
    account = find("ServiceAccount", pod["serviceAccountName"])
    calls_the_api = name in ("istio-galley", "istio-citadel")

    assert account.get("automountServiceAccountToken", True) is calls_the_api


def test_every_secret_the_base_does_not_create_is_documented(
    manifests: list[dict[str, Any]],
) -> None:
    readme = (BASE.parent / "README.md").read_text()
    secrets = {
        volume["secret"]["secretName"]
        for doc in manifests
        if doc["kind"] == "Deployment"
        for volume in doc["spec"]["template"]["spec"].get("volumes", ())
        if "secret" in volume
    }
    assert secrets == {"istiod-tls", "istio-mixer-tls", "istio-sidecar-injector-tls"}
    for secret in secrets:
        assert f"`{secret}`" in readme


def test_the_mesh_config_is_yaml_with_the_addresses_the_sidecars_use(find: Find) -> None:
    mesh = yaml.safe_load(_mesh_config(find))

    assert mesh["trustDomain"] == "cluster.local"
    assert mesh["defaultConfig"]["discoveryAddress"] == InjectionConfig().pilot
    assert mesh["defaultConfig"]["proxyMetadata"]["CA_ADDR"] == InjectionConfig().citadel
