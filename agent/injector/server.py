"""The sidecar injector's HTTPS server: Kubernetes' MutatingWebhookConfiguration POSTs every
new pod of an `istio-injection=enabled` namespace to `/inject`; `/ready` is for its probe.

The API server only speaks HTTPS to webhooks, so the server needs a certificate for its Service
name (`istio-sidecar-injector.istio-system.svc`) whose CA is the webhook configuration's
caBundle; it is given one (deploy/ mounts it from a Secret). `InjectionWebhook` owns its aiohttp
runner; `start()` binds the port, `stop()` releases it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agent.injector.admission import admission_response
from agent.injector.config import InjectionConfig
from meshcore.admission import AdmissionServer

log = logging.getLogger(__name__)

DEFAULT_PORT = 9443


class InjectionWebhook(AdmissionServer):
    def __init__(
        self,
        config: InjectionConfig,
        cert_file: str | Path,
        key_file: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
    ) -> None:
        self.config = config
        super().__init__(
            "/inject", self._decide, Path(cert_file), Path(key_file), host=host, port=port
        )

    async def start(self) -> None:
        await super().start()
        log.info("sidecar injector on %s (image %s)", self.url, self.config.image)

    def _decide(self, review: Any) -> dict[str, Any]:
        return admission_response(review, self.config)
