"""Pilot's MeshConfig: Istio's field names and defaults, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilot.mesh_config import DEFAULT_MESH, MeshConfig, MeshConfigError


def test_istio_defaults_call_no_mixer() -> None:
    assert not DEFAULT_MESH.policy_checks and not DEFAULT_MESH.telemetry_reports


def test_the_configmap_form_and_the_bare_form_read_alike(tmp_path: Path) -> None:
    fields = (
        "disablePolicyChecks: false\npolicyCheckFailOpen: true\n"
        "mixerCheckServer: istio-policy.istio-system.svc.cluster.local:9091\n"
        "mixerReportServer: istio-telemetry.istio-system.svc.cluster.local:9091\n"
        "policyCheckTimeout: 0.25\n"
    )
    bare = tmp_path / "mesh.yaml"
    bare.write_text(fields)
    configmap = tmp_path / "configmap.yaml"
    configmap.write_text("mesh: |\n" + "".join(f"  {line}\n" for line in fields.splitlines()))
    assert MeshConfig.load(bare) == MeshConfig.load(configmap)
    mesh = MeshConfig.load(bare)
    assert mesh.policy_checks and mesh.telemetry_reports and mesh.policy_check_fail_open
    assert mesh.policy_check_timeout == 0.25


def test_policy_needs_a_check_server() -> None:
    assert not MeshConfig.from_mapping({"disablePolicyChecks": False}).policy_checks


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"disablePolicyCheck": False}, "unknown field 'disablePolicyCheck'"),
        ({"disablePolicyChecks": "no"}, "disablePolicyChecks must be true or false"),
        ({"mixerCheckServer": "istio-policy"}, "is not host:port"),
        ({"policyCheckTimeout": 0}, "positive number of seconds"),
        (["disablePolicyChecks"], "expected a mapping"),
    ],
)
def test_bad_fields_are_named(raw: object, message: str) -> None:
    with pytest.raises(MeshConfigError, match=message):
        MeshConfig.from_mapping(raw)
