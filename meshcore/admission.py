"""Kubernetes admission webhooks: the AdmissionReview v1 envelope and the HTTPS server.

Galley's validating webhook and the sidecar injector's mutating one answer the same request
shape on the same kind of server: the API server POSTs an AdmissionReview v1 over HTTPS (it
speaks nothing else to webhooks) and reads the `response` with the request's `uid`. The
envelope checks (`review_request`, `review_answer`) and the server (`AdmissionServer`: one
POST path plus `/ready`, owning its aiohttp runner; `start()` binds, `stop()` releases) live
here once; each webhook supplies only its decision.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from meshcore.lifecycle import Service

log = logging.getLogger(__name__)

ADMISSION_API_VERSION: Final = "admission.k8s.io/v1"
_MAX_BODY: Final = 4 * 1024 * 1024  # Kubernetes caps a request body at 3 MiB

Decide = Callable[[Any], dict[str, Any]]


class MalformedReview(ValueError):
    """The request body is not an AdmissionReview v1 a webhook can answer."""


def review_request(review: Any) -> tuple[str, Mapping[str, Any]]:
    """The `uid` and `request` of an AdmissionReview v1; MalformedReview if it is not one."""
    if not isinstance(review, Mapping):
        raise MalformedReview("expected a JSON object")
    if review.get("apiVersion") != ADMISSION_API_VERSION or review.get("kind") != "AdmissionReview":
        raise MalformedReview(f"expected apiVersion {ADMISSION_API_VERSION}, kind AdmissionReview")
    request = review.get("request")
    if not isinstance(request, Mapping):
        raise MalformedReview("request is required and must be an object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview("request.uid is required and must be a string")
    return uid, request


def request_object(request: Mapping[str, Any]) -> Mapping[str, Any]:
    document = request.get("object")
    if not isinstance(document, Mapping):
        raise MalformedReview("request.object is required and must be an object")
    return document


def review_answer(response: dict[str, Any]) -> dict[str, Any]:
    """The AdmissionReview v1 carrying `response` (which holds the request's uid)."""
    return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}


class AdmissionServer(Service):
    """HTTPS with `cert_file`/`key_file`: POST `path` is answered by `decide(review)`."""

    def __init__(
        self,
        path: str,
        decide: Decide,
        cert_file: Path,
        key_file: Path,
        *,
        host: str,
        port: int,
    ) -> None:
        self.path = path
        self.cert_file, self.key_file = cert_file, key_file
        self.host = host
        self.port = port  # the bound port once started (port=0 picks one)
        self._decide = decide
        self._app = web.Application(client_max_size=_MAX_BODY)
        self._app.router.add_post(path, self._answer)
        self._app.router.add_get("/ready", self._ready)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}{self.path}"

    async def start(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=context)
        try:
            await site.start()
        except BaseException:
            await self.stop()
            raise
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _answer(self, request: web.Request) -> web.Response:
        try:
            answer = self._decide(json.loads(await request.read()))
        except ValueError as error:  # MalformedReview, or not JSON at all
            return web.Response(status=400, text=f"malformed AdmissionReview: {error}\n")
        return web.json_response(answer)

    async def _ready(self, request: web.Request) -> web.Response:
        return web.Response(text="ready\n")
