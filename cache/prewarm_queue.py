"""Distributed pre-warm over a Redis Stream with a consumer group.

``enqueue`` adds one entry (a tile request path) per tile. Each ``Worker`` reads batches
(``XREADGROUP COUNT n``), runs them concurrently through the in-process app (so the SR
runtime batches them), and acks what succeeded. Entries left pending by a dead or failing
worker are reclaimed with ``XAUTOCLAIM`` after ``claim_idle_ms``; a job that fails
``max_deliveries`` times, or answers a 4xx (it will never succeed), moves to the
dead-letter stream ``<stream>:dead``. Writes are idempotent: the same request stores the
same key and bytes, so a job done twice costs time, not correctness.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

DEFAULT_STREAM = "hndsr:prewarm"
GROUP = "prewarm"


async def enqueue(redis_url: str, paths: Iterable[str], stream: str = DEFAULT_STREAM) -> int:
    """Add one job per request path; returns how many."""
    client = aioredis.Redis.from_url(redis_url)
    count = 0
    try:
        pipe = client.pipeline(transaction=False)
        for path in paths:
            pipe.xadd(stream, {"path": path})
            count += 1
            if count % 1000 == 0:
                await pipe.execute()
        await pipe.execute()
        await ensure_group(client, stream)
    finally:
        await client.aclose()
    return count


async def ensure_group(client: aioredis.Redis, stream: str) -> None:
    """Create the consumer group (reading from the start) if it does not exist."""
    try:
        await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


@dataclass
class WorkerStats:
    """What one worker did."""

    done: int = 0
    retried: int = 0
    dead: int = 0
    reclaimed: int = 0


class Worker:
    """One consumer of the pre-warm stream."""

    def __init__(
        self,
        client: aioredis.Redis,
        http: httpx.AsyncClient,
        stream: str = DEFAULT_STREAM,
        batch: int = 8,
        claim_idle_ms: int = 60_000,
        max_deliveries: int = 3,
        name: str | None = None,
    ) -> None:
        self.client = client
        self.http = http
        self.stream = stream
        self.dead_stream = stream + ":dead"
        self.batch = batch
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.name = name or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.stats = WorkerStats()

    async def next_batch(self, block_ms: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """Reclaimed entries of dead consumers first, else new ones."""
        reply = await self.client.xautoclaim(
            self.stream, GROUP, self.name, self.claim_idle_ms, "0-0", count=self.batch
        )  # [next id, entries] (+ [deleted ids] from Redis 7)
        claimed = [(entry_id, fields) for entry_id, fields in reply[1] if fields]
        if claimed:
            self.stats.reclaimed += len(claimed)
            return claimed
        response: Any = await self.client.xreadgroup(
            GROUP, self.name, {self.stream: ">"}, count=self.batch, block=block_ms
        )
        return [entry for _, entries in response for entry in entries]

    async def process(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Run a batch concurrently and settle each entry (ack, leave for retry, dead-letter)."""
        results = await asyncio.gather(
            *(self.http.get(fields[b"path"].decode()) for _, fields in entries),
            return_exceptions=True,
        )
        for (entry_id, fields), result in zip(entries, results, strict=True):
            if isinstance(result, httpx.Response) and result.status_code == 200:
                await self.client.xack(self.stream, GROUP, entry_id)
                self.stats.done += 1
                continue
            error = (
                f"HTTP {result.status_code}" if isinstance(result, httpx.Response) else repr(result)
            )
            permanent = isinstance(result, httpx.Response) and 400 <= result.status_code < 500
            deliveries = await self.deliveries(entry_id)
            if permanent or deliveries >= self.max_deliveries:
                await self.dead_letter(entry_id, fields, error, deliveries)
            else:
                self.stats.retried += 1  # stays pending; XAUTOCLAIM hands it out again

    async def deliveries(self, entry_id: bytes) -> int:
        """How many times the entry was delivered."""
        pending = await self.client.xpending_range(self.stream, GROUP, entry_id, entry_id, 1)
        return int(pending[0]["times_delivered"]) if pending else 0

    async def dead_letter(
        self, entry_id: bytes, fields: dict[bytes, bytes], error: str, deliveries: int
    ) -> None:
        """Move a job (delivered ``deliveries`` times) to the dead-letter stream and ack it."""
        await self.client.xadd(
            self.dead_stream,
            {"path": fields[b"path"], "error": error, "deliveries": deliveries, "id": entry_id},
        )
        await self.client.xack(self.stream, GROUP, entry_id)
        self.stats.dead += 1

    async def drained(self) -> bool:
        """True when no entry of the group is pending (call after a read that returned none)."""
        summary = await self.client.xpending(self.stream, GROUP)
        return not summary["pending"]

    async def run(self, exit_when_drained: bool = False, block_ms: int = 1000) -> WorkerStats:
        """Process batches until cancelled (or until the stream is drained)."""
        await ensure_group(self.client, self.stream)
        while True:
            entries = await self.next_batch(block_ms)
            if entries:
                await self.process(entries)
            elif exit_when_drained and await self.drained():
                return self.stats


def worker_client(redis_url: str) -> Any:
    """The Redis client a worker uses (no socket timeout shorter than ``block``)."""
    return aioredis.Redis.from_url(redis_url, socket_timeout=30)
