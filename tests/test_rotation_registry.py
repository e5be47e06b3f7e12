"""The DynamoDB registry on moto: conditional writes, and two rotators started at the same instant."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import boto3
import pytest

from jwksd.errors import AwsError, RegistryConflict, RotationError
from jwksd.rotation.keyring import open_keyring
from jwksd.rotation.policy import inconsistencies, single
from jwksd.rotation.registry import TABLE_DEFINITION
from jwksd.rotation.rotate import StepResult, rotate
from jwksd.rotation.sign import sign_jwt
from tests.conftest import REGION
from tests.rotation_helpers import DAY, T0, key_state, keyring, rotation_config, together

TABLE_FILE = Path(__file__).parent.parent / "config" / "jwksd-keys-table.json"


def test_table_file_matches_init_table() -> None:
    """config/jwksd-keys-table.json (for the AWS CLI) is exactly what `jwksd keys init-table` creates."""
    assert json.loads(TABLE_FILE.read_text()) == TABLE_DEFINITION


@pytest.mark.parametrize("backend", ["kms", "local"])
async def test_two_rotators_at_the_same_instant(moto_endpoint: str, backend: str) -> None:
    """Two rotators acting on the same view at every lifecycle step leave one consistent registry each time."""
    config = rotation_config(moto_endpoint, backend=backend, rotate_every_s=10 * DAY)
    async with keyring(config) as first, open_keyring(config) as second:

        async def both(now: int) -> list[StepResult]:
            rings = together([first, second], asyncio.Barrier(2))
            results = await asyncio.gather(rotate(rings[0], now), rotate(rings[1], now))
            assert sorted(r.conflict for r in results) == [False, True], [r.lines for r in results]
            assert inconsistencies(await first.registry.records()) == []
            return results

        results = await both(T0)  # both create a key; one records it, the other destroys its own
        records = await first.registry.records()
        assert [(r.version, r.status) for r in records] == [(1, "pending")]
        loser = next(r for r in results if r.conflict)
        assert loser.lines == [f"conflict: adding version 1 in {config.table}: another rotator changed the registry "
                               "first; re-read it, nothing more to do"]
        await both(T0 + 1500)  # both promote, and the winner creates the next key
        await both(T0 + 1500 + 10 * DAY)  # both promote it and retire version 1
        await both(T0 + 1500 + 12 * DAY)  # both expire version 1
        records = await first.registry.records()
        assert [(r.version, r.status) for r in records] == [(1, "expired"), (2, "active"), (3, "pending")]
        if backend == "kms":
            assert key_state(moto_endpoint, records[0].key_ref) == "PendingDeletion"
            keys = boto3.client("kms", endpoint_url=moto_endpoint, region_name=REGION).list_keys()["Keys"]
            states = [key_state(moto_endpoint, k["KeyId"]) for k in keys]
            assert states.count("Enabled") >= 1  # the losers' keys are all scheduled for deletion too


async def test_conditional_writes_refuse_stale_views(moto_endpoint: str) -> None:
    """A write based on a view another rotator has changed raises RegistryConflict and changes nothing."""
    config = rotation_config(moto_endpoint)
    async with keyring(config) as ring:
        await rotate(ring, T0)
        stale = (await ring.registry.records())[0]
        await rotate(ring, T0 + 1500)
        with pytest.raises(RegistryConflict, match="activating version 1"):
            await ring.registry.promote(stale, None, T0 + 1600, 10)
        with pytest.raises(RegistryConflict, match="adding version 1"):
            await ring.registry.add(stale)
        active = single(await ring.registry.records(), "active")
        assert active is not None and active.activated == T0 + 1500


async def test_bad_items_are_named(moto_endpoint: str) -> None:
    """An item that is not a jwksd record stops a step with an error naming the version and the attribute."""
    config = rotation_config(moto_endpoint)
    async with keyring(config) as ring:
        boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name=REGION).put_item(
            TableName=config.table, Item={"version": {"N": "7"}, "kid": {"S": "k"}, "status": {"S": "lost"}})
        with pytest.raises(RotationError, match="registry item version 7: backend is missing or not a string"):
            await rotate(ring, T0)


async def test_missing_table_is_an_aws_error(moto_endpoint: str) -> None:
    """A registry table that does not exist is reported with AWS's own code."""
    async with keyring(rotation_config(moto_endpoint), create_table=False) as ring:
        with pytest.raises(AwsError) as info:
            await ring.registry.records()
    assert info.value.code == "ResourceNotFoundException"


async def test_a_rotator_of_another_backend_leaves_keys_alone(moto_endpoint: str) -> None:
    """Switching rotation.backend from local to kms: keys made by the local backend are refused by name, not misused."""
    config = rotation_config(moto_endpoint, backend="local")
    async with keyring(config) as ring:
        await rotate(ring, T0)
        await rotate(ring, T0 + 1500)
    async with keyring(replace(config, backend="kms"), create_table=False) as ring:
        with pytest.raises(RotationError) as info:
            await sign_jwt(ring, {}, now=T0 + 1600)
    assert str(info.value) == "backend_mismatch: registry version 1 is a local key and rotation.backend is kms"
