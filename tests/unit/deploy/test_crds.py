"""deploy/base/crds.yaml is what deploy/generate_crds.py makes of Istio's CRDs, and it defines
every kind galley accepts, serving every version meshconfig reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy import generate_crds
from meshconfig import Kind
from tests.support.shared import CRDS

REGENERATE_HINT = "run `python -m deploy.generate_crds` and commit the result"


def test_committed_crds_match_the_generator() -> None:
    assert generate_crds.OUTPUT.read_text() == generate_crds.render(CRDS.read_text()), (
        REGENERATE_HINT
    )


def test_the_generator_reads_the_shared_istio_tree() -> None:
    assert generate_crds.ISTIO_CRDS == CRDS


@pytest.mark.parametrize("kind", generate_crds.istio_kinds(), ids=lambda kind: kind.id)
def test_every_istio_kind_has_a_crd_serving_its_versions(
    kind: Kind, manifests: list[dict[str, Any]]
) -> None:
    [crd] = [
        doc
        for doc in manifests
        if doc["kind"] == "CustomResourceDefinition"
        and doc["metadata"]["name"] == f"{kind.plural}.{kind.group}"
    ]
    spec = crd["spec"]
    assert (spec["group"], spec["names"]["kind"]) == (kind.group, kind.kind)
    assert spec["scope"] == ("Namespaced" if kind.namespaced else "Cluster")
    served = {version["name"] for version in spec["versions"] if version["served"]}
    assert set(kind.versions) <= served
    assert sum(version["storage"] for version in spec["versions"]) == 1


def test_only_istio_kinds_get_crds(manifests: list[dict[str, Any]]) -> None:
    crds = {
        doc["metadata"]["name"] for doc in manifests if doc["kind"] == "CustomResourceDefinition"
    }
    assert crds == {f"{kind.plural}.{kind.group}" for kind in generate_crds.istio_kinds()}


def test_a_kind_missing_from_istios_crds_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"networking\.istio\.io/VirtualService"):
        generate_crds.render("")


def test_the_generator_writes_the_file(tmp_path: Path) -> None:
    output = tmp_path / "crds.yaml"

    assert generate_crds.main(["--istio-crds", str(CRDS), "--output", str(output)]) == 0
    assert output.read_text() == generate_crds.OUTPUT.read_text()
