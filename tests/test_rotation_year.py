"""A simulated year of rotations driven by ``now``, watched through the JWKS a real daemon serves.

At every step: (a) once bootstrapped, exactly one key is active; (b) no key is active before the
daemon has served it for publish_ahead_s; (c) every token signed at t verifies, with PyJWT,
against the served JWKS at every step from t until t + retire_grace_s; (d) expired keys are gone
from the JWKS and their KMS keys are scheduled for deletion.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import structlog

from jwksd.__main__ import main
from jwksd.aws.registry import published
from jwksd.config import Config, DynamoDBSourceConfig, RefreshConfig, SecretsManagerSourceConfig
from jwksd.rotation.policy import single
from jwksd.rotation.rotate import rotate
from jwksd.rotation.sign import sign_jwt
from tests.conftest import REGION, FakeClock
from tests.daemon_helpers import get_jwks, refresh_now, start
from tests.rotation_helpers import DAY, T0, key_state, keyring, kms_client, rotation_config

INTERVAL_S, MAX_AGE_S = 300.0, 600.0
PUBLISH_AHEAD_S = int(2 * MAX_AGE_S + INTERVAL_S)
GRACE_S = 2 * DAY


@dataclass(frozen=True)
class Token:
    signed_at: int
    kid: str
    alg: str
    value: str


def verify(token: Token, jwks: dict[str, Any]) -> dict[str, Any]:
    """PyJWT's verdict on the token against a served JWK Set (times are checked by the caller: they are simulated)."""
    key = jwt.PyJWKSet.from_dict(jwks)[token.kid]
    claims: dict[str, Any] = jwt.decode(token.value, key.key, algorithms=[token.alg],
                                        options={"verify_exp": False, "verify_iat": False})
    return claims


