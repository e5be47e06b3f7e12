"""The key registry in DynamoDB: one item per key, keyed by ``version``, every change a conditional write.

Creating version v+1 is ``attribute_not_exists(version)``, so two rotators that saw the same
registry cannot both add a key; a promotion is one transaction that moves the pending key to
active and the active one to retired, each on the condition of its expected status; expiring is
conditional on ``retired`` (or ``external``, for an adopted key). A write that loses raises
RegistryConflict. Every write is one TransactWriteItems that also bumps the head's ``revision``
and keeps its ``active_version`` and ``pending_version`` right (``jwksd/aws/head.py``); the head
itself is written once, conditionally, and its policy changed only on the condition of the
revision it was read at.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from jwksd.aws.head import HEAD_VERSION, POLICY_FIELDS, RegistryHead, RegistryPolicy, head_item
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

    async def write_head(self, head: RegistryHead) -> bool:
        """Write the head unless there is one already (False then: another rotator, or init-table, was first)."""
        try:
            await self._write("writing the head", "PutItem", lambda db: db.put_item(
                TableName=self.table, Item=head_item(head), ConditionExpression="attribute_not_exists(version)"))
        except RegistryConflict:
            return False
        return True

    async def set_policy(self, policy: RegistryPolicy, revision: int) -> None:
        """Store ``policy`` in the head, on the condition that its revision is still ``revision``."""
        values: dict[str, str | int] = {name: getattr(policy, name) for name in POLICY_FIELDS}
        update = self._head_update(values, expected_revision=revision)["Update"]
        await self._write(f"changing the policy at revision {revision}", "UpdateItem",
                          lambda db: db.update_item(**update))

    async def add(self, record: KeyRecord) -> None:
        """Record a new key under a version nobody has used (the head's pointer to it set too)."""
        put: TransactWriteItemTypeDef = {"Put": {
            "TableName": self.table, "Item": to_item(record), "ConditionExpression": "attribute_not_exists(version)"}}
        pointer = {f"{record.status}_version": record.version} if record.status in ("pending", "active") else {}
        # A second pending (or active) key would take the pointer from the first: the head must have none.
        head = self._head_update(pointer, absent=tuple(pointer))
        await self._transact(f"adding version {record.version}", [put, head])

    async def promote(self, pending: KeyRecord, active: KeyRecord | None, now: int, grace_s: int, *,
                      revoke: bool = False) -> None:
        """Activate ``pending`` and retire ``active`` (revoke it, with ``revoke``) at ``now`` in one transaction."""
        items = [self._update(pending, "pending", {"status": "active", "activated": now})]
        if active is not None:
            items.append(self._update(active, "active", {"status": "revoked", "revoked": now} if revoke else
                                      {"status": "retired", "retired": now, "expires": now + grace_s}))
        items.append(self._head_update({"active_version": pending.version}, remove=("pending_version",)))
        await self._transact(f"activating version {pending.version}", items)

    async def confirm_published(self, record: KeyRecord, now: int) -> None:
        """Record that a publish holding the pending key ``record`` was confirmed at ``now``."""
        await self._transact(f"confirming version {record.version} published",
                             [self._update(record, "pending", {"first_published": now}), self._head_update({})])

    async def revoke(self, record: KeyRecord, now: int) -> None:
        """Mark a pending, retired or external key revoked (an active one: ``promote(..., revoke=True)``)."""
        remove = ("pending_version",) if record.status == "pending" else ()
        await self._transact(f"revoking version {record.version}", [
            self._update(record, record.status, {"status": "revoked", "revoked": now}),
            self._head_update({}, remove=remove)])

    async def expire(self, record: KeyRecord, now: int) -> None:
        """Mark a retired (or external) key expired."""
        await self._transact(f"expiring version {record.version}", [
            self._update(record, record.status, {"status": "expired", "expired": now}), self._head_update({})])

    def _head_update(self, values: Mapping[str, str | int], *, remove: tuple[str, ...] = (),
                     expected_revision: int | None = None, absent: tuple[str, ...] = ()) -> TransactWriteItemTypeDef:
        """The head's part of a write: ``revision`` bumped, ``values`` set, ``remove`` removed; the head must exist
        (and have none of ``absent``)."""
        names = {f"#{key}": key for key in (*values, *remove, *absent, "revision")}
        attributes: dict[str, Any] = {f":{key}": ({"N": str(v)} if isinstance(v, int) else {"S": v})
                                      for key, v in values.items()}
        attributes[":one"] = {"N": "1"}
        condition = "attribute_exists(#revision)"
        if expected_revision is not None:
            condition = "#revision = :revision"
            attributes[":revision"] = {"N": str(expected_revision)}
        condition += "".join(f" AND attribute_not_exists(#{key})" for key in absent)
        expression = "SET " + ", ".join(["#revision = #revision + :one", *(f"#{key} = :{key}" for key in values)])
        if remove:
            expression += " REMOVE " + ", ".join(f"#{key}" for key in remove)
        return {"Update": {
            "TableName": self.table, "Key": {"version": {"N": str(HEAD_VERSION)}}, "UpdateExpression": expression,
            "ConditionExpression": condition, "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": attributes,
        }}

    async def _transact(self, what: str, items: list[TransactWriteItemTypeDef]) -> None:
        # One token for every attempt: a retry after a lost response is then the same request to DynamoDB,
        # which answers success instead of failing the conditions its first attempt already changed.
        token = uuid.uuid4().hex
        await self._write(what, "TransactWriteItems", lambda db: db.transact_write_items(
            TransactItems=items, ClientRequestToken=token))

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
            if exc.code in CONFLICT_CODES and operation != "PutItem" and await self.head() is None:
                raise RotationError("no_head", f"{what} in {self.table}: the registry has no head (version 0): "
                                               "`jwksd keys init-table` or `jwksd keys rotate` writes it") from exc
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
