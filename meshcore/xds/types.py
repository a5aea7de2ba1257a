"""Type URLs of the xDS resources the mesh serves, and the push order between them.

Envoy applies updates safely only if clusters arrive before the endpoints and listeners that
use them, and listeners before the routes they name ("make before break"), so every push walks
`PUSH_ORDER`.
"""

from typing import Final

_PREFIX: Final = "type.googleapis.com/"

CLUSTER: Final = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT: Final = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER: Final = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE: Final = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET: Final = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

PUSH_ORDER: Final[tuple[str, ...]] = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)

# In state of the world, a request with no names means "everything" only for these types,
# and only until the stream names a resource explicitly (Envoy's legacy wildcard rule).
LEGACY_WILDCARD_TYPES: Final = frozenset({CLUSTER, LISTENER})

# Responses for these types must carry the full set: a resource missing from them is deleted.
FULL_STATE_TYPES: Final = frozenset({CLUSTER, LISTENER})

SHORT_NAMES: Final[dict[str, str]] = {
    CLUSTER: "cds",
    ENDPOINT: "eds",
    LISTENER: "lds",
    ROUTE: "rds",
    SECRET: "sds",
}


def short_name(type_url: str) -> str:
    """Istio's short label for a type ("cds", "eds", ...), or the type URL's last part."""
    return SHORT_NAMES.get(type_url) or type_url.rsplit(".", 1)[-1].lower()
