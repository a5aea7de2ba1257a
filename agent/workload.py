"""One workload's proxy as a unit: Envoy, and with a CA its certificates over SDS.

The agent process, the local mesh and the integration tests all run proxies; the pieces and
their order are the same everywhere: the SDS server first (Envoy connects to it as soon as it
starts), then the certificate manager that feeds it, then Envoy, whose bootstrap names the
SDS socket so that pilot learns (node metadata SDS) that this proxy can do mutual TLS.
Stopping runs the other way: Envoy drains before its certificates go.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace
from pathlib import Path

from agent.bootstrap import ProxySpec, build_bootstrap
from agent.certificates import CertificateManager
from agent.envoy_process import EnvoyOptions, EnvoyProcess
from agent.sds import SdsServer
from meshcore.identity import SpiffeId
from meshcore.lifecycle import Service

SDS_SOCKET = "sds.sock"


@dataclass(frozen=True)
class CitadelAccess:
    """Where the workload gets its certificate and what it proves itself with."""

    address: str  # the CSR service (bootstrap token)
    mtls_address: str  # renewals, authenticated by the certificate in force
    root_pem: bytes  # verifies citadel's serving certificate
    token: str
    ttl: datetime.timedelta | None = None  # None: citadel's default lifetime


class WorkloadProxy(Service):
    """Envoy for `spec`, with mesh certificates when `citadel` is given.

    The SDS socket is `sds_socket`, by default `<run_dir>/sds.sock`; a Unix socket path must
    stay under about 100 bytes, so callers with deep run directories pass a short one.
    """

    def __init__(
        self,
        spec: ProxySpec,
        run_dir: Path,
        options: EnvoyOptions,
        citadel: CitadelAccess | None = None,
        sds_socket: Path | None = None,
    ) -> None:
        self.sds: SdsServer | None = None
        self.certificates: CertificateManager | None = None
        if citadel is not None:
            socket = sds_socket or run_dir / SDS_SOCKET
            spec = replace(spec, sds_socket=str(socket))
            self.sds = SdsServer(socket)
            self.certificates = CertificateManager(
                citadel.address,
                citadel.mtls_address,
                citadel.root_pem,
                citadel.token,
                SpiffeId(spec.namespace, spec.service_account),
                self.sds,
                ttl=citadel.ttl,
            )
        self.spec = spec
        self.envoy = EnvoyProcess(build_bootstrap(spec), spec.admin_url, run_dir, options)

    async def start(self) -> None:
        try:
            if self.sds is not None and self.certificates is not None:
                await self.sds.start()
                await self.certificates.start()
            await self.envoy.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        await self.envoy.stop()
        if self.sds is not None and self.certificates is not None:
            await self.certificates.stop()
            await self.sds.stop()
