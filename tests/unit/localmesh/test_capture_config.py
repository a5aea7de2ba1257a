"""Capture mode's translation of the local mesh's directory: pods and VIPs on the hub's network,
everything else as it was, and the hosts files the pods' applications resolve services with."""

from __future__ import annotations

import ipaddress
import shutil
import textwrap
from pathlib import Path, PurePath
from typing import Any

import yaml

from localmesh.capture_config import Allocation, Service, Translation, translate, write
from localmesh.mesh import plan_pods
from pilot.config_files import load_config_directory

BOOKINFO = Path(__file__).resolve().parents[3] / "examples" / "bookinfo"
WORKLOADS = ("productpage-v1", "details-v1", "reviews-v1", "reviews-v2", "reviews-v3", "ratings-v1")
SERVICES = ("productpage", "details", "reviews", "ratings")


def documents(translation: Translation, name: str) -> dict[str, Any]:
    """The translated file's resources by name."""
    found = yaml.safe_load_all(translation.files[PurePath(name)])
    return {document["metadata"]["name"]: document for document in found}


def test_workloads_and_services_move_to_the_hub_network(tmp_path: Path) -> None:
    translation = translate(BOOKINFO, Allocation())
    bookinfo = documents(translation, "bookinfo.yaml")
    # Pods numbered from 198.18.1.1 in the order of the entries; VIPs from 198.19.0.1.
    assert [bookinfo[w]["spec"]["address"] for w in WORKLOADS] == [
        f"198.18.1.{n}" for n in range(1, 7)
    ]
    assert [bookinfo[s]["spec"]["addresses"] for s in SERVICES] == [
        [f"198.19.0.{n}"] for n in range(1, 5)
    ]
    # Nothing else changed: the command annotation, labels, ports, hosts.
    text = (BOOKINFO / "bookinfo.yaml").read_text()
    original = {d["metadata"]["name"]: d for d in yaml.safe_load_all(text)}
    for name, document in original.items():
        document["spec"].pop("address", None)
        translated = bookinfo[name]
        translated["spec"].pop("address", None)
        translated["spec"].pop("addresses", None)
        assert translated == document
    # A file without registry entries is copied byte for byte.
    assert translation.files[PurePath("gateway.yaml")] == (BOOKINFO / "gateway.yaml").read_bytes()

    # The translated copy is what the mesh runs: valid, and its pods have the new addresses.
    copy = tmp_path / "copy"
    assert write(translation, copy)
    load_config_directory(copy)
    pods = {pod.name: pod for pod in plan_pods(copy)}
    assert pods["productpage-v1"].workload.address == "198.18.1.1"
    assert pods["productpage-v1"].command[1:3] == ("-m", "localmesh.bookinfo")


def test_addresses_stay_put_across_edits(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(BOOKINFO, source)
    allocation = Allocation()
    first = documents(translate(source, allocation), "bookinfo.yaml")
    # A new workload in a file read before bookinfo.yaml: it gets the next address, no other
    # pod moves (a running pod's namespace has its address).
    (source / "a-canary.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: networking.istio.io/v1
            kind: WorkloadEntry
            metadata: {name: reviews-canary, namespace: default}
            spec: {address: 127.20.0.99, labels: {app: reviews, version: canary}}
            """
        )
    )
    second = translate(source, allocation)
    assert documents(second, "a-canary.yaml")["reviews-canary"]["spec"]["address"] == "198.18.1.7"
    again = documents(second, "bookinfo.yaml")
    for name in WORKLOADS:
        assert again[name]["spec"]["address"] == first[name]["spec"]["address"]


def test_only_services_of_the_mesh_get_a_vip(tmp_path: Path) -> None:
    (tmp_path / "services.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: v1
            kind: List
            items:
            - apiVersion: networking.istio.io/v1
              kind: ServiceEntry
              metadata: {name: api, namespace: shop}
              spec:
                hosts: [api.shop.svc.cluster.local]
                addresses: [127.30.0.1]
                ports: [{number: 80, name: http, protocol: HTTP}]
                workloadSelector: {labels: {app: api}}
            - apiVersion: networking.istio.io/v1
              kind: ServiceEntry
              metadata: {name: external}
              spec:
                hosts: [example.com]
                ports: [{number: 443, name: tls, protocol: TLS}]
                resolution: DNS
            """
        )
    )
    translation = translate(tmp_path, Allocation())
    [items] = yaml.safe_load_all(translation.files[PurePath("services.yaml")])
    api, external = items["items"]
    assert api["spec"]["addresses"] == ["198.19.0.1"]  # loopback VIPs are replaced too
    assert "addresses" not in external["spec"]
    vip = ipaddress.IPv4Address("198.19.0.1")
    assert translation.services == (Service("shop", ("api.shop.svc.cluster.local",), vip),)


def test_a_file_that_does_not_parse_is_copied_for_galley_to_refuse(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("kind: [unclosed\n")
    (tmp_path / ".hidden.yaml").write_text("kind: WorkloadEntry\n")
    (tmp_path / "notes.txt").write_text("not configuration\n")
    translation = translate(tmp_path, Allocation())
    assert translation.files == {PurePath("broken.yaml"): b"kind: [unclosed\n"}


def test_hosts_resolve_as_kubernetes_dns_would_from_the_pods_namespace() -> None:
    vip = ipaddress.IPv4Address
    services = (
        Service("default", ("details.default.svc.cluster.local",), vip("198.19.0.2")),
        Service("shop", ("api.shop.svc.cluster.local", "*.shop.example"), vip("198.19.0.3")),
        Service("default", ("legacy.example.com",), vip("198.19.0.4")),
    )
    translation = Translation({}, services)
    assert translation.hosts("default") == {
        "details.default.svc.cluster.local": "198.19.0.2",
        "details.default.svc": "198.19.0.2",
        "details.default": "198.19.0.2",
        "details": "198.19.0.2",  # the short name, as bookinfo's applications call it
        "api.shop.svc.cluster.local": "198.19.0.3",
        "api.shop.svc": "198.19.0.3",
        "api.shop": "198.19.0.3",  # no bare `api`: it is another namespace's
        "legacy.example.com": "198.19.0.4",
    }
    assert translation.hosts("shop")["api"] == "198.19.0.3"
    assert "details" not in translation.hosts("shop")


def test_write_touches_only_what_differs(tmp_path: Path) -> None:
    target = tmp_path / "copy"
    translation = Translation({PurePath("a.yaml"): b"a\n", PurePath("sub/b.yaml"): b"b\n"}, ())
    assert write(translation, target)
    before = (target / "a.yaml").stat().st_mtime_ns
    (target / "stale.yaml").write_text("gone\n")
    assert write(translation, target)  # the stale file is removed
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*.yaml")) == [
        "a.yaml",
        "sub/b.yaml",
    ]
    assert (target / "a.yaml").stat().st_mtime_ns == before
    assert not write(translation, target)
