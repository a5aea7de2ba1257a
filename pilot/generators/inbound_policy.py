"""The policy filters of a workload's inbound listeners: who may call it, with which credentials.

RequestAuthentication becomes Envoy's `jwt_authn` HTTP filter (`request_authentication`);
AuthorizationPolicy becomes RBAC filters, HTTP ones for HTTP ports and network ones for the
rest (`authorization`). JWT verification runs first, so that authorization can read the
verified claims (`requestPrincipals`, `request.auth.*`) from its dynamic metadata.
"""

from __future__ import annotations

from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from pilot.generators import authorization, request_authentication
from pilot.model import Proxy
from pilot.push_context import PushContext


def http_filters(ctx: PushContext, proxy: Proxy) -> list[hcm_pb2.HttpFilter]:
    security = ctx.config.security
    jwt = request_authentication.jwt_filters(
        security.request_authentications_for(proxy.namespace, proxy.labels), ctx.jwks
    )
    rbac = authorization.http_filters(
        security.authorization_policies_for(proxy.namespace, proxy.labels)
    )
    return [*jwt, *rbac]


def network_filters(ctx: PushContext, proxy: Proxy) -> list[listener_components_pb2.Filter]:
    security = ctx.config.security
    return authorization.network_filters(
        security.authorization_policies_for(proxy.namespace, proxy.labels)
    )
