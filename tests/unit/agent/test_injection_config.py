"""Injection settings: defaults for deploy/'s Services, overridden by the mesh config."""

from __future__ import annotations

import importlib.metadata

import pytest

from agent.injector import InjectionConfig, MeshConfigError


def test_the_defaults_name_the_project_image_and_the_control_plane_services() -> None:
    config = InjectionConfig()

    assert config.image == f"pymesh/pymesh:{importlib.metadata.version('pymesh')}"
    assert config.pilot == "istiod.istio-system.svc:15011"
    assert config.citadel == "istio-citadel.istio-system.svc:8060"
    assert (config.mesh_id, config.cluster_id, config.cni) == ("cluster.local", "Kubernetes", False)


def test_the_mesh_config_overrides_what_it_sets() -> None:
    mesh = """
    trustDomain: example.org
    enableAutoMtls: true
    defaultConfig:
      discoveryAddress: pilot.mesh.svc:15011
      proxyMetadata: {CA_ADDR: ca.mesh.svc:8060}
    """
    config = InjectionConfig(image="custom:1", cni=True).with_mesh_config(mesh)

    assert config == InjectionConfig(
        image="custom:1",
        pilot="pilot.mesh.svc:15011",
        citadel="ca.mesh.svc:8060",
        mesh_id="example.org",
        cni=True,
    )


def test_an_empty_mesh_config_changes_nothing() -> None:
    assert InjectionConfig().with_mesh_config("") == InjectionConfig()


@pytest.mark.parametrize(
    ("mesh", "message"),
    [
        ("[a", "not YAML"),
        ("- a", "mesh config must be a mapping"),
        ("defaultConfig: 3", "defaultConfig must be a mapping"),
        ("defaultConfig: {proxyMetadata: []}", "defaultConfig.proxyMetadata must be a mapping"),
        ("defaultConfig: {discoveryAddress: 15011}", "defaultConfig.discoveryAddress must be"),
        ("trustDomain: ''", "trustDomain must be a non-empty string"),
    ],
)
def test_an_invalid_mesh_config_is_refused(mesh: str, message: str) -> None:
    with pytest.raises(MeshConfigError, match=message):
        InjectionConfig().with_mesh_config(mesh)
