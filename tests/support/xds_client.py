"""A hand-driven ADS client for tests: push requests in, read responses or the final status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2


async def until(condition: Callable[[], bool], attempts: int = 250) -> None:
    """Poll a condition every 20 ms, at most `attempts` times."""
    for _ in range(attempts):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


class Client:
    """A hand-driven ADS client: push requests in, read responses out."""

    def __init__(self, address: str, credentials: grpc.ChannelCredentials | None = None) -> None:
        if credentials is None:
            self.channel = grpc.aio.insecure_channel(address)
        else:
            self.channel = grpc.aio.secure_channel(address, credentials)
        self.queue: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        self.call = stub.StreamAggregatedResources(self._requests())

    async def _requests(self) -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while (item := await self.queue.get()) is not None:
            yield item

    def send(self, request: discovery_pb2.DiscoveryRequest) -> None:
        self.queue.put_nowait(request)

    async def receive(self) -> discovery_pb2.DiscoveryResponse:
        return await asyncio.wait_for(self.call.read(), 5)

    async def failure(self) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            while True:
                response = await asyncio.wait_for(self.call.read(), 5)
                assert response is not grpc.aio.EOF, "stream ended without an error status"
        return caught.value

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()
