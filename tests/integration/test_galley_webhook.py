"""The validation webhook over real HTTPS, its generated certificate verified by the client; in
a galley, Mixer rules judged together with galley's snapshot."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry

from galley.server import Galley, GalleyOptions
from galley.sources.directory import validation_failures
from galley.webhook import ValidationWebhook
from meshconfig import kind_for
from tests.integration.mesh import allocate_block
from tests.support.shared import BOOKINFO_NETWORKING
from tests.unit.galley.galley_mixer_config import handler, instance, rule
from tests.unit.galley.galley_test_kind import documents, widget, widget_kind

BOOKINFO = BOOKINFO_NETWORKING


def review(operation: str, document: Any) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": f"uid-{operation}", "operation": operation, "object": document},
    }


@pytest.fixture(autouse=True)
def _widgets() -> Iterator[None]:
    with widget_kind():
        yield


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def webhook(tmp_path: Path, registry: CollectorRegistry) -> AsyncIterator[ValidationWebhook]:
    failures = validation_failures(registry)
    async with ValidationWebhook(port=0, run_dir=tmp_path / "run", failures=failures) as server:
        yield server


@pytest.fixture
async def client(webhook: ValidationWebhook) -> AsyncIterator[aiohttp.ClientSession]:
    trust = ssl.create_default_context(cafile=webhook.cert_file)
    trust.verify_flags |= ssl.VERIFY_X509_STRICT
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as session:
        yield session


async def post(
    client: aiohttp.ClientSession, webhook: ValidationWebhook, body: Any
) -> dict[str, Any]:
    async with client.post(webhook.url, json=body) as answer:
        assert answer.status == 200
        decoded: dict[str, Any] = await answer.json()
        return decoded


async def test_a_valid_object_is_allowed(
    client: aiohttp.ClientSession, webhook: ValidationWebhook
) -> None:
    assert webhook.port != 0
    answer = await post(client, webhook, review("CREATE", yaml.safe_load(widget("one"))))

    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"] == {"uid": "uid-CREATE", "allowed": True}


async def test_an_invalid_object_is_denied_naming_the_field(
    client: aiohttp.ClientSession, webhook: ValidationWebhook, registry: CollectorRegistry
) -> None:
    answer = await post(client, webhook, review("UPDATE", yaml.safe_load(widget("one", port=0))))

    response = answer["response"]
    assert (response["uid"], response["allowed"]) == ("uid-UPDATE", False)
    assert response["status"]["code"] == 400
    assert response["status"]["message"].startswith("admission: Widget default/one: spec.port: ")
    sample = registry.get_sample_value("galley_validation_failed_total", {"source": "admission"})
    assert sample == 1


async def test_a_deletion_is_allowed(
    client: aiohttp.ClientSession, webhook: ValidationWebhook
) -> None:
    answer = await post(client, webhook, review("DELETE", None))

    assert answer["response"] == {"uid": "uid-DELETE", "allowed": True}


@pytest.mark.parametrize("body", [b"{not json", b'{"kind": "AdmissionReview"}'])
async def test_a_malformed_review_gets_400(
    client: aiohttp.ClientSession, webhook: ValidationWebhook, body: bytes
) -> None:
    async with client.post(webhook.url, data=body) as answer:
        assert answer.status == 400
        assert (await answer.text()).startswith("malformed AdmissionReview: ")


async def test_a_client_that_does_not_trust_the_certificate_is_refused(
    webhook: ValidationWebhook,
) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.post(webhook.url, json=review("DELETE", None))


async def test_a_given_certificate_is_used(webhook: ValidationWebhook) -> None:
    async with (
        ValidationWebhook(port=0, cert_file=webhook.cert_file, key_file=webhook.key_file) as other,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=other.cert_file))
        ) as session,
        session.post(other.url, json=review("DELETE", None)) as answer,
    ):
        assert answer.status == 200


async def test_bookinfo_routes_are_judged_like_files(
    client: aiohttp.ClientSession, webhook: ValidationWebhook
) -> None:
    if kind_for("networking.istio.io/v1", "VirtualService") is None:
        pytest.skip("the networking kinds are not defined yet")
    document = yaml.safe_load((BOOKINFO / "virtual-service-reviews-80-20.yaml").read_text())

    allowed = await post(client, webhook, review("CREATE", document))
    document["spec"]["http"][0]["route"][1]["weight"] = "twenty"
    denied = await post(client, webhook, review("CREATE", document))

    assert allowed["response"]["allowed"] is True
    assert denied["response"]["allowed"] is False
    assert (
        "VirtualService default/reviews: spec.http[0].route[1].weight: "
        in (denied["response"]["status"]["message"])
    )


async def test_galleys_webhook_judges_mixer_rules_with_its_snapshot(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "handler.yaml").write_text(documents(handler(), instance()))
    options = GalleyOptions(
        config_dir=config,
        host=f"{allocate_block()}.1",
        grpc_port=0,
        monitoring_port=0,
        webhook_port=0,
        webhook_dir=tmp_path / "run",
    )
    async with Galley(options) as galley:
        assert galley.webhook is not None
        trust = ssl.create_default_context(cafile=galley.webhook.cert_file)
        connector = aiohttp.TCPConnector(ssl=trust)
        async with aiohttp.ClientSession(connector=connector) as session:
            good = await post(session, galley.webhook, review("CREATE", yaml.safe_load(rule())))
            dangling = yaml.safe_load(rule(handler="nope"))
            bad = await post(session, galley.webhook, review("CREATE", dangling))
        failed = galley.registry.get_sample_value(
            "galley_validation_failed_total", {"source": "admission"}
        )

    assert good["response"]["allowed"] is True
    assert bad["response"]["allowed"] is False
    assert bad["response"]["status"]["message"] == (
        "admission: rule default/deny-v3: spec.actions[0].handler: handler 'nope' not found "
        "(as nope.handler.default)"
    )
    assert failed == 1
