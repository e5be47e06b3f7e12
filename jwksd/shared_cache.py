"""A Redis cache shared by a fleet of replicas, through aiocache: the only module that knows aiocache and redis.

:class:`SharedSource` wraps a source with the same protocol, so the refresh loop does not change.
On each fetch it reads the source's entry (the documents as fetched, their fetch time and version);
a fresh, valid entry is used without asking the source. Otherwise the replica takes a lease
(``SET NX PX`` through aiocache's ``add``), fetches, writes the entry and releases the lease with
aiocache's compare-and-delete script; a replica that did not get the lease polls for the entry for
up to ``lease_s``, then fetches itself. aiocache's ``RedLock`` is not used: it does not say whether
the lease was won, and a loser waits on a process-local event, so on another host it would always
sit out the whole lease instead of returning as soon as the entry appears.

Every entry read is validated like a fetched document; a bad one is counted, never served and
overwritten by the next good fetch. With an HMAC key, entries are HMAC-SHA256 authenticated over
their Redis key and payload. Only what the source returned (public key documents) is stored.
Any Redis failure or timeout makes the replica fetch directly for this refresh: health ``warn``,
``jwksd_shared_cache_up`` 0; the redis client reconnects on a later refresh.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import math
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import structlog
from aiocache import RedisCache  # type: ignore[import-untyped]
from aiocache.serializers import NullSerializer  # type: ignore[import-untyped]
from redis.exceptions import RedisError

from jwksd.config import SharedCacheConfig, ValidationConfig
from jwksd.errors import DocumentRejected, SharedCacheError
from jwksd.metrics import SHARED_CACHE_EVENTS, Metrics
from jwksd.preflight import read_hmac_key
from jwksd.sources import Document, Fetch, Source
from jwksd.store import Clock
from jwksd.validate import validate_document

log = structlog.get_logger("jwksd.shared_cache")

MAGIC = b"jwksd-entry-1"
T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """A source's documents as one replica fetched them."""

    documents: tuple[Document, ...]
    fetched_at: float  # wall time of the fetch
    fresh_for_s: float

    def age_s(self, now: float) -> float:
        return now - self.fetched_at


