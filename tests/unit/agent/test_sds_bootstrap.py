"""With an SDS socket the bootstrap gains Istio's `sds-grpc` cluster, and Envoy accepts it.

The cluster alone is not enough: the secrets pilot's ISTIO_MUTUAL translation names must resolve
through it, so Envoy also validates a listener taking `default` and `ROOTCA` from `sds-grpc`.
"""

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

from agent.bootstrap import XDS_CLUSTER, ProxySpec, build_bootstrap
from meshcore.envoy_binary import envoy_path
from meshcore.identity import CONTROL_PLANE_HOST
from pilot.generators.traffic_policy import SDS_CLUSTER
from tests.support.sds import sds_tls_listener

SOCKET = "/var/run/mesh/sds.sock"
SPEC = ProxySpec(ip="127.0.42.9", pod="r", namespace="n", sds_socket=SOCKET)


def test_sds_cluster_reaches_the_unix_socket_over_http2() -> None:
    clusters = build_bootstrap(SPEC)["static_resources"]["clusters"]
    (sds,) = [c for c in clusters if c["name"] == SDS_CLUSTER]
    endpoint = sds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"] == {"pipe": {"path": SOCKET}}
    options = next(iter(sds["typed_extension_protocol_options"].values()))
    assert "http2_protocol_options" in options["explicit_http_config"]


def test_no_sds_cluster_without_a_socket() -> None:
    spec = ProxySpec(ip="127.0.42.9", pod="r", namespace="n")
    names = [c["name"] for c in build_bootstrap(spec)["static_resources"]["clusters"]]
    assert SDS_CLUSTER not in names


def test_sds_bootstrap_matches_the_proto_schema() -> None:
    # The typed_config messages must be in the descriptor pool for ParseDict to resolve them.
    assert router_pb2 and http_connection_manager_pb2 and http_protocol_options_pb2
    json_format.ParseDict(build_bootstrap(SPEC), bootstrap_pb2.Bootstrap())


@pytest.mark.envoy
def test_envoy_validates_sds_bootstrap_and_listener(tmp_path: Path) -> None:
    bootstrap = build_bootstrap(replace(SPEC, pilot_mtls=True))
    bootstrap["static_resources"]["listeners"].append(sds_tls_listener(SPEC.ip, 8443))
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    result = subprocess.run(
        [envoy_path(), "--mode", "validate", "--disable-hot-restart", "-c", path],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"configuration '{path}' OK" in result.stdout + result.stderr


def test_pilot_mtls_presents_the_workload_certificate_and_checks_istiod() -> None:
    spec = replace(SPEC, pilot="127.0.42.1:15011", pilot_mtls=True)
    (xds,) = [
        c for c in build_bootstrap(spec)["static_resources"]["clusters"] if c["name"] == XDS_CLUSTER
    ]
    context = xds["transport_socket"]["typed_config"]
    assert context["sni"] == CONTROL_PLANE_HOST
    common = context["common_tls_context"]
    assert [s["name"] for s in common["tls_certificate_sds_secret_configs"]] == ["default"]
    combined = common["combined_validation_context"]
    assert combined["validation_context_sds_secret_config"]["name"] == "ROOTCA"
    sans = combined["default_validation_context"]["match_typed_subject_alt_names"]
    assert sans == [{"san_type": "DNS", "matcher": {"exact": CONTROL_PLANE_HOST}}]
    json_format.ParseDict(build_bootstrap(spec), bootstrap_pb2.Bootstrap())


def test_pilot_mtls_without_certificates_is_an_error() -> None:
    spec = ProxySpec(ip="127.0.42.9", pod="r", namespace="n", pilot_mtls=True)
    with pytest.raises(ValueError, match="sds_socket"):
        build_bootstrap(spec)
