"""Moving an existing key set under rotation: a publish refuses unknown keys unless --adopt or --replace."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from jwksd.__main__ import main
from jwksd.rotation.rotate import iso
from tests.daemon_helpers import get_jwks, kids_of, refresh_now, start
from tests.keys import jwk_set, rsa_jwk, rsa_key
from tests.rotation_helpers import DAY, T0, Rotator
from tests.test_sources_dynamodb import daemon_config

P = 1500  # publish_ahead_s with the serving side's defaults


pytestmark = pytest.mark.usefixtures("reset_logging")  # conftest: structlog put back after each test


@pytest.fixture
def rotator(moto_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> Rotator:
    """A rotator whose publish secret already holds two keys of another signer, legacy-1 and legacy-2."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    rotator = Rotator(moto_endpoint, tmp_path, capsys)
    rotator.secrets.client.create_secret(Name=rotator.secret_id, SecretString=jwk_set(
        rsa_jwk(rsa_key(0), "legacy-2"), rsa_jwk(rsa_key(1), "legacy-1")))
    assert rotator.run("init-table")[0] == 0
    return rotator


def legacy_token() -> str:
    """A token the old signer issued with legacy-1, valid for an hour of real time."""
    return jwt.encode({"sub": "old", "exp": int(time.time()) + 3600}, rsa_key(1), algorithm="RS256",
                      headers={"kid": "legacy-1"})


def verifies(token: str, document: dict[str, Any]) -> bool:
    """Whether ``token`` verifies against a JWK Set, as a verifier that found its kid there would do."""
    kid = jwt.get_unverified_header(token)["kid"]
    keys = [key for key in document["keys"] if key["kid"] == kid]
    if not keys:
        return False
    jwt.decode(token, jwt.PyJWK(keys[0]).key, algorithms=[keys[0]["alg"]])
    return True


def secret_document(rotator: Rotator) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        rotator.secrets.client.get_secret_value(SecretId=rotator.secret_id)["SecretString"])
    return document


def test_unknown_keys_are_refused_by_name(rotator: Rotator) -> None:
    """rotate and publish exit 1 naming the kids the registry does not know; the secret is left as it was."""
    before = secret_document(rotator)
    code, out, err = rotator.run("rotate", at=T0)
    assert code == 1 and out.startswith("created v1 kid=")
    assert err.splitlines()[-1] == (
        f"jwksd keys rotate: unknown_keys: {rotator.secret_id} holds keys the registry {rotator.config.table} does "
        "not know: legacy-1, legacy-2. Nothing was published: --adopt keeps the keys published as external keys "
        "until --adopt-until (never signed with), --replace drops them")
    code, _, err = rotator.run("publish")
    assert code == 1 and err.splitlines()[-1].startswith(f"jwksd keys publish: unknown_keys: {rotator.secret_id} ")
    assert secret_document(rotator) == before
    assert [(r["version"], r["status"], r["first_published"]) for r in rotator.rows()] == [(1, "pending", "-")]


async def test_adopted_keys_verify_until_their_expiry_and_never_sign(rotator: Rotator, aiohttp_client: Any,
                                                                     moto_endpoint: str) -> None:
    """--adopt-until keeps legacy tokens verifying, on the secret and the dynamodb source, until the expiry."""
    async def run(*argv: str, at: int | None = None) -> tuple[int, str, str]:
        return await asyncio.to_thread(rotator.run, *argv, at=at)

    token = legacy_token()
    until = T0 + 10 * DAY
    code, out, _ = await run("rotate", "--adopt-until", "10d", at=T0)
    v1 = (await asyncio.to_thread(rotator.rows))[0]
    assert code == 0
    assert out.splitlines()[1:] == [
        f"adopted v2 kid=legacy-1 state=external expires={iso(until)}",
        f"adopted v3 kid=legacy-2 state=external expires={iso(until)}",
        f"published 3 keys to {rotator.secret_id}: legacy-2,legacy-1,{v1['kid']}",
        f"confirmed v1 kid={v1['kid']} promotable_from={iso(T0 + P)}"]
    listing = (await run("list"))[1].splitlines()
    assert [line.split()[:3] for line in listing[2:]] == [["2", "external", "legacy-1"], ["3", "external", "legacy-2"]]
    assert listing[2].split()[-1] == iso(until)
    assert verifies(token, secret_document(rotator))

    code, out, _ = await run("rotate", at=T0 + P)
    assert code == 0 and out.startswith(f"activated v1 kid={v1['kid']}\ncreated v4 kid=")
    code, signed, _ = await run("sign", "--claims", '{"sub": "new"}')
    assert code == 0 and jwt.get_unverified_header(signed.strip())["kid"] == v1["kid"]
    assert verifies(token, secret_document(rotator))
    assert (await run("rotate", at=until - 1))[1].startswith("nothing to do: active v1")
    assert verifies(token, secret_document(rotator))
    # The daemon on the dynamodb source serves the external keys as the secret does.
    client = await start(aiohttp_client, daemon_config(moto_endpoint, rotator.config.table))
    served = json.loads((await get_jwks(client))[2])
    assert "legacy-1" in kids_of((await get_jwks(client))[2]) and verifies(token, served)
    rotator.capsys.readouterr()  # the in-process daemon's log lines

    code, out, _ = await run("rotate", at=until)
    assert code == 0 and out.splitlines()[:2] == ["expired v2 kid=legacy-1", "expired v3 kid=legacy-2"]
    assert not verifies(token, secret_document(rotator))
    rows = await asyncio.to_thread(rotator.rows)
    assert rotator.published_kids() == [rows[3]["kid"], v1["kid"]]
    await refresh_now(client)
    assert "legacy-1" not in kids_of((await get_jwks(client))[2])


