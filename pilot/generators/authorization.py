"""AuthorizationPolicy as Envoy RBAC filters: not translated yet, so no filter is added."""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from meshconfig import Resource


def http_filters(policies: Sequence[Resource]) -> list[hcm_pb2.HttpFilter]:
    return []


def network_filters(policies: Sequence[Resource]) -> list[listener_components_pb2.Filter]:
    return []
