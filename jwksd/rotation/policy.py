"""The key lifecycle as pure functions of the registry's records and ``now`` (unix seconds).

A step expires retired keys past their grace (and adopted external keys past their --adopt-until);
promotes the pending key once it has been published for ``publish_ahead_s`` (counted from
``first_published``, recorded only after a confirmed publish)
and the active key is due; and creates a pending key whenever there is none, so right after each
promotion a next key is published and an emergency promotion never uses a key verifiers lack.
The very first key is created pending like every other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from jwksd.aws.registry import KeyRecord, RegistryPolicy, Status
from jwksd.config import RotationConfig


@dataclass(frozen=True)
class Policy:
    """The three durations that drive the lifecycle."""

    rotate_every_s: int
    publish_ahead_s: int
    retire_grace_s: int

    @classmethod
    def of(cls, policy: RotationConfig | RegistryPolicy) -> Policy:
        return cls(policy.rotate_every_s, policy.publish_ahead_s, policy.retire_grace_s)


@dataclass(frozen=True)
class Create:
    """Make a new key and record it as ``pending`` under ``version``."""

    version: int


@dataclass(frozen=True)
class Promote:
    """Make ``pending`` the active key and retire ``active`` (if any), in one transaction."""

    pending: KeyRecord
    active: KeyRecord | None


# Published until their ``expires``: retired keys, and external (adopted) ones.
LEAVING: tuple[Status, ...] = ("retired", "external")


@dataclass(frozen=True)
class Expire:
    """Stop publishing a retired or external key and schedule its deletion (nothing to delete for an external one)."""

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


def promotable_from(pending: KeyRecord, policy: Policy) -> int | None:
    """When ``pending`` will have been published for ``publish_ahead_s``; None until a publish is confirmed."""
    return None if pending.first_published is None else pending.first_published + policy.publish_ahead_s


def plan(records: Sequence[KeyRecord], now: int, policy: Policy) -> Plan:
    """The actions due at ``now``, in the order they are applied."""
    actions: list[Action] = [Expire(r) for r in records
                             if r.status in LEAVING and r.expires is not None and now >= r.expires]
    active, pending = single(records, "active"), single(records, "pending")
    following = max((r.version for r in records), default=0) + 1
    if pending is None:
        actions.append(Create(following))  # bootstrap, or the next key missing beside the active one
    elif due_to_promote(pending, active, now, policy):
        actions += [Promote(pending, active), Create(following)]  # the next key published right away
    return Plan(tuple(actions), _next_due(records, policy))


def due_to_promote(pending: KeyRecord, active: KeyRecord | None, now: int, policy: Policy) -> bool:
    """Whether ``pending`` has been published ``publish_ahead_s`` and ``active`` (if any) served ``rotate_every_s``."""
    ready = promotable_from(pending, policy)
    due = rotation_due(active, policy)
    return ready is not None and now >= ready and (due is None or now >= due)


def rotation_due(active: KeyRecord | None, policy: Policy) -> int | None:
    """When ``active`` will have served ``rotate_every_s`` (None without an active key)."""
    return active.activated + policy.rotate_every_s if active and active.activated is not None else None


def next_change(records: Sequence[KeyRecord], policy: Policy) -> int | None:
    """When the registry next needs a step, for a watcher: ``plan``'s next due time, or, while the next key is
    missing or its publish unconfirmed (a rotator stuck there), the active key's rotation time if that is earlier."""
    times = [due for due in (_next_due(records, policy),) if due is not None]
    pending = single(records, "pending")
    stuck = rotation_due(single(records, "active"), policy) if pending is None or pending.first_published is None \
        else None
    return min([*times, stuck]) if stuck is not None else min(times, default=None)


def _next_due(records: Sequence[KeyRecord], policy: Policy) -> int | None:
    """The earliest time at which a step changes something (at or before ``now`` when actions are due)."""
    times = [r.expires for r in records if r.status in LEAVING and r.expires is not None]
    pending = single(records, "pending")
    due = rotation_due(single(records, "active"), policy)
    if pending is not None:
        ready = promotable_from(pending, policy)
        if ready is not None:  # else the next publish is due: it is retried at every step
            times.append(max(ready, due or 0))
    return min(times) if times else None
