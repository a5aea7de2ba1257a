"""SDS for routers: the Kubernetes Secrets a router's Gateways name as TLS credentials, turned
into Envoy `Secret`s served over ADS (istiod's `SecretGen` over its Kubernetes credentials).

Which: only the names the servers merged for the router's view reference
(`gateway_tls.credentials`: `credentialName(s)`, and for mutual TLS `caCertCredentialName` or
`<name>-cacert`), so a router is never sent a Secret its listeners do not use, and sidecars get
none. Where from: `kubernetes://<name>` is the Secret `<name>` in the router's own namespace;
`kubernetes://<namespace>/<name>` is served only when that namespace is the router's own (istiod
also needs a ReferenceGrant for any other, which the mesh does not model, so such a reference is
refused). Other credential types (`kubernetes-gateway://`, `builtin://`) are not served.

What, whatever the Secret's `type`, as istiod reads it:

- a name a listener takes its key pair from becomes a `tls_certificate` (certificate chain and
  private key as inline bytes) from the keys `cert` and `key`, else `tls.crt` and `tls.key`;
- a name a listener verifies clients with becomes a `validation_context` whose `trusted_ca` is
  `cacert`, else `ca.crt`, of the Secret of that name or, when there is none, of the Secret
  without the `-cacert` suffix (the CA kept beside the key pair).

A missing Secret, or one without those keys, or holding what Envoy would refuse (PEM that does
not parse, a key not matching the certificate, a key Envoy does not load: RSA under 2048 bits,
EC curves other than P-256/P-384/P-521, anything but RSA, EC and Ed25519, as Envoy 1.40 was
found to) is left out with a warning naming it: Envoy keeps waiting for it, or keeps the last
good version, and never NACKs. An expired certificate is served with a warning, as istiod does.
OCSP staples and CRLs in the Secret are not read.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Mapping
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from meshconfig import Resource
from meshconfig.kube import SecretBody
from pilot.generators.gateway_tls import CA_SUFFIX, KUBERNETES_SECRET, credentials
from pilot.generators.gateways import MergedGateway
from pilot.istio_config import IstioConfig

log = logging.getLogger(__name__)

# istiod's key names: a generic Secret's, then a kubernetes.io/tls Secret's.
KEY_PAIRS: Final = (("cert", "key"), ("tls.crt", "tls.key"))
CA_KEYS: Final = ("cacert", "ca.crt")
_EC_CURVES: Final = frozenset({"secp256r1", "secp384r1", "secp521r1"})
_MIN_RSA_BITS: Final = 2048


class CredentialError(ValueError):
    """Why a credential cannot be served; the message names the Secret."""


def referenced(merged: MergedGateway) -> dict[str, bool]:
    """The SDS names the merged servers' listeners ask for, sorted, each mapped to whether it is
    a CA (a name used for a key pair anywhere is a key pair)."""
    found: dict[str, bool] = {}
    for port in merged.ports:
        for server in port.servers:
            tls = server.server.tls
            if tls is None or not server.is_tls or server.passthrough:
                continue
            names = credentials(tls)
            if names is None:
                continue
            for name in names.certificates:
                found[name] = False
            if names.ca:
                found.setdefault(names.ca, True)
    return dict(sorted(found.items()))


def gateway_secrets(
    config: IstioConfig, namespace: str, merged: MergedGateway
) -> list[secret_pb2.Secret]:
    """The Secrets for routers in `namespace` serving `merged`; invalid ones logged and left out."""
    secrets = []
    for name, ca in referenced(merged).items():
        try:
            secrets.append(envoy_secret(config, namespace, name, ca=ca))
        except CredentialError as error:
            log.warning("gateway credential %s not served to %s: %s", name, namespace, error)
    return secrets


def envoy_secret(config: IstioConfig, namespace: str, name: str, *, ca: bool) -> secret_pb2.Secret:
    """The Envoy Secret `name` for a router in `namespace`: its CA if `ca`, else its key pair."""
    secret_name = _secret_name(name, namespace)
    if ca:
        beside = secret_name.removesuffix(CA_SUFFIX)
        resource = config.secret(namespace, secret_name) or config.secret(namespace, beside)
        if resource is None:
            tried = " or ".join(f"{namespace}/{n}" for n in dict.fromkeys((secret_name, beside)))
            raise CredentialError(f"no Secret {tried}")
        return secret_pb2.Secret(name=name, validation_context=validation_context(resource))
    resource = config.secret(namespace, secret_name)
    if resource is None:
        raise CredentialError(f"no Secret {namespace}/{secret_name}")
    return secret_pb2.Secret(name=name, tls_certificate=tls_certificate(resource))


def tls_certificate(resource: Resource) -> common_pb2.TlsCertificate:
    """The key pair of a Secret, checked as Envoy will check it."""
    values = _values(resource)
    pair = next((p for p in KEY_PAIRS if all(values.get(key) for key in p)), None)
    if pair is None:
        raise CredentialError(f"{resource.label}: {_missing(values, KEY_PAIRS)}")
    chain, key = (values[k] for k in pair)
    leaf = _certificates(resource, pair[0], chain)[0]
    private_key = _private_key(resource, pair[1], key)
    if _public(private_key.public_key()) != _public(leaf.public_key()):
        raise CredentialError(f"{resource.label}: {pair[1]} does not match {pair[0]}")
    return common_pb2.TlsCertificate(
        certificate_chain=base_pb2.DataSource(inline_bytes=chain),
        private_key=base_pb2.DataSource(inline_bytes=key),
    )


def validation_context(resource: Resource) -> common_pb2.CertificateValidationContext:
    """The CA certificates of a Secret, to verify clients with."""
    values = _values(resource)
    key = next((k for k in CA_KEYS if values.get(k)), None)
    if key is None:
        raise CredentialError(f"{resource.label}: {_missing(values, [(k,) for k in CA_KEYS])}")
    _certificates(resource, key, values[key])
    return common_pb2.CertificateValidationContext(
        trusted_ca=base_pb2.DataSource(inline_bytes=values[key])
    )


def _secret_name(name: str, namespace: str) -> str:
    """istiod's `ParseResourceName` for `kubernetes://[<namespace>/]<name>`, refusing a
    namespace other than the router's."""
    if not name.startswith(KUBERNETES_SECRET):
        raise CredentialError(f"only {KUBERNETES_SECRET} credentials are served")
    reference = name.removeprefix(KUBERNETES_SECRET)
    other, slash, secret_name = reference.partition("/")
    if not slash:
        return reference
    if other != namespace:
        raise CredentialError(
            f"Secret {other}/{secret_name} is not in the gateway's namespace "
            "(istiod would need a ReferenceGrant)"
        )
    return secret_name


