"""Opt-in token-bucket rate limit of cold super-resolved tiles, per client (API key, signed
token, or client IP), off unless ``HNDSR_RATE_LIMIT_PER_MINUTE`` is set.

``ColdSRRateLimit`` sits behind the tile cache (hits never reach it): a request whose client
has less than one token gets 429 + ``Retry-After`` before any work; a response that ran the
model (``X-SR-Mode`` ``fast``/``diffusion``) takes one token. Concurrent requests may take
the bucket below zero; the debt delays that client's next ones. Buckets live in Redis when
``HNDSR_REDIS_URL`` is set (shared by every worker and replica) and in the process otherwise,
or while Redis is unreachable.
"""

from __future__ import annotations

import logging
import math
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from cache import BACKGROUND_RECOMPUTE
from sr_engine.modes import MODEL_MODES
from tileserver.auth import CLIENT_SCOPE_KEY, client_ip
from tileserver.guards import ASGIApp, Message, Receive, Scope, Send, send_json

log = logging.getLogger(__name__)

MODEL_MODE_HEADERS = tuple(mode.encode() for mode in MODEL_MODES)
"""``X-SR-Mode`` values that ran the model (and cost a token)."""
KEY_PREFIX = "hndsr:ratelimit:"

_BUCKET_SCRIPT = """
local rate, burst, now, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
    tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or burst
local updated = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate) - cost
redis.call('HSET', KEYS[1], 'tokens', tokens, 'updated', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(tokens)
"""


class TokenBuckets:
    """Token buckets of ``burst`` tokens refilled at ``rate_per_s``: in Redis, or in process."""

    def __init__(self, rate_per_s: float, burst: int, redis_url: str | None = None) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._local: dict[str, tuple[float, float]] = {}
        self._redis = aioredis.from_url(redis_url, socket_timeout=0.25) if redis_url else None
        self._script = self._redis.register_script(_BUCKET_SCRIPT) if self._redis else None

    async def take(self, client: str, cost: float) -> float:
        """Take ``cost`` tokens (0: just look) and return the tokens left."""
        now = time.time()
        if self._script is not None:
            try:
                args = [self.rate, self.burst, now, cost]
                return float(await self._script(keys=[KEY_PREFIX + client], args=args))
            except (RedisError, OSError) as exc:
                log.warning("rate limit in process (Redis unavailable: %s)", exc)
        tokens, updated = self._local.get(client, (float(self.burst), now))
        tokens = min(self.burst, tokens + max(0.0, now - updated) * self.rate) - cost
        self._local[client] = (tokens, now)
        return tokens

    def retry_after(self, tokens: float) -> int:
        """Seconds until a bucket holding ``tokens`` holds one token again."""
        return max(1, math.ceil((1.0 - tokens) / self.rate))


class ColdSRRateLimit:
    """429 for clients out of tokens; one token per response that ran the SR model."""

    def __init__(self, app: ASGIApp, buckets: TokenBuckets) -> None:
        self.app = app
        self.buckets = buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or BACKGROUND_RECOMPUTE.get():
            await self.app(scope, receive, send)
            return
        client = scope.get(CLIENT_SCOPE_KEY) or client_ip(scope)
        tokens = await self.buckets.take(client, 0)
        if tokens < 1:
            retry = str(self.buckets.retry_after(tokens)).encode()
            detail = "rate limit of cold super-resolved tiles exceeded"
            await send_json(send, 429, detail, [(b"retry-after", retry)])
            return
        ran_model = False

        async def watch(message: Message) -> None:
            nonlocal ran_model
            if message["type"] == "http.response.start":
                ran_model = any(
                    name.lower() == b"x-sr-mode" and value in MODEL_MODE_HEADERS
                    for name, value in message.get("headers", [])
                )
            await send(message)

        await self.app(scope, receive, watch)
        if ran_model:
            await self.buckets.take(client, 1)
