"""``jwksd keys gc``: find the keys and private secrets jwksd made that no registry item names, and delete them.

A rotate that fails after KMS CreateKey (the registry write denied, the process killed) leaves a key
tagged ``jwksd-table=<table>`` that nothing records. A key is known when an item records its creation
id (the ``jwksd-creation-id`` tag it was made with) or, for items written before creation ids, its
ARN. Each unknown one older than ``MIN_AGE_S`` (a rotate may still be recording a younger one) is
listed; with ``apply`` its deletion is scheduled (KMS: disabled first). Keys already pending
deletion are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jwksd.aws.registry import KeyRecord
from jwksd.rotation.backends import CREATION_ID_TAG
from jwksd.rotation.keyring import Keyring
from jwksd.rotation.rotate import StepResult, consistent_records, iso

MIN_AGE_S = 3600


@dataclass(frozen=True)
class Made:
    """A key or private secret jwksd made for this registry: its reference, when it was made, its creation id."""

    key_ref: str
    created: float
    creation_id: str | None = None  # None: made before creation ids


def recorded(item: Made, records: Sequence[KeyRecord]) -> bool:
    """Whether an item records ``item``: by its creation id, or by its ARN (items older than creation ids)."""
    return any((item.creation_id is not None and r.creation_id == item.creation_id) or r.key_ref == item.key_ref
               for r in records)


async def collect(ring: Keyring, now: int, *, apply: bool) -> StepResult:
    """List (and with ``apply`` delete) the unrecorded keys of ``ring``'s backend older than MIN_AGE_S."""
    records = await consistent_records(ring)
    made = await (_kms_made(ring) if ring.backend.name == "kms" else _secrets_made(ring))
    result = StepResult()
    window = ring.config.deletion_window_days
    for item in sorted(made, key=lambda m: m.created):
        if recorded(item, records):
            continue
        if now - item.created < MIN_AGE_S:
            result.lines.append(f"too recent: {item.key_ref} created={iso(item.created)} (a rotate may still be "
                                "recording it)")
        elif not apply:
            result.lines.append(f"orphan: {item.key_ref} created={iso(item.created)} (--apply schedules its deletion)")
        else:
            await ring.backend.disable(item.key_ref)
            await ring.backend.destroy(item.key_ref, window)
            result.lines.append(f"deleted orphan: {item.key_ref} created={iso(item.created)} "
                                f"deletion_in_days={window}")
    if not result.lines:
        result.lines.append(f"no orphans: every {ring.backend.name} key tagged jwksd-table={ring.config.table} "
                            "is in the registry")
    return result


def _seconds(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


async def _kms_made(ring: Keyring) -> list[Made]:
    from jwksd.rotation.kms import KmsBackend

    backend = ring.backend
    assert isinstance(backend, KmsBackend)
    # Each request below is awaited (retries included) before its loop variable changes: B023 does not apply.
    kms, made, marker = backend.kms, [], None
    while True:
        params: dict[str, Any] = {"Marker": marker} if marker else {}
        page = await kms.call("ListKeys", lambda client: client.list_keys(**params))  # noqa: B023
        for key in page.get("Keys", []):
            key_id = key["KeyId"]
            tags = await kms.call("ListResourceTags", lambda client: client.list_resource_tags(KeyId=key_id))  # noqa: B023
            tagged = {tag["TagKey"]: tag["TagValue"] for tag in tags.get("Tags", [])}
            if tagged.get("jwksd-table") != ring.config.table:
                continue
            described = await kms.call("DescribeKey", lambda client: client.describe_key(KeyId=key_id))  # noqa: B023
            meta = described["KeyMetadata"]
            if meta.get("KeyState") != "PendingDeletion":
                made.append(Made(str(meta["Arn"]), _seconds(meta["CreationDate"]), tagged.get(CREATION_ID_TAG)))
        if not page.get("Truncated"):
            return made
        marker = page.get("NextMarker")


async def _secrets_made(ring: Keyring) -> list[Made]:
    assert ring.secrets is not None
    secrets, made, token = ring.secrets, [], None
    while True:
        params: dict[str, Any] = {"NextToken": token} if token else {}
        page = await secrets.call("ListSecrets", lambda client: client.list_secrets(**params))  # noqa: B023
        for entry in page.get("SecretList", []):
            tags = {tag.get("Key"): tag.get("Value") for tag in entry.get("Tags", [])}
            mine = "jwksd-kid" in tags or CREATION_ID_TAG in tags  # a private key's secret, not the published one
            if tags.get("jwksd-table") == ring.config.table and mine and not entry.get("DeletedDate"):
                made.append(Made(str(entry["ARN"]), _seconds(entry["CreatedDate"]), tags.get(CREATION_ID_TAG)))
        token = page.get("NextToken")
        if not token:
            return made
