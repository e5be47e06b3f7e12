"""The ``kms`` backend: keys made and used inside AWS KMS (CreateKey, GetPublicKey, Sign, ScheduleKeyDeletion).

Private keys never leave KMS. Messages are signed as RAW, which KMS limits to 4096 bytes.
"""

from __future__ import annotations

import contextlib
from typing import Any

from jwksd.config import RotationConfig
from jwksd.errors import RotationError
from jwksd.rotation.aws import Client
from jwksd.rotation.backends import NewKey, check_kid
from jwksd.rotation.keys import KMS_SIGNING_ALGORITHMS, jwk_from_spki, jws_signature
from jwksd.rotation.policy import KeyRecord

MAX_RAW_MESSAGE = 4096


async def kms_public_jwk(kms: Client, key_id: str, alg: str) -> dict[str, Any]:
    """The public JWK of a KMS key (GetPublicKey returns DER SubjectPublicKeyInfo)."""
    response = await kms.call("GetPublicKey", KeyId=key_id)
    return jwk_from_spki(bytes(response["PublicKey"]), alg)


class KmsBackend:
    """Signing keys held by KMS, tagged with the registry table, version and kid."""

    name = "kms"

    def __init__(self, kms: Client, config: RotationConfig) -> None:
        self.kms = kms
        self.config = config

    async def create(self, version: int) -> NewKey:
        response = await self.kms.call(
            "CreateKey", KeySpec=self.config.key_spec, KeyUsage="SIGN_VERIFY",
            Description=f"jwksd signing key, version {version} of registry {self.config.table}",
            Tags=[{"TagKey": "jwksd-table", "TagValue": self.config.table},
                  {"TagKey": "jwksd-version", "TagValue": str(version)}])
        arn = str(response["KeyMetadata"]["Arn"])
        try:
            jwk = await kms_public_jwk(self.kms, arn, self.config.alg)
            await self.kms.call("TagResource", KeyId=arn, Tags=[{"TagKey": "jwksd-kid", "TagValue": jwk["kid"]}])
        except RotationError:
            with contextlib.suppress(RotationError):  # best effort: an unrecorded key would only cost money
                await self.destroy(arn, 7)
            raise
        return NewKey(arn, jwk, store_public=False)

    async def public_jwk(self, record: KeyRecord) -> dict[str, Any]:
        return check_kid(await kms_public_jwk(self.kms, record.key_ref, record.alg), record)

    async def sign(self, record: KeyRecord, data: bytes) -> bytes:
        if len(data) > MAX_RAW_MESSAGE:
            raise RotationError("too_large", f"the JWS signing input is {len(data)} bytes: KMS signs at most "
                                             f"{MAX_RAW_MESSAGE}")
        response = await self.kms.call("Sign", KeyId=record.key_ref, Message=data, MessageType="RAW",
                                       SigningAlgorithm=KMS_SIGNING_ALGORITHMS[record.alg])
        return jws_signature(record.alg, bytes(response["Signature"]))

    async def destroy(self, key_ref: str, window_days: int) -> None:
        # By key id: the rotator made the key in its own region, and moto resolves only ids here.
        key_id = key_ref.rpartition(":key/")[2] or key_ref
        try:
            await self.kms.call("ScheduleKeyDeletion", KeyId=key_id, PendingWindowInDays=window_days)
        except RotationError as exc:
            if exc.code == "NotFoundException":
                return
            if exc.code == "KMSInvalidStateException":
                described = await self.kms.call("DescribeKey", KeyId=key_id)
                if described["KeyMetadata"].get("KeyState") == "PendingDeletion":
                    return  # another rotator, or an earlier interrupted step, got there first
            raise
