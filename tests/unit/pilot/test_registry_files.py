"""The file registry: ServiceEntry/WorkloadEntry YAML -> model, and every refusal's message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from textwrap import dedent

import pytest
import yaml

from pilot.model import Location, Protocol, Resolution, Service, ServicePort, WorkloadInstance
from pilot.registry import ConfigError, RegistrySnapshot, load_directory
from tests.support.shared import ISTIO

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
              - {number: 9080, name: http, targetPort: 19080}
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
        spec: {hosts: 17}
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
    write_config(entry % ("c", "c"), "c.json")
    write_config(entry % ("d", "d"), ".hidden.yaml")
    (write_config("", "unused.yaml") / "sub.yaml").mkdir()
    directory = write_config(entry % ("e", "e"), "unused.yaml")
    hosts = [s.hostname for s in load_directory(directory).services]
    assert hosts == ["a.example.com", "b.example.com", "e.example.com"]


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


def test_istio_bookinfo_samples() -> None:
    """The one ServiceEntry among Istio's bookinfo samples; everything else is skipped."""
    (service,) = load_directory(ISTIO / "samples/bookinfo/networking").services
    assert service.hostname == "www.googleapis.com"
    assert service.resolution is Resolution.DNS
    assert [(p.name, p.number, p.protocol) for p in service.ports] == [
        ("http", 80, Protocol.HTTP),
        ("https", 443, Protocol.HTTPS),
    ]
    assert load_directory(ISTIO / "samples/bookinfo/platform/kube") == RegistrySnapshot()


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


SE = "ServiceEntry default/se"


@pytest.mark.parametrize(
    ("spec", "where", "reason"),
    [
        ("{}", "spec.hosts", "is required"),
        ("{hosts: []}", "spec.hosts", "must list at least one host"),
        ("{hosts: a.com}", "spec.hosts", "must be a list, got the string 'a.com'"),
        ("{hosts: ['*']}", "spec.hosts[0]", "hostname cannot be the wildcard '*'"),
        ("{hosts: [a.com, 'b c']}", "spec.hosts[1]", "'b c' is not a valid DNS name"),
        ("{hosts: [a.com, a.com]}", "spec.hosts[1]", "host 'a.com' is listed twice"),
        (
            "{hosts: ['*.a.com'], resolution: DNS}",
            "spec.hosts[0]",
            "wildcard host '*.a.com' cannot use DNS resolution",
        ),
        (
            "{hosts: [a.com], resolution: dns}",
            "spec.resolution",
            "'dns' is not one of NONE, STATIC, DNS, DNS_ROUND_ROBIN",
        ),
        (
            "{hosts: [a.com], resolution: DYNAMIC_DNS}",
            "spec.resolution",
            "DYNAMIC_DNS is not supported by this mesh",
        ),
        (
            "{hosts: [a.com], location: INSIDE}",
            "spec.location",
            "'INSIDE' is not one of MESH_EXTERNAL, MESH_INTERNAL",
        ),
        (
            "{hosts: [a.com], addresses: [1.2.3]}",
            "spec.addresses[0]",
            "'1.2.3' is not an IP address or CIDR range",
        ),
        (
            "{hosts: [a.com], addresses: [10.0.0.0/8], resolution: DNS}",
            "spec.addresses[0]",
            "CIDR ranges are allowed only for NONE or STATIC resolution",
        ),
        ("{hosts: [a.com], ports: {}}", "spec.ports", "must be a list, got a mapping"),
        ("{hosts: [a.com], ports: [80]}", "spec.ports[0]", "must be a mapping, got int 80"),
        ("{hosts: [a.com], ports: [{name: http}]}", "spec.ports[0].number", "is required"),
        ("{hosts: [a.com], ports: [{number: 80}]}", "spec.ports[0].name", "is required"),
        (
            "{hosts: [a.com], ports: [{number: 80, name: ''}]}",
            "spec.ports[0].name",
            "must not be empty",
        ),
        (
            "{hosts: [a.com], ports: [{number: 0, name: http}]}",
            "spec.ports[0].number",
            "must be between 1 and 65535, got 0",
        ),
        (
            "{hosts: [a.com], ports: [{number: 70000, name: http}]}",
            "spec.ports[0].number",
            "must be between 1 and 65535, got 70000",
        ),
        (
            "{hosts: [a.com], ports: [{number: '80', name: http}]}",
            "spec.ports[0].number",
            "must be an integer, got the string '80'",
        ),
        (
            "{hosts: [a.com], ports: [{number: true, name: http}]}",
            "spec.ports[0].number",
            "must be an integer, got bool True",
        ),
        (
            "{hosts: [a.com], ports: [{number: 80, name: http, targetPort: 65536}]}",
            "spec.ports[0].targetPort",
            "must be between 1 and 65535, got 65536",
        ),
        (
            "{hosts: [a.com], ports: [{number: 80, name: http}, {number: 81, name: http}]}",
            "spec.ports[1].name",
            "port name 'http' is used twice",
        ),
        (
            "{hosts: [a.com], ports: [{number: 80, name: a}, {number: 80, name: b}]}",
            "spec.ports[1].number",
            "port number 80 is used twice",
        ),
        (
            "{hosts: [a.com], ports: [{number: 80, name: a, protocol: 7}]}",
            "spec.ports[0].protocol",
            "must be a string, got int 7",
        ),
        (
            "{hosts: [a.com], workloadSelector: {labels: {app: 'a*'}}}",
            "spec.workloadSelector.labels.app",
            "wildcards are not supported in selectors",
        ),
        (
            "{hosts: [a.com], workloadSelector: {labels: [app]}}",
            "spec.workloadSelector.labels",
            "must be a mapping, got a list",
        ),
        (
            "{hosts: [a.com], resolution: STATIC, workloadSelector: {labels: {a: b}},"
            " endpoints: [{address: 1.1.1.1}]}",
            "spec",
            "only one of workloadSelector or endpoints can be set",
        ),
        (
            "{hosts: [a.com], endpoints: [{address: 1.1.1.1}]}",
            "spec.endpoints",
            "NONE resolution cannot list endpoints",
        ),
        (
            "{hosts: [a.com], resolution: DNS_ROUND_ROBIN,"
            " endpoints: [{address: a}, {address: b}]}",
            "spec.endpoints",
            "DNS_ROUND_ROBIN resolution allows one endpoint",
        ),
        (
            "{hosts: [a.com], resolution: STATIC, endpoints: [{address: db.local}]}",
            "spec.endpoints[0].address",
            "'db.local' is not an IP (resolution is STATIC)",
        ),
        (
            "{hosts: [a.com], resolution: STATIC, endpoints: [{labels: {}}]}",
            "spec.endpoints[0].address",
            "is required",
        ),
        (
            "{hosts: [a.com], resolution: STATIC, ports: [{number: 80, name: http}],"
            " endpoints: [{address: 1.1.1.1, ports: {grpc: 81}}]}",
            "spec.endpoints[0].ports.grpc",
            "names no port of this ServiceEntry",
        ),
        ("[a.com]", "spec", "must be a mapping, got a list"),
    ],
)
def test_service_entry_errors(
    write_config: WriteConfig, spec: str, where: str, reason: str
) -> None:
    directory = write_config(
        f"""
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: se}}
        spec: {spec}
        """
    )
    with pytest.raises(ConfigError) as raised:
        load_directory(directory)
    assert str(raised.value) == f"{directory / 'mesh.yaml'}: {SE}: {where}: {reason}"
    assert (raised.value.field, raised.value.reason) == (where, reason)


