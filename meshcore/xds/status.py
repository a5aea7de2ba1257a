"""What the server knows about each open stream, and the hooks a provider gets called on.

`StreamInfo` records, per type, what was last sent and what the client last acknowledged or
rejected: the raw material of pilot's `/debug/syncz`. `StreamCallbacks` is the narrow
interface between the transport and a provider: the provider maps a node to a cache key and
observes sends, ACKs and NACKs (for metrics); it never touches a stream directly.
On a mutual-TLS port the transport also records the names in the peer's verified client
certificate (`peer_identities`), so a provider can check them against what the node claims.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc


class SyncState(enum.Enum):
    """Istio's sync states, as `/debug/syncz` and `istioctl proxy-status` show them."""

    SYNCED = "SYNCED"
    STALE = "STALE"
    NOT_SENT = "NOT SENT"
    NACK = "NACK"


@dataclass(slots=True)
class TypeStatus:
    """Per stream and type: the last response sent and the client's last answer to one."""

    sent_version: str = ""
    sent_nonce: str = ""
    sent_at: float = 0.0
    acked_version: str = ""
    acked_nonce: str = ""
    nack_error: str = ""
    nack_nonce: str = ""

    @property
    def state(self) -> SyncState:
        if not self.sent_nonce:
            return SyncState.NOT_SENT
        if self.nack_nonce == self.sent_nonce:
            return SyncState.NACK
        if self.acked_nonce == self.sent_nonce:
            return SyncState.SYNCED
        return SyncState.STALE


@dataclass(slots=True)
class StreamInfo:
    """One open xDS stream (ADS or a per-type service, state of the world or delta)."""

    stream_id: int
    peer: str
    delta: bool
    node_id: str = ""
    node: Any = None  # envoy.config.core.v3.Node, set from the first request
    # The subject alternative names of the peer's verified client certificate; None when the
    # peer presented none (a plaintext port).
    peer_identities: tuple[str, ...] | None = None
    cache_key: str = ""
    connected_at: float = field(default_factory=time.time)
    types: dict[str, TypeStatus] = field(default_factory=dict)

    def status(self, type_url: str) -> TypeStatus:
        found = self.types.get(type_url)
        if found is None:
            found = self.types[type_url] = TypeStatus()
        return found


class StreamError(Exception):
    """A protocol violation by the client: the stream ends with this gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StreamCallbacks(Protocol):
    """What a provider implements to serve nodes through `XdsServer`."""

    def on_stream_open(self, stream: StreamInfo) -> str:
        """Accept `stream.node` and return the cache key to watch.

        Raise InvalidNode to refuse a malformed node, StreamError to refuse with another status.
        """
        ...

    def on_stream_closed(self, stream: StreamInfo) -> None: ...

    def on_response_sent(
        self, stream: StreamInfo, type_url: str, resource_count: int, seconds: float
    ) -> None:
        """A response went out; `seconds` spans building it to the end of the write."""
        ...

    def on_ack(self, stream: StreamInfo, type_url: str, version: str) -> None: ...

    def on_nack(self, stream: StreamInfo, type_url: str, error: str) -> None: ...
