"""The registry read from a directory: ServiceEntry/WorkloadEntry -> model, and its refusals.

Schema and single-field rules are meshconfig's (its reject tests cover them case by case); here
a directory's schema error is checked once for naming the file, resource and field, beside the
cases meshconfig's tests lack, and the registry's own rules: several resources at once, and what
Istio accepts but this mesh cannot serve.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from textwrap import dedent

import pytest
import yaml

from meshconfig import ConfigValidationError
from meshconfig.networking.workload_entry import WorkloadEntry
from pilot.config_files import load_config_directory
from pilot.model import Location, Protocol, Resolution, Service, ServicePort, WorkloadInstance
from pilot.registry import ConfigError, RegistrySnapshot, SnapshotBuilder, Source
from tests.support.shared import ISTIO
from tests.unit.pilot.conftest import load_directory

ISTIO = ISTIO
WriteConfig = Callable[..., Path]


def test_reads_service_entries_and_workload_entries(write_config: WriteConfig) -> None:
    snapshot = load_directory(
        write_config(
            """
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {name: reviews, namespace: bookinfo}
            spec:
              hosts: [reviews.bookinfo.svc.cluster.local, reviews.example.com]
              addresses: [240.0.0.10, 10.9.0.0/16]
              location: MESH_INTERNAL
              resolution: STATIC
              ports:
              - {number: 9080, name: http, protocol: HTTP, targetPort: 19080}
              - {number: 9090, name: api, protocol: GRPC}
              workloadSelector: {labels: {app: reviews}}
            ---
            apiVersion: networking.istio.io/v1beta1
            kind: WorkloadEntry
            metadata: {name: reviews-v1, namespace: bookinfo}
            spec:
              address: 127.0.1.2
              labels: {app: reviews}
              ports: {http: 29080}
              serviceAccount: reviews
              locality: eu/west/1
              weight: 5
              network: net1
            """
        )
    )
    ports = (
        ServicePort("http", 9080, Protocol.HTTP, 19080),
        ServicePort("api", 9090, Protocol.GRPC, None),
    )
    common = {
        "namespace": "bookinfo",
        "ports": ports,
        "addresses": ("240.0.0.10", "10.9.0.0/16"),
        "resolution": Resolution.STATIC,
        "location": Location.MESH_INTERNAL,
        "workload_selector": {"app": "reviews"},
    }
    assert snapshot == RegistrySnapshot(
        services=(
            Service("reviews.bookinfo.svc.cluster.local", **common),  # type: ignore[arg-type]
            Service("reviews.example.com", **common),  # type: ignore[arg-type]
        ),
        workloads=(
            WorkloadInstance(
                name="reviews-v1",
                namespace="bookinfo",
                address="127.0.1.2",
                labels={"app": "reviews"},
                ports={"http": 29080},
                service_account="reviews",
                locality="eu/west/1",
                weight=5,
                network="net1",
                tls_mode="istio",  # Istio's default for an entry with a service account
            ),
        ),
    )


def test_defaults_and_inline_endpoints(write_config: WriteConfig) -> None:
    (service,) = load_directory(
        write_config(
            """
            apiVersion: networking.istio.io/v1alpha3
            kind: ServiceEntry
            metadata: {name: db}
            spec:
              hosts: [db.example.com]
              ports: [{number: 5432, name: tcp}]
              resolution: DNS
              endpoints:
              - {address: db1.example.com, weight: 0, labels: {role: primary}}
            """
        )
    ).services
    assert service.namespace == "default"
    assert service.location is Location.MESH_EXTERNAL
    assert service.workload_selector is None
    assert service.endpoints == (
        WorkloadInstance("", "default", "db1.example.com", labels={"role": "primary"}, weight=1),
    )


def test_resolution_defaults_to_none_and_static_may_have_no_endpoints(
    write_config: WriteConfig,
) -> None:
    directory = write_config(
        """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: a}
        spec: {hosts: [a.example.com], ports: [{number: 80, name: http}]}
        ---
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: b}
        spec: {hosts: [b.example.com], resolution: STATIC, ports: [{number: 80, name: http}]}
        """
    )
    a, b = load_directory(directory).services
    assert a.resolution is Resolution.NONE
    assert (b.resolution, b.endpoints, b.workload_selector) == (Resolution.STATIC, (), None)


def test_skips_other_kinds_files_and_empty_documents(write_config: WriteConfig) -> None:
    entry = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: %s}
        spec: {hosts: [%s.example.com], ports: [{number: 80, name: http}]}
    """
    write_config(
        """
        ---
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: vs}
        spec: {hosts: [a.example.com], http: [{route: [{destination: {host: a.example.com}}]}]}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: unknown-kind}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: svc}
        ---
        apiVersion: example.com/v1
        kind: ServiceEntry
        metadata: {name: not-istio}
        """
        + entry % ("a", "a"),
        "a.yaml",
    )
    write_config(entry % ("b", "b"), "b.yml")
    write_config(
        '{"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",'
        ' "metadata": {"name": "c"},'
        ' "spec": {"hosts": ["c.example.com"], "ports": [{"number": 80, "name": "http"}]}}',
        "c.json",
    )
    write_config(entry % ("d", "d"), ".hidden.yaml")
    (write_config("", "unused.yaml") / "sub.yaml").mkdir()
    directory = write_config(entry % ("e", "e"), "unused.yaml")
    hosts = [s.hostname for s in load_directory(directory).services]
    # A Kubernetes Service is a registry kind too (pilot.registry.kubernetes).
    assert hosts == [
        "a.example.com",
        "b.example.com",
        "c.example.com",
        "e.example.com",
        "svc.default.svc.cluster.local",
    ]


