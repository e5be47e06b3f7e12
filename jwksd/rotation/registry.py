"""The key registry in DynamoDB: one item per key, keyed by ``version``, every change a conditional write.

Creating version v+1 is ``attribute_not_exists(version)``, so two rotators that saw the same
registry cannot both add a key; a promotion is one transaction that moves the pending key to
active and the active one to retired, each on the condition of its expected status; expiring is
conditional on ``retired`` (or ``external``, for an adopted key). A write that loses raises RegistryConflict.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from jwksd.aws.registry import KeyRecord, RegistryReader, Status, to_item
from jwksd.config.source_model import REGISTRY_TABLE
from jwksd.errors import AwsError, RegistryConflict, RotationError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import TransactWriteItemTypeDef

# Also in config/jwksd-keys-table.json, for `aws dynamodb create-table --cli-input-json`.
TABLE_DEFINITION: dict[str, Any] = {
    "TableName": REGISTRY_TABLE,
    "AttributeDefinitions": [{"AttributeName": "version", "AttributeType": "N"}],
    "KeySchema": [{"AttributeName": "version", "KeyType": "HASH"}],
    "BillingMode": "PAY_PER_REQUEST",
    "DeletionProtectionEnabled": True,
    "Tags": [{"Key": "jwksd", "Value": "key-registry"}],
}
CONFLICT_CODES = frozenset({"ConditionalCheckFailedException", "TransactionCanceledException",
                            "TransactionConflictException"})


class Registry(RegistryReader):
    """Reads (as the daemon does) and conditionally writes one registry table."""

    async def add(self, record: KeyRecord) -> None:
        """Record a new key under a version nobody has used."""
        await self._write(f"adding version {record.version}", "PutItem", lambda db: db.put_item(
            TableName=self.table, Item=to_item(record), ConditionExpression="attribute_not_exists(version)"))

    async def promote(self, pending: KeyRecord, active: KeyRecord | None, now: int, grace_s: int, *,
                      revoke: bool = False) -> None:
        """Activate ``pending`` and retire ``active`` (revoke it, with ``revoke``) at ``now`` in one transaction."""
        items = [self._update(pending, "pending", {"status": "active", "activated": now})]
        if active is not None:
            items.append(self._update(active, "active", {"status": "revoked", "revoked": now} if revoke else
                                      {"status": "retired", "retired": now, "expires": now + grace_s}))
        await self._write(f"activating version {pending.version}", "TransactWriteItems",
                          lambda db: db.transact_write_items(TransactItems=items))

    async def confirm_published(self, record: KeyRecord, now: int) -> None:
        """Record that a publish holding the pending key ``record`` was confirmed at ``now``."""
        update = self._update(record, "pending", {"first_published": now})["Update"]
        await self._write(f"confirming version {record.version} published", "UpdateItem",
                          lambda db: db.update_item(**update))

    async def revoke(self, record: KeyRecord, now: int) -> None:
        """Mark a pending, retired or external key revoked (an active one: ``promote(..., revoke=True)``)."""
        update = self._update(record, record.status, {"status": "revoked", "revoked": now})["Update"]
        await self._write(f"revoking version {record.version}", "UpdateItem", lambda db: db.update_item(**update))

    async def expire(self, record: KeyRecord, now: int) -> None:
        """Mark a retired (or external) key expired."""
        update = self._update(record, record.status, {"status": "expired", "expired": now})["Update"]
        await self._write(f"expiring version {record.version}", "UpdateItem", lambda db: db.update_item(**update))

    def _update(self, record: KeyRecord, expected: Status, values: Mapping[str, str | int]
                ) -> TransactWriteItemTypeDef:
        names = {f"#{key}": key for key in values}
        attributes: dict[str, Any] = {f":{key}": ({"N": str(v)} if isinstance(v, int) else {"S": v})
                                      for key, v in values.items()}
        attributes[":expected"] = {"S": expected}
        attributes[":kid"] = {"S": record.kid}
        names.update({"#status": "status", "#kid": "kid"})
        return {"Update": {
            "TableName": self.table, "Key": {"version": {"N": str(record.version)}},
            "UpdateExpression": "SET " + ", ".join(f"#{key} = :{key}" for key in values),
            "ConditionExpression": "#status = :expected AND #kid = :kid",
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": attributes,
        }}

    async def _write(self, what: str, operation: str, request: Callable[[DynamoDBClient], Awaitable[object]]) -> None:
        try:
            await self.client.call(operation, request)
        except AwsError as exc:
            if exc.code in CONFLICT_CODES:
                raise RegistryConflict(f"{what} in {self.table}: another rotator changed the registry first") from exc
            raise

    async def create_table(self, wait_s: float = 60.0) -> bool:
        """Create the table from TABLE_DEFINITION and wait (bounded) until it is active; False if it existed."""
        try:
            await self.client.call("CreateTable", lambda db: db.create_table(**{**TABLE_DEFINITION,
                                                                                "TableName": self.table}))
        except AwsError as exc:
            if exc.code != "ResourceInUseException":
                raise
            return False
        try:
            async with asyncio.timeout(wait_s):
                while True:
                    described = await self.client.call("DescribeTable",
                                                       lambda db: db.describe_table(TableName=self.table))
                    if described["Table"].get("TableStatus") == "ACTIVE":
                        return True
                    await asyncio.sleep(1.0)
        except TimeoutError as exc:
            raise RotationError("timeout", f"table {self.table} not ACTIVE after {wait_s:g}s", retryable=True) from exc
