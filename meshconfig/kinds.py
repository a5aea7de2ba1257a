"""Every kind the mesh accepts, with its group, versions, spec model and (if read) status model.

Each API group's package declares a `KINDS` tuple; this module merges them into one table. A
kind is identified without its version ("networking.istio.io/VirtualService"): all served
versions of a kind are the same resource, as in Kubernetes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class Kind:
    group: str  # "" for Kubernetes core kinds
    kind: str
    plural: str
    versions: tuple[str, ...]  # served, preferred first
    spec_model: type[BaseModel]
    namespaced: bool = True
    # Kubernetes kinds keep fields beside `spec` (Endpoints' subsets, EndpointSlice's endpoints):
    # those are validated as the "spec" of the whole object minus apiVersion/kind/metadata.
    spec_is_whole_object: bool = False
    # The model of `status` for kinds whose status the mesh reads (a Pod's IPs and phase);
    # None: `status` is ignored, as it is for every Istio kind.
    status_model: type[BaseModel] | None = None
    # Whether a document must have `spec` (the CRD lists it as required); otherwise a missing
    # `spec` is validated as an empty one.
    spec_required: bool = False

    @property
    def id(self) -> str:
        """Version-less identity, also the type URL galley distributes it under."""
        return f"{self.group}/{self.kind}" if self.group else f"core/{self.kind}"

    @property
    def preferred_api_version(self) -> str:
        version = self.versions[0]
        return f"{self.group}/{version}" if self.group else version

    def serves(self, api_version: str) -> bool:
        group, _, version = api_version.rpartition("/")
        return group == self.group and version in self.versions


@cache
def _table() -> dict[tuple[str, str], Kind]:
    from meshconfig import kube, networking, policy, security, telemetry

    table: dict[tuple[str, str], Kind] = {}
    for group_kinds in (
        networking.KINDS,
        security.KINDS,
        telemetry.KINDS,
        policy.KINDS,
        kube.KINDS,
    ):
        for kind in group_kinds:
            table[kind.group, kind.kind] = kind
    return table


def all_kinds() -> Iterator[Kind]:
    return iter(_table().values())


def kind_for(api_version: str, kind: str) -> Kind | None:
    """The kind a document's `apiVersion` and `kind` name, or None if unknown or unserved."""
    group = api_version.rpartition("/")[0]
    found = _table().get((group, kind))
    return found if found is not None and found.serves(api_version) else None


def kind_by_id(kind_id: str) -> Kind | None:
    group, _, kind = kind_id.rpartition("/")
    return _table().get(("" if group == "core" else group, kind))
