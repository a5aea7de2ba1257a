"""The TLS a gateway server terminates: a Gateway's `tls` settings as a DownstreamTlsContext.

istiod's `BuildListenerTLSContext` for gateways, in three forms by where the key comes from:

- certificate files (`serverCertificate`/`privateKey`/`caCertificates`, or `tlsCertificates`):
  Envoy reads them itself. Istio has its agent serve the files over SDS so they can rotate; we
  have no SDS server yet, so they are read once, when the listener is created;
- `credentialName(s)`: SDS secrets named `kubernetes://<name>` (and `<name>-cacert`, or
  `caCertCredentialName`, for the client CA), fetched over ADS as from istiod, which serves
  them from the Kubernetes Secrets of the router's namespace (`secrets`); until a valid one is
  there, such a server accepts no TLS handshake;
- ISTIO_MUTUAL: the workload certificate and mesh root from the agent's SDS (`default`,
  `ROOTCA`), not served yet either (see `traffic_policy`).

MUTUAL and ISTIO_MUTUAL require a client certificate, OPTIONAL_MUTUAL verifies one if sent.
HTTPS servers offer h2 and http/1.1 by ALPN. Protocol versions, cipher suites, subject alt
names, SPKI and certificate hashes, and a CRL file pass through; invalid cipher suites are not
filtered out as istiod does (validation and Envoy reject them instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2

from meshconfig.networking.gateway import ServerTLSSettings
from pilot.generators.proto import ads
from pilot.generators.traffic_policy import (
    SDS_ROOT_CA,
    SDS_WORKLOAD_CERT,
    san_matchers,
    sds_secret,
)

ALPN_HTTP: Final = ("h2", "http/1.1")
KUBERNETES_SECRET: Final = "kubernetes://"
CA_SUFFIX: Final = "-cacert"
_MUTUAL: Final = frozenset({"MUTUAL", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"})
_REQUIRED: Final = frozenset({"MUTUAL", "ISTIO_MUTUAL"})
_VERSIONS: Final = {
    "TLS_AUTO": common_pb2.TlsParameters.TLS_AUTO,
    "TLSV1_0": common_pb2.TlsParameters.TLSv1_0,
    "TLSV1_1": common_pb2.TlsParameters.TLSv1_1,
    "TLSV1_2": common_pb2.TlsParameters.TLSv1_2,
    "TLSV1_3": common_pb2.TlsParameters.TLSv1_3,
}


@dataclass(frozen=True, slots=True)
class Credentials:
    """The SDS resource names a server's TLS takes from pilot: its key pairs, and for mutual TLS
    the CA that verifies clients ("" otherwise)."""

    certificates: tuple[str, ...]
    ca: str = ""


def credentials(settings: ServerTLSSettings) -> Credentials | None:
    """What `credentialName(s)` and `caCertCredentialName` reference; None when the server's
    keys come from files or, for ISTIO_MUTUAL, from the agent."""
    names = settings.credential_names or (
        [settings.credential_name] if settings.credential_name else []
    )
    if settings.mode == "ISTIO_MUTUAL" or not names:
        return None
    certificates = tuple(resource_name(name) for name in names)
    if settings.mode not in _MUTUAL:
        return Credentials(certificates)
    ca = settings.ca_cert_credential_name
    return Credentials(certificates, resource_name(ca) if ca else certificates[0] + CA_SUFFIX)


def downstream_tls_context(
    settings: ServerTLSSettings, *, http: bool
) -> tls_pb2.DownstreamTlsContext:
    """The server side of a terminating (not passthrough) gateway server's TLS."""
    context = tls_pb2.DownstreamTlsContext()
    common = context.common_tls_context
    if http:
        common.alpn_protocols.extend(ALPN_HTTP)
    if settings.mode in _REQUIRED:
        context.require_client_certificate.value = True
    from_pilot = credentials(settings)
    if settings.mode == "ISTIO_MUTUAL":
        common.tls_certificate_sds_secret_configs.append(sds_secret(SDS_WORKLOAD_CERT))
        _combined(common, settings, sds_secret(SDS_ROOT_CA))
    elif from_pilot is not None:
        common.tls_certificate_sds_secret_configs.extend(
            _ads_secret(name) for name in from_pilot.certificates
        )
        if from_pilot.ca:
            _combined(common, settings, _ads_secret(from_pilot.ca))
    else:
        pairs = [(c.server_certificate, c.private_key) for c in settings.tls_certificates or ()]
        common.tls_certificates.extend(
            common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(filename=certificate or ""),
                private_key=base_pb2.DataSource(filename=key or ""),
            )
            for certificate, key in pairs or [(settings.server_certificate, settings.private_key)]
        )
        if settings.mode in _MUTUAL and settings.ca_certificates:
            validation = common.validation_context
            validation.trusted_ca.filename = settings.ca_certificates
            _validate(validation, settings)
    _parameters(common.tls_params, settings)
    return context


def resource_name(credential: str) -> str:
    """istiod's `credentials.ToResourceName`: a bare name is a Kubernetes secret."""
    return credential if "://" in credential else KUBERNETES_SECRET + credential


def _ads_secret(name: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads())


def _combined(
    common: common_pb2.CommonTlsContext,
    settings: ServerTLSSettings,
    ca: secret_pb2.SdsSecretConfig,
) -> None:
    """Trust the CA from SDS, with the server's own checks on top."""
    combined = common.combined_validation_context
    combined.default_validation_context.SetInParent()
    _validate(combined.default_validation_context, settings)
    combined.validation_context_sds_secret_config.CopyFrom(ca)


def _validate(
    validation: common_pb2.CertificateValidationContext, settings: ServerTLSSettings
) -> None:
    """What a client certificate must be besides trusted: names, key pins, hashes, not revoked."""
    validation.match_typed_subject_alt_names.extend(san_matchers(settings.subject_alt_names or []))
    validation.verify_certificate_spki.extend(settings.verify_certificate_spki or ())
    validation.verify_certificate_hash.extend(settings.verify_certificate_hash or ())
    if settings.ca_crl:
        validation.crl.filename = settings.ca_crl


def _parameters(params: common_pb2.TlsParameters, settings: ServerTLSSettings) -> None:
    if settings.min_protocol_version:
        params.tls_minimum_protocol_version = _VERSIONS[settings.min_protocol_version]
    if settings.max_protocol_version:
        params.tls_maximum_protocol_version = _VERSIONS[settings.max_protocol_version]
    if settings.cipher_suites:
        params.cipher_suites.extend(settings.cipher_suites)
    if settings.ecdh_curves:
        params.ecdh_curves.extend(settings.ecdh_curves)
