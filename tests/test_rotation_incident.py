"""`jwksd keys promote` and `jwksd keys revoke KID` against moto: what an operator runs when a key leaked."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from jwksd.errors import RotationError
from jwksd.rotation.incident import promote_now, revoke
from jwksd.rotation.policy import single
from jwksd.rotation.rotate import iso, rotate
from jwksd.rotation.sign import sign_jwt
from tests.rotation_helpers import DAY, T0, Rotator, key_state, keyring, rotation_config

P = 1500  # publish_ahead_s with the serving side's defaults


pytestmark = pytest.mark.usefixtures("reset_logging")  # conftest: structlog put back after each test


@pytest.fixture
def rotator(moto_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> Rotator:
    """A rotator with its table created and v1 active since T0 + P, v2 (the next key) published since then."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    rotator = Rotator(moto_endpoint, tmp_path, capsys)
    assert rotator.run("init-table")[0] == 0
    assert rotator.run("rotate", at=T0)[0] == 0
    code, out, _ = rotator.run("rotate", at=T0 + P)
    assert code == 0 and out.startswith("activated v1") and "created v2" in out
    return rotator


def test_revoke_the_active_key(rotator: Rotator, moto_endpoint: str) -> None:
    """Revoking the active key: gone from the secret at once, KMS key Disabled then pending deletion, v2 signs."""
    v1, v2 = rotator.rows()
    at = T0 + 2 * DAY
    code, out, _ = rotator.run("revoke", v1["kid"], at=at)
    rows = rotator.rows()
    v3 = rows[2]
    assert code == 0
    assert out.splitlines()[:4] == [f"activated v2 kid={v2['kid']}", f"revoked v1 kid={v1['kid']}",
                                    f"created v3 kid={v3['kid']} state=pending key={v3['key_ref']} "
                                    f"promotable_from={iso(at + P)}",
                                    f"disabled v1 kid={v1['kid']} deletion_in_days=30"]
    assert out.splitlines()[4] == f"published 2 keys to {rotator.secret_id}: {v3['kid']},{v2['kid']}"
    assert rotator.published_kids() == rotator.published_kids("AWSPREVIOUS") == [v3["kid"], v2["kid"]]
    assert out.splitlines()[5] == (f"published again: the AWSPREVIOUS of {rotator.secret_id} held {v1['kid']}, "
                                   "which daemons reading that stage would keep serving")
    assert [(r["version"], r["status"], r["revoked"]) for r in rows] == [
        (1, "revoked", iso(at)), (2, "active", "-"), (3, "pending", "-")]
    assert key_state(moto_endpoint, v1["key_ref"]) == "PendingDeletion"
    listing = rotator.run("list")[1].splitlines()
    assert listing[1].split()[:3] == ["1", "revoked", v1["kid"]]
    code, out, _ = rotator.run("sign", "--claims", '{"sub": "svc"}')
    assert code == 0 and jwt.get_unverified_header(out.strip())["kid"] == v2["kid"]
    assert rotator.run("revoke", v1["kid"], at=at + 60)[1].splitlines()[:2] == [
        f"already revoked v1 kid={v1['kid']}", f"disabled v1 kid={v1['kid']} deletion_in_days=30"]


def test_promote_refuses_too_early_unless_emergency(rotator: Rotator) -> None:
    """promote names when the next key is promotable; --emergency promotes it and says what verifiers may do."""
    v1, v2 = rotator.rows()
    code, _, err = rotator.run("promote", at=T0 + P + 60)
    assert (code, err.splitlines()[-1]) == (1, f"jwksd keys promote: too_early: v2 kid={v2['kid']} is published since "
                                               f"{iso(T0 + P)}: promotable from {iso(T0 + 2 * P)}. --emergency "
                                               "promotes it now")
    assert [r["status"] for r in rotator.rows()] == ["active", "pending"]
    code, out, _ = rotator.run("promote", "--emergency", at=T0 + P + 60)
    assert code == 0
    assert out.splitlines()[:3] == [
        f"emergency: v2 kid={v2['kid']} is published since {iso(T0 + P)}: verifiers whose cached key set predates it "
        "reject its tokens for up to 600s (refresh.max_age_s)",
        f"activated v2 kid={v2['kid']}", f"retired v1 kid={v1['kid']} expires={iso(T0 + P + 60 + 2 * DAY)}"]
    assert [r["status"] for r in rotator.rows()] == ["retired", "active", "pending"]
    v3 = rotator.rows()[2]
    code, out, _ = rotator.run("promote", at=T0 + P + 120 + P)  # v3 published at T0 + P + 60: ready at + P
    assert code == 0 and out.startswith(f"activated v3 kid={v3['kid']}\nretired v2")


async def test_revoked_keys_are_never_served_or_signed_with(moto_endpoint: str) -> None:
    """A revoked pending key is replaced at once; revoked keys leave the published set and never sign."""
    config = rotation_config(moto_endpoint, rotate_every_s=10 * DAY)
    async with keyring(config) as ring:
        await rotate(ring, T0)
        await rotate(ring, T0 + P)
        _, v2 = await ring.registry.records()
        result = await revoke(ring, v2.kid, T0 + P + 10, emergency=False, max_age_s=600)
        assert result.lines[:2] == [f"revoked v2 kid={v2.kid}", result.lines[1]] and "created v3" in result.lines[1]
        records = await ring.registry.records()
        assert [(r.version, r.status) for r in records] == [(1, "active"), (2, "revoked"), (3, "pending")]
        with pytest.raises(RotationError, match=r"^too_early: v3 kid="):
            await promote_now(ring, T0 + P + 20, emergency=False, max_age_s=600)
        await rotate(ring, T0 + P + 10 * DAY)  # the due rotation promotes v3, never the revoked v2
        token = await sign_jwt(ring, {"sub": "svc"}, now=T0 + P + 10 * DAY)
        assert jwt.get_unverified_header(token)["kid"] == records[2].kid
        active = single(await ring.registry.records(), "active")
        assert active is not None and active.version == 3
        with pytest.raises(RotationError, match=r"^unknown_kid: nope: no key in "):
            await revoke(ring, "nope", T0, emergency=False, max_age_s=600)
