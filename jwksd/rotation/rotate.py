"""One step of the lifecycle at ``now`` (``jwksd keys rotate``): read, plan, apply, one line per change.

Idempotent: a step with nothing due changes nothing. Expiries are independent of each other and
of the promotion: one that fails is reported and the rest of the step runs. A lost conditional write means another
rotator acted first: the step re-reads, checks the registry is consistent, and stops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from jwksd.aws.registry import EXTERNAL, KeyRecord
from jwksd.errors import AwsError, RegistryConflict, RotationError
from jwksd.redact import public_url
from jwksd.rotation.backends import new_creation_id
from jwksd.rotation.keyring import Keyring
from jwksd.rotation.policy import Create, Expire, Plan, Promote, inconsistencies, plan, single
from jwksd.rotation.publish import confirm_published, not_served
from jwksd.status import iso_time

log = structlog.get_logger("jwksd.rotation")


@dataclass
class StepResult:
    """The lines printed for a step; ``held`` when --verify-url kept a due promotion back; ``failed`` actions."""

    lines: list[str] = field(default_factory=list)
    held: bool = False
    conflict: bool = False
    failed: list[str] = field(default_factory=list)  # the actions that failed and were passed over
    next_due: int | None = None  # when the next change falls due after this step (in the past: overdue)

    def say(self, change: str, record: KeyRecord | int, kid: str | None = None, *, error: bool = False,
            **detail: Any) -> None:
        version = record if isinstance(record, int) else record.version
        kid = kid if kid is not None or isinstance(record, int) else record.kid
        words = [change, f"v{version}", *([f"kid={kid}"] if kid else []), *(f"{k}={v}" for k, v in detail.items())]
        self.lines.append(" ".join(words))
        (log.error if error else log.info)("key_rotation", change=change, version=version, kid=kid, **detail)


def iso(at: int | float | None) -> str:
    """Unix seconds as an ISO 8601 UTC time, ``-`` for None."""
    return "-" if at is None else iso_time(at)


async def rotate(ring: Keyring, now: int, *, dry_run: bool = False, verify_urls: Sequence[str] = ()) -> StepResult:
    """Apply every action due at ``now`` (none when ``dry_run``: the lines then say what would happen)."""
    records = await consistent_records(ring)
    if not ring.config.publish_secret_id and not dry_run:
        # The registry is what is served: a pending key written before first_published existed counts from now.
        await confirm_published(ring, now, records=records)
        records = await consistent_records(ring)
    steps = plan(records, now, ring.policy)
    result = StepResult()
    try:
        for action in steps.actions:
            if isinstance(action, Expire):
                await _expire_alone(ring, action.record, now, result, dry_run)
            elif isinstance(action, Promote):
                await promote_key(ring, action, now, result, dry_run, verify_urls=verify_urls)
                if result.held:
                    break  # the pending key stays the next key
            elif isinstance(action, Create):
                await create_key(ring, action.version, now, result, dry_run)
    except RegistryConflict as exc:
        result.conflict = True
        result.lines.append(f"conflict: {exc.message}; re-read it, nothing more to do")
        log.warning("key_rotation_conflict", message=exc.message)
        await consistent_records(ring)
    if not steps.actions:
        result.lines.append(_idle(records, steps))
    result.next_due = steps.next_due if dry_run or not steps.actions else \
        plan(await ring.registry.records(), now, ring.policy).next_due
    return result


async def consistent_records(ring: Keyring) -> list[KeyRecord]:
    """The registry's records; RotationError when no rotator could have produced them."""
    records = await ring.registry.records()
    problems = inconsistencies(records)
    if problems:
        raise RotationError("registry_inconsistent", f"{ring.config.table}: {'; '.join(problems)}. No change made; "
                                                     "repair the registry by hand")
    return records


def _idle(records: Sequence[KeyRecord], steps: Plan) -> str:
    active = single(records, "active")
    now_line = f"active v{active.version} kid={active.kid}" if active else "no active key"
    return f"nothing to do: {now_line}, next change due {iso(steps.next_due)}"


async def _expire_alone(ring: Keyring, record: KeyRecord, now: int, result: StepResult, dry_run: bool) -> None:
    """One expiry; a failure is reported (``result.failed``) and the rest of the step still runs."""
    try:
        await _expire(ring, record, now, result, dry_run)
    except RegistryConflict:
        raise
    except (RotationError, AwsError) as exc:
        result.failed.append("expire")
        result.say("expiry failed", record, error=True, error_code=exc.code, message=f"'{exc.message}'")


async def _expire(ring: Keyring, record: KeyRecord, now: int, result: StepResult, dry_run: bool) -> None:
    window = ring.config.deletion_window_days
    if not dry_run:
        # Deletion first: if the status write is lost or never happens, the next step repeats both.
        await ring.backend_for(record).destroy(record.key_ref, window)
        await ring.registry.expire(record, now)
    # An external key's private half is not jwksd's to delete.
    detail: dict[str, Any] = {} if record.backend == EXTERNAL else {"deletion_in_days": window}
    result.say("would expire" if dry_run else "expired", record, **detail)


async def promote_key(ring: Keyring, action: Promote, now: int, result: StepResult, dry_run: bool = False, *,
                      verify_urls: Sequence[str] = (), revoke: bool = False) -> None:
    """Activate the pending key (checked usable first) and retire, or with ``revoke`` revoke, the active one."""
    pending, active = action.pending, action.active
    for url in verify_urls:
        reason = await not_served(url, pending.kid)
        if reason is not None:
            result.held = True
            result.say("held", pending, error=True, reason=f"'{reason}'", url=public_url(url))
            return
    if not dry_run:
        await ring.backend_for(pending).check_usable(pending)
        await ring.registry.promote(pending, active, now, ring.policy.retire_grace_s, revoke=revoke)
    result.say("would activate" if dry_run else "activated", pending)
    if active is not None and revoke:
        result.say("revoked", active)
    elif active is not None:
        result.say("would retire" if dry_run else "retired", active, expires=iso(now + ring.policy.retire_grace_s))


async def create_key(ring: Keyring, version: int, now: int, result: StepResult, dry_run: bool = False) -> None:
    """Make a key and record it pending under ``version`` (its deletion scheduled if another rotator won)."""
    ready = iso(now + ring.policy.publish_ahead_s)
    if dry_run:
        result.say("would create", version, state="pending", promotable_from=ready)
        return
    creation_id = new_creation_id()  # tagged on the key as it is made, recorded in its item
    new = await ring.backend.create(version, key_spec=ring.config.key_spec, alg=ring.config.alg,
                                    creation_id=creation_id)
    record = KeyRecord(version=version, kid=new.jwk["kid"], status="pending", backend=ring.backend.name,
                       key_ref=new.key_ref, alg=ring.config.alg, key_spec=ring.config.key_spec, created=now,
                       publish_from=now, public_jwk=new.jwk if new.store_public else None,
                       # Served at once by the dynamodb source; a published secret must first hold it.
                       first_published=None if ring.config.publish_secret_id else now, creation_id=creation_id)
    try:
        await ring.registry.add(record)
    except RegistryConflict:
        mine = await ring.registry.record(version)
        if mine is None or mine.creation_id != creation_id:
            await ring.backend.destroy(new.key_ref, ring.config.deletion_window_days)  # never recorded, never used
            raise
        # The write went through and its answer was lost: the retry found its own item. The key is recorded.
    result.say("created", record, state="pending", key=new.key_ref, promotable_from=ready)
