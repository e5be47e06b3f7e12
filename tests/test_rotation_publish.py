"""Publishing to a secret gates promotion: a key signs only once a confirmed publish has held it for publish_ahead_s."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import jwt
import pytest
import structlog

from jwksd.__main__ import main
from jwksd.errors import AwsError
from jwksd.rotation.policy import single
from jwksd.rotation.publish import confirm_published, publish
from jwksd.rotation.rotate import iso, rotate
from jwksd.rotation.sign import sign_jwt
from tests.conftest import Secrets
from tests.rotation_helpers import T0, keyring, rotation_config

PUBLISH_AHEAD_S = 1500
ROTATE_EVERY_S = 4000


class Watcher:
    """Reads the published secret as a verifier's daemon would, noting when each kid was first there."""

    def __init__(self, secrets: Secrets, secret_id: str) -> None:
        self.secrets = secrets
        self.secret_id = secret_id
        self.first_seen: dict[str, int] = {}

    def look(self, now: int) -> None:
        try:
            content = self.secrets.client.get_secret_value(SecretId=self.secret_id)["SecretString"]
        except self.secrets.client.exceptions.InvalidRequestException:
            return  # scheduled for deletion: nothing is served from it
        for key in json.loads(content)["keys"]:
            self.first_seen.setdefault(key["kid"], now)


def break_secret(secrets: Secrets, secret_id: str) -> None:
    """Schedule the secret for deletion: every read and write of it fails until it is restored."""
    secrets.client.delete_secret(SecretId=secret_id, RecoveryWindowInDays=7)


async def test_a_failed_publish_never_lets_an_unpublished_key_sign(moto_endpoint: str) -> None:
    """Publishes fail at random (secret scheduled for deletion); every token's key was in the secret for P before."""
    secrets = Secrets(moto_endpoint)
    config = rotation_config(moto_endpoint, publish_ahead_s=PUBLISH_AHEAD_S, rotate_every_s=ROTATE_EVERY_S)
    secret_id = f"{config.private_secret_prefix}/public"
    config = rotation_config(moto_endpoint, table=config.table, publish_ahead_s=PUBLISH_AHEAD_S,
                             rotate_every_s=ROTATE_EVERY_S, publish_secret_id=secret_id)
    secrets.client.create_secret(Name=secret_id, SecretString='{"keys": []}')
    watcher, rng = Watcher(secrets, secret_id), random.Random(11)
    broken, failures_while_pending, signed = False, 0, 0
    activated: set[str] = set()
    async with keyring(config, publish=True) as ring:
        now = T0
        while now < T0 + 8 * ROTATE_EVERY_S:
            if rng.random() < 0.3:
                (secrets.client.restore_secret(SecretId=secret_id) if broken else break_secret(secrets, secret_id))
                broken = not broken
            await rotate(ring, now)
            pending = single(await ring.registry.records(), "pending")
            try:
                await publish(ring, secret_id)
            except AwsError as exc:
                assert broken and exc.code == "InvalidRequestException"
                failures_while_pending += pending is not None and pending.first_published is None
            else:
                await confirm_published(ring, now)
            watcher.look(now)
            active = single(await ring.registry.records(), "active")
            if active is not None:
                token = await sign_jwt(ring, {"sub": "svc"}, now=now, ttl_s=60)
                kid = jwt.get_unverified_header(token)["kid"]
                assert kid in watcher.first_seen and watcher.first_seen[kid] <= now - PUBLISH_AHEAD_S, (iso(now), kid)
                signed += 1
                activated.add(kid)
            now += rng.randint(100, 900)
    assert failures_while_pending >= 3 and signed >= 50 and len(activated) >= 5, (failures_while_pending, signed)


def test_a_failed_publish_fails_the_run_and_the_next_run_retries(moto_endpoint: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`keys rotate` exits 1 naming the failed publish; no promotion counts from it; the next run publishes."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    secrets = Secrets(moto_endpoint)
    config = rotation_config(moto_endpoint)
    secret_id = f"{config.private_secret_prefix}/public"
    secrets.client.create_secret(Name=secret_id, SecretString='{"keys": []}')
    break_secret(secrets, secret_id)
    path = tmp_path / "rotate.toml"
    path.write_text(f'[rotation]\ntable = "{config.table}"\nkey_spec = "ECC_NIST_P256"\n'
                    f'publish_secret_id = "{secret_id}"\n')

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["keys", *argv, "--config", str(path), *(["--clock-override"] if "--now" in argv else [])])
        structlog.reset_defaults()
        out, err = capsys.readouterr()
        return code, out, err

    assert run("init-table")[0] == 0
    code, out, err = run("rotate", "--now", iso(T0))
    assert code == 1 and out.startswith("created v1 kid=")
    last = err.splitlines()[-1]
    assert last.startswith(f"jwksd keys rotate: publish_failed: {secret_id}: InvalidRequestException: GetSecretValue: ")
    assert last.endswith("deleted. No key was confirmed published; the next run retries, and no promotion counts "
                         "from this one")
    code, out, _ = run("rotate", "--now", iso(T0 + 2 * PUBLISH_AHEAD_S))
    assert code == 1 and out == "nothing to do: no active key, next change due -\n"
    secrets.client.restore_secret(SecretId=secret_id)
    code, out, _ = run("rotate", "--now", iso(T0 + 3 * PUBLISH_AHEAD_S))
    kid = json.loads(secrets.client.get_secret_value(SecretId=secret_id)["SecretString"])["keys"][0]["kid"]
    ready = iso(T0 + 3 * PUBLISH_AHEAD_S + PUBLISH_AHEAD_S)
    assert (code, out) == (0, "nothing to do: no active key, next change due -\n"
                              f"published 1 keys to {secret_id}: {kid}\n"
                              f"confirmed v1 kid={kid} promotable_from={ready}\n")
    rows: list[dict[str, Any]] = json.loads(run("list", "--json")[1])
    assert rows[0]["first_published"] == iso(T0 + 3 * PUBLISH_AHEAD_S) and rows[0]["status"] == "pending"
    assert run("rotate", "--now", iso(T0 + 4 * PUBLISH_AHEAD_S - 1))[1].startswith("nothing to do")
    assert run("rotate", "--now", iso(T0 + 4 * PUBLISH_AHEAD_S))[1].startswith(f"activated v1 kid={kid}")


async def test_unconfirmed_publish_names_the_verify_url_without_its_credentials(moto_endpoint: str) -> None:
    """A verify URL that does not serve the pending kid is named with its user info and query hidden."""
    # With a publish secret, a new key is confirmed only by a publish that verifies: none here.
    async with keyring(rotation_config(moto_endpoint, publish_secret_id="jwksd-test/public")) as ring:
        await rotate(ring, T0)
        pending = single(await ring.registry.records(), "pending")
        assert pending is not None and pending.first_published is None
        lines = await confirm_published(ring, T0, verify_urls=["http://user:secret@127.0.0.1:9/jwks.json?token=t"])
    assert lines == [f"unconfirmed v1 kid={pending.kid} reason='cannot fetch: ClientConnectorError' "
                     "url=http://***@127.0.0.1:9/jwks.json?***"]