class SharedCache:
    """One aiocache Redis client for every wrapped source; tracks whether Redis answers."""

    def __init__(self, config: SharedCacheConfig, validation: ValidationConfig, metrics: Metrics, clock: Clock,
                 hmac_key: bytes | None) -> None:
        self.config = config
        self.validation = validation
        self.metrics = metrics
        self.clock = clock
        self.hmac_key = hmac_key
        self.up = True
        self.last_error: tuple[str, float] | None = None  # message, wall time
        parts = urlsplit(config.url)
        self._cache = RedisCache(
            endpoint=parts.hostname, port=parts.port or 6379, db=int(parts.path.strip("/") or 0),
            password=unquote(parts.password) if parts.password else None, ssl=parts.scheme == "rediss",
            namespace=config.namespace, serializer=NullSerializer(encoding=None), timeout=config.timeout_s,
            create_connection_timeout=config.timeout_s,
            pool_max_size=8, connection_pool_kwargs={"socket_timeout": config.timeout_s})
        metrics.shared_cache_up.set(1)

    @classmethod
    def open(cls, config: SharedCacheConfig, validation: ValidationConfig, metrics: Metrics,
             clock: Clock) -> SharedCache:
        """Read the HMAC key (a bad key file stops the daemon) and create the client; Redis may be down."""
        key = read_hmac_key(config)  # checked by preflight before start; read here for use
        log.info("shared_cache", url=config.safe_url, namespace=config.namespace, hmac=key is not None)
        return cls(config, validation, metrics, clock, key)

    def wrap(self, source: Source, *, interval_s: float, max_fresh_s: float) -> SharedSource:
        """``source`` behind this cache; entries stay fresh for interval_s, or the source's wish up to max_fresh_s."""
        for event in SHARED_CACHE_EVENTS:
            self.metrics.shared_cache_events.labels(source.name, event)
        return SharedSource(self, source, interval_s=interval_s, max_fresh_s=max(interval_s, max_fresh_s))

    async def close(self) -> None:
        # aiocache 0.12's close() calls redis-py's deprecated close(); aclose() is the same, current call.
        with contextlib.suppress(RedisError, OSError, TimeoutError):  # a Redis that went away
            await asyncio.wait_for(self._cache.client.aclose(), self.config.timeout_s)

    async def call(self, operation: str, coro: Awaitable[T]) -> T:
        """Run one Redis operation, translating every failure into SharedCacheError and tracking up/down."""
        try:
            result = await coro
        except (RedisError, OSError, TimeoutError) as exc:
            self.metrics.shared_cache_errors.labels(operation).inc()
            message = f"{operation}: {type(exc).__name__}" + ("" if isinstance(exc, TimeoutError) else f": {exc}")
            self.last_error = (message, self.clock.time())
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

    async def get(self, key: str) -> bytes | None:
        value = await self.call("read", self._cache.get(key))
        return value if value is None else bytes(value)

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
            await self.call("release", self._cache.raw("eval", script, 1, self._cache.build_key(key), token))

    def seal(self, key: str, payload: bytes) -> bytes:
        """The stored value: magic, MAC (or '-'), payload."""
        mac = self._mac(key, payload).encode() if self.hmac_key else b"-"
        return b" ".join((MAGIC, mac, payload))

    def _mac(self, key: str, payload: bytes) -> str:
        assert self.hmac_key is not None
        bound = self._cache.build_key(key).encode() + b"\n" + payload  # binds the entry to its namespace and source
        return hmac.new(self.hmac_key, bound, hashlib.sha256).hexdigest()

    def unseal(self, key: str, value: bytes) -> bytes:
        """The payload of a stored value; DocumentRejected when it is malformed or fails the MAC."""
        magic, _, rest = value.partition(b" ")
        mac, _, payload = rest.partition(b" ")
        if magic != MAGIC or not payload:
            raise DocumentRejected("invalid_entry", "not a jwksd shared cache entry")
        if self.hmac_key is not None and not hmac.compare_digest(mac, self._mac(key, payload).encode()):
            raise DocumentRejected("bad_hmac", "the entry's HMAC does not match (another key, or another writer)")
        return payload


