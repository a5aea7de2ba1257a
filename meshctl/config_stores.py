"""Where `meshctl apply / get / delete` keep configuration: a directory, or the Kubernetes API.

Both hold the same thing, Istio resources as meshconfig validates them, and answer the same
three requests. The directory is what galley (and the local mesh) watch: a resource lives in a
file, and meshctl only rewrites files that hold that one resource (a file written by hand with
several documents is the user's to edit), atomically, so a watcher never reads half a file. The
Kubernetes store uses the API server's custom objects, as kubectl would, for the Istio kinds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from meshconfig import Kind, Resource, UnknownKindError, load_documents, validate_document

Outcome = Literal["created", "configured", "unchanged"]
SUFFIXES = (".yaml", ".yml", ".json")


class StoreError(Exception):
    """A request the store cannot carry out, with the reason in the message."""


class ConfigStore(Protocol):
    async def apply(self, resource: Resource) -> Outcome: ...

    async def list(self, kind: Kind, namespace: str | None) -> list[Resource]: ...

    async def delete(self, kind: Kind, namespace: str, name: str) -> None: ...


@dataclass(frozen=True)
class _Found:
    resource: Resource
    path: Path
    documents_in_file: int


class DirectoryStore:
    """Resources as YAML files under `root` (subdirectories included, hidden ones skipped)."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise StoreError(f"{root} is not a directory")
        self.root = root

    def _scan(self) -> list[_Found]:
        found = []
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root).parts
            if path.suffix not in SUFFIXES or any(p.startswith(".") for p in relative):
                continue
            documents = load_documents(path.read_text(encoding="utf-8"), str(path))
            for document in documents:
                try:
                    resource = validate_document(document, str(path))
                except UnknownKindError:
                    continue
                found.append(_Found(resource, path, len(documents)))
        return found

    def _find(self, key: tuple[str, str, str]) -> _Found | None:
        return next((f for f in self._scan() if f.resource.key == key), None)

    async def apply(self, resource: Resource) -> Outcome:
        existing = self._find(resource.key)
        if existing is None:
            meta = resource.metadata
            name = f"{resource.kind.kind.lower()}-{meta.namespace or 'cluster'}-{meta.name}.yaml"
            _write(self.root / name, resource)
            return "created"
        if existing.resource.to_document() == resource.to_document():
            return "unchanged"
        if existing.documents_in_file > 1:
            raise StoreError(
                f"{resource.label} is defined in {existing.path} with other documents; "
                "edit it there"
            )
        _write(existing.path, resource)
        return "configured"

    async def list(self, kind: Kind, namespace: str | None) -> list[Resource]:
        return [
            f.resource
            for f in self._scan()
            if f.resource.kind == kind
            and (namespace is None or f.resource.metadata.namespace == namespace)
        ]

    async def delete(self, kind: Kind, namespace: str, name: str) -> None:
        existing = self._find((kind.id, namespace if kind.namespaced else "", name))
        if existing is None:
            raise StoreError(f"{kind.kind} {namespace}/{name} not found in {self.root}")
        if existing.documents_in_file > 1:
            raise StoreError(
                f"{existing.resource.label} is defined in {existing.path} with other documents; "
                "edit it there"
            )
        existing.path.unlink()


def _write(path: Path, resource: Resource) -> None:
    tmp = path.with_name(f".{path.name}.tmp")  # hidden: watchers skip it
    tmp.write_text(yaml.safe_dump(resource.to_document(), sort_keys=False))
    os.replace(tmp, path)


class KubernetesStore:
    """Istio resources as the API server's custom objects (Kubernetes core kinds excluded)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.objects = client.CustomObjectsApi(api)

    async def close(self) -> None:
        await self.api.close()

    @staticmethod
    def _coordinates(kind: Kind) -> tuple[str, str, str]:
        if not kind.group:
            raise StoreError(f"{kind.kind} is a Kubernetes core kind: use kubectl for it")
        return kind.group, kind.versions[0], kind.plural

    async def apply(self, resource: Resource) -> Outcome:
        group, version, plural = self._coordinates(resource.kind)
        meta = resource.metadata
        body = resource.to_document()
        body["apiVersion"] = f"{group}/{version}"
        try:
            current = await self.objects.get_namespaced_custom_object(
                group, version, meta.namespace, plural, meta.name
            )
        except ApiException as error:
            if error.status != 404:
                raise StoreError(_api_error(error)) from error
            await self._call(
                self.objects.create_namespaced_custom_object(
                    group, version, meta.namespace, plural, body
                )
            )
            return "created"
        if current.get("spec") == body.get("spec"):
            return "unchanged"
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await self._call(
            self.objects.replace_namespaced_custom_object(
                group, version, meta.namespace, plural, meta.name, body
            )
        )
        return "configured"

    async def list(self, kind: Kind, namespace: str | None) -> list[Resource]:
        group, version, plural = self._coordinates(kind)
        if namespace is None:
            listed = await self._call(
                self.objects.list_cluster_custom_object(group, version, plural)
            )
        else:
            listed = await self._call(
                self.objects.list_namespaced_custom_object(group, version, namespace, plural)
            )
        return [validate_document(item, "kubernetes") for item in listed.get("items", [])]

    async def delete(self, kind: Kind, namespace: str, name: str) -> None:
        group, version, plural = self._coordinates(kind)
        await self._call(
            self.objects.delete_namespaced_custom_object(group, version, namespace, plural, name)
        )

    @staticmethod
    async def _call(request: Any) -> Any:
        try:
            return await request
        except ApiException as error:
            raise StoreError(_api_error(error)) from error


def _api_error(error: ApiException) -> str:
    body = error.body.decode() if isinstance(error.body, bytes) else str(error.body or "")
    return f"the Kubernetes API answered {error.status} {error.reason}: {body}".strip()