def test_file_order_does_not_matter(write_config: WriteConfig, tmp_path: Path) -> None:
    def entry(name: str, address: str) -> str:
        return dedent(f"""
            apiVersion: networking.istio.io/v1
            kind: WorkloadEntry
            metadata: {{name: {name}}}
            spec: {{address: {address}}}
            ---
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {{name: {name}}}
            spec: {{hosts: [{name}.example.com], ports: [{{number: 80, name: http}}]}}
        """)

    both = entry("zeta", "10.0.0.2") + "---\n" + entry("alpha", "10.0.0.1")
    first = load_directory(write_config(both))
    (tmp_path / "mesh.yaml").unlink()
    write_config(entry("alpha", "10.0.0.1"), "z.yaml")
    second = load_directory(write_config(entry("zeta", "10.0.0.2"), "a.yaml"))
    assert first == second
    assert [w.name for w in first.workloads] == ["alpha", "zeta"]


def _each_file_alone(samples: Path, tmp_path: Path) -> list[RegistrySnapshot]:
    """The registry of every YAML file in `samples`, each read as a directory of its own."""
    snapshots = []
    for sample in sorted(samples.glob("*.yaml")):
        directory = tmp_path / samples.name / sample.stem
        directory.mkdir(parents=True)
        (directory / sample.name).write_bytes(sample.read_bytes())
        snapshots.append(load_directory(directory))
    return snapshots


def test_istio_bookinfo_samples(tmp_path: Path) -> None:
    """The one ServiceEntry among Istio's bookinfo samples; its Kubernetes manifests give only
    Kubernetes Services.

    The samples are alternatives (several define the same DestinationRule or Service), so each
    file is read alone.
    """
    bookinfo = ISTIO / "samples/bookinfo"
    snapshots = _each_file_alone(bookinfo / "networking", tmp_path)
    (service,) = [service for snapshot in snapshots for service in snapshot.services]
    assert service.hostname == "www.googleapis.com"
    assert service.resolution is Resolution.DNS
    assert [(p.name, p.number, p.protocol) for p in service.ports] == [
        ("http", 80, Protocol.HTTP),
        ("https", 443, Protocol.HTTPS),
    ]
    for snapshot in _each_file_alone(bookinfo / "platform/kube", tmp_path):
        # Their Kubernetes Services are registry input (tests/unit/pilot/test_kube_registry.py).
        assert snapshot.workloads == ()
        assert all(s.hostname.endswith(".svc.cluster.local") for s in snapshot.services)


