"""`jwksd keys gc`: keys a failed rotate left behind are found, and deleted only with --apply; the live key stays."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import structlog

from jwksd.__main__ import main
from jwksd.aws.registry import KeyRecord
from jwksd.rotation.backends import CREATION_ID_TAG
from jwksd.rotation.gc import collect
from jwksd.rotation.keyring import open_keyring
from jwksd.rotation.rotate import iso, rotate
from tests.fault_proxy import start_proxy
from tests.rotation_helpers import key_state, keyring, kms_client, rotation_config

DENIED = "User: arn:aws:iam::123456789012:user/rotator is not authorized to perform: dynamodb:PutItem"


pytestmark = pytest.mark.usefixtures("reset_logging")  # conftest: structlog put back after each test


def creation_id_of(endpoint: str, key_ref: str) -> str | None:
    tags = kms_client(endpoint).list_resource_tags(KeyId=key_ref)["Tags"]
    return next((tag["TagValue"] for tag in tags if tag["TagKey"] == CREATION_ID_TAG), None)


async def test_orphans_of_a_denied_registry_write_are_found_and_cleaned(moto_endpoint: str, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A key made by a rotate whose registry write DynamoDB denied is listed by its creation id, and --apply
    deletes only it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    config = rotation_config(moto_endpoint)
    proxy = await start_proxy(moto_endpoint)  # between the rotator and DynamoDB; KMS is reached directly
    path = tmp_path / "rotate.toml"
    path.write_text(f'[rotation]\ntable = "{config.table}"\nkey_spec = "ECC_NIST_P256"\n'
                    f'dynamodb_endpoint_url = "{proxy.url}"\n')

    async def cli(*argv: str) -> tuple[int, list[str], str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["keys", *argv, "--config", str(path)])
        structlog.reset_defaults()
        out, err = capsys.readouterr()
        return code, out.splitlines(), err

    try:
        assert (await cli("init-table"))[0] == 0
        proxy.fault, proxy.message, proxy.operations = "access_denied", DENIED, frozenset({"TransactWriteItems"})
        code, lines, err = await cli("rotate")
        assert (code, lines) == (1, [])
        assert err.endswith(f"jwksd keys rotate: AccessDeniedException: TransactWriteItems: {DENIED}\n")
        proxy.fault = None
        assert (await cli("rotate"))[0] == 0
        now = int(time.time())
        async with open_keyring(config) as ring:
            (live,) = await ring.registry.records()
        assert live.creation_id is not None and creation_id_of(moto_endpoint, live.key_ref) == live.creation_id
        code, lines, _ = await cli("list", "--json")
        assert [row["creation_id"] for row in json.loads("\n".join(lines))] == [live.creation_id]

        code, lines, _ = await cli("gc")
        assert code == 0 and len(lines) == 1 and lines[0].startswith("too recent: arn:aws:kms:")
        orphan = lines[0].split()[2]
        assert orphan != live.key_ref and lines[0].endswith("(a rotate may still be recording it)")
        assert creation_id_of(moto_endpoint, orphan) not in (None, live.creation_id)
        later = iso(now + 7200)
        code, lines, _ = await cli("gc", "--now", later)
        assert (code, len(lines)) == (0, 1)
        assert lines[0].startswith(f"orphan: {orphan} created=") and lines[0].endswith(
            "(--apply schedules its deletion)")
        assert key_state(moto_endpoint, orphan) == "Enabled"
        code, lines, _ = await cli("gc", "--apply", "--now", later, "--clock-override")
        assert (code, len(lines)) == (0, 1) and lines[0].startswith(f"deleted orphan: {orphan} created=")
        assert lines[0].endswith("deletion_in_days=30")
        assert key_state(moto_endpoint, orphan) == "PendingDeletion"
        assert key_state(moto_endpoint, live.key_ref) == "Enabled"
        code, lines, _ = await cli("gc", "--now", later)
        assert (code, lines) == (0, [f"no orphans: every kms key tagged jwksd-table={config.table} is in the "
                                     "registry"])
    finally:
        await proxy.close()


async def test_a_key_recorded_before_creation_ids_is_matched_by_its_arn(moto_endpoint: str) -> None:
    """A key without a creation id tag whose ARN an item (written before creation ids) records is no orphan."""
    config = rotation_config(moto_endpoint)
    made = kms_client(moto_endpoint).create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY",
                                                Tags=[{"TagKey": "jwksd-table", "TagValue": config.table}])
    arn, now = made["KeyMetadata"]["Arn"], int(time.time())
    async with keyring(config) as ring:
        assert (await collect(ring, now + 7200, apply=False)).lines == [
            f"orphan: {arn} created={iso(made['KeyMetadata']['CreationDate'].timestamp())} (--apply schedules its "
            "deletion)"]
        await ring.registry.add(KeyRecord(version=1, kid="old", status="retired", backend="kms", key_ref=arn,
                                          alg="ES256", key_spec="ECC_NIST_P256", created=now, publish_from=now))
        assert (await collect(ring, now + 7200, apply=True)).lines == [
            f"no orphans: every kms key tagged jwksd-table={config.table} is in the registry"]
    assert key_state(moto_endpoint, arn) == "Enabled"


async def test_local_private_secrets_are_matched_by_creation_id(moto_endpoint: str) -> None:
    """A private secret a rotate made but never recorded is an orphan; the recorded key's secret is not."""
    config = rotation_config(moto_endpoint, backend="local")
    now = int(time.time())
    async with keyring(config) as ring:
        await rotate(ring, now)
        (live,) = await ring.registry.records()
        lost = await ring.backend.create(2, key_spec="ECC_NIST_P256", alg="ES256", creation_id="c0ffee")
        lines = (await collect(ring, now + 7200, apply=True)).lines
        assert len(lines) == 1 and lines[0].startswith(f"deleted orphan: {lost.key_ref} created=")
        assert live.key_ref != lost.key_ref and live.creation_id is not None
        assert (await collect(ring, now + 7200, apply=False)).lines == [
            f"no orphans: every local key tagged jwksd-table={config.table} is in the registry"]
