"""The registry's read side (jwksd/aws/registry.py): items to records and back, bad items named, public keys."""

from __future__ import annotations

import json
import uuid
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from jwksd import aws
from jwksd.aws.registry import (
    KeyRecord,
    RegistryReader,
    check_kid,
    from_item,
    jwk_from_spki,
    kms_public_jwk,
    public_jwk,
    published,
    to_item,
)
from jwksd.aws.retry import NO_RETRIES
from jwksd.errors import RotationError
from jwksd.rotation.registry import TABLE_DEFINITION
from jwksd.validate.jwk import thumbprint
from tests.conftest import REGION

PUBLIC = public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), "ES256")
RECORD = KeyRecord(version=3, kid=PUBLIC["kid"], status="retired", backend="local", key_ref="arn:secret", alg="ES256",
                   key_spec="ECC_NIST_P256", created=100, publish_from=100, activated=200, retired=300, expires=400,
                   public_jwk=PUBLIC)


def endpoint_at(url: str) -> aws.Endpoint:
    return aws.Endpoint(REGION, url, 5.0, 10.0)


def test_item_round_trip() -> None:
    """A record survives the trip through its DynamoDB item; unset times are left out of the item."""
    item = to_item(RECORD)
    assert "expired" not in item and item["version"] == {"N": "3"}
    assert from_item(item) == RECORD
    bare = replace(RECORD, status="pending", activated=None, retired=None, expires=None, public_jwk=None)
    assert from_item(to_item(bare)) == bare
    made = replace(RECORD, creation_id="5f0c9e2b7d6a4e1f8a3b2c1d0e9f8a7b")
    assert to_item(made)["creation_id"] == {"S": made.creation_id} and from_item(to_item(made)) == made
    assert "creation_id" not in item


@pytest.mark.parametrize(("change", "message"), [
    ({"version": None}, "registry item: no version"),
    ({"version": {"N": "three"}}, "registry item: version is not a whole number"),
    ({"kid": None}, "registry item version 3: kid is missing or not a string"),
    ({"backend": {"S": ""}}, "registry item version 3: backend is missing or not a string"),
    ({"status": {"S": "lost"}}, "registry item version 3: status 'lost' is not one of pending, active, retired, "
                                "expired, revoked, external"),
    ({"publish_from": None}, "registry item version 3: created and publish_from are required"),
    ({"activated": {"N": "soon"}}, "registry item version 3: activated is not a whole number"),
    ({"public_jwk": {"S": "{"}}, "registry item version 3: public_jwk is not JSON"),
    ({"creation_id": {"N": "7"}}, "registry item version 3: creation_id is not a string"),
])
def test_bad_items_are_named(change: dict[str, Any], message: str) -> None:
    """An item no rotator wrote is refused with the version and the attribute that is wrong."""
    item = {**to_item(RECORD), **change}
    item = {name: value for name, value in item.items() if value is not None}
    with pytest.raises(RotationError) as info:
        from_item(item)
    assert str(info.value) == f"bad_item: {message}"


def test_published_is_newest_first_without_expired() -> None:
    """Pending, active and retired keys are published, newest first; expired ones are not."""
    records = [replace(RECORD, version=v, status=s) for v, s in
               ((1, "expired"), (2, "retired"), (4, "pending"), (3, "active"))]
    assert [(r.version, r.status) for r in published(records)] == [(4, "pending"), (3, "active"), (2, "retired")]


def test_kid_must_be_the_thumbprint() -> None:
    """A public key whose thumbprint is not the recorded kid is refused: the registry and the key disagree."""
    assert check_kid(dict(PUBLIC), RECORD) == PUBLIC
    with pytest.raises(RotationError) as info:
        check_kid(dict(PUBLIC), replace(RECORD, kid="other"))
    assert str(info.value) == "kid_mismatch: registry version 3: the key's thumbprint is not the recorded kid"


def test_unsupported_public_keys_are_refused() -> None:
    """A curve JWS cannot name (secp256k1 is not offered by rotation) is refused, not served."""
    with pytest.raises(RotationError, match="unsupported_key"):
        public_jwk(ec.generate_private_key(ec.SECP256K1()).public_key(), "ES256K")
    with pytest.raises(RotationError, match="bad_public_key"):
        jwk_from_spki(b"not der", "ES256")


async def test_kms_public_key_is_a_jwk(moto_endpoint: str) -> None:
    """GetPublicKey's DER becomes the key's public JWK, its kid the RFC 7638 thumbprint."""
    kms = boto3.client("kms", endpoint_url=moto_endpoint, region_name=REGION)
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    async with AsyncExitStack() as stack:
        client = await aws.kms(stack, endpoint_at(moto_endpoint), NO_RETRIES)
        jwk = await kms_public_jwk(client, key_id, "ES256")
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")
    assert jwk["kid"] == thumbprint(jwk)


async def test_records_are_read_oldest_first(moto_endpoint: str) -> None:
    """Every item of the table is read back as a record, in version order whatever the scan order."""
    table = f"jwksd-test-{uuid.uuid4().hex[:12]}"
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name=REGION)
    dynamodb.create_table(**{**TABLE_DEFINITION, "TableName": table, "DeletionProtectionEnabled": False})
    versions = [7, 2, 11, 5]
    for version in versions:
        dynamodb.put_item(TableName=table, Item=to_item(replace(RECORD, version=version)))
    async with AsyncExitStack() as stack:
        reader = RegistryReader(await aws.dynamodb(stack, endpoint_at(moto_endpoint), NO_RETRIES), table)
        records = await reader.records()
    assert [r.version for r in records] == sorted(versions)
    assert records[0] == replace(RECORD, version=2)
    assert json.loads(to_item(records[0])["public_jwk"]["S"]) == PUBLIC
