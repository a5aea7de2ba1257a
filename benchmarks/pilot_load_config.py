"""The mesh the pilot load benchmark serves: Istio YAML in a directory, and the proxies of it.

Why a module of its own: the orchestrator writes this configuration into pilot's config
directory and rewrites parts of it to make churn, while the load generator's processes need the
same description to impersonate the sidecars (node ids and metadata as `agent.bootstrap` sends
them). Both sides build it from the same few numbers, so nothing large crosses a process
boundary.

The mesh: `services` ServiceEntries (MESH_INTERNAL, STATIC, one HTTP port), spread over
`namespaces` namespaces, each selecting its `endpoints` WorkloadEntries (label `app`, a service
account, so Istio mutual TLS). Proxy `i` is the sidecar of workload `i`, so most proxies also
serve a service (inbound clusters and listeners of their own); proxies beyond the workloads are
clients that back no service. One VirtualService, on the first service's host and visible to
the whole mesh, is the config every proxy sees change. Churn lives in small files of its own
(an extra endpoint, extra services), since pilot reads the whole directory either way.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

API_VERSION = "networking.istio.io/v1"
PORT = 8080
ROUTE_NAME = str(PORT)  # Istio names outbound route configs by port
REVISION_HEADER = "x-bench-revision"
TRUST_DOMAIN = "cluster.local"
_WORKLOAD_BASE = int(ipaddress.IPv4Address("10.0.0.1"))
_CLIENT_BASE = int(ipaddress.IPv4Address("10.128.0.1"))
_CHURN_BASE = int(ipaddress.IPv4Address("10.192.0.1"))
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

Document = dict[str, Any]

VIRTUAL_SERVICE_FILE = "virtual-service.yaml"
CHURN_ENDPOINT_FILE = "churn-endpoint.yaml"
CHURN_SERVICES_FILE = "churn-services.yaml"


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    namespace: str
    address: str
    app: str  # the service it backs; "client" for a proxy that backs none


@dataclass(frozen=True)
class Mesh:
    """The generated mesh: `services` x `endpoints` workloads, `proxies` sidecars."""

    services: int
    endpoints: int
    proxies: int
    namespaces: int = 10

    def namespace(self, index: int) -> str:
        return f"ns-{index % self.namespaces:02d}"

    def service_name(self, index: int) -> str:
        return f"svc-{index:05d}"

    def hostname(self, index: int) -> str:
        return f"{self.service_name(index)}.{self.namespace(index)}.svc.{TRUST_DOMAIN}"

    def cluster(self, index: int) -> str:
        return f"outbound|{PORT}||{self.hostname(index)}"

    def workload(self, index: int) -> Workload:
        """Workload `index`: endpoint `index % endpoints` of service `index // endpoints`;
        past the last service's endpoints, a client that backs no service."""
        if index < self.services * self.endpoints:
            service = index // self.endpoints
            return Workload(
                name=f"{self.service_name(service)}-{index % self.endpoints}",
                namespace=self.namespace(service),
                address=_address(_WORKLOAD_BASE, index),
                app=self.service_name(service),
            )
        client = index - self.services * self.endpoints
        return Workload(
            name=f"client-{client:05d}",
            namespace=self.namespace(client),
            address=_address(_CLIENT_BASE, client),
            app="client",
        )

    def proxy_workloads(self) -> list[Workload]:
        return [self.workload(i) for i in range(self.proxies)]

    def documents(self) -> dict[str, list[Document]]:
        """File name -> its resources: services and workloads one file per namespace."""
        files: dict[str, list[Document]] = {}
        for index in range(self.services):
            namespace = self.namespace(index)
            files.setdefault(f"services-{namespace}.yaml", []).append(
                service_entry(self.service_name(index), namespace)
            )
        for index in range(self.services * self.endpoints):
            workload = self.workload(index)
            files.setdefault(f"workloads-{workload.namespace}.yaml", []).append(
                workload_entry(workload)
            )
        files[VIRTUAL_SERVICE_FILE] = [self.virtual_service(0)]
        return files

    def virtual_service(self, revision: int) -> Document:
        """Routes to the first service, with a request header naming `revision`: every proxy
        sees it (it is exported to the whole mesh), so each revision changes every proxy's
        route configuration."""
        host = self.hostname(0)
        return {
            "apiVersion": API_VERSION,
            "kind": "VirtualService",
            "metadata": {"name": "bench-routes", "namespace": self.namespace(0)},
            "spec": {
                "hosts": [host],
                "http": [
                    {
                        "route": [{"destination": {"host": host, "port": {"number": PORT}}}],
                        "headers": {
                            "request": {"set": {REVISION_HEADER: revision_marker(revision)}}
                        },
                        "timeout": "5s",
                        "retries": {"attempts": 2, "perTryTimeout": "2s"},
                    }
                ],
            },
        }

    def churn_endpoint(self, serial: int, service: int) -> tuple[Document, str]:
        """An extra WorkloadEntry for `service` at a fresh address, and that address."""
        address = _address(_CHURN_BASE, serial)
        workload = Workload(
            f"churn-{serial:05d}", self.namespace(service), address, self.service_name(service)
        )
        return workload_entry(workload), address

    def extra_service(self, serial: int) -> tuple[int, list[Document]]:
        """A service beyond the generated ones (index `services + serial`) with its endpoints,
        and its index."""
        index = self.services + serial
        namespace = self.namespace(index)
        documents = [service_entry(self.service_name(index), namespace)]
        for endpoint in range(self.endpoints):
            workload = Workload(
                f"{self.service_name(index)}-{endpoint}",
                namespace,
                _address(_CHURN_BASE, 0x8000 + serial * self.endpoints + endpoint),
                self.service_name(index),
            )
            documents.append(workload_entry(workload))
        return index, documents


