"""The served snapshot: immutable bytes, headers and provenance, swapped atomically by the refresh."""

from __future__ import annotations

import base64
import gzip
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from functools import cached_property
from typing import Any, Literal, Protocol

from jwksd.validate import serialize_keys

Origin = Literal["fresh", "last-known-good", "fallback"]


class Clock(Protocol):
    """Wall time for timestamps, monotonic time for ages and schedules."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clocks."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True)
class KidOrigin:
    """Where one served kid comes from, and since when this daemon has served it without a break."""

    sources: tuple[str, ...]  # the sources whose share holds it, or the disk rung (last-known-good, fallback)
    since: float  # wall time


@dataclass(frozen=True)
class Snapshot:
    """One key set as served: never mutated, replaced whole."""

    keys: tuple[Mapping[str, Any], ...]
    body: bytes
    gzip_body: bytes
    etag: str
    gzip_etag: str
    kids: tuple[str, ...]
    origin: Origin
    changed_at: float  # wall time the content last changed (Last-Modified)
    fetched_at: float  # wall time the origin last confirmed it
    fetched_mono: float  # monotonic twin of fetched_at, for ages
    origins: Mapping[str, KidOrigin] = field(default_factory=dict)  # by kid; filled in by the publisher

    @cached_property
    def last_modified(self) -> str:
        """The HTTP date of ``changed_at``, formatted once per snapshot rather than per request."""
        return formatdate(self.changed_at, usegmt=True)

    def confirmed(self, clock: Clock, origin: Origin = "fresh") -> Snapshot:
        """The same content, confirmed again now (an unchanged refresh)."""
        return replace(self, origin=origin, fetched_at=clock.time(), fetched_mono=clock.monotonic())


def encoded(body: bytes) -> tuple[bytes, str, str]:
    """The gzip copy of a served body and the strong ETags of both, computed once per content."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()[:18]).decode()
    return gzip.compress(body, compresslevel=9, mtime=0), f'"{digest}"', f'"{digest}-gz"'


def build_snapshot(keys: tuple[Mapping[str, Any], ...], origin: Origin, clock: Clock, *,
                   changed_at: float | None = None, fetched_at: float | None = None) -> Snapshot:
    """Serialise ``keys`` once: body, gzip copy and strong ETags, so requests only copy bytes."""
    body = serialize_keys(keys)
    gzip_body, etag, gzip_etag = encoded(body)
    now = clock.time()
    fetched = now if fetched_at is None else fetched_at
    return Snapshot(
        keys=keys,
        body=body,
        gzip_body=gzip_body,
        etag=etag,
        gzip_etag=gzip_etag,
        kids=tuple(str(key.get("kid", "")) for key in keys),
        origin=origin,
        changed_at=now if changed_at is None else changed_at,
        fetched_at=fetched,
        fetched_mono=clock.monotonic() - max(0.0, now - fetched),
    )


class Store:
    """Holds the current snapshot; readers take the reference, the refresh replaces it.

    ``standby`` is the disk rung (last-known-good or fallback) read at start and not installed yet:
    requests get it while ``snapshot`` is None, readiness does not (see Publisher.restore).
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.snapshot: Snapshot | None = None
        self.standby: Snapshot | None = None
        self.standby_since = 0.0  # wall time the daemon began standing by, for /health
        self.failing = False  # the latest refresh attempt failed
        self.revoked_kept: tuple[str, ...] = ()  # revoked kids still served: revoking them would empty the set

    def stand_by(self, snapshot: Snapshot) -> None:
        """Hold ``snapshot`` in reserve (served to requests, not installed); a replacement keeps the first ``since``."""
        if self.standby is None:
            self.standby_since = self.clock.time()
        self.standby = snapshot

    def swap(self, snapshot: Snapshot) -> Snapshot | None:
        """Install ``snapshot``; return the one it replaced."""
        previous, self.snapshot = self.snapshot, snapshot
        return previous

    def age_s(self) -> float:
        """Seconds since the served set was last confirmed by its origin (0 when nothing is served)."""
        snapshot = self.snapshot
        return 0.0 if snapshot is None else max(0.0, self.clock.monotonic() - snapshot.fetched_mono)

    def served_source(self, max_age_s: float) -> str | None:
        """The X-JWKS-Source value: the snapshot's origin, or ``stale`` for a source set gone old or failing."""
        snapshot = self.snapshot
        if snapshot is None:
            return None if self.standby is None else self.standby.origin
        if snapshot.origin != "fresh":
            return snapshot.origin
        if self.failing or self.clock.monotonic() - snapshot.fetched_mono > max_age_s:
            return "stale"
        return "fresh"
