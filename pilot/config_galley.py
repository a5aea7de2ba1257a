"""Pilot's registry fed by galley's distribution instead of a directory it reads itself.

Subscribes to the registry kinds (ServiceEntry, WorkloadEntry, WorkloadGroup, and the Kubernetes
Service, EndpointSlice, Endpoints and Pod galley reads from the API server), the traffic kinds
(VirtualService, DestinationRule, Gateway, Sidecar) and the Secrets gateways take their
credentials from, through galley's client library. A galley without a Kubernetes source serves
those kinds empty, so the same subscription fits both. Until every kind has arrived, pilot keeps
its empty input and reports not ready; after that every change is turned into pilot's input and
handed over. A registry-level rejection (the same host declared by two ServiceEntries) is logged
and the previous registry stays in force.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from galley.client import ConfigClient
from meshconfig import Kind, Resource
from meshconfig.kinds import kind_by_id
from meshcore.tls import MeshTls
from pilot.config_files import PilotInput
from pilot.registry import ConfigError
from pilot.registry.resources import RegistryReader

log = logging.getLogger(__name__)

PILOT_KINDS = (
    *(
        f"networking.istio.io/{kind}"
        for kind in (
            "ServiceEntry",
            "WorkloadEntry",
            "WorkloadGroup",
            "VirtualService",
            "DestinationRule",
            "Gateway",
            "Sidecar",
        )
    ),
    *(
        f"security.istio.io/{kind}"
        for kind in ("PeerAuthentication", "RequestAuthentication", "AuthorizationPolicy")
    ),
    "core/Service",
    "core/Endpoints",
    "discovery.k8s.io/EndpointSlice",
    "core/Pod",
    "core/Secret",
)


class GalleyConfig:
    """Owns one task (`run`): the galley client's stream."""

    def __init__(
        self,
        address: str,
        on_change: Callable[[PilotInput], None],
        *,
        node_id: str,
        tls: MeshTls | None = None,
    ) -> None:
        kinds = [kind_by_id(kind_id) for kind_id in PILOT_KINDS]
        self._kinds = [k for k in kinds if k is not None]
        self._on_change = on_change
        self._current: dict[str, list[Resource]] = {}
        self._registry = RegistryReader()  # converts only resources galley sent anew
        self.last_error = ""
        self.client = ConfigClient(address, self._kinds, self._changed, node_id=node_id, tls=tls)

    @property
    def ready(self) -> bool:
        return bool(self.client.synced.is_set())

    async def run(self) -> None:
        await self.client.run()

    def _changed(self, kind: Kind, resources: list[Resource]) -> None:
        self._current[kind.id] = resources
        if len(self._current) < len(self._kinds):
            return  # wait for every kind: a partial registry would drop live endpoints
        try:
            update = PilotInput.from_resources(
                [r for group in self._current.values() for r in group], self._registry
            )
        except ConfigError as error:
            self.last_error = str(error)
            log.error("registry from galley rejected, keeping the previous one: %s", error)
            return
        self.last_error = ""
        self._on_change(update)
