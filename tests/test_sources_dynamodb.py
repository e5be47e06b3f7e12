"""The dynamodb source: the registry's published keys served by the real daemon, KMS asked once per kid."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from jwksd.config import Config, DynamoDBSourceConfig, RefreshConfig
from jwksd.rotation.policy import single
from jwksd.rotation.rotate import rotate
from tests.conftest import REGION, endpoint_of
from tests.daemon_helpers import get_jwks, kids_of, refresh_now, start
from tests.daemon_process import Daemon
from tests.rotation_helpers import DAY, T0, keyring, rotation_config
from tests.test_http_app import metric

P = 1500  # publish_ahead_s with the serving side's defaults


def daemon_config(endpoint: str, table: str) -> Config:
    return Config(sources=(DynamoDBSourceConfig(table=table, region=REGION, endpoint_url=endpoint,
                                                kms_endpoint_url=endpoint, read_timeout_s=2.0),),
                  refresh=RefreshConfig(interval_s=300, max_age_s=600, retry_base_s=0.05, retry_cap_s=0.2))


async def test_public_keys_are_asked_of_kms_once(aiohttp_client: Any, moto_endpoint: str) -> None:
    """Three refreshes of a pending and an active key: three scans after the first, two GetPublicKey in all."""
    config = rotation_config(moto_endpoint, rotate_every_s=10 * DAY)
    async with keyring(config) as ring:
        await rotate(ring, T0)
        await rotate(ring, T0 + 1500)
        await rotate(ring, T0 + 10 * DAY)  # a pending successor
        client = await start(aiohttp_client, daemon_config(moto_endpoint, config.table))
        for _ in range(3):
            await refresh_now(client)
        records = await ring.registry.records()
    assert sorted(kids_of((await get_jwks(client))[2])) == sorted(r.kid for r in records)
    assert metric(client, "jwksd_aws_calls_total", operation="Scan", code="ok") == 4
    assert metric(client, "jwksd_aws_calls_total", operation="GetPublicKey", code="ok") == 2
    assert metric(client, "jwksd_aws_calls_total", operation="GetPublicKey", code="timeout") == 0  # created up front


async def test_retired_key_already_deleted_is_left_out(aiohttp_client: Any, moto_endpoint: str) -> None:
    """A retired key whose KMS key is gone (an expiry interrupted past its deletion window) is skipped, not fatal."""
    config = rotation_config(moto_endpoint, rotate_every_s=10 * DAY)
    async with keyring(config) as ring:
        for at in (T0, T0 + 1500, T0 + 10 * DAY, T0 + 11 * DAY):
            await rotate(ring, at)
        records = await ring.registry.records()
    retired, active, pending = single(records, "retired"), single(records, "active"), single(records, "pending")
    assert retired is not None and active is not None and pending is not None
    gone = retired.key_ref.rpartition("/")[0] + "/00000000-0000-0000-0000-000000000000"
    boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name=REGION).update_item(
        TableName=config.table, Key={"version": {"N": str(retired.version)}}, UpdateExpression="SET key_ref = :k",
        ExpressionAttributeValues={":k": {"S": gone}})
    client = await start(aiohttp_client, daemon_config(moto_endpoint, config.table))
    status, _, body = await get_jwks(client)
    assert (status, kids_of(body)) == (200, sorted([active.kid, pending.kid]))
    assert metric(client, "jwksd_aws_calls_total", operation="GetPublicKey", code="NotFoundException") == 1


async def test_bad_registry_keeps_the_last_good_set(aiohttp_client: Any, own_moto: ThreadedMotoServer) -> None:
    """A tampered public key, then an unreachable registry: each refresh fails by name and the served set stays."""
    endpoint = endpoint_of(own_moto)
    config = rotation_config(endpoint, backend="local", key_spec="ECC_NIST_P256", alg="ES256")
    async with keyring(config) as ring:
        await rotate(ring, T0)
        record = (await ring.registry.records())[0]
    assert record.public_jwk is not None  # the local backend keeps the public half in the item
    client = await start(aiohttp_client, daemon_config(endpoint, config.table))
    _, _, before = await get_jwks(client)
    assert kids_of(before) == [record.kid]
    tampered = {**record.public_jwk, "x": record.public_jwk["y"]}
    boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION).update_item(
        TableName=config.table, Key={"version": {"N": "1"}}, UpdateExpression="SET public_jwk = :j",
        ExpressionAttributeValues={":j": {"S": json.dumps(tampered)}})
    await refresh_now(client)
    health = await (await client.get("/health")).json()
    assert health["checks"]["jwks"]["last_error"]["code"] == "kid_mismatch"
    assert (await get_jwks(client))[2] == before
    own_moto.stop()
    await refresh_now(client)
    assert metric(client, "jwksd_refreshes_total", source="dynamodb", outcome="fetch_error") == 2
    assert metric(client, "jwksd_aws_calls_total", operation="Scan", code="network") == 1
    assert (await get_jwks(client))[2] == before


async def test_rotation_gauges_of_a_real_daemon(moto_endpoint: str, tmp_path: Path) -> None:
    """A `jwksd serve` on the registry exports the active key's age, the next key's and the (overdue) next due."""
    config = rotation_config(moto_endpoint, rotate_every_s=10 * DAY)  # the head stores this policy
    now = int(time.time())
    start_at = now - 12 * DAY
    async with keyring(config) as ring:
        await rotate(ring, start_at)
        await rotate(ring, start_at + P)  # v1 active, v2 published since then; v1 due at + 10 days: 2 days ago
    daemon = await asyncio.to_thread(Daemon.from_toml, tmp_path, {
        "source": {"kind": "dynamodb", "table": config.table, "endpoint_url": moto_endpoint,
                   "kms_endpoint_url": moto_endpoint, "read_timeout_s": 2.0},
        "refresh": {"interval_s": 3600, "max_age_s": 3600}})
    try:
        before = time.time()
        found = {name: daemon.metric(name, source="dynamodb") for name in (
            "jwksd_rotation_active_key_age_seconds", "jwksd_rotation_next_key_published_age_seconds",
            "jwksd_rotation_next_due_in_seconds")}
        after = time.time()
    finally:
        daemon.stop()
    activated = start_at + P  # v1's activation, and v2's confirmed publish
    assert before - activated <= found["jwksd_rotation_active_key_age_seconds"] <= after - activated
    assert before - activated <= found["jwksd_rotation_next_key_published_age_seconds"] <= after - activated
    due = activated + 10 * DAY
    assert due - after <= found["jwksd_rotation_next_due_in_seconds"] <= due - before < -DAY
