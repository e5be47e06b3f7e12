"""The Redis client of the fleet's shared cache, through aiocache: the only module that knows aiocache and redis.

One :class:`SharedCache` serves every source behind it (see fleet/source.py for the protocol and
fleet/entry.py for what is stored). Reads are bounded: a Lua script checks the entry's type and
``STRLEN`` and returns its bytes only when they fit, so an oversized entry is never transferred.
Any Redis failure or timeout raises SharedCacheError: the replica fetches directly for this refresh,
health ``warn``, ``jwksd_shared_cache_up`` 0; the redis client reconnects on a later refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import structlog
from aiocache import RedisCache  # type: ignore[import-untyped]
from aiocache.serializers import NullSerializer  # type: ignore[import-untyped]
from redis.exceptions import RedisError

from jwksd.config import SharedCacheConfig
from jwksd.errors import SharedCacheError
from jwksd.metrics import Metrics
from jwksd.preflight import read_hmac_key
from jwksd.status import ErrorInfo
from jwksd.store import Clock

log = structlog.get_logger("jwksd.fleet.cache")

T = TypeVar("T")
# The entry's bytes only when it is a string of at most ARGV[1] bytes; else its length, or -1 for another type.
BOUNDED_GET = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then return false end
if kind ~= 'string' then return -1 end
local size = redis.call('STRLEN', KEYS[1])
if size > tonumber(ARGV[1]) then return size end
return redis.call('GET', KEYS[1])
"""


class SharedCache:
    """One aiocache Redis client for every shared source; tracks whether Redis answers."""

    def __init__(self, config: SharedCacheConfig, metrics: Metrics, clock: Clock, hmac_key: bytes | None) -> None:
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.hmac_key = hmac_key
        self.up = True
        self.last_error: ErrorInfo | None = None
        self.bypass_generation = 0  # SIGUSR1: each shared source fetches from its source once per increment
        # Per source name, the newest fetch time accepted (an entry's or our own fetch's): older entries are a
        # rollback. Kept here, not in the source, so a source re-opened by a reload remembers it too.
        self.accepted: dict[str, float] = {}
        parts = urlsplit(config.url)
        self._cache = RedisCache(
            endpoint=parts.hostname, port=parts.port or 6379, db=int(parts.path.strip("/") or 0),
            password=unquote(parts.password) if parts.password else None, ssl=parts.scheme == "rediss",
            namespace=config.namespace, serializer=NullSerializer(encoding=None), timeout=config.timeout_s,
            create_connection_timeout=config.timeout_s,
            pool_max_size=8, connection_pool_kwargs={"socket_timeout": config.timeout_s})
        metrics.shared_cache_up.set(1)

    @classmethod
    def open(cls, config: SharedCacheConfig, metrics: Metrics, clock: Clock) -> SharedCache:
        """Read the HMAC key (a bad key file stops the daemon) and create the client; Redis may be down."""
        key = read_hmac_key(config)  # checked by preflight before start; read here for use
        log.info("shared_cache", url=config.safe_url, namespace=config.namespace, hmac=key is not None)
        return cls(config, metrics, clock, key)

    def key(self, key: str) -> str:
        """The Redis key of ``key`` in this cache's namespace."""
        return str(self._cache.build_key(key))

    def bypass(self) -> None:
        """Make the next fetch of every shared source go to its source, past a fresh entry (SIGUSR1)."""
        self.bypass_generation += 1

    async def close(self) -> None:
        # aiocache 0.12's close() calls redis-py's deprecated close(); aclose() is the same, current call.
        with contextlib.suppress(RedisError, OSError, TimeoutError):  # a Redis that went away
            async with asyncio.timeout(self.config.timeout_s):  # not wait_for: see local_file.read_file
                await self._cache.client.aclose()

    async def call(self, operation: str, coro: Awaitable[T]) -> T:
        """Run one Redis operation, translating every failure into SharedCacheError and tracking up/down."""
        try:
            result = await coro
        except (RedisError, OSError, TimeoutError) as exc:
            self.metrics.shared_cache_errors.labels(operation).inc()
            code = f"{operation}: {type(exc).__name__}"  # no host: the public /health shows it
            message = code + ("" if isinstance(exc, TimeoutError) else f": {exc}")
            self.last_error = ErrorInfo(code, message, self.clock.time())
            if self.up:
                log.warning("shared_cache_unavailable", url=self.config.safe_url, message=message,
                            fallback="fetching directly")
            self.up = False
            self.metrics.shared_cache_up.set(0)
            raise SharedCacheError(message) from exc
        if not self.up:
            log.info("shared_cache_available", url=self.config.safe_url)
            self.up = True
            self.metrics.shared_cache_up.set(1)
        return result

    async def get(self, key: str, max_bytes: int) -> bytes | int | None:
        """The value at ``key``; its length instead when longer than ``max_bytes`` (-1: not a string); None: none."""
        value = await self.call("read", self._cache.raw("eval", BOUNDED_GET, 1, self.key(key), max_bytes))
        if value is None or isinstance(value, int):
            return value
        return bytes(value)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self.call("write", self._cache.set(key, value, ttl=float(ttl_s)))

    async def take_lease(self, key: str) -> str | None:
        """A token when this replica won the lease, None when another one holds it."""
        token = uuid.uuid4().hex
        try:
            await self.call("lease", self._cache.add(key, token.encode(), ttl=float(self.config.lease_s)))
        except ValueError:  # aiocache's "key already exists"
            return None
        return token

    async def release(self, key: str, token: str) -> None:
        """Delete the lease if it is still ours (it may have expired and been taken since)."""
        script = RedisCache.RELEASE_SCRIPT
        with contextlib.suppress(SharedCacheError):  # the lease expires on its own
            await self.call("release", self._cache.raw("eval", script, 1, self.key(key), token))
