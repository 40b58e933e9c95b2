"""Singleflight: one computation per key for threads and coroutines, whoever goes away."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from cache.singleflight import SingleFlight
from tests.apps.polling import wait_until


def test_concurrent_threads_share_one_computation() -> None:
    flights: SingleFlight[str, object] = SingleFlight()
    release = threading.Event()
    calls = []

    def compute() -> object:
        calls.append(1)
        release.wait(30)
        return object()

    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(flights.run, "tile", compute) for _ in range(20)]
        wait_until(lambda: flights.waiting("tile") == 19, what="19 waiters")
        release.set()
        outcomes = [future.result(timeout=30) for future in futures]
    assert len(calls) == 1
    assert len({id(value) for value, _ in outcomes}) == 1
    assert sorted(shared for _, shared in outcomes) == [False] + [True] * 19
    assert len(flights) == 0


def test_an_exception_reaches_every_thread_waiter() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    release = threading.Event()

    def compute() -> int:
        release.wait(30)
        raise ValueError("model exploded")

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(flights.run, "tile", compute) for _ in range(8)]
        wait_until(lambda: flights.waiting("tile") == 7, what="7 waiters")
        release.set()
        for future in futures:
            with pytest.raises(ValueError, match="model exploded"):
                future.result(timeout=30)
    assert flights.run("tile", lambda: 3) == (3, False)  # a failed key is computed afresh


def test_distinct_keys_do_not_wait_on_each_other() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    release = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(flights.run, "a", lambda: release.wait(30) and "a")
        wait_until(lambda: len(flights) == 1, what="the first flight")
        assert flights.run("b", lambda: "b") == ("b", False)
        release.set()
        assert held.result(timeout=30) == ("a", False)


def test_a_cancelled_leader_does_not_cancel_the_computation() -> None:
    flights: SingleFlight[str, str] = SingleFlight()

    async def main() -> None:
        release = asyncio.Event()
        calls = 0

        async def compute() -> str:
            nonlocal calls
            calls += 1
            await release.wait()
            return "tile-bytes"

        leader = asyncio.create_task(flights.arun("k", compute))
        await asyncio.sleep(0)
        waiters = [asyncio.create_task(flights.arun("k", compute)) for _ in range(5)]
        while flights.waiting("k") < 5:
            await asyncio.sleep(0)
        leader.cancel()  # the first client disconnects
        with pytest.raises(asyncio.CancelledError):
            await leader
        release.set()
        assert await asyncio.gather(*waiters) == [("tile-bytes", True)] * 5
        assert calls == 1

    asyncio.run(main())


def test_an_exception_reaches_every_coroutine_waiter() -> None:
    flights: SingleFlight[str, str] = SingleFlight()

    async def main() -> None:
        release = asyncio.Event()

        async def compute() -> str:
            await release.wait()
            raise OSError("upstream read failed")

        tasks = [asyncio.create_task(flights.arun("k", compute)) for _ in range(10)]
        while flights.waiting("k") < 9:
            await asyncio.sleep(0)
        release.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(outcome, OSError) for outcome in outcomes)
        assert len(flights) == 0

    asyncio.run(main())


def test_a_thread_can_join_a_coroutine_flight() -> None:
    flights: SingleFlight[str, int] = SingleFlight()

    async def main() -> None:
        release = asyncio.Event()

        async def compute() -> int:
            await release.wait()
            return 42

        leader = asyncio.create_task(flights.arun("k", compute))
        await asyncio.sleep(0)
        thread_result = asyncio.get_running_loop().run_in_executor(
            None, flights.run, "k", lambda: -1
        )
        while flights.waiting("k") < 1:
            await asyncio.sleep(0.001)
        release.set()
        assert await leader == (42, False)
        assert await thread_result == (42, True)

    asyncio.run(main())
