"""The registry head (jwksd/aws/head.py) and its reads: the stored policy, the pointers, the revision."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

import boto3
import pytest

from jwksd import aws
from jwksd.aws.head import head_from_item, head_item
from jwksd.aws.registry import RegistryHead, RegistryPolicy, RegistryReader, to_item
from jwksd.aws.retry import NO_RETRIES
from jwksd.errors import RotationError
from jwksd.rotation.registry import TABLE_DEFINITION
from tests.conftest import REGION
from tests.test_aws_registry import RECORD, endpoint_at

POLICY = RegistryPolicy(rotate_every_s=2592000, publish_ahead_s=1500, retire_grace_s=172800,
                        max_token_lifetime_s=3600, alg="ES256", key_spec="ECC_NIST_P256")
HEAD = RegistryHead(policy=POLICY, active_version=3, pending_version=4, revision=12)


def test_head_round_trip() -> None:
    """A head becomes the item version 0 and back; a pointer that is None is left out of the item."""
    assert head_from_item(head_item(HEAD)) == HEAD
    bare = replace(HEAD, active_version=None, pending_version=None, revision=0)
    item = head_item(bare)
    assert "active_version" not in item and "pending_version" not in item and item["version"] == {"N": "0"}
    assert head_from_item(item) == bare


@pytest.mark.parametrize(("change", "message"), [
    ({"alg": None}, "registry head (version 0): alg is missing or not a string"),
    ({"retire_grace_s": None}, "registry head (version 0): retire_grace_s is missing"),
    ({"revision": {"N": "x"}}, "registry head (version 0): revision is not a whole number"),
    ({"pending_version": {"S": "4"}}, "registry head (version 0): pending_version is not a whole number"),
    ({"rotate_every_s": {"N": "-86400"}}, "registry head (version 0): rotate_every_s is -86400: expected 1 or more"),
    ({"max_token_lifetime_s": {"N": "0"}}, "registry head (version 0): max_token_lifetime_s is 0: expected 1 or more"),
    ({"revision": {"N": "-1"}}, "registry head (version 0): revision is -1: expected 0 or more"),
    ({"active_version": {"N": "0"}}, "registry head (version 0): active_version is 0: expected 1 or more"),
    ({"pending_version": {"N": "3"}}, "registry head (version 0): active_version and pending_version are both 3"),
])
def test_bad_heads_are_named(change: dict[str, Any], message: str) -> None:
    """A head item that is not what jwksd writes is refused, naming the attribute."""
    item = {key: value for key, value in {**head_item(HEAD), **change}.items() if value is not None}
    with pytest.raises(RotationError) as info:
        head_from_item(item)
    assert (info.value.code, info.value.message) == ("bad_item", message)


async def test_head_and_record_reads(moto_endpoint: str) -> None:
    """head() and record() are GetItems (None when absent); records() lists the keys and never the head."""
    table = f"jwksd-test-{uuid.uuid4().hex[:12]}"
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name=REGION)
    dynamodb.create_table(**{**TABLE_DEFINITION, "TableName": table, "DeletionProtectionEnabled": False})
    async with AsyncExitStack() as stack:
        reader = RegistryReader(await aws.dynamodb(stack, endpoint_at(moto_endpoint), NO_RETRIES), table)
        assert await reader.head() is None
        dynamodb.put_item(TableName=table, Item=head_item(HEAD))
        dynamodb.put_item(TableName=table, Item=to_item(RECORD))
        assert await reader.head() == HEAD
        assert await reader.record(RECORD.version) == RECORD
        assert await reader.record(99) is None
        assert await reader.records() == [RECORD]
        with pytest.raises(RotationError, match="registry version 0 is the head, not a key"):
            await reader.record(0)
