"""How a pod's traffic is captured: Istio's interception and traffic annotations, checked.

The `istio-init` container (or, with Istio CNI, the CNI plugin) installs the iptables rules
that send the pod's traffic through Envoy: outbound to 15001, inbound to 15006, never the
proxy's own (uid 1337) and never its own ports (15090 Envoy stats, 15021 health, 15020 Istio's
agent status port, kept for tools that expect it). A pod narrows the capture with the
annotations Istio documents; values are checked here, since a bad one would only show as an
init container crash-looping on a rule iptables refuses. Pure functions of the annotations.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from agent.injector.config import InjectionError

OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
PROXY_UID = 1337
# Ports of the proxy itself, never redirected: Envoy's stats, health, Istio's status port.
PROXY_PORTS = "15090,15021,15020"

INTERCEPTION_MODE = "sidecar.istio.io/interceptionMode"
INCLUDE_OUTBOUND_IP_RANGES = "traffic.sidecar.istio.io/includeOutboundIPRanges"
EXCLUDE_OUTBOUND_IP_RANGES = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
INCLUDE_INBOUND_PORTS = "traffic.sidecar.istio.io/includeInboundPorts"
EXCLUDE_INBOUND_PORTS = "traffic.sidecar.istio.io/excludeInboundPorts"
EXCLUDE_OUTBOUND_PORTS = "traffic.sidecar.istio.io/excludeOutboundPorts"

REDIRECT = "REDIRECT"
NONE = "NONE"
_ALL = "*"


@dataclass(frozen=True)
class Capture:
    """The resolved capture settings; `mode` NONE captures nothing (no rules at all)."""

    mode: str = REDIRECT
    include_outbound_ip_ranges: str = _ALL
    exclude_outbound_ip_ranges: str = ""
    include_inbound_ports: str = _ALL
    exclude_inbound_ports: str = ""
    exclude_outbound_ports: str = ""

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str]) -> Capture:
        """Raises InjectionError naming the annotation whose value is invalid."""
        mode = annotations.get(INTERCEPTION_MODE, REDIRECT)
        if mode not in (REDIRECT, NONE):
            raise InjectionError(f"{INTERCEPTION_MODE}: {mode!r} is not supported (REDIRECT, NONE)")
        return cls(
            mode=mode,
            include_outbound_ip_ranges=_ip_ranges(annotations, INCLUDE_OUTBOUND_IP_RANGES, _ALL),
            exclude_outbound_ip_ranges=_ip_ranges(annotations, EXCLUDE_OUTBOUND_IP_RANGES),
            include_inbound_ports=_ports(annotations, INCLUDE_INBOUND_PORTS, _ALL),
            exclude_inbound_ports=_ports(annotations, EXCLUDE_INBOUND_PORTS),
            exclude_outbound_ports=_ports(annotations, EXCLUDE_OUTBOUND_PORTS),
        )

    @property
    def uncaptured_inbound_ports(self) -> str:
        return ",".join(filter(None, (PROXY_PORTS, self.exclude_inbound_ports)))

    def iptables_args(self) -> list[str]:
        """The arguments of `mesh-agent iptables`, the flags of Istio's istio-iptables."""
        args = [
            "-p", str(OUTBOUND_PORT),
            "-z", str(INBOUND_PORT),
            "-u", str(PROXY_UID),
            "-m", self.mode,
            "-i", self.include_outbound_ip_ranges,
            "-x", self.exclude_outbound_ip_ranges,
            "-b", self.include_inbound_ports,
            "-d", self.uncaptured_inbound_ports,
        ]  # fmt: skip
        if self.exclude_outbound_ports:
            args += ["-o", self.exclude_outbound_ports]
        return args

    def cni_annotations(self) -> dict[str, str]:
        """What Istio's CNI plugin reads from the pod to install the same rules."""
        annotations = {
            INTERCEPTION_MODE: self.mode,
            INCLUDE_OUTBOUND_IP_RANGES: self.include_outbound_ip_ranges,
            EXCLUDE_OUTBOUND_IP_RANGES: self.exclude_outbound_ip_ranges,
            INCLUDE_INBOUND_PORTS: self.include_inbound_ports,
            EXCLUDE_INBOUND_PORTS: self.uncaptured_inbound_ports,
            EXCLUDE_OUTBOUND_PORTS: self.exclude_outbound_ports,
        }
        return {key: value for key, value in annotations.items() if value}


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _ip_ranges(annotations: Mapping[str, str], key: str, default: str = "") -> str:
    """The annotation's CIDR list, normalised; "*" (all) only where it is the default."""
    value = annotations.get(key, default).strip()
    if value == _ALL == default:
        return value
    items = _items(value)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise InjectionError(f"{key}: {item!r} is not an IP range (CIDR)") from None
    return ",".join(items)


def _ports(annotations: Mapping[str, str], key: str, default: str = "") -> str:
    """The annotation's port list, normalised; "*" (all) only where it is the default."""
    value = annotations.get(key, default).strip()
    if value == _ALL == default:
        return value
    items = _items(value)
    for item in items:
        if not item.isdigit() or not 0 < int(item) < 65536:
            raise InjectionError(f"{key}: {item!r} is not a port (1-65535)")
    return ",".join(items)
