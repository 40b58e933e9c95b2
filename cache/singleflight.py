"""In-process singleflight: concurrent callers with one key share one computation.

Thread callers (``run``) and asyncio callers (``arun``) can join the same flight. The first
caller starts the computation; the others wait for its outcome, value or exception. An
asyncio computation runs as its own task, so a leader that goes away (client disconnect,
cancelled request) does not cancel it: the other waiters still get the value.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class _Flight(Generic[V]):
    future: Future[V] = field(default_factory=Future)
    waiters: int = 0


class SingleFlight(Generic[K, V]):
    """One computation per key in flight; finished keys are forgotten (the caller caches)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[K, _Flight[V]] = {}
        self._tasks: set[asyncio.Task[V]] = set()

    def __len__(self) -> int:
        """Keys being computed now."""
        with self._lock:
            return len(self._flights)

    def waiting(self, key: K) -> int:
        """Callers waiting on the computation of ``key`` (the leader not counted)."""
        with self._lock:
            flight = self._flights.get(key)
            return 0 if flight is None else flight.waiters

    def run(self, key: K, compute: Callable[[], V]) -> tuple[V, bool]:
        """Return ``(value, shared)``; the leader runs ``compute`` in its own thread.

        ``shared`` is ``True`` for callers that waited on another's computation. An exception
        raised by ``compute`` is raised to the leader and every waiter.
        """
        flight, leader = self._join(key)
        if not leader:
            return flight.result(), True
        try:
            value = compute()
        except BaseException as exc:
            self._land(key, flight)
            flight.set_exception(exc)
            raise
        self._land(key, flight)
        flight.set_result(value)
        return value, False

    async def arun(self, key: K, compute: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """``run`` for coroutines; the leader starts ``compute()`` as a task no caller cancels."""
        flight, leader = self._join(key)
        if leader:
            task = asyncio.ensure_future(compute())
            self._tasks.add(task)
            task.add_done_callback(lambda done: self._settle(key, flight, done))
        value = await asyncio.shield(asyncio.wrap_future(flight))
        return value, not leader

    def _join(self, key: K) -> tuple[Future[V], bool]:
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                flight.waiters += 1
                return flight.future, False
            flight = self._flights[key] = _Flight()
            return flight.future, True

    def _land(self, key: K, future: Future[V]) -> None:
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None and flight.future is future:
                del self._flights[key]

    def _settle(self, key: K, flight: Future[V], task: asyncio.Task[V]) -> None:
        self._tasks.discard(task)
        self._land(key, flight)
        if task.cancelled():
            flight.cancel()
        elif (exc := task.exception()) is not None:
            flight.set_exception(exc)
        else:
            flight.set_result(task.result())
