"""The analysis messages: Istio's codes and levels, our wording, one formatting for every output.

Codes and levels are Istio's (`IST0101` is always "a referenced resource does not exist", at
Error), so people can look them up in Istio's documentation and suppress or grep them as they
already do. A `Message` names the resource by its label ("VirtualService default/reviews") and
the origin it came from (a file path, or what galley recorded).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from meshconfig import Resource


class Level(enum.IntEnum):
    """How serious a message is; higher is worse, so thresholds compare with `>=`."""

    INFO = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        return self.name.capitalize()

    @classmethod
    def parse(cls, text: str) -> Level:
        try:
            return cls[text.upper()]
        except KeyError:
            choices = ", ".join(level.label for level in cls)
            raise ValueError(f"unknown level {text!r} (one of {choices})") from None


@dataclass(frozen=True, slots=True)
class MessageType:
    code: str
    level: Level
    template: str  # str.format placeholders, filled in order

    def at(self, resource: Resource, *args: object) -> Message:
        """A message about an accepted resource."""
        return self.about(resource.label, resource.source, *args)

    def about(self, resource: str, origin: str, *args: object) -> Message:
        """A message about a resource known only by its label (one that failed validation)."""
        return Message(self, resource, origin, self.template.format(*args))


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    resource: str  # "VirtualService default/reviews"
    origin: str  # file path or galley's recorded origin; may be empty
    text: str

    @property
    def code(self) -> str:
        return self.type.code

    @property
    def level(self) -> Level:
        return self.type.level

    def sort_key(self) -> tuple[int, str, str, str, str]:
        """Worst first, then by code, resource, origin and text: the same input, the same order."""
        return (-self.level, self.code, self.resource, self.origin, self.text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "level": self.level.label,
            "resource": self.resource,
            "origin": self.origin,
            "message": self.text,
        }

    def __str__(self) -> str:
        where = f"{self.resource} {self.origin}" if self.origin else self.resource
        return f"{self.level.label} [{self.code}] ({where}) {self.text}"


REFERENCED_RESOURCE_NOT_FOUND = MessageType("IST0101", Level.ERROR, 'Referenced {} not found: "{}"')
NAMESPACE_NOT_INJECTED = MessageType(
    "IST0102",
    Level.INFO,
    "The namespace is not enabled for Istio injection. Run 'kubectl label namespace {0} "
    "istio-injection=enabled' to enable it, or 'kubectl label namespace {0} "
    "istio-injection=disabled' to mark it explicitly as not needing injection.",
)
GATEWAY_PORT_NOT_ON_WORKLOAD = MessageType(
    "IST0104",
    Level.WARNING,
    "The gateway refers to a port that is not exposed on the workload (pod selector {}; port {})",
)
SCHEMA_VALIDATION_ERROR = MessageType("IST0106", Level.ERROR, "Schema validation error: {}")
CONFLICTING_MESH_GATEWAY_HOSTS = MessageType(
    "IST0109",
    Level.ERROR,
    "The VirtualServices {} associated with mesh gateway define the same host {}, which leaves "
    "the routing undefined. Merge the conflicting VirtualServices into a single resource.",
)
CONFLICTING_SIDECAR_SELECTORS = MessageType(
    "IST0110",
    Level.ERROR,
    'The Sidecars {} in namespace "{}" select the same workload "{}", which leaves its '
    "configuration undefined.",
)
SIDECARS_WITHOUT_SELECTORS = MessageType(
    "IST0111",
    Level.ERROR,
    'The Sidecars {} in namespace "{}" have no workload selector, which leaves the '
    "namespace's default undefined.",
)
DESTINATION_PORT_SELECTOR_REQUIRED = MessageType(
    "IST0112",
    Level.ERROR,
    'This VirtualService routes to a service "{}" that exposes several ports {}. The '
    "destination must name a port to say which one.",
)
MTLS_POLICY_CONFLICT = MessageType(
    "IST0113",
    Level.ERROR,
    "A DestinationRule and a PeerAuthentication disagree about mTLS for host {}: "
    'DestinationRule "{}" says mTLS must be {}, but PeerAuthentication "{}" sets {}.',
)
UNKNOWN_DESTINATION_RULE_HOST = MessageType(
    "IST0174",
    Level.WARNING,
    "The host {} defined in the DestinationRule does not match any services in the mesh.",
)
