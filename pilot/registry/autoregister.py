"""WorkloadGroup auto-registration: a connecting proxy becomes a WorkloadEntry of its group.

As in Istio, a proxy whose node metadata carries `AUTO_REGISTER_GROUP: <WorkloadGroup name>` is
registered when it connects: the group (in the proxy's namespace) templates a WorkloadEntry
whose address is the proxy's IP, whose labels are the template's, then the group metadata's,
then the node's own `LABELS` (later ones win; `istio-locality` is dropped), with the node's
`NETWORK` and locality when it has them. The entry is named `<group>-<ip>[-<network>]` (an
IPv6 address's colons become dashes), its last 253 characters if longer. The entry stays while
any stream of a proxy at that address is open, and for a grace period after the last one closes
(Istio's `PILOT_WORKLOAD_ENTRY_GRACE_PERIOD`, 10 s): a proxy that reconnects in time keeps it.

Where Istio differs: istiod writes the entry to the Kubernetes API (owned by the group, with
connected/disconnected annotations) and reads it back like any other WorkloadEntry. Here pilot
keeps the registration in memory and adds the entry when it builds its registry; it is reported
on `/debug/registryz`, not written anywhere, and a restarted pilot learns it again as the proxy
reconnects. The entry is derived from the group at every registry build, so a changed template
applies at once (Istio applies it at the next reconnect), and deleting the group drops its
entries (Istio's owner-reference garbage collection). A registration whose group does not exist
yet is kept and takes effect when the group appears (Istio's late registration), and a
WorkloadEntry configured under the same name wins over the registration.

`AutoRegistration` is owned by pilot and runs on its event loop: the discovery service reports
connects and disconnects, grace-period expiries are event-loop timers it cancels in `close()`,
and `on_change` asks pilot for a (debounced) push.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from envoy.config.core.v3 import base_pb2
from pydantic import ValidationError

from meshconfig.networking.workload_entry import WorkloadEntry, WorkloadGroup
from meshcore.xds.errors import InvalidNode
from pilot.model import Proxy, WorkloadInstance, frozen_map
from pilot.registry import convert
from pilot.registry.errors import Source
from pilot.registry.snapshot import RegistrySnapshot

AUTO_REGISTER_GROUP: Final = "AUTO_REGISTER_GROUP"
NETWORK: Final = "NETWORK"
LOCALITY_LABEL: Final = "istio-locality"
DEFAULT_GRACE_PERIOD: Final = 10.0
ORIGIN: Final = "auto-registration"
MAX_NAME: Final = 253

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Registration:
    """A proxy's request to join a WorkloadGroup, as read from its xDS node."""

    group: str
    namespace: str
    address: str
    labels: Mapping[str, str] = field(default_factory=dict)
    network: str = ""
    locality: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", frozen_map(self.labels))

    @property
    def entry_name(self) -> str:
        """Istio's name for the entry: `<group>-<ip>[-<network>]`, at most 253 characters."""
        parts = [self.group, self.address.replace(":", "-")]
        if self.network:
            parts.append(self.network)
        return "-".join(parts)[-MAX_NAME:]

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.entry_name)


def registration(proxy: Proxy, node: base_pb2.Node) -> Registration | None:
    """The proxy's registration, or None when it names no group; a non-string is refused."""
    group = _string(node, AUTO_REGISTER_GROUP)
    if not group:
        return None
    return Registration(
        group=group,
        namespace=proxy.namespace,
        address=proxy.ip,
        labels=proxy.labels,
        network=_string(node, NETWORK),
        locality=_locality(node.locality),
    )


def workload_entry(group: WorkloadGroup, registration: Registration) -> WorkloadEntry:
    """The WorkloadEntry spec Istio would create for `registration` from `group`.

    Raises pydantic's ValidationError when the result is not a valid WorkloadEntry (labels from
    the node that Kubernetes would refuse, for example).
    """
    template = group.template
    group_labels = group.metadata.labels if group.metadata is not None else None
    labels = {**(template.labels or {}), **(group_labels or {}), **registration.labels}
    labels.pop(LOCALITY_LABEL, None)
    fields: dict[str, Any] = template.model_dump(exclude_none=True)
    fields.update(address=registration.address, labels=labels)
    if registration.network:
        fields["network"] = registration.network
    if registration.locality:
        fields["locality"] = registration.locality
    return WorkloadEntry.model_validate(fields)


@dataclass(slots=True)
class _Entry:
    registration: Registration
    node_id: str  # the proxy that connected last
    nodes: set[str]
    connected_at: float
    disconnected_at: float | None = None
    expiry: asyncio.TimerHandle | None = None
    problem: str = ""  # why no entry was registered at the last registry build


