"""kubernetesenv: a pod's workload derived as Istio derived it, the registry index, and the
attribute generation phase running before Check and Report."""

from __future__ import annotations

import ipaddress
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from meshconfig import Resource, load_documents, validate_document
from meshconfig.policy.attributes import AttributeBag, Reference
from mixer.adapters.base import Environment, Instance
from mixer.adapters.kubernetesenv import KubernetesEnvHandler
from mixer.config_source import MIXER_KIND_IDS, load_directory
from mixer.runtime import HandlerPool
from mixer.workloads import Owner, Workloads, controller_of, workload_of
from tests.support.shared import ISTIO_1_4

POLICY = ISTIO_1_4 / "samples" / "bookinfo" / "policy"
MIXER = Path(__file__).resolve().parents[3] / "mixer"


def resources(text: str) -> list[Resource]:
    return [validate_document(d) for d in load_documents(textwrap.dedent(text))]


def pod(name: str, ip: str, labels: dict[str, str], **extra: Any) -> str:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {
            "serviceAccountName": extra.get("sa", "bookinfo"),
            "hostNetwork": extra.get("host_network", False),
            "containers": [{"name": name.split("-")[0], "ports": [{"containerPort": 9080}]}],
        },
        "status": {"podIP": ip, "hostIP": "192.168.0.2"},
    }
    return json.dumps(body) + "\n---\n"


ENTRY = """
apiVersion: networking.istio.io/v1alpha3
kind: WorkloadEntry
metadata: {name: details-vm, namespace: vms}
spec: {address: 10.2.0.7, labels: {app: details}, serviceAccount: details}
"""

REVIEWS_V3 = pod(
    "reviews-v3-5b9bd44f4-2xk7p",
    "10.1.0.3",
    {"app": "reviews", "version": "v3", "pod-template-hash": "5b9bd44f4"},
)
RATINGS = pod(
    "ratings-v1-7dc98c7588-x2xxl",
    "10.1.0.9",
    {"app": "ratings", "version": "v1", "pod-template-hash": "7dc98c7588"},
)


@pytest.mark.parametrize(
    ("name", "labels", "owners", "expected"),
    [
        (
            "reviews-v3-5b9bd44f4-2xk7p",
            {"pod-template-hash": "5b9bd44f4"},
            [],
            ("Deployment", "reviews-v3"),
        ),
        (
            "reviews-v3-5b9bd44f4-2xk7p",
            {},
            [{"kind": "ReplicaSet", "name": "reviews-v3-5b9bd44f4", "controller": True}],
            ("Deployment", "reviews-v3"),
        ),
        (
            "web-abc",
            {},
            [{"kind": "ReplicaSet", "name": "web", "controller": True}],
            ("ReplicaSet", "web"),
        ),
        ("backup-1577836800-abcde", {"job-name": "backup-1577836800"}, [], ("CronJob", "backup")),
        ("migrate-abcde", {"job-name": "migrate"}, [], ("Job", "migrate")),
        (
            "db-0",
            {"controller-revision-hash": "db-6c9f", "statefulset.kubernetes.io/pod-name": "db-0"},
            [],
            ("StatefulSet", "db"),
        ),
        ("agent-x7k2p", {"controller-revision-hash": "5d8f"}, [], ("DaemonSet", "agent")),
        (
            "x-1",
            {},
            [{"kind": "StatefulSet", "name": "x", "controller": True}, {"kind": "Other"}],
            ("StatefulSet", "x"),
        ),
        ("standalone", {"app": "a"}, [{"kind": "Node", "name": "n"}], ("Pod", "standalone")),
    ],
)
def test_owner_to_workload(
    name: str, labels: dict[str, str], owners: list[Any], expected: tuple[str, str]
) -> None:
    assert workload_of(name, labels, owners) == expected


def test_controller_from_owner_reference_objects() -> None:
    class Reference:
        kind, name, controller = "DaemonSet", "fluentd", True

    assert controller_of("fluentd-abcde", {}, [Reference()]) == Owner("DaemonSet", "fluentd")


def test_the_index_by_address_and_uid() -> None:
    workloads = Workloads()
    registry = resources(
        REVIEWS_V3
        + RATINGS
        + pod("node-agent", "10.1.0.9", {}, host_network=True)
        + ENTRY
        + ENTRY.replace("details-vm", "shadow").replace("vms", "default")
    )
    assert workloads.update(registry) and not workloads.update(registry)
    reviews = workloads.by_ip("10.1.0.3")
    assert reviews is not None and reviews.workload_name == "reviews-v3"
    assert reviews.owner == "kubernetes://apis/apps/v1/namespaces/default/deployments/reviews-v3"
    assert reviews.workload_uid == "istio://default/workloads/reviews-v3"
    assert workloads.by_uid("kubernetes://reviews-v3-5b9bd44f4-2xk7p.default") == reviews
    ratings = workloads.by_ip("10.1.0.9")  # not the host-network pod on the same address
    assert ratings is not None and ratings.name.startswith("ratings-v1")
    details = workloads.by_ip("10.2.0.7")  # first by (namespace, name) of two entries
    assert details is not None and (details.name, details.workload_kind) == (
        "shadow",
        "WorkloadEntry",
    )
    assert workloads.update([]) and workloads.by_ip("10.1.0.3") is None


