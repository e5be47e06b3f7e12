"""Keys jwksd did not make: found in the publish secret, then adopted (``--adopt``) or dropped (``--replace``).

Moving an existing key set under jwksd's rotation: a publish onto a secret that holds keys the
registry does not know refuses, naming their kids, unless told what to do with them. An adopted
key becomes a registry item with status and backend ``external``: published as the secret held it
(its own kid, rarely a thumbprint) until its ``expires`` (``--adopt-until``), then expired by
``jwksd keys rotate`` like a retired key. It is never signed with and never promoted; jwksd holds
no private half, so revoking or expiring it has nothing to disable or delete.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jwksd.aws.registry import EXTERNAL, KeyRecord, check_kid
from jwksd.config import ValidationConfig
from jwksd.errors import DocumentRejected, RotationError
from jwksd.rotation.backends import NewKey
from jwksd.validate import validate_document
from jwksd.validate.jwk import thumbprint


@dataclass(frozen=True)
class Migration:
    """What a publish does with keys the secret holds and the registry does not know: refuse, adopt or replace."""

    adopt: bool = False
    adopt_until: int | None = None  # unix seconds; None with ``adopt``: now + retire_grace_s, as if retired now
    replace: bool = False


REFUSE = Migration()


@dataclass(frozen=True)
class Foreign:
    """What a secret holds beyond the registry's keys."""

    keys: tuple[dict[str, Any], ...]  # keys a daemon serves from it, as the validator allow-lists them
    dropped: tuple[str, ...]  # "kid (reason)" of entries no daemon serves
    rejected: str | None  # why no daemon serves the content at all (None: a key set, or no keys)

    def __bool__(self) -> bool:
        return bool(self.keys or self.dropped or self.rejected)

    def describe(self) -> str:
        """The kids and entries, for a line or a refusal."""
        parts = [", ".join(key["kid"] for key in self.keys)] if self.keys else []
        if self.dropped:
            parts.append(f"entries no daemon serves: {', '.join(self.dropped)}")
        if self.rejected:
            parts.append(f"content no daemon serves ({self.rejected})")
        return "; ".join(parts)


def foreign(content: str | None, records: Sequence[KeyRecord]) -> Foreign:
    """The keys (and unservable entries) of a secret's content that no registry record names, whatever its status."""
    if content is None:
        return Foreign((), (), "no SecretString")
    try:
        found = validate_document(content.encode("utf-8"), ValidationConfig())
    except DocumentRejected as exc:
        return Foreign((), (), None) if exc.reason == "no_keys" else Foreign((), (), f"{exc.reason}: {exc.detail}")
    known = {record.kid for record in records}
    keys = tuple({**key, "kid": key.get("kid") or thumbprint(key)} for key in found.keys)  # kid-less: its thumbprint
    dropped = tuple(f"{drop.kid or 'an entry without a usable kid'} ({drop.reason})" for drop in found.dropped
                    if drop.kid not in known)
    return Foreign(tuple(key for key in keys if key["kid"] not in known), dropped, None)


def refusal(secret_id: str, table: str, found: Foreign) -> RotationError:
    """The error of a publish told neither to adopt nor to replace what ``found`` lists."""
    if not found.keys and not found.dropped:
        return RotationError("unknown_content", f"{secret_id} holds {found.describe()}. Nothing was published: "
                                                "--replace overwrites it")
    return RotationError("unknown_keys", f"{secret_id} holds keys the registry {table} does not know: "
                                         f"{found.describe()}. Nothing was published: --adopt keeps the keys "
                                         "published as external keys until --adopt-until (never signed with), "
                                         "--replace drops them")


def external_records(found: Foreign, records: Sequence[KeyRecord], secret_id: str, now: int,
                     until: int) -> list[KeyRecord]:
    """Registry records for the adopted keys, under the versions after the newest one."""
    first = max((r.version for r in records), default=0) + 1
    return [KeyRecord(version=first + index, kid=key["kid"], status=EXTERNAL, backend=EXTERNAL, key_ref=secret_id,
                      alg=str(key.get("alg") or "unspecified"), key_spec=EXTERNAL, created=now, publish_from=now,
                      first_published=now, expires=until, public_jwk=dict(key))
            for index, key in enumerate(found.keys)]


class ExternalBackend:
    """The backend of adopted keys: their public JWKs are in their items; no private key, nothing to delete."""

    name: str = EXTERNAL

    async def create(self, version: int, *, key_spec: str, alg: str, creation_id: str) -> NewKey:
        raise RotationError("external_key", "the external backend makes no keys; rotation.backend is kms or local")

    async def public_jwk(self, record: KeyRecord) -> dict[str, Any]:
        if record.public_jwk is None:
            raise RotationError("bad_item", f"registry version {record.version}: an external key without public_jwk")
        return check_kid(dict(record.public_jwk), record)

    async def sign(self, record: KeyRecord, data: bytes) -> bytes:
        raise _never_signs(record)

    async def check_usable(self, record: KeyRecord) -> None:
        raise _never_signs(record)

    async def disable(self, key_ref: str) -> None:
        return None  # its private key is wherever it was before jwksd; only its owner can destroy it

    async def destroy(self, key_ref: str, window_days: int) -> None:
        return None


def _never_signs(record: KeyRecord) -> RotationError:
    return RotationError("external_key", f"registry version {record.version} kid={record.kid} is an external key: "
                                         "jwksd holds no private key for it and never signs with it")


EXTERNAL_BACKEND = ExternalBackend()
