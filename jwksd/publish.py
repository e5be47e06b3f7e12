"""The one writer of the served snapshot: merge the sources' keys, build the snapshot, swap it in, persist it, report.

Start-up goes through here too. :meth:`Publisher.restore` reads last-known-good, else the
fallback file (rungs 3 and 4 of the ladder), into ``Store.standby``: requests get it meanwhile,
with short cache headers, but it is installed (and the daemon ready) only when the first fetch has
failed (:meth:`publish`) or ``refresh.startup_grace_s`` has passed (:meth:`promote_standby`), so a
restart after a rotation never announces the old set as ready.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import structlog

from jwksd.config import Config, LiveConfig
from jwksd.errors import StateError
from jwksd.merge import Key, key_id, merge, same_keys, with_origins
from jwksd.metrics import Metrics
from jwksd.state import LastKnownGood, read_fallback, read_last_known_good, save_last_known_good
from jwksd.store import Clock, KidOrigin, Snapshot, Store, build_snapshot
from jwksd.validate import revoked

log = structlog.get_logger("jwksd.publish")

class Publisher:
    """Changes the store, and only it does; persists what it serves and keeps the serving metrics in step."""

    def __init__(self, live: LiveConfig, store: Store, metrics: Metrics, clock: Clock) -> None:
        self.live = live
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self._persisted: tuple[Path, dict[str, tuple[Key, ...]]] | None = None  # where, and what
        # Documents derived from the served keys (the OpenID discovery document): told of each new content,
        # in the same step as the swap, so no request sees the new set with a document of the old one.
        self.derived: list[Callable[[Snapshot], object]] = []
        # With the shared cache, its live map of each source's newest accepted entry time: saved with every
        # write, so a restarted replica still refuses older entries (see fleet/source.py).
        self.accepted_at: Mapping[str, float] = {}
        self._lock = asyncio.Lock()  # a refresh's publish and a reload's revoke never interleave

    def _install(self, snapshot: Snapshot, shares: Mapping[str, tuple[Key, ...]] | None = None) -> bool:
        """Swap in a snapshot with new content and rebuild what is derived from it; False when it cannot be served.

        A snapshot whose response cannot be built is never installed: it would make every request a 500
        while /readyz said 200. The caller counts the refusal; the set served before stays. ``shares``
        name each kid's sources (see merge.with_origins).
        """
        if not servable(snapshot):
            return False
        self.store.swap(with_origins(snapshot, shares, self.store.snapshot or self.store.standby, self.clock.time()))
        self.store.standby = None
        for update in self.derived:
            update(snapshot)
        return True

    @property
    def config(self) -> Config:
        return self.live.current

    async def restore(self) -> LastKnownGood | None:
        """Rungs 3 and 4: stand by with last-known-good, else the fallback file; return last-known-good (it seeds
        sources).

        A bad fallback file raises StateError (fatal at start); a bad last-known-good is logged, counted, skipped.
        Both are read in worker threads with a timeout: a FIFO or a hung mount must not hold the loop.
        """
        config, store, metrics = self.config, self.store, self.metrics
        fallback_file = config.state.fallback_file
        fallback = await read_fallback(fallback_file, config.validation) if fallback_file is not None else None
        lkg = None
        if config.state.state_dir is not None:
            try:
                lkg = await read_last_known_good(config.state.state_dir, config.validation, now=self.clock.time())
            except StateError as exc:
                metrics.state_errors.labels("read").inc()
                log.error("last_known_good_skipped", message=str(exc))
        if lkg is not None:
            for problem in lkg.skipped:
                metrics.state_errors.labels("read").inc()
                log.error("last_known_good_share_skipped", message=problem)
            snapshot = build_snapshot(lkg.keyset.keys, "last-known-good", self.clock, changed_at=lkg.changed_at,
                                      fetched_at=lkg.fetched_at)
            now = self.clock.time()  # each kid served since as the file says, so a restart does not reset it
            if not self._stand_by(replace(snapshot, origins={kid: KidOrigin(("last-known-good",), lkg.since.get(
                    kid, now)) for kid in snapshot.kids})):
                lkg = None  # skipped whole, as if its times had been refused on reading
        if lkg is None and fallback is not None:
            self._stand_by(build_snapshot(fallback.keys, "fallback", self.clock))
        if store.standby is not None:
            log.info("standing_by", origin=store.standby.origin, kids=list(store.standby.kids),
                     detail="served to requests until the first fetch; installed if it fails or the grace passes")
        return lkg

    def _stand_by(self, snapshot: Snapshot) -> bool:
        """Make ``snapshot`` the disk rung standing by, unless no response can be built from it (logged, counted)."""
        if not servable(snapshot):
            self.metrics.state_errors.labels("read").inc()
            return False
        self.store.stand_by(with_origins(snapshot, None, self.store.standby, self.clock.time()))
        return True

    def promote_standby(self, reason: str) -> bool:
        """Install the disk rung if nothing is served yet (``reason``: source_failed, startup_grace); True if so."""
        standby = self.store.standby
        if self.store.snapshot is not None or standby is None or not self._install(standby):
            return False
        self.metrics.set_serving(standby.origin)
        self.metrics.keys_served.set(len(standby.kids))
        log.info("serving_from_disk", origin=standby.origin, kids=list(standby.kids), reason=reason)
        return True

    async def reread_fallback(self) -> None:
        """After a reload naming another fallback file: use it wherever the old one was, or would be, served.

        Installed at once over an installed fallback; standing by while nothing is installed and no
        last-known-good stands by. A file that cannot be used is logged and counted, and what is
        served stays (the reload's preflight read it, so it changed since).
        """
        path = self.config.state.fallback_file
        if path is None or not self._fallback_in_use():
            return
        try:
            keys = (await read_fallback(path, self.config.validation)).keys
        except StateError as exc:
            self.metrics.state_errors.labels("read").inc()
            log.error("fallback_skipped", message=str(exc))
            return
        snapshot = self.store.snapshot
        if not self._fallback_in_use() or (snapshot is not None and same_keys(snapshot.keys, keys)):
            return  # a refresh published while the file was read, or nothing changes
        if snapshot is None:
            if self._stand_by(build_snapshot(keys, "fallback", self.clock)):
                log.info("standing_by", origin="fallback", kids=[str(k.get("kid", "")) for k in keys])
            return
        if not self._install(build_snapshot(keys, "fallback", self.clock,
                                            changed_at=_next_change(snapshot, self.clock))):
            self.metrics.state_errors.labels("read").inc()
            return
        self.metrics.keys_served.set(len(keys))
        log.info("serving_from_disk", origin="fallback", kids=[str(k.get("kid", "")) for k in keys], reason="reload")

    def _fallback_in_use(self) -> bool:
        """The fallback file is installed, or would be: nothing installed and no last-known-good standing by."""
        snapshot, standby = self.store.snapshot, self.store.standby
        if snapshot is not None:
            return snapshot.origin == "fallback"
        return standby is None or standby.origin == "fallback"

    async def publish(self, shares: Mapping[str, tuple[Key, ...]] | None, *,
                      failing: bool) -> tuple[list[str], list[str], str | None]:
        """Serve the union of ``shares`` (each source's last good keys); persist it when it changed.

        ``shares`` is None until some source has delivered since start: last-known-good or fallback stays.
        ``failing`` marks the served set stale (a source's last refresh failed). Returns the kids added and
        removed, and the X-JWKS-Source value now served.
        """
        self.store.failing = failing
        added: list[str] = []
        removed: list[str] = []
        if shares is not None:
            async with self._lock:
                added, removed = await self._swap(shares, confirmed=not failing)
        elif failing:
            self.promote_standby("source_failed")
        served = self.store.served_source(self.config.refresh.max_age_s)
        if served is not None:
            self.metrics.set_serving(served)  # stale while a source fails, not only fresh on a change
        return added, removed, served

    async def revoke(self, shares: Mapping[str, tuple[Key, ...]]) -> None:
        """After a reload changed ``revoked_kids``: serve and persist what is held without the revoked keys, now.

        Nothing is fetched, so a source that is down does not delay it: the served set (or the disk rung standing
        by) loses its revoked keys, keeping its origin and confirmation time, and ``shares`` (each source's last
        delivered keys) are persisted without them, so a restart does not bring them back. When every served key
        is revoked the set stays served, and that is logged, counted and shown on /health.
        """
        async with self._lock:
            current = self.store.snapshot or self.store.standby
            if current is None:
                return
            keys = self._allowed(current.keys)
            if not keys:
                self._keep_revoked(current.keys)
                return
            self.store.revoked_kept = ()
            if len(keys) == len(current.keys):
                return  # nothing served is revoked (a kid taken off the list comes back with the next publish)
            snapshot = build_snapshot(keys, current.origin, self.clock, fetched_at=current.fetched_at,
                                      changed_at=_next_change(current, self.clock))
            if not (self._install(snapshot) if self.store.snapshot is not None else self._stand_by(snapshot)):
                self.metrics.documents_rejected.labels("internal_error").inc()
                return
            removed = sorted(set(current.kids) - set(snapshot.kids))
            self.metrics.kids_removed.inc(len(removed))
            if self.store.snapshot is not None:  # installed, not standing by
                self.metrics.keys_served.set(len(snapshot.kids))
            log.warning("revoked_kids_removed", kids=removed, origin=current.origin,
                        detail="validation.revoked_kids applied to the served set without a refresh")
            if current.origin != "fallback":  # the fallback file is the operator's own: never written
                await self._persist(snapshot.keys, snapshot.fetched_at, snapshot.changed_at,
                                    self._allowed_shares(shares))

    def _allowed(self, keys: Sequence[Key]) -> tuple[Key, ...]:
        """``keys`` without those ``validation.revoked_kids`` lists (by kid or thumbprint, as the validator does)."""
        validation = self.config.validation
        return tuple(key for key in keys if not revoked(key, validation))

    def _allowed_shares(self, shares: Mapping[str, tuple[Key, ...]]) -> dict[str, tuple[Key, ...]]:
        """Each share without its revoked keys; a share left with none is left out."""
        return {name: kept for name, kept in ((name, self._allowed(share)) for name, share in shares.items()) if kept}

    def _keep_revoked(self, keys: Sequence[Key]) -> None:
        """Every served key is revoked: they stay served (an empty set fails every token); logged, counted, shown."""
        kids = [key_id(key) for key in keys]
        self.store.revoked_kept = tuple(kids)
        self.metrics.revocations_kept.inc()
        log.error("revoked_kids_would_empty", kids=kids,
                  detail="every served key is listed in validation.revoked_kids, and an empty set cannot be served: "
                         "they stay served; publish the replacement key first, then revoke")

    def _without_revoked(self, shares: Mapping[str, tuple[Key, ...]]) -> dict[str, tuple[Key, ...]]:
        """Each share without its revoked keys (a share left empty is left out); ``shares`` as they are when that
        would leave nothing to serve (reported by :meth:`_keep_revoked`)."""
        by_source = self._allowed_shares(shares)
        if by_source or not any(shares.values()):
            self.store.revoked_kept = ()
            return by_source
        self._keep_revoked(merge(list(shares.items())))
        return dict(shares)

    async def _swap(self, shares: Mapping[str, tuple[Key, ...]], *, confirmed: bool) -> tuple[list[str], list[str]]:
        by_source = self._without_revoked(shares)
        keys = merge(list(by_source.items()))
        installed = self.store.snapshot
        current = installed or self.store.standby  # what requests got so far, whichever
        if current is not None and same_keys(current.keys, keys):
            # Same content: keep the bytes, ETag and Last-Modified; only the confirmation time moves, and
            # only when every source answered: a failed refresh confirms nothing, so the age keeps growing.
            if installed is None:
                self._install(current.confirmed(self.clock), by_source)
            elif confirmed or current.origin != "fresh":
                self.store.swap(with_origins(current.confirmed(self.clock), by_source, current, self.clock.time()))
            if current.origin == "fresh":
                if (self.config.state.state_dir, by_source) != self._persisted:  # a reload may name a new dir
                    await self._persist(current.keys, current.fetched_at, current.changed_at, by_source)
                return [], []
        # Serialising and gzipping 100 RSA-4096 keys takes 5-10 ms: in a thread, so requests do not wait.
        elif not self._install(await asyncio.to_thread(build_snapshot, keys, "fresh", self.clock,
                                                       changed_at=_next_change(current, self.clock)), by_source):
            self.metrics.documents_rejected.labels("internal_error").inc()
            return [], []
        snapshot = self.store.snapshot
        assert snapshot is not None
        before = set(current.kids) if current else set()
        added, removed = sorted(set(snapshot.kids) - before), sorted(before - set(snapshot.kids))
        self.metrics.kids_removed.inc(len(removed))
        self.metrics.keys_served.set(len(snapshot.kids))
        self.metrics.set_serving("fresh")
        await self._persist(snapshot.keys, snapshot.fetched_at, snapshot.changed_at, by_source)
        return added, removed

    async def _persist(self, keys: tuple[Key, ...], fetched_at: float, changed_at: float,
                       by_source: dict[str, tuple[Key, ...]]) -> None:
        """Write the served set and each source's share, so a restart can seed every source (see state.py)."""
        state_dir = self.config.state.state_dir
        if state_dir is None:
            return
        try:
            served = self.store.snapshot or self.store.standby
            since = {kid: origin.since for kid, origin in served.origins.items()} if served else {}
            await asyncio.to_thread(save_last_known_good, state_dir, keys, fetched_at=fetched_at, changed_at=changed_at,
                                    sources=by_source, accepted_at=dict(self.accepted_at), since=since)
            self._persisted = (state_dir, dict(by_source))
        except StateError as exc:
            self.metrics.state_errors.labels("write").inc()
            log.error("state_write_failed", message=str(exc))


def servable(snapshot: Snapshot) -> bool:
    """Whether a response can be built from ``snapshot``; when not (a time no HTTP date can express), logged."""
    try:
        snapshot.last_modified  # noqa: B018 -- a cached property: formatted here once, and never fails a request
    except (ValueError, OverflowError, OSError) as exc:
        log.error("snapshot_refused", origin=snapshot.origin, kids=list(snapshot.kids),
                  problem=f"changed_at {snapshot.changed_at!r} cannot be written as a Last-Modified date ({exc})")
        return False
    return True


def _next_change(current: Snapshot | None, clock: Clock) -> float | None:
    """Last-Modified of a new set: now, but always a later second than the set it replaces.

    Otherwise a cache's If-Modified-Since would match the newer set (304) when two changes fall in
    one second or the wall clock steps back.
    """
    return None if current is None else max(clock.time(), math.floor(current.changed_at) + 1.0)
