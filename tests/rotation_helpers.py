"""Rotation in tests: configs on the session moto server with tables and secret names of their own."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
import structlog

from jwksd.__main__ import main
from jwksd.aws.registry import KeyRecord
from jwksd.config import RotationConfig
from jwksd.rotation.head import adopt_head
from jwksd.rotation.keyring import Keyring, open_keyring
from jwksd.rotation.registry import Registry
from jwksd.rotation.rotate import iso
from tests.conftest import REGION, Secrets

DAY = 86400
T0 = 1_800_000_000  # 2027-01-15T08:00:00Z


def rotation_config(endpoint: str, **overrides: Any) -> RotationConfig:
    """ECDSA P-256 keys in KMS, a 30-day rotation, the serving side's defaults (interval 300 s, max-age 600 s)."""
    name = uuid.uuid4().hex[:12]
    settings: dict[str, Any] = {
        "table": f"jwksd-test-{name}", "private_secret_prefix": f"jwksd-test/{name}", "key_spec": "ECC_NIST_P256",
        "alg": "ES256", "region": REGION, "dynamodb_endpoint_url": endpoint, "kms_endpoint_url": endpoint,
        "secretsmanager_endpoint_url": endpoint, "read_timeout_s": 5.0,
    }
    settings.update(overrides)
    return RotationConfig(**settings)


@asynccontextmanager
async def keyring(config: RotationConfig, *, create_table: bool = True, publish: bool = False
                  ) -> AsyncIterator[Keyring]:
    """An open keyring on ``config``, its table created first with the head (the policy) in it, as init-table does."""
    async with open_keyring(config, publish=publish) as opened:
        ring = opened
        if create_table:
            await ring.registry.create_table()
            ring, _ = await adopt_head(ring, origin="the test", write=True)
        yield ring


class TogetherRegistry(Registry):
    """A registry whose first read waits for the other rotator's first read: both act on the same view.

    Writes go one at a time, as DynamoDB applies them; moto's threaded server checks a condition and
    writes without a lock, so two requests arriving together could both pass there.
    """

    def __init__(self, registry: Registry, barrier: Any, lock: asyncio.Lock) -> None:
        super().__init__(registry.client, registry.table)
        self.barrier = barrier
        self.lock = lock
        self.first = True

    async def _write(self, what: str, operation: str, request: Callable[[Any], Awaitable[object]]) -> None:
        async with self.lock:
            await super()._write(what, operation, request)

    async def records(self) -> list[KeyRecord]:
        records = await super().records()
        if self.first:
            self.first = False
            await self.barrier.wait()
        return records


def together(rings: Sequence[Keyring], barrier: Any) -> list[Keyring]:
    """The keyrings with registries that start a step at the same instant."""
    lock = asyncio.Lock()
    return [replace(ring, registry=TogetherRegistry(ring.registry, barrier, lock)) for ring in rings]


def kms_client(endpoint: str) -> Any:
    return boto3.client("kms", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def key_state(endpoint: str, key_ref: str, client: Any = None) -> str:
    """The KeyState of a KMS key (PendingDeletion once scheduled for deletion)."""
    return str((client or kms_client(endpoint)).describe_key(KeyId=key_ref)["KeyMetadata"]["KeyState"])


class Rotator:
    """A rotator config file publishing to a secret on the session moto server, run through `jwksd keys`."""

    def __init__(self, endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], **settings: Any) -> None:
        self.config = rotation_config(endpoint)
        self.secret_id = f"{self.config.private_secret_prefix}/public"
        self.secrets = Secrets(endpoint)
        self.capsys = capsys
        self.path = tmp_path / "rotate.toml"
        lines = [f'table = "{self.config.table}"', 'key_spec = "ECC_NIST_P256"',
                 f'publish_secret_id = "{self.secret_id}"', f"rotate_every_s = {10 * DAY}",
                 *(f"{k} = {json.dumps(v)}" for k, v in settings.items())]
        self.path.write_text("[rotation]\n" + "\n".join(lines) + "\n")

    def run(self, *argv: str, at: int | None = None) -> tuple[int, str, str]:
        when = ["--now", iso(at), "--clock-override"] if at is not None else []
        code = main(["keys", *argv, "--config", str(self.path), *when])
        structlog.reset_defaults()
        out, err = self.capsys.readouterr()
        return code, out, err

    def published_kids(self, stage: str = "AWSCURRENT") -> list[str]:
        content = self.secrets.client.get_secret_value(SecretId=self.secret_id, VersionStage=stage)["SecretString"]
        return [key["kid"] for key in json.loads(content)["keys"]]

    def rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(self.run("list", "--json")[1])
        return rows