def test_replace_drops_unknown_keys_and_says_which(rotator: Rotator) -> None:
    """--replace publishes the registry's keys alone and names the kids it dropped; nothing is adopted."""
    code, out, _ = rotator.run("rotate", "--replace", at=T0)
    v1 = rotator.rows()[0]
    assert code == 0 and out.splitlines()[1:3] == [
        f"replaced: {rotator.secret_id} no longer holds legacy-1, legacy-2",
        f"published 1 keys to {rotator.secret_id}: {v1['kid']}"]
    assert out.splitlines()[3] == (f"published again: the AWSPREVIOUS of {rotator.secret_id} held legacy-1, "
                                   "legacy-2, which daemons reading that stage would keep serving")
    assert rotator.published_kids() == rotator.published_kids("AWSPREVIOUS") == [v1["kid"]]
    assert not verifies(legacy_token(), secret_document(rotator))
    assert [r["status"] for r in rotator.rows()] == ["pending"]
    assert rotator.run("publish")[1] == f"unchanged: {rotator.secret_id} already holds the 1 published keys\n"


def test_revoking_an_adopted_key_unpublishes_it(rotator: Rotator) -> None:
    """An external key can be revoked like any other: gone from the secret, nothing of it to disable."""
    assert rotator.run("rotate", "--adopt", at=T0)[0] == 0
    code, out, _ = rotator.run("revoke", "legacy-1", at=T0 + 60)
    assert code == 0
    assert out.splitlines()[:2] == ["revoked v2 kid=legacy-1", "external v2 kid=legacy-1: jwksd holds no private "
                                    "key for it; stop whatever still signs with it"]
    assert "legacy-1" not in rotator.published_kids() and "legacy-2" in rotator.published_kids()
    # --adopt alone: until now + retire_grace_s, as if the old signer's keys retired now.
    assert rotator.rows()[2]["expires"] == iso(T0 + 2 * DAY)


def test_content_that_is_no_key_set_is_overwritten_only_with_replace(rotator: Rotator) -> None:
    """A secret holding something else (a password?) is never overwritten without --replace."""
    rotator.secrets.client.put_secret_value(SecretId=rotator.secret_id, SecretString="hunter2")
    code, _, err = rotator.run("rotate", "--adopt", at=T0)
    assert code == 1 and err.splitlines()[-1] == (
        f"jwksd keys rotate: unknown_content: {rotator.secret_id} holds content no daemon serves (invalid_json: "
        "Expecting value at line 1 column 1). Nothing was published: --replace "
        "overwrites it")
    code, out, _ = rotator.run("publish", "--replace")
    assert code == 0 and out.startswith(f"replaced: {rotator.secret_id} no longer holds content no daemon serves")


def test_bad_adopt_options_are_refused(rotator: Rotator, tmp_path: Path) -> None:
    """A malformed --adopt-until, one in the past, one beside --replace, or with nothing to publish is refused."""
    code, _, err = rotator.run("publish", "--adopt-until", "next week")
    assert (code, err) == (2, "jwksd: invalid configuration:\n  - --adopt-until = 'next week': expected an ISO 8601 "
                              "time with a zone (2027-06-30T00:00:00Z) or a duration such as 90d, 36h, 45m, 600s\n")
    code, _, err = rotator.run("publish", "--adopt-until", "1d", "--replace")
    assert (code, err) == (2, "jwksd: invalid configuration:\n  - --adopt-until: not allowed with --replace, which "
                              "drops the keys\n")
    code, _, err = rotator.run("rotate", "--adopt-until", iso(T0 - 60), at=T0)
    assert code == 1 and err.splitlines()[-1] == (
        f"jwksd keys rotate: adopt_until_past: --adopt-until {iso(T0 - 60)} is not after now ({iso(T0)}); "
        "--replace drops the keys instead")
    unpublished = tmp_path / "no-publish.toml"
    unpublished.write_text("[rotation]\n")
    assert main(["keys", "revoke", "some-kid", "--replace", "--config", str(unpublished)]) == 2
    assert rotator.capsys.readouterr().err == (
        "jwksd: invalid configuration:\n  - --replace: rotation.publish_secret_id is not set, so this command "
        "publishes nothing (jwksd keys publish --secret-id does)\n")
