"""``jwksd keys publish``: the published keys (pending, active, retired) as a JWK Set in a Secrets Manager secret.

Written only when it changed, so the secret's versions mark the rotation's steps and a daemon
reading it serves exactly the registry's published set.
"""

from __future__ import annotations

import json
from typing import Any

from jwksd.errors import AwsError, RotationError
from jwksd.registry import KeyRecord, check_kid, published
from jwksd.rotation.keyring import Keyring


async def published_jwks(ring: Keyring) -> list[dict[str, Any]]:
    """The public JWKs of the published keys, newest first (a local key's from its item, whatever the backend)."""
    return [await _public(ring, record) for record in published(await ring.registry.records())]


async def _public(ring: Keyring, record: KeyRecord) -> dict[str, Any]:
    if record.public_jwk is not None:
        return check_kid(dict(record.public_jwk), record)
    return await ring.backend_for(record).public_jwk(record)


async def publish(ring: Keyring, secret_id: str) -> str:
    """Write the JWK Set to ``secret_id`` (created if missing) unless it already holds it; one line saying which."""
    if ring.secrets is None:
        raise RotationError("no_client", "publishing needs a Secrets Manager client")
    keys = await published_jwks(ring)
    if not keys:
        return f"nothing to publish: {ring.config.table} has no published key yet"
    document = {"keys": keys}
    kids = ",".join(key["kid"] for key in keys)
    secrets = ring.secrets
    try:
        current = await secrets.call("GetSecretValue", lambda sm: sm.get_secret_value(SecretId=secret_id))
    except AwsError as exc:
        if exc.code != "ResourceNotFoundException":
            raise
        await secrets.call("CreateSecret", lambda sm: sm.create_secret(
            Name=secret_id, SecretString=json.dumps(document),
            Description=f"jwksd: the published keys of registry {ring.config.table}"))
        return f"published {len(keys)} keys to new secret {secret_id}: {kids}"
    try:
        unchanged = json.loads(current.get("SecretString") or "null") == document
    except ValueError:
        unchanged = False
    if unchanged:
        return f"unchanged: {secret_id} already holds the {len(keys)} published keys"
    await secrets.call("PutSecretValue", lambda sm: sm.put_secret_value(SecretId=secret_id,
                                                                        SecretString=json.dumps(document)))
    return f"published {len(keys)} keys to {secret_id}: {kids}"
