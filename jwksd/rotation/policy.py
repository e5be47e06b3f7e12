"""The key lifecycle as pure functions of the registry's records and ``now`` (unix seconds).

A step expires retired keys past their grace, promotes the pending key once it has been published
for ``publish_ahead_s`` and the active key is due, or creates the pending key when the active one
is due within ``publish_ahead_s``. The very first key is created pending like every other, so no
key ever signs before verifiers have had it for ``publish_ahead_s``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from jwksd.config import RotationConfig
from jwksd.registry import KeyRecord, Status


@dataclass(frozen=True)
class Policy:
    """The three durations that drive the lifecycle."""

    rotate_every_s: int
    publish_ahead_s: int
    retire_grace_s: int

    @classmethod
    def of(cls, config: RotationConfig) -> Policy:
        return cls(config.rotate_every_s, config.publish_ahead_s, config.retire_grace_s)


@dataclass(frozen=True)
class Create:
    """Make a new key and record it as ``pending`` under ``version``."""

    version: int


@dataclass(frozen=True)
class Promote:
    """Make ``pending`` the active key and retire ``active`` (if any), in one transaction."""

    pending: KeyRecord
    active: KeyRecord | None


@dataclass(frozen=True)
class Expire:
    """Stop publishing a retired key and schedule its deletion."""

    record: KeyRecord


Action = Create | Promote | Expire


@dataclass(frozen=True)
class Plan:
    """What one step would do at ``now``, and when the next change falls due (None: never, by itself)."""

    actions: tuple[Action, ...]
    next_due: int | None


def inconsistencies(records: Sequence[KeyRecord]) -> list[str]:
    """What is wrong with a registry no rotator could have produced (a rotator refuses to act on it)."""
    found = []
    for status in ("pending", "active"):
        versions = [r.version for r in records if r.status == status]
        if len(versions) > 1:
            listed = ", ".join(map(str, versions))
            found.append(f"{len(versions)} {status} keys (versions {listed}): expected at most one")
    return found


def single(records: Iterable[KeyRecord], status: Status) -> KeyRecord | None:
    """The one record in ``status``, or None."""
    return next((r for r in records if r.status == status), None)


def plan(records: Sequence[KeyRecord], now: int, policy: Policy) -> Plan:
    """The actions due at ``now``, in the order they are applied."""
    actions: list[Action] = [Expire(r) for r in records
                             if r.status == "retired" and r.expires is not None and now >= r.expires]
    active, pending = single(records, "active"), single(records, "pending")
    due = active.activated + policy.rotate_every_s if active and active.activated is not None else None
    if pending is not None:
        ready = pending.publish_from + policy.publish_ahead_s
        if now >= ready and (due is None or now >= due):
            actions.append(Promote(pending, active))
    elif due is None or now >= due - policy.publish_ahead_s:
        actions.append(Create(max((r.version for r in records), default=0) + 1))
    return Plan(tuple(actions), _next_due(records, policy))


def _next_due(records: Sequence[KeyRecord], policy: Policy) -> int | None:
    """The earliest time at which a step changes something (at or before ``now`` when actions are due)."""
    times = [r.expires for r in records if r.status == "retired" and r.expires is not None]
    active, pending = single(records, "active"), single(records, "pending")
    due = active.activated + policy.rotate_every_s if active and active.activated is not None else None
    if pending is not None:
        times.append(max(pending.publish_from + policy.publish_ahead_s, due or 0))
    elif due is not None:
        times.append(due - policy.publish_ahead_s)
    return min(times) if times else None