def test_enums_match_istio_crd() -> None:
    """Resolution and location accept what Istio's ServiceEntry schema allows (bar DYNAMIC_DNS)."""
    crds = yaml.load_all((ISTIO / "crds/crd-all.gen.yaml").read_text(), Loader=yaml.CSafeLoader)
    (crd,) = [
        c for c in crds if c and c["metadata"]["name"] == "serviceentries.networking.istio.io"
    ]
    for version in crd["spec"]["versions"]:
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        assert set(spec["resolution"]["enum"]) == {r.value for r in Resolution} | {"DYNAMIC_DNS"}
        assert set(spec["location"]["enum"]) == {loc.value for loc in Location}


def _write(directory: Path, kind: str, spec: str) -> Path:
    """`directory/mesh.yaml` holding one resource, `<kind> shop/x`, with this `spec`."""
    (directory / "mesh.yaml").write_text(
        f"apiVersion: networking.istio.io/v1\nkind: {kind}\n"
        f"metadata: {{name: x, namespace: shop}}\nspec: {spec}\n"
    )
    return directory


def test_schema_error_names_file_resource_and_field(tmp_path: Path) -> None:
    spec = "{hosts: [a.com], ports: [{number: 70000, name: http}]}"
    with pytest.raises(ConfigValidationError) as raised:
        load_config_directory(_write(tmp_path, "ServiceEntry", spec))
    assert str(raised.value).startswith(
        f"{tmp_path / 'mesh.yaml'}: ServiceEntry shop/x: spec.ports[0].number: "
    )
    assert "65535" in str(raised.value)


@pytest.mark.parametrize(
    ("kind", "spec", "where", "reason"),
    [
        ("ServiceEntry", "{hosts: [a.com, 'b c']}", "spec.hosts[1]", "invalid label 'b c'"),
        (
            "ServiceEntry",
            "{hosts: [a.com], location: INSIDE}",
            "spec.location",
            "'MESH_EXTERNAL' or 'MESH_INTERNAL'",
        ),
        (
            "ServiceEntry",
            "{hosts: [a.com], ports: [{number: '80', name: http}]}",
            "spec.ports[0].number",
            "valid integer",
        ),
        (
            "ServiceEntry",
            "{hosts: [a.com], ports: [{number: 80, name: ''}]}",
            "spec.ports[0].name",
            "invalid port name ''",
        ),
        ("ServiceEntry", "[a.com]", "spec", "valid dictionary"),
        ("WorkloadEntry", "{address: 1.1.1.1, labels: {v: 2}}", "spec.labels.v", "valid string"),
        ("WorkloadEntry", "{address: 1.1.1.1, locality: [a]}", "spec.locality", "valid string"),
    ],
)
def test_schema_errors_not_in_meshconfig_reject_tests(
    tmp_path: Path, kind: str, spec: str, where: str, reason: str
) -> None:
    with pytest.raises(ConfigValidationError) as raised:
        load_config_directory(_write(tmp_path, kind, spec))
    assert (raised.value.source, raised.value.resource) == (
        str(tmp_path / "mesh.yaml"),
        f"{kind} shop/x",
    )
    assert [e.path for e in raised.value.errors] == [where]
    assert reason in raised.value.errors[0].message


NO_GATEWAYS = "is required (network gateways are not supported)"
NO_UNIX = "unix domain sockets are not supported"


