"""ASGI guards that keep one request from taking the server: a body-size limit, and the
render gate (a bound on dataset requests in flight, 503 beyond it, and a render deadline,
504 past it). Rendering runs in anyio's worker threads, bounded by ``limit_render_threads``;
``/healthz``, ``/readyz`` and ``/metrics`` are coroutines and never wait for those threads."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import anyio.from_thread
import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


DATASET_PREFIXES = ("/cog/", "/stac/")
"""Paths of the routes that open datasets and render (the render gate's scope)."""
OVERLOAD_RETRY_AFTER_S = 1
EWMA_WEIGHT = 0.2
"""Weight of the newest request in the running estimate of a dataset request's share of
the server's time."""


def limit_render_threads(threads: int) -> None:
    """Bound anyio's worker threads (FastAPI's sync routes and dependencies) to ``threads``.

    Call from the running event loop (the app's lifespan)."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = threads


def _grow_render_threads(by: int) -> None:
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = max(1, int(limiter.total_tokens) + by)


@contextmanager
def render_thread_lent() -> Iterator[None]:
    """While a render thread only waits (an SR tile for its batch), lend its place in the
    render-thread bound to another request, so that requests admitted behind waiting SR
    tiles reach the SR runtime's admission (503 or degraded at once) instead of queueing
    for a thread. Outside anyio's worker threads (rio-tiler's asset threads, the CLI) it
    lends nothing. The render gate's capacity still bounds the threads in all."""
    try:
        anyio.from_thread.run_sync(_grow_render_threads, 1)
    except RuntimeError:  # not called from an anyio worker thread
        yield
        return
    try:
        yield
    finally:
        with suppress(RuntimeError):  # the event loop has stopped: nothing left to bound
            anyio.from_thread.run_sync(_grow_render_threads, -1)


async def send_json(send: Send, status: int, detail: str, headers: list | None = None) -> None:
    """Answer with ``{"detail": detail}``."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """413 for a request body over ``max_bytes`` (announced or streamed), before the app
    parses it; the accepted body is replayed to the app."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        detail = f"request body over {self.max_bytes} bytes (setting HNDSR_MAX_BODY_BYTES)"
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await send_json(send, 413, detail)
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_json(send, 413, detail)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class RenderGate:
    """Dataset requests: at most ``capacity`` in flight, a newcomer refused at once when the
    requests in flight are expected to take longer than ``queue_wait_s`` to finish (both
    503 + Retry-After), and each answered within ``deadline_s`` (504 when it has not started
    its response by then).

    The estimate treats the server as one processor shared by the requests in flight: a
    request that ran ``d`` seconds beside ``n`` others on average took ``d / n`` of the
    server's time (``work_s``, an EWMA), and ``k`` requests in flight take about
    ``k x work_s`` to finish. Measured under load this follows what the cores (or a remote
    store) really deliver, where a count of threads would assume that 32 threads on 2 cores
    run 32 renders at full speed. Until one request has finished the share is unknown and
    a request that finds no render thread free is refused: a burst reaching a new server
    would otherwise fill the whole queue before any estimate exists. A request that finds a
    thread free (anyio's thread bound, including the threads lent by requests that only wait
    for their SR batch, ``render_thread_lent``) is always admitted, so the estimate cannot
    refuse an idle server.

    A request past its deadline is abandoned, not interrupted: its worker thread finishes
    the read in the background and still counts against ``capacity`` until it does, so
    abandoned work cannot pile up beyond the bound.
    """

    def __init__(
        self,
        app: ASGIApp,
        deadline_s: float,
        capacity: int,
        queue_wait_s: float = 0.0,
        prefixes=DATASET_PREFIXES,
    ) -> None:
        self.app = app
        self.deadline_s = deadline_s
        self.capacity = capacity
        self.queue_wait_s = queue_wait_s
        self.prefixes = tuple(prefixes)
        self.work_s: float | None = None
        """EWMA of a dataset request's share of the server's time (None until one finished)."""
        self._started: dict[int, tuple[float, int]] = {}
        """Start time and requests in flight at its start, of each request in flight."""
        self._tokens = itertools.count()

    @property
    def in_flight(self) -> int:
        """Dataset requests admitted and not finished (abandoned ones included)."""
        return len(self._started)

    def expected_queue_wait(self) -> float:
        """Seconds the dataset requests in flight are expected to take to finish, for a
        request arriving now; 0 when a render thread is free, ``inf`` when none is and no
        request has finished yet (call on the event loop: the bound is its anyio thread
        limiter's)."""
        bound = anyio.to_thread.current_default_thread_limiter().total_tokens  # lent included
        if self.in_flight < int(bound):
            return 0.0
        if self.work_s is None:
            return math.inf
        return self.in_flight * self.work_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.capacity:
            retry = [(b"retry-after", str(OVERLOAD_RETRY_AFTER_S).encode())]
            await send_json(send, 503, "server busy: too many requests rendering", retry)
            return
        wait = self.expected_queue_wait()
        if self.queue_wait_s and wait > self.queue_wait_s:
            if math.isinf(wait):
                retry_after = OVERLOAD_RETRY_AFTER_S
                expected = "no render thread is free and no request has finished yet"
            else:
                retry_after = max(OVERLOAD_RETRY_AFTER_S, math.ceil(wait))
                expected = f"the requests rendering are expected to take {wait:.1f} s"
            retry = [(b"retry-after", str(retry_after).encode())]
            detail = (
                f"server busy: {expected}, over the {self.queue_wait_s:g} s limit "
                "(setting HNDSR_RENDER_QUEUE_WAIT_S)"
            )
            await send_json(send, 503, detail, retry)
            return
        started = abandoned = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if abandoned:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        token = next(self._tokens)
        self._started[token] = (time.monotonic(), self.in_flight + 1)
        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        task.add_done_callback(functools.partial(self._finished, token))
        try:
            await asyncio.wait_for(asyncio.shield(task), self.deadline_s)
        except TimeoutError:
            if started:  # a response on its way (streaming): let it finish
                await task
                return
            abandoned = True
            task.cancel()
            log.warning(
                "%s abandoned after the %ss render deadline", scope["path"], self.deadline_s
            )
            await send_json(
                send,
                504,
                f"render deadline of {self.deadline_s:g} s exceeded "
                "(setting HNDSR_RENDER_DEADLINE_S)",
            )

    def _finished(self, token: int, task: asyncio.Future) -> None:
        started, beside_at_start = self._started.pop(token)
        beside = (beside_at_start + self.in_flight + 1) / 2  # in flight with it, on average
        share = (time.monotonic() - started) / beside
        previous = self.work_s
        self.work_s = (
            share if previous is None else (1 - EWMA_WEIGHT) * previous + EWMA_WEIGHT * share
        )
        if not task.cancelled():
            task.exception()  # mark retrieved: an abandoned request's error is not re-reported
