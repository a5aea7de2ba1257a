"""Pilot's directory reader validates only the files that changed since its last read, and its
registry converts only the resources that changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshconfig import ConfigValidationError
from pilot import config_files
from pilot.config_files import DirectoryReader
from pilot.registry import ConfigError, resources

HELLO = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hello, namespace: default}
spec:
  hosts: [hello.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: %d, name: http, protocol: HTTP}]
"""
WORLD = HELLO.replace("hello", "world")


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sources of every document validated from now on."""
    seen: list[str] = []
    original = config_files.validate_document

    def counting(document, source=""):  # type: ignore[no-untyped-def]
        seen.append(Path(source).name)
        return original(document, source)

    monkeypatch.setattr(config_files, "validate_document", counting)
    return seen


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of every registry resource converted from now on."""
    seen: list[str] = []
    original = resources.convert_resource

    def counting(source, spec, annotations=None):  # type: ignore[no-untyped-def]
        seen.append(source.name)
        return original(source, spec, annotations)

    monkeypatch.setattr(resources, "convert_resource", counting)
    return seen


def ports(reader: DirectoryReader, directory: Path) -> dict[str, int]:
    return {
        s.hostname.split(".")[0]: s.ports[0].number
        for s in reader.read(directory).registry.services
    }


def test_only_changed_files_are_validated_again(tmp_path: Path, validations: list[str]) -> None:
    (tmp_path / "hello.yaml").write_text(HELLO % 8080)
    (tmp_path / "world.yaml").write_text(WORLD % 9090)
    reader = DirectoryReader()
    assert ports(reader, tmp_path) == {"hello": 8080, "world": 9090}
    assert sorted(validations) == ["hello.yaml", "world.yaml"]
    validations.clear()
    assert ports(reader, tmp_path) == {"hello": 8080, "world": 9090}
    assert validations == []
    replacement = tmp_path / ".hello.tmp"
    replacement.write_text(HELLO % 8081)
    os.replace(replacement, tmp_path / "hello.yaml")
    assert ports(reader, tmp_path) == {"hello": 8081, "world": 9090}
    assert validations == ["hello.yaml"]


def test_a_deleted_file_goes_and_an_invalid_one_is_refused_every_time(tmp_path: Path) -> None:
    (tmp_path / "hello.yaml").write_text(HELLO % 8080)
    (tmp_path / "world.yaml").write_text(WORLD % 9090)
    reader = DirectoryReader()
    reader.read(tmp_path)
    (tmp_path / "world.yaml").unlink()
    assert ports(reader, tmp_path) == {"hello": 8080}
    (tmp_path / "hello.yaml").write_text(HELLO % 0)
    for _ in range(2):
        with pytest.raises(ConfigValidationError, match="hello"):
            reader.read(tmp_path)


def test_only_changed_resources_are_converted_again(tmp_path: Path, conversions: list[str]) -> None:
    (tmp_path / "hello.yaml").write_text(HELLO % 8080)
    (tmp_path / "world.yaml").write_text(WORLD % 9090)
    reader = DirectoryReader()
    first = reader.read(tmp_path).registry
    assert sorted(conversions) == ["hello", "world"]
    conversions.clear()
    assert reader.read(tmp_path).registry == first
    assert conversions == []
    (tmp_path / "hello.yaml").write_text(HELLO % 8081)
    assert ports(reader, tmp_path) == {"hello": 8081, "world": 9090}
    assert conversions == ["hello"]


def test_a_rejected_read_keeps_nothing_it_converted(tmp_path: Path, conversions: list[str]) -> None:
    """A duplicate host rejects the read; the next good one still converts each new resource."""
    (tmp_path / "hello.yaml").write_text(HELLO % 8080)
    reader = DirectoryReader()
    reader.read(tmp_path)
    clash = tmp_path / "clash.yaml"
    clash.write_text(WORLD.replace("world.default", "hello.default") % 9090)
    conversions.clear()
    for _ in range(2):
        with pytest.raises(ConfigError, match="also declared"):
            reader.read(tmp_path)
    assert conversions == ["world", "world"]
    clash.write_text(WORLD % 9090)
    conversions.clear()
    assert ports(reader, tmp_path) == {"hello": 8080, "world": 9090}
    assert conversions == ["world"]