@pytest.mark.parametrize(
    ("kind", "spec", "where", "reason"),
    [
        (
            "ServiceEntry",
            "{hosts: [a.com, a.com]}",
            "spec.hosts[1]",
            "host 'a.com' is listed twice",
        ),
        (
            "ServiceEntry",
            "{hosts: [a.com], resolution: DYNAMIC_DNS}",
            "spec.resolution",
            "DYNAMIC_DNS is not supported by this mesh",
        ),
        (
            "ServiceEntry",
            "{hosts: [a.com], resolution: STATIC, endpoints: [{network: n1}]}",
            "spec.endpoints[0].address",
            NO_GATEWAYS,
        ),
        (
            "ServiceEntry",
            "{hosts: [a.com], resolution: STATIC, ports: [{number: 80, name: http}],"
            " endpoints: [{address: 'unix:///run/a.sock'}]}",
            "spec.endpoints[0].address",
            NO_UNIX,
        ),
        ("WorkloadEntry", "{network: n1}", "spec.address", NO_GATEWAYS),
        ("WorkloadEntry", "{address: 'unix:///run/a.sock'}", "spec.address", NO_UNIX),
    ],
)
def test_what_istio_accepts_but_this_mesh_cannot_serve(
    tmp_path: Path, kind: str, spec: str, where: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config_directory(_write(tmp_path, kind, spec))
    assert str(raised.value) == f"{tmp_path / 'mesh.yaml'}: {kind} shop/x: {where}: {reason}"
    assert (raised.value.field, raised.value.reason) == (where, reason)


def test_error_for_the_same_resource_in_two_files(write_config: WriteConfig) -> None:
    entry = """
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {name: we}
        spec: {address: 1.1.1.1}
    """
    write_config(entry, "a.yaml")
    directory = write_config(entry, "b.yaml")
    with pytest.raises(ConfigError) as raised:
        load_directory(directory)
    assert str(raised.value) == (
        f"{directory / 'b.yaml'}: WorkloadEntry default/we: metadata.name: "
        f"also defined in {directory / 'a.yaml'}"
    )


def test_builder_refuses_the_same_resource_twice() -> None:
    builder = SnapshotBuilder()
    spec = WorkloadEntry.model_validate({"address": "1.1.1.1"})
    builder.add(Source("a.yaml", "WorkloadEntry", "shop", "we"), spec)
    with pytest.raises(ConfigError) as raised:
        builder.add(Source("b.yaml", "WorkloadEntry", "shop", "we"), spec)
    assert (
        str(raised.value) == "b.yaml: WorkloadEntry shop/we: metadata.name: also defined in a.yaml"
    )


def test_error_for_one_host_in_two_service_entries(write_config: WriteConfig) -> None:
    entry = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: %s, namespace: %s}
        spec: {hosts: [a.example.com]}
    """
    write_config(entry % ("first", "one"), "a.yaml")
    directory = write_config(entry % ("second", "two"), "b.yaml")
    with pytest.raises(ConfigError) as raised:
        load_directory(directory)
    assert str(raised.value) == (
        f"{directory / 'b.yaml'}: ServiceEntry two/second: spec.hosts: host 'a.example.com' is "
        f"also declared by {directory / 'a.yaml'}: ServiceEntry one/first"
    )


SE_HEADER = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ("kind: [unclosed", "", "cannot parse YAML"),
        ("---\n{}\n---\n- a list\n", "", "expected a mapping"),
        (SE_HEADER + "metadata: {namespace: x}\n", "metadata.name", "is required"),
        (SE_HEADER + "metadata: nope\n", "metadata", "is required"),
    ],
)
def test_file_level_errors(write_config: WriteConfig, text: str, where: str, reason: str) -> None:
    directory = write_config(text)
    with pytest.raises(ConfigValidationError) as raised:
        load_directory(directory)
    assert raised.value.source == str(directory / "mesh.yaml")
    assert any(e.path == where and reason in e.message for e in raised.value.errors)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing: is not a directory$"):
        load_directory(tmp_path / "missing")
