"""The lifecycle decisions: pure functions of the registry records and now, checked step by step and at random."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from jwksd.aws.registry import KeyRecord, published
from jwksd.rotation.policy import Create, Expire, Plan, Policy, Promote, inconsistencies, next_change, plan

DAY = 86400
POLICY = Policy(rotate_every_s=30 * DAY, publish_ahead_s=1500, retire_grace_s=2 * DAY)


def record(version: int, status: str, created: int, **times: int) -> KeyRecord:
    return KeyRecord(version=version, kid=f"kid-{version}", status=status, backend="kms",  # type: ignore[arg-type]
                     key_ref=f"arn:{version}", alg="ES256", key_spec="ECC_NIST_P256", created=created,
                     publish_from=created, first_published=created, **times)


def apply(records: list[KeyRecord], now: int, policy: Policy) -> list[KeyRecord]:
    """What the registry holds after one step's actions (what rotate.py writes)."""
    result = list(records)
    for action in plan(records, now, policy).actions:
        if isinstance(action, Expire):
            result = [replace(r, status="expired", expired=now) if r == action.record else r for r in result]
        elif isinstance(action, Promote):
            result = [replace(r, status="active", activated=now) if r == action.pending else
                      replace(r, status="retired", retired=now, expires=now + policy.retire_grace_s)
                      if r == action.active else r for r in result]
        elif isinstance(action, Create):
            result.append(record(action.version, "pending", now))
    return result


def test_empty_registry_creates_the_first_key_pending() -> None:
    """Bootstrap makes version 1 pending: even the first key is published before it signs."""
    assert plan([], 1000, POLICY).actions == (Create(1),)


def test_pending_waits_for_publish_ahead() -> None:
    """A pending key with no active key is promoted exactly publish_ahead_s after it was published."""
    pending = record(1, "pending", 1000)
    assert plan([pending], 1000 + 1499, POLICY).actions == ()
    assert plan([pending], 1000 + 1499, POLICY).next_due == 2500
    assert plan([pending], 1000 + 1500, POLICY).actions == (Promote(pending, None), Create(2))


def test_pending_unconfirmed_is_never_promoted() -> None:
    """A pending key whose publish was never confirmed waits, however long ago it was written."""
    pending = replace(record(1, "pending", 1000), first_published=None)
    assert plan([pending], 1000 + 30 * DAY, POLICY) == Plan((), None)
    confirmed = replace(pending, first_published=20 * DAY)
    assert plan([confirmed], 20 * DAY + 1499, POLICY).next_due == 20 * DAY + 1500


def test_next_key_is_created_right_after_each_promotion() -> None:
    """A next key is published at once beside an active key without one, and in the step of each promotion."""
    active = record(1, "active", 0, activated=0)
    assert plan([active], 1, POLICY).actions == (Create(2),)
    pending = record(2, "pending", 10)
    assert plan([active, pending], 30 * DAY, POLICY).actions == (Promote(pending, active), Create(3))


def test_promotion_waits_for_the_active_key_to_be_due() -> None:
    """A pending key published long enough still waits until the active key has served rotate_every_s."""
    active = record(1, "active", 0, activated=0)
    pending = record(2, "pending", 10)
    assert plan([active, pending], 30 * DAY - 1, POLICY).actions == ()
    assert plan([active, pending], 30 * DAY, POLICY).actions == (Promote(pending, active), Create(3))


def test_retired_keys_expire_at_their_expiry() -> None:
    """A retired key expires at retired + grace (fixed when it retired), not a second earlier."""
    retired = record(1, "retired", 0, activated=0, retired=100, expires=100 + 2 * DAY)
    active, pending = record(2, "active", 50, activated=100), record(3, "pending", 100)
    assert plan([retired, active, pending], 100 + 2 * DAY - 1, POLICY).actions == ()
    assert plan([retired, active, pending], 100 + 2 * DAY, POLICY).actions == (Expire(retired),)


def test_published_set_and_inconsistencies() -> None:
    """Pending, active and retired keys are published newest first; two active keys are named as a problem."""
    keys = [record(1, "expired", 0), record(2, "retired", 1), record(3, "active", 2), record(4, "pending", 3)]
    assert [r.version for r in published(keys)] == [4, 3, 2]
    assert inconsistencies(keys) == []
    assert inconsistencies([record(1, "active", 0), record(2, "active", 1)]) == [
        "2 active keys (versions 1, 2): expected at most one"]


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.integers(min_value=60, max_value=5 * DAY), min_size=20, max_size=200),
       ahead=st.integers(min_value=900, max_value=DAY), grace=st.integers(min_value=3600, max_value=7 * DAY))
def test_invariants_hold_for_any_schedule(gaps: list[int], ahead: int, grace: int) -> None:
    """Whatever the step times: one active after bootstrap, none active before published ahead, grace honoured."""
    policy = Policy(rotate_every_s=ahead + 3 * DAY, publish_ahead_s=ahead, retire_grace_s=grace)
    records: list[KeyRecord] = []
    now = 1_700_000_000
    bootstrapped = False
    for gap in gaps:
        now += gap
        records = apply(records, now, policy)
        assert inconsistencies(records) == []
        actives = [r for r in records if r.status == "active"]
        bootstrapped = bootstrapped or bool(actives)
        assert len(actives) == (1 if bootstrapped else 0)
        assert len([r for r in records if r.status == "pending"]) == 1  # a next key is always published
        for r in records:
            if r.activated is not None:
                assert r.activated >= r.publish_from + policy.publish_ahead_s
            if r.status == "expired":
                assert r.retired is not None and r.expired is not None and r.expired >= r.retired + grace
    assert plan(records, now, policy).next_due is not None


def test_next_change_does_not_hide_a_rotator_stuck_on_the_next_key() -> None:
    """A watcher's next change is plan's, or the active key's rotation while the next key is missing or unconfirmed."""
    active = record(1, "active", 0, activated=100)
    retired = record(0, "retired", 0, activated=0, retired=100, expires=100 + 40 * DAY)
    pending = record(2, "pending", 200)
    assert next_change([retired, active, pending], POLICY) == plan([retired, active, pending], 0, POLICY).next_due \
        == 100 + 30 * DAY
    unconfirmed = replace(pending, first_published=None)
    assert plan([retired, active, unconfirmed], 0, POLICY).next_due == 100 + 40 * DAY
    assert next_change([retired, active, unconfirmed], POLICY) == 100 + 30 * DAY
    assert next_change([retired, active], POLICY) == 100 + 30 * DAY
    assert next_change([], POLICY) is None
