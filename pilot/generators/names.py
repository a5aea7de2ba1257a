"""Istio's names for generated resources, which users, dashboards and istioctl recognise.

Every generator names clusters, listeners and routes through these functions, so a name is
spelled in exactly one place and EDS can map a requested cluster name back to its service.
"""

from __future__ import annotations

import functools
from typing import Final, NamedTuple

BLACKHOLE_CLUSTER: Final = "BlackHoleCluster"
PASSTHROUGH_CLUSTER: Final = "PassthroughCluster"
INBOUND_PASSTHROUGH_CLUSTER: Final = "InboundPassthroughClusterIpv4"
VIRTUAL_OUTBOUND: Final = "virtualOutbound"
VIRTUAL_INBOUND: Final = "virtualInbound"
HTTP_PROXY_ROUTE: Final = "http_proxy"
VIRTUAL_OUTBOUND_PORT: Final = 15001
VIRTUAL_INBOUND_PORT: Final = 15006
WILDCARD_ADDRESS: Final = "0.0.0.0"


class OutboundCluster(NamedTuple):
    port: int
    subset: str
    hostname: str


def outbound_cluster(port: int, hostname: str, subset: str = "") -> str:
    return f"outbound|{port}|{subset}|{hostname}"


# Remembered: an endpoints-only push asks again for every cluster name of every view it
# updates (a thousand per view at 1000 services).
@functools.lru_cache(maxsize=65536)
def parse_outbound_cluster(name: str) -> OutboundCluster | None:
    """The parts of an `outbound|<port>|<subset>|<host>` name, or None for any other name."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] != "outbound" or not parts[1].isdigit() or not parts[3]:
        return None
    return OutboundCluster(int(parts[1]), parts[2], parts[3])


def inbound_cluster(port: int) -> str:
    return f"inbound|{port}||"


def listener(address: str, port: int) -> str:
    """`<address>_<port>`, Istio's name for a listener on one address and port."""
    return f"{address}_{port}"
