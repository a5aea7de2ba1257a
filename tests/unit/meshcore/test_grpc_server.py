"""What `create_server` sets that a client can see on the wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from benchmarks.h2_stream import GrpcCall, open_call, request_headers
from meshcore.grpc_server import bind, create_server


async def _echo(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
    async for request in requests:
        await context.write(request[:10])


async def _pings_while_talking(server: grpc.aio.Server) -> int:
    """PINGs the server sends over a call carrying 20 requests of 30 KB, each answered."""
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Echo", {"Talk": grpc.stream_stream_rpc_method_handler(_echo)}
            ),
        )
    )
    port = bind(server, "127.0.0.1:0")
    await server.start()
    try:
        answers: list[bytes] = []
        opening = request_headers("/test.Echo/Talk", f"127.0.0.1:{port}")
        call: GrpcCall = await open_call("127.0.0.1", port, opening, answers.append)
        for index in range(20):
            call.send(bytes([index]) * 30_000)
            async with asyncio.timeout(10):
                while len(answers) <= index:  # noqa: ASYNC110  # filled by the call's callback
                    await asyncio.sleep(0.005)
        call.close()
        return call.pings
    finally:
        await server.stop(None)


async def test_no_bandwidth_probes_ride_on_requests() -> None:
    """grpc's default pings a connection as requests arrive (the test would see them)."""
    assert await _pings_while_talking(grpc.aio.server()) > 0
    assert await _pings_while_talking(create_server()) == 0
