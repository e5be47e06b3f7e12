"""The signer's view of the registry: the head read every ``refresh_s``, key items re-read only when it moved.

One strongly consistent GetItem of the head per read; when its ``revision`` changed, the active
and pending items are read (two more GetItems) and their keys prepared (``keys.py``). The new view
is adopted before its keys are prepared, so a promoted-away or revoked key stops signing as soon as
the head says so; the new active key signs once prepared. No Scan, ever.

The signer signs only when the view names an active key whose item says ``active``, that key is
prepared, the stored policy agrees with the local config, and the head was read within
``max_view_age_s``: a signer cut off from the registry cannot follow a revoke, so it stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from jwksd.aws.registry import KeyRecord, RegistryHead, RegistryPolicy
from jwksd.errors import AwsError, RotationError, SignerError
from jwksd.signer.keys import SigningKeys
from jwksd.signer.metrics import NO_KID, SignerMetrics

log = structlog.get_logger("jwksd.signer.view")


class HeadReader(Protocol):
    """What the view reads: ``RegistryReader``'s head and single items."""

    table: str

    async def head(self) -> RegistryHead | None: ...

    async def record(self, version: int) -> KeyRecord | None: ...


@dataclass(frozen=True)
class View:
    """One revision of the registry: its policy, its active and pending keys (None: none, or not usable)."""

    revision: int
    policy: RegistryPolicy
    active: KeyRecord | None
    pending: KeyRecord | None
    problem: str | None = None  # why there is no usable active key in this revision, when there is none


class RegistryView:
    """The current View, kept up to date by :meth:`run`; :meth:`signing_key` is what a request asks."""

    def __init__(self, reader: HeadReader, keys: SigningKeys, metrics: SignerMetrics, *, refresh_s: float,
                 max_view_age_s: float, policy_problems: Callable[[RegistryHead], list[str]],
                 monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.reader = reader
        self.keys = keys
        self.metrics = metrics
        self.refresh_s = refresh_s
        self.max_view_age_s = max_view_age_s
        self.policy_problems = policy_problems
        self.monotonic, self.wall = monotonic, wall
        self.view: View | None = None
        self.confirmed: float | None = None  # monotonic time of the last successful read of the head
        self.error: str | None = None  # why the last read failed, until one succeeds
        self.changed = asyncio.Event()  # set after each read that changed the view (tests and readiness wait on it)

    async def read(self) -> None:
        """One read of the head, and of the key items when its revision moved; never raises AwsError/RotationError."""
        try:
            head = await self.reader.head()
            if head is None:
                raise RotationError("no_head", f"{self.reader.table} has no head item (version 0) yet: `jwksd keys "
                                               "init-table` or the next `jwksd keys rotate` writes it")
            if self.view is not None and head.revision == self.view.revision:
                outcome = "unchanged"
            else:
                self._adopt(await self._view_of(head))
                outcome = "changed"
            await self._prepare()
        except (AwsError, RotationError) as exc:
            error = f"{exc.code}: {exc.message}"
            if self.error is None or not self.error.startswith(f"{exc.code}:"):  # once per outage and kind
                log.warning("registry_read_failed", table=self.reader.table, code=exc.code, error=error)
            self.error = error
            self.metrics.view_reads.labels("failed").inc()
            return
        if self.error is not None:
            log.info("registry_read_recovered", table=self.reader.table, after=self.error)
        self.confirmed = self.monotonic()
        self.error = None
        self.metrics.view_reads.labels(outcome).inc()
        self.metrics.view_confirmed.set(self.wall())

    async def _view_of(self, head: RegistryHead) -> View:
        """The View of a head: its active and pending items read and checked against it."""
        problems = self.policy_problems(head)
        active = await self._item(head.active_version, "active")
        pending = await self._item(head.pending_version, "pending")
        problem = None
        if problems:
            problem = "policy_mismatch: " + "; ".join(problems)
        elif head.active_version is None:
            problem = f"no_active_key: {self.reader.table} has no active key yet"
        elif active is None:
            problem = (f"inconsistent: the head names version {head.active_version} active, and its item is missing "
                       "or not active")
        return View(head.revision, head.policy, None if problem else active, pending, problem)

    async def _item(self, version: int | None, status: str) -> KeyRecord | None:
        """The item the head names, if it says ``status`` (a head and items disagreeing signs nothing)."""
        if version is None:
            return None
        record = await self.reader.record(version)
        return record if record is not None and record.status == status else None

    def _adopt(self, view: View) -> None:
        before = self.view
        self.view = view
        kids = [r.kid for r in (view.active, view.pending) if r is not None]
        dropped = self.keys.keep_only(kids)
        self.metrics.view_revision.set(view.revision)
        active = view.active
        self.metrics.active.info({"kid": active.kid if active else NO_KID, "alg": active.alg if active else ""})
        if active is not None:
            self.metrics.prepare_kid(active.kid)
        log.info("registry_view", revision=view.revision, active=active.kid if active else None,
                 pending=view.pending.kid if view.pending else None, dropped=dropped, problem=view.problem,
                 previous_revision=before.revision if before else None)
        if view.problem and view.problem.startswith("policy_mismatch"):
            log.error("policy_mismatch", table=self.reader.table, problem=view.problem)
        self.changed.set()
        self.changed = asyncio.Event()

    async def _prepare(self) -> None:
        """Prepare the view's keys that are not yet: the active one must succeed, the pending one may wait."""
        view = self.view
        if view is None:
            return
        if view.pending is not None and not self.keys.prepared(view.pending):
            try:
                await self.keys.prepare(view.pending)
            except (AwsError, RotationError) as exc:
                log.warning("pending_key_unprepared", kid=view.pending.kid, code=exc.code, error=str(exc))
        if view.active is not None and not self.keys.prepared(view.active):
            await self.keys.prepare(view.active)
            log.info("active_key_ready", kid=view.active.kid, alg=view.active.alg, version=view.active.version)

    def signing_key(self) -> KeyRecord:
        """The key to sign with now; SignerError (unavailable) naming why there is none."""
        view, now = self.view, self.monotonic()
        if self.confirmed is None or view is None:
            raise SignerError("not_ready", f"the registry has not been read yet: {self.error or 'first read running'}",
                              unavailable=True)
        age = now - self.confirmed
        if age > self.max_view_age_s:
            raise SignerError("registry_unreachable", f"the registry was last read {age:.0f}s ago (signer."
                                                      f"max_view_age_s is {self.max_view_age_s:g})"
                                                      + (f": {self.error}" if self.error else ""), unavailable=True)
        if view.active is None:
            code, _, message = (view.problem or "no_active_key: no active key").partition(": ")
            raise SignerError(code, message, unavailable=True)
        if not self.keys.prepared(view.active):
            raise SignerError("key_unusable", f"the active key kid={view.active.kid} is not ready to sign: "
                                              f"{self.error or 'being prepared'}", unavailable=True)
        return view.active
