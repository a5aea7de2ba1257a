"""Creating grpc.aio servers with the options every mesh service needs.

The defaults that matter at scale live here once: how many incoming calls grpc holds before
the application takes them (`grpc.server.max_pending_requests`, 1000 by default, and its hard
limit, 3000: beyond them grpc refuses calls, which a client sees as a bare INTERNAL or
CANCELLED; too low for an xDS server that thousands of proxies connect to at once), the largest
message accepted (larger requests fail with RESOURCE_EXHAUSTED), and keepalive so dead peers are
noticed. A call grpc has accepted but the application has not yet picked up is cancelled after
`grpc.server_max_unrequested_time_in_server` (30 s by default), which the client sees as a bare
CANCELLED and the application never hears of: at 5000 services and 2000 proxies connecting at
once pilot's event loop needs longer than that to take every stream, so the wait is raised.
Bandwidth-delay probing is off: with it, grpc pings a connection after data arrives on it, to
size a receive window for bulk uploads. The mesh's servers receive small requests (an xDS ACK
is tens of KB), and with thousands of proxies ACKing every push the pings and their answers
cost pilot about a seventh of its CPU for a push (BENCHMARKS.md). The window a client may
fill before a window update is set to the 4 MiB grpc's probing starts with (64 KB without).
SO_REUSEPORT stays off unless asked for (`reuse_port`): with it on, a second server would
silently share a port that is already taken instead of failing to bind.
"""

from __future__ import annotations

import grpc

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_UNREQUESTED_SECONDS = 600


def create_server(
    *,
    max_receive_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_concurrent_streams: int = 100_000,
    reuse_port: bool = False,
) -> grpc.aio.Server:
    options = [
        ("grpc.max_receive_message_length", max_receive_message_bytes),
        ("grpc.max_send_message_length", 256 * 1024 * 1024),
        ("grpc.server.max_pending_requests", max_concurrent_streams),
        ("grpc.server.max_pending_requests_hard_limit", max_concurrent_streams),
        ("grpc.max_concurrent_streams", max_concurrent_streams),
        ("grpc.server_max_unrequested_time_in_server", MAX_UNREQUESTED_SECONDS),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.so_reuseport", int(reuse_port)),
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", 4 * 1024 * 1024),
    ]
    return grpc.aio.server(options=options)


def bind(
    server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None = None
) -> int:
    """Bind a port, insecure without `credentials`, failing loudly (grpc returns 0 instead of
    raising)."""
    if credentials is None:
        port = int(server.add_insecure_port(address))
    else:
        port = int(server.add_secure_port(address, credentials))
    if port == 0:
        raise OSError(f"cannot bind gRPC server to {address}")
    return port
