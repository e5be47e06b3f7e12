"""The ``local`` backend: key pairs made here with ``cryptography``; each private JWK in a secret of its own.

The secret is ``<private_secret_prefix>/<kid>``: one secret per key means creating it cannot
overwrite another rotator's key, and deleting it is DeleteSecret with a recovery window, like KMS.
The public JWK is kept in the registry item, so the daemon never needs the private secrets.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from jwksd.aws.registry import KeyRecord, check_kid, public_jwk
from jwksd.config import RotationConfig
from jwksd.errors import AwsError, RotationError
from jwksd.rotation.backends import CREATION_ID_TAG, NewKey
from jwksd.rotation.keys import PrivateKey, generate, load_private_jwk, private_jwk, sign_local

if TYPE_CHECKING:
    from types_aiobotocore_secretsmanager import SecretsManagerClient

    from jwksd.aws import Client

PUBLIC_MEMBERS = ("kid", "use", "alg", "kty", "crv", "n", "e", "x", "y")


class LocalBackend:
    """Signing keys whose private halves live in Secrets Manager."""

    name = "local"

    def __init__(self, secrets: Client[SecretsManagerClient], config: RotationConfig) -> None:
        self.secrets = secrets
        self.config = config

    async def create(self, version: int, *, key_spec: str, alg: str, creation_id: str) -> NewKey:
        private = await asyncio.to_thread(generate, key_spec)  # RSA generation takes a while
        secret = private_jwk(private, alg)
        public = {name: secret[name] for name in PUBLIC_MEMBERS if name in secret}
        response = await self.secrets.call("CreateSecret", lambda secrets: secrets.create_secret(
            Name=f"{self.config.private_secret_prefix}/{public['kid']}", SecretString=json.dumps(secret),
            Description=f"jwksd private signing key, version {version} of registry {self.config.table}",
            Tags=[{"Key": "jwksd-table", "Value": self.config.table}, {"Key": "jwksd-kid", "Value": public["kid"]},
                  {"Key": CREATION_ID_TAG, "Value": creation_id}]))
        return NewKey(str(response["ARN"]), public, store_public=True)

    async def public_jwk(self, record: KeyRecord) -> dict[str, Any]:
        if record.public_jwk is None:
            raise RotationError("bad_item", f"registry version {record.version}: a local key without public_jwk")
        return check_kid(dict(record.public_jwk), record)

    async def sign(self, record: KeyRecord, data: bytes) -> bytes:
        return sign_local(await self.private_key(record), record.alg, data)

    async def private_key(self, record: KeyRecord) -> PrivateKey:
        """The recorded key's private half, read from its secret, its kid checked (``jwksd signer`` keeps it)."""
        response = await self.secrets.call("GetSecretValue", lambda secrets: secrets.get_secret_value(
            SecretId=record.key_ref))
        try:
            jwk = json.loads(response.get("SecretString") or "")
        except ValueError as exc:
            raise RotationError("bad_private_key", f"registry version {record.version}: the private key secret "
                                                   "is not JSON") from exc
        private = load_private_jwk(jwk)
        check_kid(public_jwk(private.public_key(), record.alg), record)
        return private

    async def check_usable(self, record: KeyRecord) -> None:
        await self.sign(record, b"jwksd: the private key can sign")  # reads it and checks its kid

    async def disable(self, key_ref: str) -> None:
        return None  # the private JWK is only in its secret, which destroy deletes at once

    async def destroy(self, key_ref: str, window_days: int) -> None:
        try:
            await self.secrets.call("DeleteSecret", lambda secrets: secrets.delete_secret(
                SecretId=key_ref, RecoveryWindowInDays=window_days))
        except AwsError as exc:
            # Not found: gone already. InvalidRequest: already scheduled for deletion.
            if exc.code not in ("ResourceNotFoundException", "InvalidRequestException"):
                raise
