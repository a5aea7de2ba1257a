"""The local mesh's configuration translated for capture mode, where pods live on a bridge.

Why a translation: the local mesh's directories give each WorkloadEntry its own loopback
address (examples/bookinfo: 127.20.0.x), which works while every pod shares the host's `lo`.
With `--capture` each pod has its own network namespace, reached over the hub's bridge, and
every namespace routes 127.0.0.0/8 to its own `lo`; so the registry pilot serves must name the
addresses the pods really have, and the applications, which call services by name with no
proxy settings, must resolve those names to addresses that capture catches. The mesh runs on a
translated copy of the directory (`write`), with these changes and no others:

- WorkloadEntry `spec.address`: the pod's address on the hub's network, from `POD_ADDRESSES`
  in the order the entries are first seen; a pod keeps its address while the mesh runs (the
  `Allocation` outlives each translation).
- ServiceEntry with a `workloadSelector` (a service of the mesh's own pods): `spec.addresses`
  becomes one VIP from `SERVICE_NETWORK`, which no interface has, so only capture delivers
  traffic sent to it: what a Kubernetes ClusterIP is. Other ServiceEntries (external hosts,
  inline endpoints) are left as they are.
- A file holding neither kind is copied byte for byte; one that does is written back as YAML
  (comments dropped; the loader reads YAML whatever the suffix, JSON included). A file that
  does not parse is copied as it is, for galley to refuse as it would the original.

`Translation.hosts(namespace)` is the /etc/hosts of a pod in that namespace: every host of
every service with a VIP, plus the shorter names Kubernetes' DNS search path resolves there
(`details.default.svc.cluster.local` is also `details.default.svc`, `details.default` and,
from `default`, `details`), since applications such as bookinfo's call `http://details:9080`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Final

import yaml

from pilot.config_files import SUFFIXES

POD_ADDRESSES: Final = ipaddress.IPv4Network("198.18.1.0/24")
"""Where pods are numbered from (198.18.1.1 up), inside the hub's bridge network."""
SERVICE_NETWORK: Final = ipaddress.IPv4Network("198.19.0.0/24")
"""The VIPs: routed nowhere, not even on the bridge."""
CLUSTER_SUFFIX: Final = ".svc.cluster.local"

Key = tuple[str, str]  # (namespace, name)


@dataclass
class Allocation:
    """Addresses handed out so far, by (namespace, name): kept across translations, so editing
    the directory never moves a running pod or a VIP an application has resolved."""

    pods: dict[Key, ipaddress.IPv4Address] = field(default_factory=dict)
    vips: dict[Key, ipaddress.IPv4Address] = field(default_factory=dict)

    def pod(self, key: Key) -> ipaddress.IPv4Address:
        return _take(self.pods, key, POD_ADDRESSES)

    def vip(self, key: Key) -> ipaddress.IPv4Address:
        return _take(self.vips, key, SERVICE_NETWORK)


def _take(
    table: dict[Key, ipaddress.IPv4Address], key: Key, pool: ipaddress.IPv4Network
) -> ipaddress.IPv4Address:
    if key not in table:
        used = set(table.values())
        free = next((a for a in pool.hosts() if a not in used), None)
        if free is None:
            raise ValueError(f"{pool} is exhausted: too many entries for capture mode")
        table[key] = free
    return table[key]


@dataclass(frozen=True)
class Service:
    """A service with a VIP, as the pods' hosts files name it."""

    namespace: str
    hosts: tuple[str, ...]
    vip: ipaddress.IPv4Address


@dataclass(frozen=True)
class Translation:
    """The translated directory: each file's content by relative path, and the services."""

    files: dict[PurePath, bytes]
    services: tuple[Service, ...]

    def hosts(self, namespace: str) -> dict[str, str]:
        """Host name -> VIP, for a pod in `namespace`; the first service to claim a name has it."""
        entries: dict[str, str] = {}
        for service in self.services:
            for host in service.hosts:
                for name in resolvable_names(host, namespace):
                    entries.setdefault(name, str(service.vip))
        return entries


def resolvable_names(host: str, namespace: str) -> list[str]:
    """The names under which a pod in `namespace` finds `host` (Kubernetes' search path)."""
    if "*" in host:
        return []
    if not host.endswith(CLUSTER_SUFFIX):
        return [host]
    base = host.removesuffix(CLUSTER_SUFFIX)  # name.namespace
    name, _, host_namespace = base.partition(".")
    if not host_namespace or "." in host_namespace:
        return [host]
    names = [host, f"{base}.svc", base]
    return [*names, name] if host_namespace == namespace else names


def translate(source: Path, allocation: Allocation) -> Translation:
    """The capture variant of the configuration directory `source` (see the module's doc)."""
    files: dict[PurePath, bytes] = {}
    services: list[Service] = []
    for path in _config_files(source):
        raw = path.read_bytes()
        try:
            documents = list(yaml.safe_load_all(raw))
        except yaml.YAMLError:
            files[path.relative_to(source)] = raw
            continue
        changed = False
        for document in _mappings(documents):
            changed |= _translate(document, allocation, services)
        files[path.relative_to(source)] = (
            yaml.safe_dump_all(documents, sort_keys=False).encode() if changed else raw
        )
    return Translation(files, tuple(services))


def write(translation: Translation, target: Path) -> bool:
    """Make `target` hold exactly the translated files, touching only those that differ (galley
    watches it); return whether anything changed."""
    changed = False
    for relative, content in translation.files.items():
        path = target / relative
        if not path.is_file() or path.read_bytes() != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            changed = True
    for path in _config_files(target):
        if path.relative_to(target) not in translation.files:
            path.unlink()
            changed = True
    return changed


def _config_files(directory: Path) -> list[Path]:
    """The files galley reads: configuration suffixes, nothing hidden."""
    return [
        path
        for path in sorted(directory.rglob("*"))
        if path.suffix in SUFFIXES
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    ]


def _mappings(documents: list[Any]) -> Iterator[dict[str, Any]]:
    """The documents that are resources, the items of `kind: List` included."""
    for document in documents:
        if not isinstance(document, dict):
            continue
        if document.get("kind") == "List" and isinstance(document.get("items"), list):
            yield from _mappings(document["items"])
        else:
            yield document


def _translate(document: dict[str, Any], allocation: Allocation, services: list[Service]) -> bool:
    """Rewrite one resource in place if capture mode changes it; say whether it did."""
    kind = document.get("kind")
    meta = document.get("metadata")
    spec = document.get("spec")
    if kind not in ("WorkloadEntry", "ServiceEntry") or not isinstance(spec, dict):
        return False
    meta = meta if isinstance(meta, dict) else {}
    key = (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))
    if kind == "WorkloadEntry":
        spec["address"] = str(allocation.pod(key))
        return True
    if not spec.get("workloadSelector"):
        return False
    vip = allocation.vip(key)
    spec["addresses"] = [str(vip)]
    services.append(Service(key[0], tuple(str(h) for h in spec.get("hosts") or ()), vip))
    return True
