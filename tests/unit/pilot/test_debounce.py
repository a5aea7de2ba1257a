"""Debouncing: bursts merge into one push, max_wait bounds the delay, pushes never overlap."""

from __future__ import annotations

import asyncio

from pilot.debounce import Debouncer, PushRequest


async def run_with(debouncer: Debouncer, body) -> None:
    task = asyncio.create_task(debouncer.run())
    try:
        await body()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_burst_becomes_one_merged_push() -> None:
    pushed: list[PushRequest] = []

    async def push(request: PushRequest) -> None:
        pushed.append(request)

    debouncer = Debouncer(push, quiet=0.05, max_wait=5)

    async def body() -> None:
        debouncer.submit(PushRequest(full=False, endpoints=frozenset({"a"}), reason="eds"))
        await asyncio.sleep(0.01)
        debouncer.submit(PushRequest(full=False, endpoints=frozenset({"b"}), reason="eds"))
        await asyncio.sleep(0.2)

    await run_with(debouncer, body)
    assert len(pushed) == 1
    assert pushed[0].endpoints == {"a", "b"} and not pushed[0].full


async def test_full_wins_when_merged() -> None:
    merged = PushRequest(full=False, endpoints=frozenset({"a"})).merge(PushRequest(full=True))
    assert merged.full and merged.endpoints == {"a"}


async def test_max_wait_bounds_a_never_ending_burst() -> None:
    pushed: list[PushRequest] = []

    async def push(request: PushRequest) -> None:
        pushed.append(request)

    debouncer = Debouncer(push, quiet=0.05, max_wait=0.15)

    async def body() -> None:
        for _ in range(20):  # an event every 20 ms: never quiet for 50 ms
            debouncer.submit(PushRequest(full=True))
            await asyncio.sleep(0.02)

    await run_with(debouncer, body)
    assert len(pushed) >= 2  # pushed at least once during the 400 ms burst


async def test_events_during_a_push_wait_for_the_next_push() -> None:
    pushed: list[PushRequest] = []
    release = asyncio.Event()
    active = 0
    overlapped = False

    async def push(request: PushRequest) -> None:
        nonlocal active, overlapped
        active += 1
        overlapped = overlapped or active > 1
        pushed.append(request)
        await release.wait()
        active -= 1

    debouncer = Debouncer(push, quiet=0.01, max_wait=1)

    async def body() -> None:
        debouncer.submit(PushRequest(full=True, reason="first"))
        await asyncio.sleep(0.05)
        debouncer.submit(PushRequest(full=False, endpoints=frozenset({"x"}), reason="second"))
        debouncer.submit(PushRequest(full=False, endpoints=frozenset({"y"}), reason="second"))
        await asyncio.sleep(0.05)
        assert len(pushed) == 1
        release.set()
        await asyncio.sleep(0.1)

    await run_with(debouncer, body)
    assert not overlapped
    assert [p.reason for p in pushed] == ["first", "second"]
    assert pushed[1].endpoints == {"x", "y"}
