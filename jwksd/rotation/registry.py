"""The key registry in DynamoDB: one item per key, keyed by ``version``, every change a conditional write.

Creating version v+1 is ``attribute_not_exists(version)``, so two rotators that saw the same
registry cannot both add a key; a promotion is one transaction that moves the pending key to
active and the active one to retired, each on the condition of its expected status; expiring is
conditional on ``retired``. A write that loses raises RegistryConflict.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from jwksd.errors import RegistryConflict, RotationError
from jwksd.rotation.aws import Client
from jwksd.rotation.policy import STATUSES, KeyRecord, Status

# Also in config/jwksd-keys-table.json, for `aws dynamodb create-table --cli-input-json`.
TABLE_DEFINITION: dict[str, Any] = {
    "TableName": "jwksd-keys",
    "AttributeDefinitions": [{"AttributeName": "version", "AttributeType": "N"}],
    "KeySchema": [{"AttributeName": "version", "KeyType": "HASH"}],
    "BillingMode": "PAY_PER_REQUEST",
    "DeletionProtectionEnabled": True,
    "Tags": [{"Key": "jwksd", "Value": "key-registry"}],
}
CONFLICT_CODES = frozenset({"ConditionalCheckFailedException", "TransactionCanceledException",
                            "TransactionConflictException"})
_STRINGS = ("kid", "status", "backend", "key_ref", "alg", "key_spec")
_TIMES = ("created", "publish_from", "activated", "retired", "expires", "expired")


def to_item(record: KeyRecord) -> dict[str, Any]:
    """The DynamoDB item of a record (unset times are left out)."""
    item: dict[str, Any] = {"version": {"N": str(record.version)}}
    for name in _STRINGS:
        item[name] = {"S": str(getattr(record, name))}
    for name in _TIMES:
        value = getattr(record, name)
        if value is not None:
            item[name] = {"N": str(value)}
    if record.public_jwk is not None:
        item["public_jwk"] = {"S": json.dumps(record.public_jwk, sort_keys=True)}
    return item


def from_item(item: Mapping[str, Any]) -> KeyRecord:
    """The record of a DynamoDB item; RotationError names the first thing wrong with it."""
    version = _number(item, "version", "?")
    label = f"registry item version {version}"
    if version is None:
        raise RotationError("bad_item", f"{label}: no numeric version")
    strings: dict[str, str] = {}
    for name in _STRINGS:
        value = item.get(name, {}).get("S")
        if not isinstance(value, str) or not value:
            raise RotationError("bad_item", f"{label}: {name} is missing or not a string")
        strings[name] = value
    if strings["status"] not in STATUSES:
        raise RotationError("bad_item", f"{label}: status {strings['status']!r} is not one of {', '.join(STATUSES)}")
    times = {name: _number(item, name, label) for name in _TIMES}
    if times["created"] is None or times["publish_from"] is None:
        raise RotationError("bad_item", f"{label}: created and publish_from are required")
    public = None
    if "public_jwk" in item:
        try:
            public = json.loads(item["public_jwk"].get("S", ""))
        except ValueError as exc:
            raise RotationError("bad_item", f"{label}: public_jwk is not JSON") from exc
    return KeyRecord(
        version=version, kid=strings["kid"], status=strings["status"], backend=strings["backend"],
        key_ref=strings["key_ref"], alg=strings["alg"], key_spec=strings["key_spec"],
        created=times["created"], publish_from=times["publish_from"], activated=times["activated"],
        retired=times["retired"], expires=times["expires"], expired=times["expired"], public_jwk=public)


def _number(item: Mapping[str, Any], name: str, label: str) -> int | None:
    if name not in item:
        return None
    try:
        return int(item[name]["N"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RotationError("bad_item", f"{label}: {name} is not a whole number") from exc


class Registry:
    """Reads and conditionally writes one registry table."""

    def __init__(self, client: Client, table: str) -> None:
        self.client = client
        self.table = table

    async def records(self) -> list[KeyRecord]:
        """Every key, oldest first, from a strongly consistent scan (the table holds a few items a year)."""
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        while True:
            response = await self.client.call("Scan", **params)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return sorted((from_item(item) for item in items), key=lambda r: r.version)

    async def add(self, record: KeyRecord) -> None:
        """Record a new key under a version nobody has used."""
        await self._write(f"adding version {record.version}", "PutItem", TableName=self.table,
                          Item=to_item(record), ConditionExpression="attribute_not_exists(version)")

    async def promote(self, pending: KeyRecord, active: KeyRecord | None, now: int, grace_s: int) -> None:
        """Activate ``pending`` and retire ``active`` at ``now`` in one transaction."""
        items = [self._update(pending, "pending", {"status": "active", "activated": now})]
        if active is not None:
            items.append(self._update(active, "active", {"status": "retired", "retired": now,
                                                         "expires": now + grace_s}))
        await self._write(f"activating version {pending.version}", "TransactWriteItems", TransactItems=items)

    async def expire(self, record: KeyRecord, now: int) -> None:
        """Mark a retired key expired."""
        update = self._update(record, "retired", {"status": "expired", "expired": now})["Update"]
        await self._write(f"expiring version {record.version}", "UpdateItem", **update)

    def _update(self, record: KeyRecord, expected: Status, values: Mapping[str, str | int]) -> dict[str, Any]:
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

    async def _write(self, what: str, operation: str, **params: Any) -> None:
        try:
            await self.client.call(operation, **params)
        except RotationError as exc:
            if exc.code in CONFLICT_CODES:
                raise RegistryConflict(f"{what} in {self.table}: another rotator changed the registry first") from exc
            raise

    async def create_table(self, wait_s: float = 60.0) -> bool:
        """Create the table from TABLE_DEFINITION and wait (bounded) until it is active; False if it existed."""
        try:
            await self.client.call("CreateTable", **{**TABLE_DEFINITION, "TableName": self.table})
        except RotationError as exc:
            if exc.code != "ResourceInUseException":
                raise
            return False
        try:
            async with asyncio.timeout(wait_s):
                while True:
                    described = await self.client.call("DescribeTable", TableName=self.table)
                    if described["Table"].get("TableStatus") == "ACTIVE":
                        return True
                    await asyncio.sleep(1.0)
        except TimeoutError as exc:
            raise RotationError("timeout", f"table {self.table} not ACTIVE after {wait_s:g}s", retryable=True) from exc
