"""Galley's validating admission webhook: Kubernetes asks it before storing Istio config.

The API server POSTs an AdmissionReview v1 to `/validate`; the object gets the same verdict and
the same message as a file in galley's config directory (`meshconfig.validate_document`, source
"admission"), so `kubectl apply` shows the field path and reason. With a `ChangeValidator` (galley
gives it one over its store), the object is also judged together with galley's snapshot, as
Istio's galley judged Mixer config: a rule naming a handler or instance that does not exist, or
a handler changed so that a rule using it breaks, is denied. Deletions are allowed, except,
with a validator, the deletion of a resource other config still uses (a handler a rule names):
Istio's Mixer validator refused those too. Istio's webhook configuration (and ours, in deploy/)
sends only CREATE and UPDATE, so in a cluster that check runs only where DELETE is registered.
The server speaks HTTPS only: with the certificate and key it is given or, without them, a
self-signed ECDSA P-256 certificate for its host made at start and written to the run directory
for clients to trust. `ValidationWebhook` owns its aiohttp runner; `stop()` releases the port.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client import Counter

from galley.validation import ChangeValidator
from meshconfig import ConfigValidationError, kind_for, validate_document
from meshcore.admission import (
    AdmissionServer,
    request_object,
    review_answer,
    review_request,
)

log = logging.getLogger(__name__)

SOURCE = "admission"  # how messages name where the object came from
_CERT_DAYS = 365
_LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


def admission_response(review: Any, validator: ChangeValidator | None = None) -> dict[str, Any]:
    """The AdmissionReview v1 answering `review` (already parsed JSON), judging the change
    across resources too when given a `validator`.

    Raises MalformedReview if `review` is not an AdmissionReview v1 request with a uid and,
    for anything but a deletion, an object.
    """
    uid, request = review_request(review)
    if request.get("operation") == "DELETE":
        refusal = _deletion_refusal(request, validator) if validator is not None else None
    else:
        document = request_object(request)
        try:
            resource = validate_document(
                _with_namespace(document, request.get("namespace")), SOURCE
            )
        except ConfigValidationError as error:
            refusal = str(error)
        else:
            refusal = validator.refusal(SOURCE, [resource]) if validator is not None else None
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if refusal is not None:
        response = {"uid": uid, "allowed": False, "status": {"code": 400, "message": refusal}}
    return review_answer(response)


def _deletion_refusal(request: Mapping[str, Any], validator: ChangeValidator) -> str | None:
    """Why deleting the request's object would break other config, if it would."""
    kind_ref, name = request.get("kind"), request.get("name")
    if not isinstance(kind_ref, Mapping) or not isinstance(name, str):
        return None
    group, version = kind_ref.get("group") or "", kind_ref.get("version") or ""
    kind = kind_for(f"{group}/{version}" if group else str(version), str(kind_ref.get("kind")))
    if kind is None:
        return None  # not a kind galley holds: nothing of ours can depend on it
    namespace = request.get("namespace") if kind.namespaced else ""
    key = (kind.id, namespace if isinstance(namespace, str) else "", name)
    label = f"{kind.kind} {key[1]}/{name}" if key[1] else f"{kind.kind} {name}"
    return validator.refusal(SOURCE, (), [key], change=f"deleting {label}")


def _with_namespace(document: Mapping[str, Any], namespace: Any) -> Mapping[str, Any]:
    """The object as it will be stored: Kubernetes fills in the namespace from the request."""
    metadata = document.get("metadata")
    if not isinstance(namespace, str) or not namespace or not isinstance(metadata, Mapping):
        return document
    if "namespace" in metadata:
        return document
    return {**document, "metadata": {**metadata, "namespace": namespace}}


def write_self_signed(host: str, cert_file: Path, key_file: Path) -> None:
    """Write a new ECDSA P-256 key and a self-signed server certificate naming `host`."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(_LOOPBACK)]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        names.append(x509.DNSName(host))
    else:
        if not (address.is_unspecified or address == _LOOPBACK):
            names.append(x509.IPAddress(address))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(key_bytes)
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


class ValidationWebhook(AdmissionServer):
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 9443,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        run_dir: str | Path | None = None,
        failures: Counter | None = None,
        validator: ChangeValidator | None = None,
    ) -> None:
        """Serve with `cert_file`/`key_file`, or with a certificate made in `run_dir` at start;
        judge changes across resources with `validator`, if given."""
        if cert_file is not None and key_file is not None:
            files = Path(cert_file), Path(key_file)
        elif cert_file is None and key_file is None and run_dir is not None:
            files = Path(run_dir) / "webhook.crt", Path(run_dir) / "webhook.key"
        else:
            raise ValueError("give cert_file and key_file, or a run_dir for a generated pair")
        super().__init__("/validate", self._decide, *files, host=host, port=port)
        self._generate = cert_file is None
        self._failures = failures
        self._validator = validator

    async def start(self) -> None:
        if self._generate:
            self.cert_file.parent.mkdir(parents=True, exist_ok=True)
            write_self_signed(self.host, self.cert_file, self.key_file)
        await super().start()
        log.info("validation webhook on %s (certificate %s)", self.url, self.cert_file)

    def _decide(self, review: Any) -> dict[str, Any]:
        answer = admission_response(review, self._validator)
        verdict = answer["response"]
        if not verdict["allowed"]:
            log.info("admission denied:\n%s", verdict["status"]["message"])
            if self._failures is not None:
                self._failures.labels(source="admission").inc()
        return answer