class AutoRegistration:
    """The registrations of connected proxies (and of those within their grace period)."""

    def __init__(self, grace_period: float, on_change: Callable[[], None]) -> None:
        self.grace_period = grace_period
        self._on_change = on_change
        self._entries: dict[tuple[str, str], _Entry] = {}

    def connect(self, node_id: str, registration: Registration) -> None:
        key = registration.key
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = _Entry(registration, node_id, {node_id}, time.time())
            log.info(
                "proxy %s joins WorkloadGroup %s/%s as WorkloadEntry %s",
                node_id,
                registration.namespace,
                registration.group,
                registration.entry_name,
            )
            self._on_change()
            return
        if entry.expiry is not None:
            entry.expiry.cancel()
            entry.expiry = entry.disconnected_at = None
            entry.connected_at = time.time()
            log.info("proxy %s reconnected within the grace period: keeps %s", node_id, key[1])
        entry.nodes.add(node_id)
        entry.node_id = node_id
        if entry.registration != registration:
            entry.registration = registration
            self._on_change()

    def disconnect(self, node_id: str, registration: Registration) -> None:
        """The proxy's last stream closed: remove its entry unless it is back in time."""
        key = registration.key
        entry = self._entries[key]
        entry.nodes.discard(node_id)
        if entry.nodes:
            return
        entry.disconnected_at = time.time()
        loop = asyncio.get_running_loop()
        entry.expiry = loop.call_later(self.grace_period, self._expire, key)

    def close(self) -> None:
        """Cancel the grace-period timers (pilot is stopping; its registry goes with it)."""
        for entry in self._entries.values():
            if entry.expiry is not None:
                entry.expiry.cancel()
                entry.expiry = None

    def registry(self, config: RegistrySnapshot) -> RegistrySnapshot:
        """`config` plus the registered entries whose group exists; logs each new problem."""
        groups = {(g.namespace, g.name): g.spec for g in config.groups}
        configured = {(w.namespace, w.name) for w in config.workloads}
        added: list[WorkloadInstance] = []
        for key, entry in sorted(self._entries.items()):
            wanted = entry.registration
            group = groups.get((wanted.namespace, wanted.group))
            problem = ""
            if group is None:
                problem = (
                    f"WorkloadGroup {wanted.namespace}/{wanted.group} does not exist: "
                    "served without auto-registration"
                )
            elif key in configured:
                problem = f"a configured WorkloadEntry {key[0]}/{key[1]} takes precedence"
            else:
                try:
                    spec = workload_entry(group, wanted)
                except ValidationError as error:
                    problem = f"its WorkloadEntry would be invalid: {error}"
                else:
                    source = Source(ORIGIN, "WorkloadEntry", wanted.namespace, wanted.entry_name)
                    added.append(convert.workload_entry(spec, source))
            if problem and problem != entry.problem:
                log.warning("proxy %s is not auto-registered: %s", entry.node_id, problem)
            entry.problem = problem
        if not added:
            return config
        workloads = sorted((*config.workloads, *added), key=lambda w: (w.namespace, w.name))
        return replace(config, workloads=tuple(workloads))

    def describe(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Each registration's state, by (namespace, entry name), for pilot's debug pages."""
        return {
            key: {
                "group": entry.registration.group,
                "proxies": sorted(entry.nodes),
                "connected_at": entry.connected_at,
                "disconnected_at": entry.disconnected_at,
                "expires_at": None
                if entry.disconnected_at is None
                else entry.disconnected_at + self.grace_period,
                "problem": entry.problem,
            }
            for key, entry in sorted(self._entries.items())
        }

    def _expire(self, key: tuple[str, str]) -> None:
        entry = self._entries.pop(key)
        log.info(
            "removed auto-registered WorkloadEntry %s/%s: %s did not reconnect within %gs",
            key[0],
            key[1],
            entry.node_id,
            self.grace_period,
        )
        self._on_change()


def _string(node: base_pb2.Node, key: str) -> str:
    fields = node.metadata.fields
    if key not in fields:
        return ""
    value = fields[key]
    if value.WhichOneof("kind") != "string_value":
        raise InvalidNode(
            f"node {node.id!r}: metadata {key}: must be a string, got {value.WhichOneof('kind')}"
        )
    text: str = value.string_value
    return text


def _locality(locality: base_pb2.Locality) -> str:
    """`region/zone/subzone` as Istio writes it, stopping at the first missing part."""
    parts = []
    for part in (locality.region, locality.zone, locality.sub_zone):
        if not part:
            break
        parts.append(part)
    return "/".join(parts)
