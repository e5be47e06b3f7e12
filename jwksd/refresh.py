"""The background refresh: fetch from every source, validate, merge, swap the snapshot, persist it.

One task runs :meth:`Refresher.run`; it alone calls :meth:`Refresher.refresh`, so at most one
refresh is in flight. Requests and SIGUSR1 only wake it. The schedule uses the monotonic clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from jwksd.config import Config, LiveConfig
from jwksd.errors import DocumentRejected, SourceError, StateError
from jwksd.jwk import thumbprint
from jwksd.metrics import Metrics
from jwksd.sources import Fetch, Source
from jwksd.state import save_last_known_good
from jwksd.store import Clock, Store, build_snapshot
from jwksd.validate import KeySet, validate_document

log = structlog.get_logger("jwksd.refresh")

Key = Mapping[str, Any]


@dataclass(frozen=True)
class ErrorInfo:
    """The last thing that went wrong with a source (no key material, no raw content)."""

    code: str
    message: str
    at: float


@dataclass
class SourceState:
    """What one source last delivered and how it went."""

    name: str
    keys: tuple[Key, ...] | None = None
    version: str | None = None
    last_success: float | None = None
    last_error: ErrorInfo | None = None
    failing: bool = False


def key_id(key: Key) -> str:
    """The identity used to merge sets: the kid, else the RFC 7638 thumbprint."""
    kid = key.get("kid")
    return str(kid) if kid is not None else "#" + thumbprint(key)


def merge(sets: Sequence[tuple[str, Sequence[Key]]]) -> tuple[Key, ...]:
    """Union of key sets by kid; on a conflict the earlier set wins and the conflict is logged."""
    merged: dict[str, Key] = {}
    origin: dict[str, str] = {}
    for label, keys in sets:
        for key in keys:
            kid = key_id(key)
            if kid not in merged:
                merged[kid], origin[kid] = key, label
            elif dict(merged[kid]) != dict(key):
                log.warning("kid_conflict", kid=kid, kept=origin[kid], ignored=label)
    return tuple(merged[kid] for kid in sorted(merged))


class Refresher:
    """Owns the schedule and every source's state; swaps the store's snapshot on change."""

    def __init__(self, config: LiveConfig, sources: Sequence[Source], store: Store, metrics: Metrics, clock: Clock,
                 *, rng: random.Random | None = None) -> None:
        self.live = config
        self.sources = list(sources)  # in the order of config.sources
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self.states = {source.name: SourceState(source.name) for source in self.sources}
        self.running = False
        self.failures = 0
        self.completed = 0  # refreshes finished, for tests and health
        self._wake = asyncio.Event()
        self._done = asyncio.Condition()

    @property
    def config(self) -> Config:
        """The config in force: a reload may replace it between two refreshes."""
        return self.live.current

    async def reconfigure(self, config: Config, sources: Sequence[Source]) -> None:
        """Apply a reloaded config between refreshes, with the sources matching ``config.sources``.

        A source kept from before keeps what it delivered; a new or re-opened one starts empty, and
        the served set stays as it is until the next refresh publishes.
        """
        async with self._done:  # nothing awaits between this check and the swap: no refresh can start
            await self._done.wait_for(lambda: not self.running)
            kept = {source.name for source in sources if any(source is old for old in self.sources)}
            self.states = {source.name: self.states[source.name] if source.name in kept else SourceState(source.name)
                           for source in sources}
            self.sources = list(sources)
            self.live.current = config

    async def wait_until_served(self) -> None:
        """Wait until the store holds a valid set (at once when the ladder installed one at start)."""
        async with self._done:
            await self._done.wait_for(lambda: self.store.snapshot is not None)

    def trigger(self) -> None:
        """Refresh now (SIGUSR1, or a stale read)."""
        self._wake.set()

    def revalidate_if_stale(self) -> None:
        """Stale-while-revalidate: a read of an old set wakes the loop, unless it is busy or backing off."""
        if not self.running and self.failures == 0 and self.store.age_s() > self.config.refresh.max_age_s:
            self._wake.set()

    async def wait_for_refreshes(self, count: int) -> None:
        """Wait until ``count`` refreshes have completed in total (callers bound this with a timeout)."""
        async with self._done:
            await self._done.wait_for(lambda: self.completed >= count)

    def next_delay_s(self) -> float:
        """Interval with ±jitter after success; capped exponential backoff with jitter after failure."""
        refresh = self.config.refresh
        if self.failures == 0:
            return refresh.interval_s * self.rng.uniform(1 - refresh.jitter, 1 + refresh.jitter)
        ceiling = min(refresh.retry_cap_s, refresh.interval_s, refresh.retry_base_s * 2 ** (self.failures - 1))
        return self.rng.uniform(ceiling / 2, ceiling)

    async def run(self) -> None:
        """Refresh at once, then on schedule or when woken, until cancelled."""
        while True:
            self._wake.clear()
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.next_delay_s())

    async def refresh(self) -> None:
        """One refresh of every source, then one swap of the served set, then one log line."""
        self.running = True
        started = time.perf_counter()
        try:
            outcomes = {source.name: await self._refresh_source(source) for source in self.sources}
            ok = all(outcome in ("success", "unchanged") for outcome in outcomes.values())
            self.failures = 0 if ok else self.failures + 1
            self.store.failing = not ok
            added, removed = await self._publish()
            snapshot = self.store.snapshot
            fields: dict[str, Any] = {
                "outcome": _overall(outcomes.values()), "sources": outcomes, "added": added, "removed": removed,
                "kids": len(snapshot.kids) if snapshot else 0,
                "served": self.store.served_source(self.config.refresh.max_age_s) or "none",
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            }
            if ok:
                log.info("refresh", **fields)
            else:
                errors = {s.name: {"code": s.last_error.code, "message": s.last_error.message}
                          for s in self.states.values() if s.failing and s.last_error}
                log.warning("refresh", **fields, errors=errors, consecutive_failures=self.failures)
        finally:
            self.running = False
            async with self._done:
                self.completed += 1
                self._done.notify_all()

    async def _refresh_source(self, source: Source) -> str:
        """Fetch and validate one source; return the outcome (a metric label)."""
        state = self.states[source.name]
        started = time.perf_counter()
        outcome = "fetch_error"
        try:
            fetched = await source.fetch()
            keys = await asyncio.to_thread(self._validate_fetch, source.name, fetched)
            outcome = "unchanged" if state.keys is not None and _same(keys, state.keys) else "success"
            state.keys, state.version = keys, fetched.version
            state.last_success, state.failing = self.clock.time(), False
            self.metrics.last_success.labels(source.name).set(state.last_success)
        except SourceError as exc:
            self._record_error(state, exc.code, exc.message)
        except DocumentRejected as exc:
            outcome = "rejected_document"
            self._record_error(state, exc.reason, exc.detail)
        finally:
            self.metrics.refreshes.labels(source.name, outcome).inc()
            self.metrics.refresh_duration.labels(source.name).observe(time.perf_counter() - started)
        return outcome

    def _record_error(self, state: SourceState, code: str, message: str) -> None:
        state.last_error = ErrorInfo(code, message, self.clock.time())
        state.failing = True
        self.metrics.last_failure.labels(state.name).set(state.last_error.at)
        self.metrics.last_error.labels(state.name).info({"code": code})

    def _validate_fetch(self, name: str, fetched: Fetch) -> tuple[Key, ...]:
        """Validate each document (in a worker thread: RSA checks are CPU work) and merge them."""
        sets: list[tuple[str, Sequence[Key]]] = []
        for document in fetched.documents:
            try:
                keyset = validate_document(document.content, self.config.validation)
            except DocumentRejected as exc:
                self.metrics.documents_rejected.labels(exc.reason).inc()
                emit = log.error if exc.reason == "private_key_material" or document.required else log.warning
                emit("document_rejected", source=name, document=document.label, version=document.version,
                     reason=exc.reason, detail=exc.detail, fails_refresh=document.required)
                if document.required:
                    raise
                continue
            self._count_drops(name, document.label, keyset)
            sets.append((document.label, keyset.keys))
        if not sets:
            raise DocumentRejected("no_valid_keys", f"{name} returned no document that could be served")
        return merge(sets)

    def _count_drops(self, name: str, label: str, keyset: KeySet) -> None:
        for dropped in keyset.dropped:
            self.metrics.keys_dropped.labels(dropped.reason).inc()
            log.warning("key_dropped", source=name, document=label, kid=dropped.kid, reason=dropped.reason,
                        detail=dropped.detail)

    async def _publish(self) -> tuple[list[str], list[str]]:
        """Swap in the union of every source's last good keys, persisting it when it changed.

        Returns the kids added and removed. With no source delivered yet, last-known-good or
        fallback stays in place.
        """
        delivered = [(state.name, state.keys) for state in self.states.values() if state.keys is not None]
        if not delivered:
            return [], []
        keys = merge(delivered)
        current = self.store.snapshot
        if current is not None and _same(current.keys, keys):
            # Same content: keep the bytes, ETag and Last-Modified; only the confirmation time moves.
            self.store.swap(current.confirmed(self.clock))
            if current.origin == "fresh":
                return [], []
        else:
            self.store.swap(build_snapshot(keys, "fresh", self.clock))
        snapshot = self.store.snapshot
        assert snapshot is not None
        before = set(current.kids) if current else set()
        added, removed = sorted(set(snapshot.kids) - before), sorted(before - set(snapshot.kids))
        self.metrics.kids_removed.inc(len(removed))
        self.metrics.keys_served.set(len(snapshot.kids))
        self.metrics.set_serving("fresh")
        if self.config.state.state_dir is not None:
            await self._persist(snapshot.keys, snapshot.fetched_at, snapshot.changed_at)
        return added, removed

    async def _persist(self, keys: tuple[Key, ...], fetched_at: float, changed_at: float) -> None:
        state_dir = self.config.state.state_dir
        assert state_dir is not None
        try:
            await asyncio.to_thread(save_last_known_good, state_dir, keys, fetched_at=fetched_at,
                                    changed_at=changed_at)
        except StateError as exc:
            self.metrics.state_errors.labels("write").inc()
            log.error("state_write_failed", message=str(exc))


def _same(a: Sequence[Key], b: Sequence[Key]) -> bool:
    return len(a) == len(b) and all(dict(x) == dict(y) for x, y in zip(a, b, strict=True))


def _overall(outcomes: Any) -> str:
    """The worst outcome of a refresh across sources."""
    order = ("rejected_document", "fetch_error", "success", "unchanged")
    present = set(outcomes)
    return next((outcome for outcome in order if outcome in present), "unchanged")
