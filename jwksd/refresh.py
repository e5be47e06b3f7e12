"""The background refresh: fetch from every source, validate, and hand each source's keys to the publisher.

One task runs :meth:`Refresher.run`; it alone calls :meth:`Refresher.refresh`, so at most one
refresh is in flight. Requests and SIGUSR1 only wake it, and a woken refresh asks every source.
Each source has its own schedule on the loop's monotonic clock (see schedule.py: jitter after a
success, capped backoff after a failure); a timer tick asks only the sources that are due.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from jwksd import schedule
from jwksd.config import Config, LiveConfig
from jwksd.errors import DocumentRejected, SourceError
from jwksd.merge import merge, same_keys
from jwksd.metrics import Metrics
from jwksd.publish import Publisher
from jwksd.source_set import SourceSet
from jwksd.sources import Fetch, Source
from jwksd.status import HISTORY, ErrorInfo, Outcome, RefreshStatus, SourceStatus
from jwksd.store import Clock, Store
from jwksd.validate import KeySet, validate_document

log = structlog.get_logger("jwksd.refresh")

Key = Mapping[str, Any]


@dataclass
class SourceState:
    """What one source last delivered and how it went."""

    name: str
    keys: tuple[Key, ...] | None = None
    version: str | None = None
    last_success: float | None = None
    last_error: ErrorInfo | None = None
    failing: bool = False
    failures: int = 0  # consecutive failed fetches
    due: float = 0.0  # loop time of the next scheduled fetch
    delay_s: float = 0.0  # from the last fetch to the next
    seeded: bool = False  # keys read back from last-known-good; the source has not delivered since start


class Refresher:
    """Owns the schedule and every source's state; hands what the sources delivered to the publisher."""

    def __init__(self, config: LiveConfig, source_set: SourceSet, publisher: Publisher, metrics: Metrics,
                 clock: Clock, *, rng: random.Random | None = None,
                 seed: Mapping[str, Sequence[Key]] | None = None) -> None:
        self.live = config
        self.source_set = source_set
        self.publisher = publisher
        self.store: Store = publisher.store  # read only: the age, for stale-while-revalidate
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self.states = {source.name: SourceState(source.name) for source in self.sources}
        for name, keys in (seed or {}).items():
            # A source still failing after a restart keeps its share of the set from last-known-good.
            if name in self.states:
                self.states[name].keys, self.states[name].seeded = tuple(keys), True
        self.running = False
        self.failures = 0
        self.completed = 0  # refreshes finished, for tests and health
        self.history: collections.deque[Outcome] = collections.deque(maxlen=HISTORY)
        self.status = self._status()  # replaced whole after each refresh: what /health reads
        self._wake = asyncio.Event()
        self._done = asyncio.Condition()

    @property
    def sources(self) -> list[Source]:
        """The sources in use, in the order of config.sources."""
        return self.source_set.sources

    @property
    def config(self) -> Config:
        """The config in force: a reload may replace it between two refreshes."""
        return self.live.current

    async def reconfigure(self, config: Config, source_set: SourceSet) -> None:
        """Apply a reloaded config between refreshes, with the sources matching ``config.sources``.

        A source whose settings did not change keeps what it delivered (even when re-opened because
        a setting it keeps did, see source_set.built_from); a new or changed one starts empty, and
        the served set stays as it is until the next refresh publishes.
        """
        async with self._done:  # nothing awaits between this check and the swap: no refresh can start
            await self._done.wait_for(lambda: not self.running)
            before = {source.name: source for source in self.live.current.sources}
            kept = {source.name for source in config.sources if before.get(source.name) == source}
            self.states = {source.name: self.states[source.name] if source.name in kept else SourceState(source.name)
                           for source in source_set.sources}
            self.source_set = source_set
            self.live.current = config
            self.status = self._status()

    async def wait_until_served(self) -> None:
        """Wait until the store holds a valid set (at once when the ladder installed one at start)."""
        async with self._done:
            await self._done.wait_for(lambda: self.store.snapshot is not None)

    def trigger(self) -> None:
        """Refresh now (SIGUSR1, or a stale read)."""
        self._wake.set()

    def revalidate_if_stale(self) -> None:
        """Stale-while-revalidate: a read of an old set wakes the loop, unless it is busy or backing off."""
        if schedule.should_revalidate(self.store.age_s(), self.config.refresh.max_age_s, refreshing=self.running,
                                      failures=self.failures):
            self._wake.set()

    async def wait_for_refreshes(self, count: int) -> None:
        """Wait until ``count`` refreshes have completed in total (callers bound this with a timeout)."""
        async with self._done:
            await self._done.wait_for(lambda: self.completed >= count)

    def next_delay_s(self) -> float:
        """Seconds until the first source is due."""
        return schedule.wait_s((state.due for state in self.states.values()), asyncio.get_running_loop().time())

    async def run(self) -> None:
        """Refresh every source at once, then each when due or all when woken, until cancelled.

        Beside the first refresh runs the start-up grace (its own task, cancelled with this one).
        """
        grace = asyncio.create_task(self._startup_grace(), name="jwksd-startup-grace")
        try:
            woken = True
            while True:
                self._wake.clear()
                await self.refresh(everything=woken)
                woken = False
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.next_delay_s()):  # not wait_for: see local_file.read_file
                        await self._wake.wait()
                    woken = True
        finally:
            grace.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await grace

    async def _startup_grace(self) -> None:
        """``startup_grace_s`` after start with nothing served, install the disk rung (the fetch goes on)."""
        await asyncio.sleep(self.config.refresh.startup_grace_s)
        if self.publisher.promote_standby("startup_grace"):
            async with self._done:
                self._done.notify_all()  # wait_until_served

    async def refresh(self, *, everything: bool = True) -> None:
        """One refresh of every source (or only the due ones), one swap of the served set, one log line."""
        self.running = True
        started = time.perf_counter()
        try:
            now = asyncio.get_running_loop().time()
            due = [s for s in self.sources if everything or schedule.is_due(self.states[s.name].due, now)]
            outcomes = {source.name: await self._refresh_source(source) for source in due}
            ok = not any(state.failing for state in self.states.values())
            self.failures = max(state.failures for state in self.states.values())
            added, removed, served = await self.publisher.publish(self._shares(), failing=not ok)
            snapshot = self.store.snapshot
            fields: dict[str, Any] = {
                "outcome": _overall(outcomes.values()), "sources": outcomes, "added": added, "removed": removed,
                "kids": len(snapshot.kids) if snapshot else 0,
                "served": served or "none",
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                # When each source asked here is asked again: the schedule in force, visible.
                "next_s": {name: round(self.states[name].delay_s, 3) for name in outcomes},
            }
            self.history.append(Outcome(self.clock.time(), fields["outcome"], tuple(added), tuple(removed),
                                        fields["served"], fields["duration_ms"]))
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
                self.status = self._status()
                self._done.notify_all()

    def _shares(self) -> dict[str, tuple[Key, ...]] | None:
        """Each source's last good keys; None while no source has delivered since start (the ladder's set stays).

        After that, a source that has not delivered yet keeps its last-known-good share.
        """
        if all(state.keys is None or state.seeded for state in self.states.values()):
            return None
        return {state.name: state.keys for state in self.states.values() if state.keys is not None}

    def held(self) -> dict[str, tuple[Key, ...]]:
        """Each source's last delivered keys, read back from last-known-good ones included (for a revocation)."""
        return {state.name: state.keys for state in self.states.values() if state.keys is not None}

    def _status(self) -> RefreshStatus:
        """A frozen copy of every source's state and the last outcomes, for readers outside the loop."""
        try:
            to_wall = self.clock.time() - asyncio.get_running_loop().time()  # due times are the loop's
        except RuntimeError:  # built outside the loop (tests): nothing is scheduled yet
            to_wall = None
        return RefreshStatus(tuple(
            SourceStatus(state.name, "last-known-good" if state.seeded else
                         ("fresh" if state.last_success is not None else "none"),
                         state.failing, state.last_success, state.last_error, state.failures,
                         state.due + to_wall if state.due and to_wall is not None else None)
            for state in self.states.values()), self.completed, tuple(self.history))

    async def _refresh_source(self, source: Source) -> str:
        """Fetch and validate one source; return the outcome (a metric label)."""
        state = self.states[source.name]
        started = time.perf_counter()
        outcome = "fetch_error"
        refresh_in_s: float | None = None
        try:
            fetched = await source.fetch()
            keys = await asyncio.to_thread(self._validate_fetch, source.name, fetched)
            outcome = "unchanged" if state.keys is not None and same_keys(keys, state.keys) else "success"
            state.keys, state.version, state.seeded = keys, fetched.version, False
            state.last_success, state.failing, state.failures = self.clock.time(), False, 0
            refresh_in_s = fetched.refresh_in_s
            self.metrics.last_success.labels(source.name).set(state.last_success)
        except SourceError as exc:
            self._record_error(state, exc.code, exc.message)
        except DocumentRejected as exc:
            outcome = "rejected_document"
            self._record_error(state, exc.reason, exc.detail)
        finally:
            state.delay_s = schedule.fetch_delay_s(self.config.refresh, state.failures, self.rng, refresh_in_s)
            state.due = asyncio.get_running_loop().time() + state.delay_s
            self.metrics.refreshes.labels(source.name, outcome).inc()
            self.metrics.refresh_duration.labels(source.name).observe(time.perf_counter() - started)
        return outcome

    def _record_error(self, state: SourceState, code: str, message: str) -> None:
        state.last_error = ErrorInfo(code, message, self.clock.time())
        state.failing = True
        state.failures += 1
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

def _overall(outcomes: Any) -> str:
    """The worst outcome of a refresh across sources."""
    order = ("rejected_document", "fetch_error", "success", "unchanged")
    present = set(outcomes)
    return next((outcome for outcome in order if outcome in present), "unchanged")
