"""`jwksd keys gc`: keys a failed rotate left behind are found, and deleted only with --apply; the live key stays."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import structlog

from jwksd.__main__ import main
from jwksd.aws.registry import KeyRecord
from jwksd.errors import AwsError
from jwksd.rotation.registry import Registry
from jwksd.rotation.rotate import iso, rotate
from tests.rotation_helpers import key_state, keyring, rotation_config


@pytest.fixture(autouse=True)
def reset_logging() -> Iterator[None]:
    """Each command points structlog at the captured stderr of its test; put it back afterwards."""
    yield
    structlog.reset_defaults()


class DeniedRegistry(Registry):
    """A registry whose PutItem is denied, as IAM would deny it (moto here does not enforce IAM)."""

    async def add(self, record: KeyRecord) -> None:
        raise AwsError("PutItem", "AccessDeniedException", "not authorized to perform dynamodb:PutItem",
                       retryable=False, status=400)


async def test_orphans_of_a_denied_put_item_are_found_and_cleaned(moto_endpoint: str, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A key made before a denied PutItem is listed (not while under an hour old), and --apply deletes only it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    config = rotation_config(moto_endpoint)
    now = int(time.time())
    async with keyring(config) as ring:
        with pytest.raises(AwsError, match="AccessDeniedException"):
            await rotate(replace(ring, registry=DeniedRegistry(ring.registry.client, config.table)), now)
        await rotate(ring, now)
        (live,) = await ring.registry.records()
    path = tmp_path / "rotate.toml"
    path.write_text(f'[rotation]\ntable = "{config.table}"\nkey_spec = "ECC_NIST_P256"\n')

    async def gc(*argv: str) -> tuple[int, list[str]]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["keys", "gc", "--config", str(path), *argv])
        structlog.reset_defaults()
        return code, capsys.readouterr().out.splitlines()

    code, lines = await gc()
    assert code == 0 and len(lines) == 1 and lines[0].startswith("too recent: arn:aws:kms:")
    orphan = lines[0].split()[2]
    assert orphan != live.key_ref and lines[0].endswith("(a rotate may still be recording it)")
    later = iso(now + 7200)
    code, lines = await gc("--now", later)
    assert (code, len(lines)) == (0, 1)
    assert lines[0].startswith(f"orphan: {orphan} created=") and lines[0].endswith("(--apply schedules its deletion)")
    assert key_state(moto_endpoint, orphan) == "Enabled"
    code, lines = await gc("--apply", "--now", later, "--clock-override")
    assert (code, len(lines)) == (0, 1) and lines[0].startswith(f"deleted orphan: {orphan} created=")
    assert lines[0].endswith("deletion_in_days=30")
    assert key_state(moto_endpoint, orphan) == "PendingDeletion" and key_state(moto_endpoint, live.key_ref) == "Enabled"
    code, lines = await gc("--now", later)
    assert (code, lines) == (0, [f"no orphans: every kms key tagged jwksd-table={config.table} is in the registry"])
