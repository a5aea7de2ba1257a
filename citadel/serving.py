"""Citadel's own serving certificate, renewed while citadel runs.

Agents verify citadel as istiod (`istiod.istio-system.svc`) against the mesh root, so citadel
serves a certificate its CA signs for itself. That certificate lives as long as any other (the
default TTL, 24 hours), and citadel runs much longer: gRPC asks this object for the current one
at every TLS handshake (`grpc.dynamic_ssl_server_credentials`), and it issues a new one once
half of the old one's lifetime has passed. gRPC calls from its own threads, hence the lock.
"""

from __future__ import annotations

import datetime
import threading

import grpc
from cryptography import x509

from citadel.ca import CertificateAuthority


class ServingCertificate:
    def __init__(self, ca: CertificateAuthority, *hosts: str) -> None:
        self._ca = ca
        self._hosts = hosts
        self._lock = threading.Lock()
        self.renewals = 0
        self._configuration, self._renew_at = self._issue()

    def _issue(self) -> tuple[grpc.ServerCertificateConfiguration, datetime.datetime]:
        serving = self._ca.server_credentials(*self._hosts)
        leaf = x509.load_pem_x509_certificates(serving.chain_pem)[0]
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        configuration = grpc.ssl_server_certificate_configuration(
            [(serving.key_pem, serving.chain_pem)],
            # Every root of the bundle: during a rotation, renewals come from both.
            root_certificates=self._ca.root_pem,
        )
        return configuration, leaf.not_valid_before_utc + lifetime / 2

    def credentials(self, *, require_client_auth: bool) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration, self._fetch, require_client_authentication=require_client_auth
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's question before a handshake: a new configuration, or None to keep it."""
        with self._lock:
            if datetime.datetime.now(datetime.UTC) < self._renew_at:
                return None
            self._configuration, self._renew_at = self._issue()
            self.renewals += 1
            return self._configuration
