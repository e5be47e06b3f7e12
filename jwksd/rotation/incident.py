"""The steps an operator runs on a bad day: ``jwksd keys promote`` and ``jwksd keys revoke KID``.

Both promote the next (pending) key as a due rotation does, checked usable first, and create a
new next key in the same step, so one is always published. Promote refuses a key that has not
been published for ``publish_ahead_s`` unless ``emergency``. Revoke takes the key out of the
registry's published set first (the caller publishes at once), then makes it unusable: KMS
DisableKey and ScheduleKeyDeletion, or the private key's secret deleted. Run again, it repeats
what did not finish.
"""

from __future__ import annotations

import structlog

from jwksd.aws.registry import EXTERNAL, KeyRecord
from jwksd.errors import RotationError
from jwksd.rotation.keyring import Keyring
from jwksd.rotation.policy import Promote, promotable_from, single
from jwksd.rotation.rotate import StepResult, consistent_records, create_key, iso, promote_key

log = structlog.get_logger("jwksd.rotation")


async def promote_now(ring: Keyring, now: int, *, emergency: bool, max_age_s: float) -> StepResult:
    """Promote the next key now; RotationError naming when it will be promotable unless ``emergency``."""
    records = await consistent_records(ring)
    result = StepResult()
    await _promote_next(ring, records, now, result, emergency=emergency, max_age_s=max_age_s, revoke=False)
    return result


async def revoke(ring: Keyring, kid: str, now: int, *, emergency: bool, max_age_s: float) -> StepResult:
    """Revoke the key ``kid``: unpublished, never signed with, its key disabled and its deletion scheduled."""
    records = await consistent_records(ring)
    target = next((r for r in records if r.kid == kid), None)
    if target is None:
        raise RotationError("unknown_kid", f"{kid}: no key in {ring.config.table} has this kid")
    result = StepResult()
    if target.status == "expired":
        result.say("already expired", target, deletion_in_days=ring.config.deletion_window_days)
        return result
    if target.status == "active":
        await _promote_next(ring, records, now, result, emergency=emergency, max_age_s=max_age_s, revoke=True)
    elif target.status == "revoked":
        result.say("already revoked", target)
    else:
        await ring.registry.revoke(target, now)
        result.say("revoked", target)
        if target.status == "pending":
            await create_key(ring, _next_version(records), now, result)
    if target.backend == EXTERNAL:
        result.lines.append(f"external v{target.version} kid={target.kid}: jwksd holds no private key for it; "
                            "stop whatever still signs with it")
    else:
        backend = ring.backend_for(target)
        await backend.disable(target.key_ref)
        await backend.destroy(target.key_ref, ring.config.deletion_window_days)
        result.say("disabled", target, deletion_in_days=ring.config.deletion_window_days)
    log.warning("key_revoked", version=target.version, kid=target.kid)
    return result


async def _promote_next(ring: Keyring, records: list[KeyRecord], now: int, result: StepResult, *, emergency: bool,
                        max_age_s: float, revoke: bool) -> None:
    pending, active = single(records, "pending"), single(records, "active")
    if pending is None:
        raise RotationError("no_next_key", f"{ring.config.table} has no pending key to promote: `jwksd keys "
                                           "rotate` creates one (it is not promotable before publish_ahead_s)")
    ready = promotable_from(pending, ring.policy)
    if ready is None or now < ready:
        since = "never confirmed published" if pending.first_published is None else \
            f"published since {iso(pending.first_published)}"
        when = "after its publish is confirmed and publish_ahead_s has passed" if ready is None else \
            f"from {iso(ready)}"
        if not emergency:
            raise RotationError("too_early", f"v{pending.version} kid={pending.kid} is {since}: promotable {when}. "
                                             "--emergency promotes it now")
        result.lines.append(f"emergency: v{pending.version} kid={pending.kid} is {since}: verifiers whose cached "
                            f"key set predates it reject its tokens for up to {max_age_s:g}s (refresh.max_age_s)")
        log.warning("key_emergency_promotion", version=pending.version, kid=pending.kid)
    await promote_key(ring, Promote(pending, active), now, result, revoke=revoke)
    await create_key(ring, _next_version(records), now, result)


def _next_version(records: list[KeyRecord]) -> int:
    return max((r.version for r in records), default=0) + 1