def revision_marker(revision: int) -> str:
    """The header value of a VirtualService revision, unique as a substring of route bytes."""
    return f"bench-rev-{revision:06d}"


def _address(base: int, offset: int) -> str:
    return str(ipaddress.IPv4Address(base + offset))


def service_entry(name: str, namespace: str) -> Document:
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hosts": [f"{name}.{namespace}.svc.{TRUST_DOMAIN}"],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "ports": [{"number": PORT, "name": "http", "protocol": "HTTP"}],
            "workloadSelector": {"labels": {"app": name}},
        },
    }


def workload_entry(workload: Workload) -> Document:
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkloadEntry",
        "metadata": {"name": workload.name, "namespace": workload.namespace},
        "spec": {
            "address": workload.address,
            "labels": {"app": workload.app, "version": "v1"},
            "serviceAccount": workload.app,
        },
    }


def node_id(workload: Workload) -> str:
    namespace = workload.namespace
    return f"sidecar~{workload.address}~{workload.name}.{namespace}~{namespace}.svc.{TRUST_DOMAIN}"


def node_metadata(workload: Workload) -> dict[str, Any]:
    """What `agent.bootstrap` puts in the node metadata of a sidecar with certificates."""
    return {
        "NAMESPACE": workload.namespace,
        "NAME": workload.name,
        "LABELS": {"app": workload.app, "version": "v1"},
        "SERVICE_ACCOUNT": workload.app,
        "INSTANCE_IPS": workload.address,
        "INTERCEPTION_MODE": "REDIRECT",
        "APP_ADDRESS": "127.0.0.1",
        "CLUSTER_ID": "Kubernetes",
        "MESH_ID": TRUST_DOMAIN,
        "SDS": "true",
    }


def write_file(directory: Path, name: str, documents: Iterable[Document]) -> None:
    """Write atomically (a hidden file renamed over), so the watcher never reads half a file."""
    text = yaml.dump_all(list(documents), Dumper=_DUMPER, sort_keys=False)
    hidden = directory / f".{name}.tmp"
    hidden.write_text(text, encoding="utf-8")
    os.replace(hidden, directory / name)


def remove_file(directory: Path, name: str) -> None:
    (directory / name).unlink(missing_ok=True)


def write_mesh(directory: Path, mesh: Mesh) -> int:
    """Write the whole generated mesh; returns the number of resources written."""
    count = 0
    for name, documents in mesh.documents().items():
        write_file(directory, name, documents)
        count += len(documents)
    return count