def test_the_adapter_outputs_the_template_fields() -> None:
    workloads = Workloads()
    workloads.update(resources(REVIEWS_V3 + ENTRY))
    handler = KubernetesEnvHandler(workloads)
    fields = {
        "source_uid": "",
        "source_ip": ipaddress.ip_address("10.1.0.3"),
        "destination_uid": "",
        "destination_ip": ipaddress.ip_address("10.2.0.7"),
        "destination_port": 9080,
    }
    out = handler.generate(Instance("attributes.instance.istio-system", "kubernetes", fields))
    assert out["source_workload_name"] == "reviews-v3"
    assert out["source_pod_ip"] == ipaddress.ip_address("10.1.0.3")
    assert out["source_host_ip"] == ipaddress.ip_address("192.168.0.2")
    assert out["source_service_account_name"] == "bookinfo"
    assert out["source_labels"]["version"] == "v3"
    assert out["destination_workload_name"] == "details-vm"
    assert out["destination_namespace"] == "vms"
    entries = "kubernetes://apis/networking.istio.io/v1alpha3/namespaces/vms/workloadentries"
    assert out["destination_owner"] == f"{entries}/details-vm"
    assert "destination_container_name" not in out  # a WorkloadEntry has no containers
    by_uid = handler.generate(
        Instance(
            "a",
            "kubernetes",
            {
                "source_uid": "kubernetes://reviews-v3-5b9bd44f4-2xk7p.default",
                "source_ip": ipaddress.ip_address("0.0.0.0"),
                "destination_ip": ipaddress.ip_address("10.1.0.3"),
                "destination_port": 9080,
            },
        )
    )
    assert by_uid["source_pod_name"] == "reviews-v3-5b9bd44f4-2xk7p"
    assert by_uid["destination_container_name"] == "reviews"
    unknown = {"source_ip": ipaddress.ip_address("10.9.9.9")}
    assert handler.generate(Instance("a", "kubernetes", unknown)) == {}


def config(*registry: str) -> list[Resource]:
    return [
        *resources((MIXER / "kubernetesenv.yaml").read_text()),
        *resources((POLICY / "mixer-rule-deny-label.yaml").read_text()),
        *resources("".join(registry)),
    ]


def by_ip(source: str, **extra: Any) -> AttributeBag:
    return AttributeBag(
        {
            "source.ip": ipaddress.ip_address(source),
            "destination.ip": ipaddress.ip_address("10.1.0.9"),
            "destination.service.host": "ratings.default.svc.cluster.local",
            **extra,
        }
    )


async def test_check_rules_see_generated_attributes() -> None:
    pool = HandlerPool(Environment())
    runtime = await pool.runtime(config(REVIEWS_V3, RATINGS))
    denied = await runtime.preconditions(by_ip("10.1.0.3"))
    assert denied.status.code == 7
    # The request as it came is what a client caches by: the address, not the labels.
    assert Reference("source.ip") in denied.referenced
    assert not any(r.name == "source.labels" for r in denied.referenced)
    unknown = await runtime.preconditions(by_ip("10.1.0.77"))
    assert unknown.status.ok
    # Attributes the proxy sent stay when the registry does not know the workload.
    labelled = by_ip("10.1.0.77", **{"source.labels": {"app": "reviews", "version": "v3"}})
    assert (await runtime.preconditions(labelled)).status.code == 7
    await pool.close()


async def test_a_registry_change_keeps_the_runtime_and_applies_to_the_next_request() -> None:
    env = Environment()
    pool = HandlerPool(env)
    first = await pool.runtime(config(REVIEWS_V3, RATINGS))
    relabelled = REVIEWS_V3.replace('"v3"', '"v2"')
    second = await pool.runtime(config(relabelled, RATINGS))
    assert second is first and env.workloads.version == 2
    assert (await second.preconditions(by_ip("10.1.0.3"))).status.ok
    third = await pool.runtime([*config(relabelled, RATINGS)[:-2]])  # pods gone, rules same
    assert third is first and len(env.workloads) == 0
    await pool.close()


def test_mixer_reads_the_registry_kinds_from_its_directory(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text((MIXER / "kubernetesenv.yaml").read_text())
    (tmp_path / "registry.yaml").write_text(REVIEWS_V3 + ENTRY)
    found = {r.kind.kind for r in load_directory(tmp_path)}
    assert {"Pod", "WorkloadEntry", "handler", "instance", "rule"} <= found
    assert {"core/Pod", "networking.istio.io/WorkloadEntry"} <= MIXER_KIND_IDS
