"""The bootstrap names the node as Istio does, and the real Envoy accepts it."""

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import json_format

from agent.bootstrap import (
    InterceptionMode,
    ProxySpec,
    ProxyType,
    XdsApi,
    build_bootstrap,
    parse_host_port,
)
from meshcore.envoy_binary import envoy_path

SIDECAR = ProxySpec(
    ip="127.0.42.7",
    pod="reviews-v1-abc",
    namespace="bookinfo",
    service_account="bookinfo-reviews",
    labels={"app": "reviews", "version": "v1"},
    interception=InterceptionMode.REDIRECT,
    http_proxy_port=15080,
    app_address="127.0.142.7",
)


def test_node_identity_follows_istio() -> None:
    node = build_bootstrap(SIDECAR)["node"]
    assert node["id"] == "sidecar~127.0.42.7~reviews-v1-abc.bookinfo~bookinfo.svc.cluster.local"
    assert node["cluster"] == "reviews.bookinfo"
    assert node["metadata"] == {
        "NAMESPACE": "bookinfo",
        "NAME": "reviews-v1-abc",
        "LABELS": {"app": "reviews", "version": "v1"},
        "SERVICE_ACCOUNT": "bookinfo-reviews",
        "INSTANCE_IPS": "127.0.42.7",
        "INTERCEPTION_MODE": "REDIRECT",
        "HTTP_PROXY_PORT": "15080",
        "APP_ADDRESS": "127.0.142.7",
        "CLUSTER_ID": "Kubernetes",
        "MESH_ID": "cluster.local",
    }


def test_router_node_without_app_label_uses_pod_name() -> None:
    spec = ProxySpec(ip="10.0.0.1", pod="gw", namespace="istio-system", proxy_type=ProxyType.ROUTER)
    node = build_bootstrap(spec)["node"]
    assert node["id"] == "router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local"
    assert node["cluster"] == "gw.istio-system"
    assert "HTTP_PROXY_PORT" not in node["metadata"]
    assert node["metadata"]["APP_ADDRESS"] == "127.0.0.1"


def test_ads_and_xds_cluster() -> None:
    bootstrap = build_bootstrap(ProxySpec(ip="127.0.0.9", pod="p", namespace="n", pilot="10.1.2.3"))
    ads = bootstrap["dynamic_resources"]["ads_config"]
    assert ads["api_type"] == "GRPC"
    assert ads["set_node_on_first_message_only"] is True
    assert ads["grpc_services"] == [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]
    xds = bootstrap["static_resources"]["clusters"][0]
    assert (xds["name"], xds["type"], xds["connect_timeout"]) == ("xds-grpc", "STATIC", "1s")
    endpoint = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "10.1.2.3", "port_value": 15010}


def test_every_listening_address_is_the_workload_ip() -> None:
    spec = replace(SIDECAR, interception=InterceptionMode.NONE)
    bootstrap = build_bootstrap(spec)
    assert bootstrap["admin"]["address"]["socket_address"]["address"] == SIDECAR.ip
    (listener,) = bootstrap["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": SIDECAR.ip, "port_value": 15090}
    assert spec.admin_url == f"http://{SIDECAR.ip}:15000"


def test_captured_proxy_keeps_its_admin_on_the_pod_loopback() -> None:
    """With capture the proxy's own connections to its pod address are redirected to
    inbound, so the admin API (and the stats listener's way to it) is on 127.0.0.1."""
    bootstrap = build_bootstrap(SIDECAR)
    assert bootstrap["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    stats = next(
        c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "prometheus_stats"
    )
    endpoint = stats["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15000}
    (listener,) = bootstrap["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": SIDECAR.ip, "port_value": 15090}
    assert SIDECAR.admin_url == "http://127.0.0.1:15000"


def test_pilot_hostname_is_resolved_by_dns() -> None:
    spec = ProxySpec(ip="127.0.0.9", pod="p", namespace="n", pilot="pilot.mesh:15011")
    xds = build_bootstrap(spec)["static_resources"]["clusters"][0]
    assert xds["type"] == "STRICT_DNS"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("pilot", ("pilot", 15010)), ("1.2.3.4:99", ("1.2.3.4", 99)), ("[::1]:7", ("::1", 7))],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, 15010) == expected


@pytest.mark.parametrize("text", ["", ":15010", "host:port"])
def test_parse_host_port_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host_port(text, 15010)


def _case_id(spec: ProxySpec) -> str:
    return f"{spec.proxy_type}-{spec.xds_api}-{spec.pilot}"


CASES = [
    ProxySpec(ip="127.0.42.8", pod="r", namespace="n", proxy_type=kind, xds_api=api, pilot=pilot)
    for kind in ProxyType
    for api in XdsApi
    for pilot in ("127.0.0.1:15010", "localhost:15010")
]


@pytest.mark.parametrize("spec", [*CASES, SIDECAR], ids=_case_id)
def test_bootstrap_matches_the_proto_schema(spec: ProxySpec) -> None:
    # The typed_config messages must be in the descriptor pool for ParseDict to resolve them.
    assert router_pb2 and http_connection_manager_pb2 and http_protocol_options_pb2
    json_format.ParseDict(build_bootstrap(spec), bootstrap_pb2.Bootstrap())


@pytest.mark.envoy
@pytest.mark.parametrize("spec", [*CASES, SIDECAR], ids=_case_id)
def test_envoy_validates_bootstrap(spec: ProxySpec, tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(build_bootstrap(spec)))
    result = subprocess.run(
        [envoy_path(), "--mode", "validate", "--disable-hot-restart", "-c", path],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"configuration '{path}' OK" in result.stdout + result.stderr
