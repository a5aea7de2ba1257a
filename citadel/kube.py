"""How citadel reaches the Kubernetes API, named the way galley's `--kubernetes` names it.

In Kubernetes mode citadel asks the API server to review service-account tokens and may keep
its CA in a Secret; both go through one kubernetes-asyncio ApiClient built here. A service does
not import another's internals, so this is citadel's own copy of galley's few lines.
"""

from __future__ import annotations

import os

from kubernetes_asyncio import client, config

IN_CLUSTER = "in-cluster"


async def api_client(where: str) -> client.ApiClient:
    """A client for `where`: "in-cluster" (the pod's service account, else the default
    kubeconfig), an http(s) URL used as is (`kubectl proxy`, tests), or a kubeconfig path."""
    configuration = client.Configuration()
    if where.startswith(("http://", "https://")):
        configuration.host = where
    elif where == IN_CLUSTER and "KUBERNETES_SERVICE_HOST" in os.environ:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        kubeconfig = None if where == IN_CLUSTER else where
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)