def iso(at: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run ``jwksd`` in a thread (it runs its own event loop) and return its exit code and stdout."""
    capsys.readouterr()
    try:
        code = await asyncio.to_thread(main, list(argv))
    finally:
        structlog.reset_defaults()  # the command pointed logging at this test's captured stderr
    return code, capsys.readouterr().out


def write_config(path: Path, rotation: dict[str, Any]) -> str:
    lines = [f"[refresh]\ninterval_s = {INTERVAL_S:g}\nmax_age_s = {MAX_AGE_S:g}\n[rotation]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in rotation.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.slow
async def test_a_year_served_from_the_registry(aiohttp_client: Any, moto_endpoint: str, clock: FakeClock, *,
                                               capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A year of steps one to five days apart plus every deadline, ECDSA keys in KMS, a dynamodb-source daemon."""
    config = rotation_config(moto_endpoint, rotate_every_s=30 * DAY, publish_ahead_s=PUBLISH_AHEAD_S,
                             retire_grace_s=GRACE_S, max_token_lifetime_s=3600)
    daemon = Config(sources=(DynamoDBSourceConfig(table=config.table, region=REGION, endpoint_url=moto_endpoint,
                                                  kms_endpoint_url=moto_endpoint, read_timeout_s=2.0),),
                    refresh=RefreshConfig(interval_s=INTERVAL_S, max_age_s=MAX_AGE_S))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    config_file = write_config(tmp_path / "rotator.toml", {"table": config.table, "key_spec": "ECC_NIST_P256"})
    rng = random.Random(4)
    tokens: list[Token] = []
    first_served: dict[str, int] = {}
    expired_checked: set[str] = set()
    deadlines: list[int] = []  # the last token of each retired key at t + grace, and each expiry and the second before
    kms = kms_client(moto_endpoint)
    clock.wall = float(T0)
    async with keyring(config) as ring:
        client = await start(aiohttp_client, daemon, clock=clock)
        now, bootstrapped, cli_signed, at_deadline = T0, False, 0, 0
        while now < T0 + 365 * DAY:
            result = await rotate(ring, now)
            await refresh_now(client)
            status, _, body = await get_jwks(client)
            records = await ring.registry.records()
            served = json.loads(body) if status == 200 else {"keys": []}
            kids = {key["kid"] for key in served["keys"]}
            assert kids == {r.kid for r in published(records)}  # exactly the keys to trust now
            for kid in kids:
                first_served.setdefault(kid, now)
            active = [r for r in records if r.status == "active"]
            bootstrapped = bootstrapped or bool(active)
            assert len(active) == (1 if bootstrapped else 0)  # (a)
            for record in records:
                if record.activated is not None:  # (b)
                    assert record.activated - first_served[record.kid] >= PUBLISH_AHEAD_S
                if record.status == "retired" and record.retired == now and record.expires is not None:
                    last = max(t.signed_at for t in tokens if t.kid == record.kid)
                    deadlines += [last + GRACE_S, record.expires - 1, record.expires]
                if record.status == "expired" and record.kid not in expired_checked:  # (d)
                    assert record.kid not in kids
                    assert key_state(moto_endpoint, record.key_ref, kms) == "PendingDeletion"
                    expired_checked.add(record.kid)
            for token in tokens:  # (c)
                if token.signed_at <= now <= token.signed_at + GRACE_S:
                    assert verify(token, served)["sub"] == "svc", (iso(now), token)
                    at_deadline += now == token.signed_at + GRACE_S
            if active:
                if now >= T0 + cli_signed * 90 * DAY:  # through the command line once a quarter
                    code, out = await cli(capsys, "keys", "sign", "--config", config_file, "--claims", '{"sub": "svc"}',
                                          "--now", iso(now))
                    assert code == 0
                    value, cli_signed = out.strip(), cli_signed + 1
                else:
                    value = await sign_jwt(ring, {"sub": "svc"}, now=now)
                header = jwt.get_unverified_header(value)
                assert (header["kid"], header["alg"]) == (active[0].kid, "ES256")
                tokens.append(Token(now, active[0].kid, "ES256", value))
            assert result.lines
            later = now + rng.randint(DAY, 5 * DAY)
            heapq.heapify(deadlines)
            now = heapq.heappop(deadlines) if deadlines and deadlines[0] < later else later
            clock.wall = float(now)
    assert len(records) >= 10 and len(expired_checked) >= 9 and cli_signed >= 4, (len(records), expired_checked)
    assert at_deadline >= len(expired_checked)  # each retired key's last token, checked at t + grace


async def test_rotation_through_a_published_secret(aiohttp_client: Any, moto_endpoint: str, *,
                                                   capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """RSA keys in KMS, the command line only, `keys rotate` publishing to a secret a Secrets Manager daemon serves."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    base = rotation_config(moto_endpoint)
    secret_id = f"{base.private_secret_prefix}/public"
    path = write_config(tmp_path / "rotator.toml", {
        "table": base.table, "key_spec": "RSA_2048", "alg": "RS256", "publish_secret_id": secret_id,
        "rotate_every_s": 10 * DAY, "retire_grace_s": GRACE_S, "deletion_window_days": 7})
    assert (await cli(capsys, "keys", "init-table", "--config", path)) == (0, (
        f"created: table {base.table}\nstored the policy in {base.table}: rotate_every_s=864000 publish_ahead_s=1500 "
        f"retire_grace_s={GRACE_S} max_token_lifetime_s=3600 alg=RS256 key_spec=RSA_2048\n"))

    async def step(at: int) -> list[str]:
        code, out = await cli(capsys, "keys", "rotate", "--config", path, "--clock-override", "--now", iso(at))
        assert code == 0, out
        return out.splitlines()

    lines = await step(T0)
    assert lines[0].startswith("created v1 kid=") and lines[1].startswith(f"published 1 keys to new secret {secret_id}")
    daemon = Config(sources=(SecretsManagerSourceConfig(secret_id=secret_id, endpoint_url=moto_endpoint, region=REGION,
                                                        version_stages=("AWSCURRENT",), max_retries=0),),
                    refresh=RefreshConfig(interval_s=INTERVAL_S, max_age_s=MAX_AGE_S))
    client = await start(aiohttp_client, daemon)
    lines = await step(T0 + PUBLISH_AHEAD_S)
    assert lines[0].startswith("activated v1 kid=") and lines[1].startswith("created v2 kid=")
    assert lines[2].startswith(f"published 2 keys to {secret_id}: ") and lines[3].startswith("confirmed v2 kid=")
    signed_1 = T0 + PUBLISH_AHEAD_S
    token_1 = (await cli(capsys, "keys", "sign", "--config", path, "--claims", '{"sub": "svc"}', "--now",
                         iso(signed_1), "--ttl-s", "600"))[1].strip()
    due = signed_1 + 10 * DAY
    lines = await step(due - 1)  # the next key, v2, has been published since v1 was promoted
    assert lines[0].startswith("nothing to do: active v1 kid=") and lines[0].endswith(f"next change due {iso(due)}")
    assert lines[1:] == [f"unchanged: {secret_id} already holds the 2 published keys"]
    await refresh_now(client)
    lines = await step(due)
    rows = json.loads((await cli(capsys, "keys", "list", "--config", path, "--json"))[1])
    assert [(row["version"], row["status"]) for row in rows] == [(1, "retired"), (2, "active"), (3, "pending")]
    kids = f"{rows[2]['kid']},{rows[1]['kid']},{rows[0]['kid']}"
    assert lines[:3] == [f"activated v2 kid={rows[1]['kid']}",
                         f"retired v1 kid={rows[0]['kid']} expires={iso(due + GRACE_S)}",
                         f"created v3 kid={rows[2]['kid']} state=pending key={rows[2]['key_ref']} "
                         f"promotable_from={iso(due + PUBLISH_AHEAD_S)}"]
    assert lines[3:] == [f"published 3 keys to {secret_id}: {kids}",
                         f"confirmed v3 kid={rows[2]['kid']} promotable_from={iso(due + PUBLISH_AHEAD_S)}"]
    token_2 = (await cli(capsys, "keys", "sign", "--config", path, "--claims", '{"sub": "svc"}', "--now",
                         iso(due)))[1].strip()
    await refresh_now(client)
    served = json.loads((await get_jwks(client))[2])
    for token, kid in ((token_1, rows[0]["kid"]), (token_2, rows[1]["kid"])):
        assert verify(Token(0, kid, "RS256", token), served)["sub"] == "svc"
    lines = await step(due + GRACE_S)
    assert lines == [f"expired v1 kid={rows[0]['kid']} deletion_in_days=7",
                     f"published 2 keys to {secret_id}: {rows[2]['kid']},{rows[1]['kid']}"]
    await refresh_now(client)
    served = json.loads((await get_jwks(client))[2])
    assert {key["kid"] for key in served["keys"]} == {rows[1]["kid"], rows[2]["kid"]}
    assert verify(Token(0, rows[1]["kid"], "RS256", token_2), served)["exp"] == due + 3600
    assert key_state(moto_endpoint, rows[0]["key_ref"]) == "PendingDeletion"


async def test_verify_url_holds_promotion(aiohttp_client: Any, moto_endpoint: str, *,
                                          capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """With --verify-url, a due promotion waits (exit 1, a 'held' line) until the daemon serves the pending kid."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    config = rotation_config(moto_endpoint, rotate_every_s=10 * DAY)
    path = write_config(tmp_path / "rotator.toml", {"table": config.table, "key_spec": "ECC_NIST_P256",
                                                    "rotate_every_s": 10 * DAY})
    daemon = Config(sources=(DynamoDBSourceConfig(table=config.table, region=REGION, endpoint_url=moto_endpoint,
                                                  kms_endpoint_url=moto_endpoint),),
                    refresh=RefreshConfig(interval_s=INTERVAL_S, max_age_s=MAX_AGE_S))
    async with keyring(config) as ring:
        await rotate(ring, T0)
        client = await start(aiohttp_client, daemon)  # serves version 1, pending
        url = str(client.make_url("/.well-known/jwks.json"))
        code, out = await cli(capsys, "keys", "rotate", "--config", path, "--clock-override", "--now",
                              iso(T0 + PUBLISH_AHEAD_S), "--verify-url", url)
        assert (code, out.split()[0]) == (0, "activated")
        due = T0 + PUBLISH_AHEAD_S + 10 * DAY
        await rotate(ring, due - PUBLISH_AHEAD_S)  # version 2 pending; the daemon has not refreshed since
        pending = single(await ring.registry.records(), "pending")
        assert pending is not None
        code, out = await cli(capsys, "keys", "rotate", "--config", path, "--clock-override", "--now", iso(due),
                              "--verify-url", url)
        assert code == 1
        assert out == f"held v2 kid={pending.kid} reason='the pending kid is not served there' url={url}\n"
        assert single(await ring.registry.records(), "pending") == pending
        await refresh_now(client)
        code, out = await cli(capsys, "keys", "rotate", "--config", path, "--clock-override", "--now", iso(due),
                              "--verify-url", url)
        assert code == 0 and out.startswith(f"activated v2 kid={pending.kid}\nretired v1")
