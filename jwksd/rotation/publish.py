"""``jwksd keys publish``: the published keys (pending, active, retired, external) as a JWK Set in a secret.

Written only when it changed, so the secret's versions mark the rotation's steps and a daemon
reading it serves exactly the registry's published set. Only after a publish succeeded is the
pending key's ``first_published`` recorded: a failed publish holds its promotion back. Keys the
secret holds and the registry does not know are never dropped silently (``external.py``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import structlog

from jwksd.aws.registry import KeyRecord, check_kid, published
from jwksd.errors import AwsError, RotationError
from jwksd.redact import public_url
from jwksd.rotation.external import REFUSE, Foreign, Migration, external_records, foreign, refusal
from jwksd.rotation.keyring import Keyring
from jwksd.status import iso_time

log = structlog.get_logger("jwksd.rotation")


async def _public(ring: Keyring, record: KeyRecord) -> dict[str, Any]:
    if record.public_jwk is not None:
        return check_kid(dict(record.public_jwk), record)
    return await ring.backend_for(record).public_jwk(record)


async def publish(ring: Keyring, secret_id: str, *, now: int | None = None,
                  migration: Migration = REFUSE) -> str:
    """Write the JWK Set to ``secret_id`` (created if missing) unless it already holds it; lines saying what happened.

    Keys the secret holds and the registry does not know are refused (RotationError naming them) unless
    ``migration`` adopts them (recorded as external keys, published with the rest) or replaces them.
    """
    if ring.secrets is None:
        raise RotationError("no_client", "publishing needs a Secrets Manager client")
    records = await ring.registry.records()
    keys = [await _public(ring, record) for record in published(records)]
    if not keys:
        return f"nothing to publish: {ring.config.table} has no published key yet"
    secrets = ring.secrets
    try:
        current = await secrets.call("GetSecretValue", lambda sm: sm.get_secret_value(SecretId=secret_id))
    except AwsError as exc:
        if exc.code != "ResourceNotFoundException":
            raise
        document = {"keys": keys}
        await secrets.call("CreateSecret", lambda sm: sm.create_secret(
            Name=secret_id, SecretString=json.dumps(document),
            Description=f"jwksd: the published keys of registry {ring.config.table}"))
        return f"published {len(keys)} keys to new secret {secret_id}: {_kids(keys)}"
    content = current.get("SecretString")
    lines: list[str] = []
    gone = {record.kid for record in records if record.status == "revoked"}
    found = foreign(content, records)
    if found:
        lines = await _migrate(ring, secret_id, found, records, now=int(time.time()) if now is None else now,
                               migration=migration)
        keys = [await _public(ring, record) for record in published(await ring.registry.records())]
        gone |= {key["kid"] for key in found.keys} if migration.replace else set()
    text = json.dumps({"keys": keys})
    try:
        unchanged = json.loads(content or "null") == {"keys": keys}
    except ValueError:
        unchanged = False
    if unchanged:
        lines.append(f"unchanged: {secret_id} already holds the {len(keys)} published keys")
    else:
        await secrets.call("PutSecretValue", lambda sm: sm.put_secret_value(SecretId=secret_id, SecretString=text))
        lines.append(f"published {len(keys)} keys to {secret_id}: {_kids(keys)}")
    return "\n".join([*lines, *await _flush_previous(ring, secret_id, text, gone)])


async def _flush_previous(ring: Keyring, secret_id: str, text: str, gone: set[str]) -> list[str]:
    """Write ``text`` once more when AWSPREVIOUS holds a revoked or replaced kid: daemons read that stage too
    (the default ``version_stages``), and would keep serving it until the publish after."""
    if not gone or ring.secrets is None:
        return []
    secrets = ring.secrets
    try:
        previous = await secrets.call("GetSecretValue", lambda sm: sm.get_secret_value(
            SecretId=secret_id, VersionStage="AWSPREVIOUS"))
    except AwsError as exc:
        if exc.code == "ResourceNotFoundException":
            return []  # no previous version
        raise
    held = sorted(gone & {key["kid"] for key in foreign(previous.get("SecretString"), ()).keys})
    if not held:
        return []
    await secrets.call("PutSecretValue", lambda sm: sm.put_secret_value(SecretId=secret_id, SecretString=text))
    log.warning("key_flushed_from_previous", secret_id=secret_id, kids=held)
    return [f"published again: the AWSPREVIOUS of {secret_id} held {', '.join(held)}, which daemons reading "
            "that stage would keep serving"]


def _kids(keys: Sequence[dict[str, Any]]) -> str:
    return ",".join(key["kid"] for key in keys)


async def _migrate(ring: Keyring, secret_id: str, found: Foreign, records: Sequence[KeyRecord], *, now: int,
                   migration: Migration) -> list[str]:
    """Adopt or replace what ``found`` lists (the lines saying so), or refuse."""
    if migration.replace:
        log.warning("keys_replaced", secret_id=secret_id, kids=[key["kid"] for key in found.keys])
        return [f"replaced: {secret_id} no longer holds {found.describe()}"]
    if not migration.adopt or not found.keys:
        raise refusal(secret_id, ring.config.table, found)
    until = now + ring.policy.retire_grace_s if migration.adopt_until is None else migration.adopt_until
    if until <= now:
        raise RotationError("adopt_until_past", f"--adopt-until {iso_time(until)} is not after now "
                                                f"({iso_time(now)}); --replace drops the keys instead")
    lines = [f"left out of {secret_id}: {', '.join(found.dropped)}"] if found.dropped else []
    for record in external_records(found, records, secret_id, now, until):
        await ring.registry.add(record)
        lines.append(f"adopted v{record.version} kid={record.kid} state=external expires={iso_time(until)}")
        log.info("key_adopted", version=record.version, kid=record.kid, expires=until)
    return lines


VERIFY_TIMEOUT_S = 10.0


async def confirm_published(ring: Keyring, now: int, *, verify_urls: Sequence[str] = (),
                            records: Sequence[KeyRecord] | None = None) -> list[str]:
    """Record ``first_published`` = ``now`` on the pending key not yet confirmed, once every verify URL serves it.

    Called only after a publish succeeded (or, on the dynamodb source, with the registry itself
    served): promotion counts ``publish_ahead_s`` from this time, so a failed publish delays it.
    """
    lines = []
    for record in records if records is not None else await ring.registry.records():
        if record.status != "pending" or record.first_published is not None:
            continue
        reasons = [(url, reason) for url in verify_urls if (reason := await not_served(url, record.kid))]
        if reasons:
            url, reason = public_url(reasons[0][0]), reasons[0][1]  # a URL may carry a credential
            lines.append(f"unconfirmed v{record.version} kid={record.kid} reason='{reason}' url={url}")
            log.warning("key_publish_unconfirmed", version=record.version, kid=record.kid, reason=reason, url=url)
            continue
        await ring.registry.confirm_published(record, now)
        promotable = iso_time(now + ring.policy.publish_ahead_s)
        lines.append(f"confirmed v{record.version} kid={record.kid} promotable_from={promotable}")
        log.info("key_publish_confirmed", version=record.version, kid=record.kid)
    return lines


async def not_served(url: str, kid: str) -> str | None:
    """Why ``url`` does not serve ``kid`` (None when it does)."""
    try:
        timeout = aiohttp.ClientTimeout(total=VERIFY_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            if response.status != 200:
                return f"HTTP {response.status}"
            document = json.loads(await response.read())
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"cannot fetch: {type(exc).__name__}"
    except ValueError:
        return "not JSON"
    keys = document.get("keys") if isinstance(document, dict) else None
    kids = {key.get("kid") for key in keys if isinstance(key, dict)} if isinstance(keys, list) else set()
    return None if kid in kids else "the pending kid is not served there"
