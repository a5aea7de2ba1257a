"""How a service reaches the Kubernetes API, named the same way by every `--kubernetes` flag.

Galley watches the API, citadel reviews tokens and keeps its CA in a Secret; both take one
string saying where the API is and build a kubernetes-asyncio ApiClient from it here:
"in-cluster" (the pod's service account, else the default kubeconfig), an http(s) URL used as
is (`kubectl proxy`, the tests' fake API), or a kubeconfig path.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from kubernetes_asyncio import client, config

IN_CLUSTER = "in-cluster"

ApiClientFactory = Callable[[], Awaitable[client.ApiClient]]


async def api_client(
    where: str, *, context: str | None = None, unlimited_connections: bool = False
) -> client.ApiClient:
    """A client for `where`; `unlimited_connections` for a caller holding many watches open."""
    configuration = client.Configuration()
    if unlimited_connections:
        configuration.connection_pool_maxsize = 0
    if where.startswith(("http://", "https://")):
        configuration.host = where
    elif where == IN_CLUSTER and "KUBERNETES_SERVICE_HOST" in os.environ:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        kubeconfig = None if where == IN_CLUSTER else where
        await config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    return client.ApiClient(configuration)


def api_client_factory(where: str, *, unlimited_connections: bool = False) -> ApiClientFactory:
    """`api_client` for `where`, made anew on each call (a source reconnecting from scratch)."""

    async def make() -> client.ApiClient:
        return await api_client(where, unlimited_connections=unlimited_connections)

    return make
