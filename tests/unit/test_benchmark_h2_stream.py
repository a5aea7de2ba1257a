"""The load generator's bare HTTP/2 call against a real grpc.aio server on loopback.

What the pilot benchmark leans on: messages larger than a frame and than HTTP/2's default
window arrive whole and in order both ways, the call's status reaches the client with grpc's
code name, and a failure in the message callback ends the call instead of vanishing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from benchmarks.h2_stream import CallEnded, GrpcCall, open_call, request_headers
from meshcore.h2_server import DEFAULT_WINDOW

METHOD = "/test.Chat/Talk"
Handler = Callable[[AsyncIterator[bytes], grpc.aio.ServicerContext], Awaitable[None]]


@contextlib.asynccontextmanager
async def _served(handler: Handler) -> AsyncIterator[int]:
    """A grpc.aio server answering METHOD with `handler`; its port."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Chat", {"Talk": grpc.stream_stream_rpc_method_handler(handler)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


async def _call(port: int, received: list[bytes], **options: int) -> GrpcCall:
    return await open_call(
        "127.0.0.1",
        port,
        request_headers(METHOD, f"127.0.0.1:{port}"),
        received.append,
        **options,
    )


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110  # polls a list filled by a protocol callback
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("window", [DEFAULT_WINDOW, 2**31 - 1])
async def test_large_messages_cross_both_ways_whole_and_in_order(window: int) -> None:
    async def answer(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        async for request in requests:
            # Each request answered with its length and a 300 KB message, then a small one.
            await context.write(len(request).to_bytes(4, "big") + bytes([request[0]]) * 300_000)
            await context.write(b"small:" + request[:3])

    async with _served(answer) as port:
        received: list[bytes] = []
        call = await _call(port, received, window=window)
        sizes = [10, 200_000, 5, 70_000]  # two above the 64 KiB the server first allows
        for index, size in enumerate(sizes):
            call.send(bytes([65 + index]) * size)
        await _until(lambda: len(received) == 2 * len(sizes))
        for index, size in enumerate(sizes):
            big, small = received[2 * index], received[2 * index + 1]
            assert int.from_bytes(big[:4], "big") == size
            assert big[4:] == bytes([65 + index]) * 300_000
            assert small == b"small:" + bytes([65 + index]) * min(size, 3)
        call.close()


async def test_the_servers_status_ends_the_call_with_its_code_and_message() -> None:
    async def refuse(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        async for request in requests:
            await context.write(b"seen " + request)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no node: 100% sure")

    async with _served(refuse) as port:
        received: list[bytes] = []
        call = await _call(port, received)
        call.send(b"hello")
        with pytest.raises(CallEnded, match=r"^FAILED_PRECONDITION: no node: 100% sure$"):
            await asyncio.wait_for(call.ended, 10)
        assert received == [b"seen hello"]


async def test_a_call_the_server_ends_with_ok_resolves() -> None:
    async def once(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        async for request in requests:
            await context.write(request.upper())
            return

    async with _served(once) as port:
        received: list[bytes] = []
        call = await _call(port, received)
        call.send(b"bye")
        await asyncio.wait_for(call.ended, 10)
        assert received == [b"BYE"]


async def test_a_failing_callback_ends_the_call_with_its_error_as_the_cause() -> None:
    async def chatty(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        async for request in requests:
            await context.write(request)

    async with _served(chatty) as port:

        def explode(message: bytes) -> None:
            raise KeyError(message.decode())

        call = await open_call(
            "127.0.0.1", port, request_headers(METHOD, f"127.0.0.1:{port}"), explode
        )
        call.send(b"boom")
        with pytest.raises(CallEnded, match="KeyError: 'boom'") as ended:
            await asyncio.wait_for(call.ended, 10)
        assert isinstance(ended.value.__cause__, KeyError)


async def test_no_server_is_a_connection_error() -> None:
    async with _served(lambda requests, context: asyncio.sleep(0)) as port:
        pass
    with pytest.raises(OSError):
        await _call(port, [])