def _values(resource: Resource) -> dict[str, bytes]:
    spec = resource.spec
    assert isinstance(spec, SecretBody), resource.label
    return spec.values()


def _missing(values: Mapping[str, bytes], alternatives: Iterable[tuple[str, ...]]) -> str:
    """istiod's messages for a Secret without the keys it looks for."""
    wanted = list(alternatives)
    for keys in wanted:
        if all(key in values for key in keys):
            return f"found {' and '.join(map(repr, keys))}, but empty"
    expected = " or ".join(f"({' and '.join(keys)})" for keys in wanted)
    return f"has no {expected}; found keys: {', '.join(sorted(values)) or 'none'}"


def _certificates(resource: Resource, key: str, pem: bytes) -> list[x509.Certificate]:
    try:
        found = x509.load_pem_x509_certificates(pem)
    except ValueError as error:
        raise CredentialError(f"{resource.label}: {key} is not PEM certificates: {error}") from None
    now = datetime.datetime.now(datetime.UTC)
    if any(not c.not_valid_before_utc <= now <= c.not_valid_after_utc for c in found):
        log.warning("%s: %s holds a certificate expired or not yet valid", resource.label, key)
    return found


def _private_key(
    resource: Resource, key: str, pem: bytes
) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey:
    try:
        private_key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise CredentialError(
            f"{resource.label}: {key} is not a PEM private key: {error}"
        ) from None
    if isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size >= _MIN_RSA_BITS:
        return private_key
    if isinstance(private_key, ec.EllipticCurvePrivateKey) and private_key.curve.name in _EC_CURVES:
        return private_key
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key
    raise CredentialError(f"{resource.label}: {key} is a key Envoy does not load")


def _public(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