@pytest.mark.parametrize(
    ("spec", "where", "reason"),
    [
        ("{labels: {a: b}}", "spec.address", "is required"),
        ("{address: 'unix:///tmp/sock'}", "spec.address", "unix domain sockets are not supported"),
        ("{address: 'a b'}", "spec.address", "'a b' is not an IP address or DNS name"),
        (
            "{address: 1.1.1.1, weight: -1}",
            "spec.weight",
            "must be between 0 and 4294967295, got -1",
        ),
        (
            "{address: 1.1.1.1, labels: {version: 2}}",
            "spec.labels.version",
            "must be a string, got int 2",
        ),
        (
            "{address: 1.1.1.1, ports: {http: 0}}",
            "spec.ports.http",
            "must be between 1 and 65535, got 0",
        ),
        ("{address: 1.1.1.1, ports: {80: 8080}}", "spec.ports", "keys must be strings, got int 80"),
        ("{address: 1.1.1.1, locality: [a]}", "spec.locality", "must be a string, got a list"),
        ("", "spec", "must be a mapping, got null"),
    ],
)
def test_workload_entry_errors(
    write_config: WriteConfig, spec: str, where: str, reason: str
) -> None:
    directory = write_config(
        f"""
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {{name: we, namespace: shop}}
        spec: {spec}
        """
    )
    with pytest.raises(ConfigError) as raised:
        load_directory(directory)
    assert (
        str(raised.value) == f"{directory / 'mesh.yaml'}: WorkloadEntry shop/we: {where}: {reason}"
    )


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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: [unclosed", "cannot read YAML: "),
        ("---\n{}\n---\n- a list\n", "document 2: must be a mapping"),
        (
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {namespace: x}\n",
            "ServiceEntry ?/? (document 1): metadata.name: is required",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: nope\n",
            "ServiceEntry ?/? (document 1): metadata: must be a mapping, got the string 'nope'",
        ),
        (
            "apiVersion: networking.istio.io/v2\nkind: ServiceEntry\nmetadata: {name: se}\n",
            "ServiceEntry default/se: apiVersion: version 'v2' is not one of "
            "('v1', 'v1beta1', 'v1alpha3')",
        ),
    ],
)
def test_file_level_errors(write_config: WriteConfig, text: str, message: str) -> None:
    directory = write_config(text)
    with pytest.raises(ConfigError) as raised:
        load_directory(directory)
    assert str(raised.value).startswith(f"{directory / 'mesh.yaml'}: {message}")


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing: is not a directory$"):
        load_directory(tmp_path / "missing")
