"""The key registry of ``jwksd keys rotate`` as a source: its pending, active and retired keys as one JWK Set.

Public keys of KMS keys are fetched with GetPublicKey once per kid and kept in memory (they never
change); local-backend keys carry their public JWK in the item. A registry or KMS failure fails
the fetch, so the last good set stays served. A retired key whose KMS key is already being deleted
is left out: the rotator is in the middle of expiring it. The same Scan returns the head: each
fetch hands the registry's times to the ``jwksd_rotation_*`` gauges (``metrics.RotationGauges``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import structlog

from jwksd import aws
from jwksd.aws.registry import KeyRecord, RegistryHead, RegistryReader, check_kid, kms_public_jwk, published
from jwksd.aws.retry import NO_RETRIES
from jwksd.config import DynamoDBSourceConfig
from jwksd.errors import AwsError, RotationError, SourceError
from jwksd.metrics import Metrics, RegistryTimes
from jwksd.rotation.policy import Policy, next_change, single
from jwksd.sources import Document, Fetch

if TYPE_CHECKING:
    from types_aiobotocore_kms import KMSClient

log = structlog.get_logger("jwksd.sources.dynamodb")

OPERATIONS = ("Scan", "GetPublicKey")
BEING_DELETED = frozenset({"KMSInvalidStateException", "NotFoundException"})


class DynamoDBSource:
    """Reads one registry table; asks KMS only for kids it has not seen."""

    def __init__(self, config: DynamoDBSourceConfig, registry: RegistryReader, kms: aws.Client[KMSClient],
                 stack: AsyncExitStack, metrics: Metrics) -> None:
        self.name = config.name
        self.metrics = metrics
        self.config = config
        self.registry = registry
        self._kms = kms
        self._stack = stack
        self._public: dict[str, dict[str, Any]] = {}
        # When (wall time), the head and every record of the last scan: the status page draws them without a Scan.
        self.last_read: tuple[float, RegistryHead | None, tuple[KeyRecord, ...]] | None = None

    @classmethod
    async def open(cls, config: DynamoDBSourceConfig, metrics: Metrics) -> DynamoDBSource:
        """Create the DynamoDB and KMS clients once; one attempt per call, the refresh loop retries."""
        count = aws.call_counter(metrics, OPERATIONS)
        stack = AsyncExitStack()
        try:
            dynamodb = await aws.dynamodb(stack, cls._endpoint(config, config.endpoint_url), NO_RETRIES, count)
            kms = await aws.kms(stack, cls._endpoint(config, config.kms_endpoint_url), NO_RETRIES, count)
        except AwsError as exc:
            await stack.aclose()
            raise SourceError(exc.code, exc.message, retryable=False) from exc
        return cls(config, RegistryReader(dynamodb, config.table), kms, stack, metrics)

    @staticmethod
    def _endpoint(config: DynamoDBSourceConfig, url: str | None) -> aws.Endpoint:
        return aws.Endpoint(config.region, url, config.connect_timeout_s, config.read_timeout_s)

    async def fetch(self) -> Fetch:
        try:
            head, every = await self.registry.scan()
            self.last_read = (time.time(), head, tuple(every))
            self.metrics.rotation.times[self.name] = registry_times(every, head)
            records = published(every)
            keys = [jwk for jwk in [await self._jwk(record) for record in records] if jwk is not None]
        except (AwsError, RotationError) as exc:
            raise SourceError(exc.code, f"{self.config.table}: {exc.message}", retryable=exc.retryable) from exc
        self._public = {kid: jwk for kid, jwk in self._public.items() if any(r.kid == kid for r in records)}
        content = json.dumps({"keys": keys}).encode()
        state = ",".join(f"{r.version}:{r.status}" for r in records)
        return Fetch((Document(label=self.config.table, content=content, required=True,
                               version=hashlib.sha256(state.encode()).hexdigest()[:16]),))

    async def close(self) -> None:
        self.metrics.rotation.times.pop(self.name, None)  # a source removed by a reload leaves no series behind
        await self._stack.aclose()

    async def _jwk(self, record: KeyRecord) -> dict[str, Any] | None:
        if record.public_jwk is not None:
            return check_kid(dict(record.public_jwk), record)
        if record.kid not in self._public:
            try:
                jwk = await kms_public_jwk(self._kms, record.key_ref, record.alg)
            except AwsError as exc:
                if record.status == "retired" and exc.code in BEING_DELETED:
                    log.warning("retired_key_unavailable", version=record.version, kid=record.kid, code=exc.code)
                    return None
                raise
            self._public[record.kid] = check_kid(jwk, record)
        return self._public[record.kid]


def registry_times(records: Sequence[KeyRecord], head: RegistryHead | None) -> RegistryTimes:
    """The times the rotation gauges are computed from; the next due change by the head's policy (none without)."""
    active, pending = single(records, "active"), single(records, "pending")
    due = None if head is None else next_change(records, Policy.of(head.policy))
    return RegistryTimes(active_since=None if active is None else active.activated,
                         next_published_since=None if pending is None else pending.first_published, next_due=due)
