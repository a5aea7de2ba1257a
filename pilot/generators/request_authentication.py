"""RequestAuthentication as Envoy's jwt_authn filter: not translated yet, so none is added."""

from __future__ import annotations

from collections.abc import Sequence

from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from meshconfig import Resource


def jwt_filters(policies: Sequence[Resource]) -> list[hcm_pb2.HttpFilter]:
    return []
