"""The CA kept in Kubernetes Secrets, where istiod keeps it, so that every replica and every
restart of citadel signs under the same root.

Two Secrets in the CA namespace (`istio-system` by default), both in the `cacerts` layout with
base64 values under `data`, as Istio writes them:

- `cacerts`, when it exists, is an operator's plugged-in CA. Citadel only reads it; its root
  is the operator's, so citadel never rotates it.
- otherwise `istio-ca-secret` holds citadel's self-signed CA: created on the first start (if
  two replicas race, the loser reads the winner's), read on every later one, and replaced by a
  root rotation only if nobody changed it since it was read (resourceVersion).
"""

from __future__ import annotations

import base64
import binascii

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from citadel.cacerts import CaMaterial, CaStoreError

DEFAULT_NAMESPACE = "istio-system"
PLUGGED_IN_SECRET = "cacerts"
SELF_SIGNED_SECRET = "istio-ca-secret"
# The type istiod gives istio-ca-secret.
SELF_SIGNED_TYPE = "istio.io/ca-root"


class SecretStore:
    """A `CaStore` over the Secrets of `namespace`; `api` is the caller's to close."""

    def __init__(self, api: client.ApiClient, namespace: str = DEFAULT_NAMESPACE) -> None:
        self._core = client.CoreV1Api(api)
        self.namespace = namespace
        self._loaded: str | None = None  # the Secret `load` found
        self._resource_version: str | None = None

    @property
    def description(self) -> str:
        name = self._loaded or f"{PLUGGED_IN_SECRET} or {SELF_SIGNED_SECRET}"
        return f"secret {self.namespace}/{name}"

    async def load(self) -> CaMaterial | None:
        for name in (PLUGGED_IN_SECRET, SELF_SIGNED_SECRET):
            secret = await self._read(name)
            if secret is not None:
                self._loaded = name
                self._resource_version = secret.metadata.resource_version
                return self._material(name, secret.data or {})
        self._loaded = self._resource_version = None
        return None

    async def create(self, material: CaMaterial) -> CaMaterial:
        body = self._body(material)
        try:
            created = await self._core.create_namespaced_secret(self.namespace, body)
        except ApiException as error:
            if error.status != 409:
                raise self._error("create", SELF_SIGNED_SECRET, error) from error
            # Another replica created it first: use the CA everyone else now uses.
            stored = await self.load()
            if stored is None:
                raise CaStoreError(
                    f"secret {self.namespace}/{SELF_SIGNED_SECRET} already exists but cannot "
                    "be read back"
                ) from error
            return stored
        except (aiohttp.ClientError, TimeoutError) as error:
            raise self._error("create", SELF_SIGNED_SECRET, error) from error
        self._loaded = SELF_SIGNED_SECRET
        self._resource_version = created.metadata.resource_version
        return material

    async def replace(self, material: CaMaterial) -> None:
        if self._loaded == PLUGGED_IN_SECRET:
            raise CaStoreError(
                f"the CA comes from secret {self.namespace}/{PLUGGED_IN_SECRET}, which the "
                "operator owns: citadel does not change it"
            )
        if self._loaded is None:
            raise CaStoreError(f"no CA was loaded from {self.description}: nothing to replace")
        body = self._body(material, self._resource_version)
        try:
            replaced = await self._core.replace_namespaced_secret(
                SELF_SIGNED_SECRET, self.namespace, body
            )
        except ApiException as error:
            if error.status == 409:
                raise CaStoreError(
                    f"secret {self.namespace}/{SELF_SIGNED_SECRET} changed since it was read; "
                    "try again"
                ) from error
            raise self._error("replace", SELF_SIGNED_SECRET, error) from error
        except (aiohttp.ClientError, TimeoutError) as error:
            raise self._error("replace", SELF_SIGNED_SECRET, error) from error
        self._resource_version = replaced.metadata.resource_version

    async def _read(self, name: str) -> client.V1Secret | None:
        try:
            return await self._core.read_namespaced_secret(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise self._error("read", name, error) from error
        except (aiohttp.ClientError, TimeoutError) as error:
            raise self._error("read", name, error) from error

    def _material(self, name: str, data: dict[str, str]) -> CaMaterial:
        where = f"secret {self.namespace}/{name}"
        files = {}
        for key, value in data.items():
            try:
                files[key] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as error:
                raise CaStoreError(f"{where}: {key} is not base64") from error
        return CaMaterial.from_files(files, where)

    def _body(self, material: CaMaterial, resource_version: str | None = None) -> client.V1Secret:
        data = {key: base64.b64encode(value).decode() for key, value in material.files().items()}
        return client.V1Secret(
            api_version="v1",
            kind="Secret",
            metadata=client.V1ObjectMeta(
                name=SELF_SIGNED_SECRET,
                namespace=self.namespace,
                resource_version=resource_version,
            ),
            type=SELF_SIGNED_TYPE,
            data=data,
        )

    def _error(self, verb: str, name: str, error: Exception) -> CaStoreError:
        reason = (
            f"{error.status} {error.reason}" if isinstance(error, ApiException) else repr(error)
        )
        return CaStoreError(f"cannot {verb} secret {self.namespace}/{name}: {reason}")
