"""Mutual TLS between control-plane services: one certificate, one mesh root, both directions.

Galley's configuration (Secrets included) must reach only pilot and mixer, and pilot's and
mixer's servers only mesh members, so each control-plane service holds a certificate signed by
the mesh CA for the control plane's name (`istiod.istio-system.svc`, Istio's) and the mesh
root. The same material serves (client certificates required) and calls (verifying the server
as the control plane), so the services need no second credential.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from meshcore.identity import CONTROL_PLANE_HOST

SERVER_NAME_OPTION = ("grpc.ssl_target_name_override", CONTROL_PLANE_HOST)


@dataclass(frozen=True)
class MeshTls:
    cert_chain: bytes  # PEM, leaf first
    key: bytes  # PEM
    roots: bytes  # PEM, the mesh's trust bundle

    @classmethod
    def from_files(cls, cert_chain: Path, key: Path, roots: Path) -> MeshTls:
        return cls(cert_chain.read_bytes(), key.read_bytes(), roots.read_bytes())

    def server_credentials(self) -> grpc.ServerCredentials:
        """Serving with this certificate; clients must present one the mesh root signed."""
        return grpc.ssl_server_credentials(
            [(self.key, self.cert_chain)], root_certificates=self.roots, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Calling with this certificate; the server is verified against the mesh root (as the
        control plane: pass SERVER_NAME_OPTION in the channel's options)."""
        return grpc.ssl_channel_credentials(self.roots, self.key, self.cert_chain)


def from_files(cert_chain: Path | None, key: Path | None, roots: Path | None) -> MeshTls | None:
    """The material of three `--tls-*` flags: all of them, or none (None)."""
    given = [path for path in (cert_chain, key, roots) if path is not None]
    if not given:
        return None
    if cert_chain is None or key is None or roots is None:
        raise ValueError("mutual TLS needs --tls-cert, --tls-key and --tls-roots together")
    return MeshTls.from_files(cert_chain, key, roots)