class SharedSource:
    """A source behind the shared cache; same protocol as any source."""

    def __init__(self, cache: SharedCache, source: Source, *, interval_s: float, max_fresh_s: float) -> None:
        self.name = source.name
        self.cache = cache
        self.source = source
        self.interval_s = interval_s
        self.max_fresh_s = max_fresh_s
        self.entry_key = f"entry:{source.name}"
        self.lease_key = f"lease:{source.name}"
        # The last entry bytes parsed and what came of it: a replica waiting on a lease reads the same
        # (usually stale) entry every poll, and validating it again each time would give the same answer.
        self._parsed: tuple[bytes, Entry | DocumentRejected] | None = None

    def _count(self, event: str) -> None:
        self.cache.metrics.shared_cache_events.labels(self.name, event).inc()

    async def fetch(self) -> Fetch:
        try:
            event, entry = await self._look()
            self._count(event)
            if entry is not None:
                return self._fetch_of(entry)
            token = await self.cache.take_lease(self.lease_key)
        except SharedCacheError:
            self._count("unavailable")
            return await self.source.fetch()
        if token is None:
            return await self._wait_then_fetch()
        self._count("lease_acquired")
        try:
            # Another replica may have written the entry between our read and our lease.
            try:
                event, entry = await self._look()
            except SharedCacheError:
                self._count("unavailable")
                return await self.source.fetch()
            if entry is not None:
                return self._fetch_of(entry)
            return await self._fetch_and_write()
        finally:
            await self.cache.release(self.lease_key, token)

    async def _wait_then_fetch(self) -> Fetch:
        """Poll for the lease holder's entry for up to lease_s, then fetch ourselves."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cache.config.lease_s
        poll_s = min(0.1, max(0.01, self.cache.config.lease_s / 20))
        try:
            while loop.time() < deadline:
                await asyncio.sleep(min(poll_s, max(0.0, deadline - loop.time())))
                _, entry = await self._look()
                if entry is not None:
                    self._count("lease_waited")
                    return self._fetch_of(entry)
        except SharedCacheError:
            self._count("unavailable")
            return await self.source.fetch()
        self._count("lease_timeout")
        return await self._fetch_and_write()

    async def _fetch_and_write(self) -> Fetch:
        """Fetch from the source; share the result when every document in it validates."""
        fetched = await self.source.fetch()
        documents = await asyncio.to_thread(self._valid_documents, fetched.documents)
        if documents is None:
            return fetched  # the refresh loop rejects and reports it; nothing bad is shared
        fresh_for_s = min(self.max_fresh_s, self.interval_s if fetched.refresh_in_s is None else fetched.refresh_in_s)
        payload = json.dumps({
            "source": self.name, "fetched_at": self.cache.clock.time(), "fresh_for_s": fresh_for_s,
            "documents": [{"label": d.label, "required": d.required, "version": d.version,
                           "content": base64.b64encode(d.content).decode()} for d in documents],
        }, separators=(",", ":"), sort_keys=True).encode()
        try:
            await self.cache.set(self.entry_key, self.cache.seal(self.entry_key, payload),
                                 ttl_s=2 * fresh_for_s + self.cache.config.lease_s)
            self._count("write")
        except SharedCacheError:
            self._count("unavailable")
        return fetched

    def _valid_documents(self, documents: tuple[Document, ...]) -> tuple[Document, ...] | None:
        """The documents that validate, or None when a required one does not (or none does)."""
        kept = []
        for document in documents:
            try:
                validate_document(document.content, self.cache.validation)
            except DocumentRejected:
                if document.required:
                    return None
                continue
            kept.append(document)
        return tuple(kept) or None

    async def _look(self) -> tuple[str, Entry | None]:
        """Read the entry: (event, entry) where entry is set only when it is fresh and valid."""
        value = await self.cache.get(self.entry_key)
        if value is None:
            return "miss", None
        if self._parsed is None or self._parsed[0] != value:
            try:
                self._parsed = (value, await asyncio.to_thread(self._parse, value))
            except DocumentRejected as refused:
                self._parsed = (value, refused)
        entry = self._parsed[1]
        if isinstance(entry, DocumentRejected):
            event = "bad_hmac" if entry.reason == "bad_hmac" else "invalid_entry"
            log.warning("shared_entry_refused", source=self.name, reason=entry.reason, detail=entry.detail)
            return event, None
        age = entry.age_s(self.cache.clock.time())
        if not -entry.fresh_for_s < age < entry.fresh_for_s:
            return "stale", None
        return "hit", entry

    def _parse(self, value: bytes) -> Entry:
        """Authenticate, parse and validate an entry (in a worker thread); DocumentRejected names the problem."""
        payload = self.cache.unseal(self.entry_key, value)
        try:
            data: Any = json.loads(payload)
            fetched_at, fresh_for_s = float(data["fetched_at"]), float(data["fresh_for_s"])
            documents = tuple(Document(label=str(d["label"]), required=d["required"] is True,
                                       version=None if d["version"] is None else str(d["version"]),
                                       content=base64.b64decode(d["content"], validate=True))
                              for d in data["documents"])
            source = data["source"]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DocumentRejected("invalid_entry", f"malformed entry ({type(exc).__name__})") from exc
        if source != self.name or not documents or not math.isfinite(fetched_at + fresh_for_s) or fresh_for_s <= 0:
            raise DocumentRejected("invalid_entry", "entry fields out of range")
        for document in documents:
            try:
                validate_document(document.content, self.cache.validation)
            except DocumentRejected as exc:
                raise DocumentRejected("invalid_entry", f"document {document.label!r}: {exc.reason}") from exc
        return Entry(documents, fetched_at, min(fresh_for_s, self.max_fresh_s))

    def _fetch_of(self, entry: Entry) -> Fetch:
        """The entry as a fetch, asking to be refreshed when it turns stale."""
        remaining = entry.fresh_for_s - max(0.0, entry.age_s(self.cache.clock.time()))
        return Fetch(entry.documents, refresh_in_s=max(0.0, remaining))

    async def close(self) -> None:
        await self.source.close()
