"""The ``kms`` backend: keys made and used inside AWS KMS (CreateKey, GetPublicKey, Sign, ScheduleKeyDeletion).

Private keys never leave KMS. Messages are signed as RAW, which KMS limits to 4096 bytes.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, cast

from jwksd.aws.registry import KeyRecord, check_kid, kms_public_jwk
from jwksd.config import RotationConfig
from jwksd.errors import AwsError, JwksdError, RotationError
from jwksd.rotation.backends import CREATION_ID_TAG, NewKey
from jwksd.rotation.keys import KMS_SIGNING_ALGORITHMS, jws_signature

if TYPE_CHECKING:
    from types_aiobotocore_kms import KMSClient
    from types_aiobotocore_kms.literals import KeySpecType, SigningAlgorithmSpecType

    from jwksd.aws import Client

MAX_RAW_MESSAGE = 4096


class KmsBackend:
    """Signing keys held by KMS, tagged with the registry table, version and kid."""

    name = "kms"

    def __init__(self, kms: Client[KMSClient], config: RotationConfig) -> None:
        self.kms = kms
        self.config = config

    async def create(self, version: int, *, key_spec: str, alg: str, creation_id: str) -> NewKey:
        spec = cast("KeySpecType", key_spec)  # a key of KEY_SPEC_ALGS, checked by the config reader
        response = await self.kms.call("CreateKey", lambda kms: kms.create_key(
            KeySpec=spec, KeyUsage="SIGN_VERIFY",
            Description=f"jwksd signing key, version {version} of registry {self.config.table}",
            Tags=[{"TagKey": "jwksd-table", "TagValue": self.config.table},
                  {"TagKey": "jwksd-version", "TagValue": str(version)},
                  {"TagKey": CREATION_ID_TAG, "TagValue": creation_id}]))
        arn = str(response["KeyMetadata"]["Arn"])
        try:
            jwk = await kms_public_jwk(self.kms, arn, alg)
            await self.kms.call("TagResource", lambda kms: kms.tag_resource(
                KeyId=arn, Tags=[{"TagKey": "jwksd-kid", "TagValue": jwk["kid"]}]))
        except JwksdError:
            with contextlib.suppress(JwksdError):  # best effort: an unrecorded key would only cost money
                await self.destroy(arn, 7)
            raise
        return NewKey(arn, jwk, store_public=False)

    async def public_jwk(self, record: KeyRecord) -> dict[str, Any]:
        return check_kid(await kms_public_jwk(self.kms, record.key_ref, record.alg), record)

    async def sign(self, record: KeyRecord, data: bytes) -> bytes:
        if len(data) > MAX_RAW_MESSAGE:
            raise RotationError("too_large", f"the JWS signing input is {len(data)} bytes: KMS signs at most "
                                             f"{MAX_RAW_MESSAGE}")
        algorithm = cast("SigningAlgorithmSpecType", KMS_SIGNING_ALGORITHMS[record.alg])
        response = await self.kms.call("Sign", lambda kms: kms.sign(
            KeyId=record.key_ref, Message=data, MessageType="RAW", SigningAlgorithm=algorithm))
        return jws_signature(record.alg, bytes(response["Signature"]))

    async def check_usable(self, record: KeyRecord) -> None:
        key_id = record.key_ref.rpartition(":key/")[2] or record.key_ref
        described = await self.kms.call("DescribeKey", lambda kms: kms.describe_key(KeyId=key_id))
        state = described["KeyMetadata"].get("KeyState")
        if state != "Enabled":
            raise RotationError("key_unusable", f"registry version {record.version} kid={record.kid}: its KMS key "
                                                f"is {state}, not Enabled; it was not promoted")
        await self.public_jwk(record)  # kid_mismatch when the key behind the ARN is not the recorded one

    async def disable(self, key_ref: str) -> None:
        key_id = key_ref.rpartition(":key/")[2] or key_ref
        try:
            await self.kms.call("DisableKey", lambda kms: kms.disable_key(KeyId=key_id))
        except AwsError as exc:
            if exc.code == "NotFoundException":
                return
            if exc.code == "KMSInvalidStateException":
                described = await self.kms.call("DescribeKey", lambda kms: kms.describe_key(KeyId=key_id))
                if described["KeyMetadata"].get("KeyState") in ("Disabled", "PendingDeletion"):
                    return  # unusable already
            raise

    async def destroy(self, key_ref: str, window_days: int) -> None:
        # By key id: the rotator made the key in its own region, and moto resolves only ids here.
        key_id = key_ref.rpartition(":key/")[2] or key_ref
        try:
            await self.kms.call("ScheduleKeyDeletion", lambda kms: kms.schedule_key_deletion(
                KeyId=key_id, PendingWindowInDays=window_days))
        except AwsError as exc:
            if exc.code == "NotFoundException":
                return
            if exc.code == "KMSInvalidStateException":
                described = await self.kms.call("DescribeKey", lambda kms: kms.describe_key(KeyId=key_id))
                if described["KeyMetadata"].get("KeyState") == "PendingDeletion":
                    return  # another rotator, or an earlier interrupted step, got there first
            raise
