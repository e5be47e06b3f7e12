"""A source behind the fleet's shared cache: same protocol as any source, so the refresh loop does not change.

On each fetch it reads the source's entry; a fresh, valid entry is used without asking the source.
Otherwise the replica takes a lease (``SET NX PX`` through aiocache's ``add``), fetches, writes the
entry and releases the lease with aiocache's compare-and-delete script; a replica that did not get
the lease polls for the entry for up to ``lease_s``, then fetches itself. aiocache's ``RedLock`` is
not used: it does not say whether the lease was won, and a loser waits on a process-local event, so
on another host it would always sit out the whole lease instead of returning as soon as the entry appears.

Rollback: the replica remembers the newest fetch time it has accepted (an entry's, or its own
fetch's; seeded from last-known-good at start) and refuses any older entry, however well signed, so
an entry saved and put back after a rotation cannot bring back a removed key. Every entry read is
validated like a fetched document; a refused one is counted on each refresh that meets it, logged
once (per distinct entry), never served, and overwritten by the next good fetch. After
:meth:`SharedCache.bypass` (SIGUSR1) the next fetch goes to the source past a fresh entry and
writes the result back.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from dataclasses import replace

import structlog

from jwksd.config import ValidationConfig
from jwksd.errors import DocumentRejected, SharedCacheError
from jwksd.fleet.cache import SharedCache
from jwksd.fleet.entry import Entry, Sealer, SourceIdentity, max_entry_bytes
from jwksd.metrics import SHARED_CACHE_EVENTS
from jwksd.sources import Document, Fetch, Source
from jwksd.status import iso_time
from jwksd.validate import validate_document

log = structlog.get_logger("jwksd.fleet.cache")

REPORTED_ENTRIES = 16  # refused entries remembered so each is logged once, even when two alternate


class SharedSource:
    """A source behind the shared cache; same protocol as any source."""

    def __init__(self, cache: SharedCache, source: Source, identity: SourceIdentity, *, interval_s: float,
                 max_fresh_s: float, validation: ValidationConfig) -> None:
        self.name = source.name
        self.validation = validation  # entries are checked as the refresh loop will check them
        self.cache = cache
        self.source = source
        self.interval_s = interval_s
        self.max_fresh_s = max(interval_s, max_fresh_s)
        self.entry_key = f"entry:{source.name}"
        self.lease_key = f"lease:{source.name}"
        self.sealer = Sealer(cache.hmac_key, cache.key(self.entry_key), identity)
        self.max_entry_bytes = max_entry_bytes(identity.documents, validation.max_document_bytes)
        self._bypass_seen = cache.bypass_generation
        # The last entry bytes parsed, their digest and what came of it: a replica waiting on a lease reads
        # the same (usually stale) entry every poll, and validating it again each time would give the same answer.
        self._parsed: tuple[bytes, str, Entry | DocumentRejected] | None = None
        self._reported: collections.deque[str] = collections.deque(maxlen=REPORTED_ENTRIES)
        for event in SHARED_CACHE_EVENTS:
            cache.metrics.shared_cache_events.labels(source.name, event)

    def _count(self, event: str) -> None:
        self.cache.metrics.shared_cache_events.labels(self.name, event).inc()

    async def fetch(self) -> Fetch:
        if self._bypass_seen != self.cache.bypass_generation:
            self._bypass_seen = self.cache.bypass_generation
            self._count("bypassed")
            return await self._fetch_direct(share=True)
        try:
            event, entry = await self._look()
            self._count(event)
            if entry is not None:
                return self._fetch_of(entry)
            token = await self.cache.take_lease(self.lease_key)
        except SharedCacheError:
            self._count("unavailable")
            return await self._fetch_direct(share=False)
        if token is None:
            return await self._wait_then_fetch()
        self._count("lease_acquired")
        try:
            # Another replica may have written the entry between our read and our lease.
            try:
                event, entry = await self._look()
            except SharedCacheError:
                self._count("unavailable")
                return await self._fetch_direct(share=False)
            if entry is not None:
                return self._fetch_of(entry)
            return await self._fetch_direct(share=True)
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
            return await self._fetch_direct(share=False)
        self._count("lease_timeout")
        return await self._fetch_direct(share=True)

    async def _fetch_direct(self, *, share: bool) -> Fetch:
        """Fetch from the source; when every document in it validates, accept its time and (``share``) write it."""
        fetched = await self.source.fetch()
        fetched_at = self.cache.clock.time()
        documents = await asyncio.to_thread(self._valid_documents, fetched.documents)
        if documents is None:
            return fetched  # the refresh loop rejects and reports it; nothing bad is shared
        self._accept(fetched_at)
        if share:
            fresh_for_s = min(self.max_fresh_s,
                              self.interval_s if fetched.refresh_in_s is None else fetched.refresh_in_s)
            value = self.sealer.seal(self.name, Entry(documents, fetched_at, fresh_for_s))
            try:
                await self.cache.set(self.entry_key, value, ttl_s=2 * fresh_for_s + self.cache.config.lease_s)
                self._count("write")
            except SharedCacheError:
                self._count("unavailable")
        return fetched

    @property
    def accepted_at(self) -> float | None:
        """The newest fetch time this replica accepted for the source: older entries are a rollback."""
        return self.cache.accepted.get(self.name)

    def _accept(self, fetched_at: float) -> None:
        self.cache.accepted[self.name] = max(self.cache.accepted.get(self.name, fetched_at), fetched_at)

    def _valid_documents(self, documents: tuple[Document, ...]) -> tuple[Document, ...] | None:
        """The documents that validate, or None when a required one does not (or none does)."""
        kept = []
        for document in documents:
            try:
                validate_document(document.content, self.validation)
            except DocumentRejected:
                if document.required:
                    return None
                continue
            kept.append(document)
        return tuple(kept) or None

    async def _look(self) -> tuple[str, Entry | None]:
        """Read the entry: (event, entry) where entry is set only when it is fresh, valid and not a rollback."""
        value = await self.cache.get(self.entry_key, self.max_entry_bytes)
        if value is None:
            return "miss", None
        if isinstance(value, int):
            if value < 0:
                return self._refuse("type", DocumentRejected("invalid_entry", "the key holds another Redis type"))
            return self._refuse(f"size:{value}", DocumentRejected(
                "too_large", f"the entry is {value} bytes, more than the {self.max_entry_bytes} its documents "
                             "can fill (validation.max_document_bytes per document): not read"))
        if self._parsed is None or self._parsed[0] != value:
            digest = hashlib.sha256(value).hexdigest()
            try:
                self._parsed = (value, digest, await asyncio.to_thread(self._parse, value))
            except DocumentRejected as refused:
                self._parsed = (value, digest, refused)
        _, digest, entry = self._parsed
        if isinstance(entry, DocumentRejected):
            return self._refuse(digest, entry)
        if self.accepted_at is not None and entry.fetched_at < self.accepted_at:
            return self._refuse(digest, DocumentRejected(
                "rolled_back", f"the entry was fetched at {iso_time(entry.fetched_at)}, before the "
                               f"{iso_time(self.accepted_at)} this replica has already accepted"))
        age = entry.age_s(self.cache.clock.time())
        if not -entry.fresh_for_s < age < entry.fresh_for_s:
            return "stale", None
        return "hit", entry

    def _refuse(self, identity: str, refused: DocumentRejected) -> tuple[str, None]:
        """Log a refused entry the first time it is met (not on every poll); its reason is the event."""
        seen = f"{refused.reason}:{identity}"
        if seen not in self._reported:
            self._reported.append(seen)
            log.warning("shared_entry_refused", source=self.name, reason=refused.reason, detail=refused.detail)
        return refused.reason, None

    def _parse(self, value: bytes) -> Entry:
        """Authenticate, parse and validate an entry (in a worker thread); DocumentRejected names the problem."""
        entry = self.sealer.open(self.name, value)
        for document in entry.documents:
            try:
                validate_document(document.content, self.validation)
            except DocumentRejected as exc:
                raise DocumentRejected("invalid_entry", f"document {document.label!r}: {exc.reason}") from exc
        return replace(entry, fresh_for_s=min(entry.fresh_for_s, self.max_fresh_s))

    def _fetch_of(self, entry: Entry) -> Fetch:
        """The entry as a fetch (its time accepted), asking to be refreshed when it turns stale."""
        self._accept(entry.fetched_at)
        remaining = entry.fresh_for_s - max(0.0, entry.age_s(self.cache.clock.time()))
        return Fetch(entry.documents, refresh_in_s=max(0.0, remaining))

    async def close(self) -> None:
        await self.source.close()
