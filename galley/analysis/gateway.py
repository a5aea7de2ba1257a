"""Analyzer of Gateways against the workloads they select.

A Gateway configures whichever gateway workloads its selector picks; if none match, nothing
serves it, and a server port that no service of those workloads exposes is unreachable through
them. Both are only knowable when the input describes workloads (Pods or WorkloadEntries), so
without any the analyzer stays silent rather than flag every Gateway.
"""

from __future__ import annotations

from collections.abc import Iterator

from galley.analysis.context import GATEWAY, Context
from galley.analysis.messages import (
    GATEWAY_PORT_NOT_ON_WORKLOAD,
    REFERENCED_RESOURCE_NOT_FOUND,
    Message,
)
from galley.analysis.registry import selector_text, selects, services, workloads
from meshconfig.networking import Gateway


def gateway_ports(context: Context) -> Iterator[Message]:
    """IST0101 for a selector matching no workload; IST0104 for a port no workload exposes.

    Gateway selectors pick workloads in every namespace. A port counts as exposed when a service
    fronting a selected workload lists it as its port or as its numeric target port.
    """
    candidates = workloads(context)
    if not candidates:
        return
    known = services(context)
    for resource, gateway in context.of(GATEWAY, Gateway):
        selector = gateway.selector or {}
        text = selector_text(selector)
        selected = [w for w in candidates if selects(selector, w.labels)]
        if not selected:
            yield REFERENCED_RESOURCE_NOT_FOUND.at(resource, "selector", text)
            continue
        exposed = {
            port
            for service in known
            if any(service.fronts(workload) for workload in selected)
            for port in (*service.ports, *service.target_ports)
        }
        for server in gateway.servers or []:
            if server.port.number not in exposed:
                yield GATEWAY_PORT_NOT_ON_WORKLOAD.at(resource, text, server.port.number)
