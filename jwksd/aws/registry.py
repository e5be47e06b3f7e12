"""The key registry's read side: its head, its records, which of them are published, and their public JWKs.

One DynamoDB item per key, keyed by ``version`` (1, 2, ...), and the head, ``version = 0``: the stored
policy, the active and pending versions and a revision (``head.py``). The ``dynamodb`` source, the
signer and ``jwksd keys`` read through :class:`RegistryReader`; the conditional writes are
``rotation/registry.py``'s. A KMS
key's public half comes from GetPublicKey (a DER SubjectPublicKeyInfo); a local key's is in its item.
Every kid is the RFC 7638 thumbprint of its public JWK, checked on each read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jwksd.aws.head import HEAD_VERSION, RegistryHead, RegistryPolicy, head_from_item
from jwksd.errors import RotationError
from jwksd.validate.encoding import b64u_encode
from jwksd.validate.jwk import thumbprint

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import ScanOutputTypeDef
    from types_aiobotocore_kms import KMSClient

    from jwksd.aws import Client

__all__ = [  # RegistryHead and RegistryPolicy (head.py) re-exported: the read API is this module's
    "CURVES", "EXTERNAL", "PUBLISHED", "STATUSES", "KeyRecord", "RegistryHead", "RegistryPolicy", "RegistryReader",
    "Status", "b64u_int", "check_kid", "from_item", "jwk_from_spki", "kms_public_jwk", "public_jwk", "published",
    "to_item",
]

Status = Literal["pending", "active", "retired", "expired", "revoked", "external"]
STATUSES: tuple[Status, ...] = ("pending", "active", "retired", "expired", "revoked", "external")
# "external": a key jwksd did not make, adopted from a secret (`--adopt`): published until ``expires``, never signs.
PUBLISHED: tuple[Status, ...] = ("pending", "active", "retired", "external")
EXTERNAL: Status = "external"  # the status and the backend of an adopted key: jwksd holds no private half
_STRINGS = ("kid", "status", "backend", "key_ref", "alg", "key_spec")
_TIMES = ("created", "publish_from", "first_published", "activated", "retired", "expires", "expired", "revoked")
# crv -> (curve class, coordinate and R/S size in bytes)
CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32), "P-384": (ec.SECP384R1, 48), "P-521": (ec.SECP521R1, 66)}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


@dataclass(frozen=True)
class KeyRecord:
    """One registry item: a key, where it lives, and its lifecycle times (unix seconds)."""

    version: int
    kid: str
    status: Status
    backend: str  # "kms", "local", or "external" (an adopted key)
    key_ref: str  # the KMS key ARN, the ARN of the secret holding the private JWK, or the secret it was adopted from
    alg: str
    key_spec: str
    created: int
    publish_from: int
    activated: int | None = None
    retired: int | None = None
    expires: int | None = None  # retired + retire_grace_s, fixed when the key retires; an external key's --adopt-until
    expired: int | None = None
    public_jwk: dict[str, Any] | None = None  # local backend only; KMS keys are asked of KMS
    # When a publish that holds the key was confirmed (secret written, every verify URL serving it);
    # promotion counts publish_ahead_s from here, never from publish_from (the item's write).
    first_published: int | None = None
    revoked: int | None = None  # `jwksd keys revoke`: never published or signed with again
    # The unique id the rotate that made the key tagged it with before recording it (`jwksd keys gc` matches
    # keys to items by it); None for items written before creation ids, and for external keys.
    creation_id: str | None = None


def published(records: Iterable[KeyRecord]) -> list[KeyRecord]:
    """The keys verifiers must trust: pending, active, retired and external, newest first."""
    return sorted((r for r in records if r.status in PUBLISHED), key=lambda r: -r.version)


def to_item(record: KeyRecord) -> dict[str, Any]:
    """The DynamoDB item of a record (unset times are left out)."""
    item: dict[str, Any] = {"version": {"N": str(record.version)}}
    for name in _STRINGS:
        item[name] = {"S": str(getattr(record, name))}
    for name in _TIMES:
        value = getattr(record, name)
        if value is not None:
            item[name] = {"N": str(value)}
    if record.creation_id is not None:
        item["creation_id"] = {"S": record.creation_id}
    if record.public_jwk is not None:
        item["public_jwk"] = {"S": json.dumps(record.public_jwk, sort_keys=True)}
    return item


def from_item(item: Mapping[str, Any]) -> KeyRecord:
    """The record of a DynamoDB item; RotationError names the first thing wrong with it."""
    version = _number(item, "version", "registry item")
    if version is None:
        raise RotationError("bad_item", "registry item: no version")
    label = f"registry item version {version}"
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
    creation_id = item["creation_id"].get("S") if "creation_id" in item else None
    if "creation_id" in item and (not isinstance(creation_id, str) or not creation_id):
        raise RotationError("bad_item", f"{label}: creation_id is not a string")
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
        retired=times["retired"], expires=times["expires"], expired=times["expired"], public_jwk=public,
        first_published=times["first_published"], revoked=times["revoked"], creation_id=creation_id)


def _number(item: Mapping[str, Any], name: str, label: str) -> int | None:
    if name not in item:
        return None
    try:
        return int(item[name]["N"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RotationError("bad_item", f"{label}: {name} is not a whole number") from exc


def b64u_int(number: int, size: int | None = None) -> str:
    """An unsigned big-endian integer as a JWK member: base64url of ``size`` bytes, or as few as it needs."""
    return b64u_encode(number.to_bytes(size or max(1, (number.bit_length() + 7) // 8), "big"))


def public_jwk(public: Any, alg: str) -> dict[str, Any]:
    """The public JWK of an RSA or NIST-curve key, with ``use``, ``alg`` and the thumbprint kid."""
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        jwk: dict[str, Any] = {"kty": "RSA", "n": b64u_int(numbers.n), "e": b64u_int(numbers.e)}
    elif isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name in _CURVE_NAMES:
        crv = _CURVE_NAMES[public.curve.name]
        point, size = public.public_numbers(), CURVES[crv][1]
        jwk = {"kty": "EC", "crv": crv, "x": b64u_int(point.x, size), "y": b64u_int(point.y, size)}
    else:
        raise RotationError("unsupported_key", f"a {type(public).__name__} cannot be served as a JWS signing key")
    return {"kid": thumbprint(jwk), "use": "sig", "alg": alg, **jwk}


def jwk_from_spki(der: bytes, alg: str) -> dict[str, Any]:
    """The JWK of a DER SubjectPublicKeyInfo, as KMS GetPublicKey returns it."""
    try:
        public = serialization.load_der_public_key(der)
    except ValueError as exc:
        raise RotationError("bad_public_key", "the public key is not a DER SubjectPublicKeyInfo") from exc
    return public_jwk(public, alg)


def check_kid(jwk: dict[str, Any], record: KeyRecord) -> dict[str, Any]:
    """``jwk`` if its RFC 7638 thumbprint is the record's kid, else RotationError: the registry and key disagree.

    An external key keeps the kid its tokens carry (rarely a thumbprint): its JWK's own kid must be the record's.
    """
    if record.backend == EXTERNAL and jwk.get("kid") == record.kid:
        return jwk
    if thumbprint(jwk) != record.kid:
        raise RotationError("kid_mismatch", f"registry version {record.version}: the key's thumbprint is not the "
                                            "recorded kid")
    return jwk


async def kms_public_jwk(kms: Client[KMSClient], key_id: str, alg: str) -> dict[str, Any]:
    """The public JWK of a KMS key (GetPublicKey returns DER SubjectPublicKeyInfo); AwsError when KMS fails."""
    response = await kms.call("GetPublicKey", lambda client: client.get_public_key(KeyId=key_id))
    return jwk_from_spki(bytes(response["PublicKey"]), alg)


class RegistryReader:
    """Reads one registry table."""

    def __init__(self, client: Client[DynamoDBClient], table: str) -> None:
        self.client = client
        self.table = table

    async def head(self) -> RegistryHead | None:
        """The head (policy, pointers, revision) from a strongly consistent GetItem; None before it was written."""
        item = await self._get(HEAD_VERSION)
        return None if item is None else head_from_item(item)

    async def record(self, version: int) -> KeyRecord | None:
        """One key's record from a strongly consistent GetItem; None when no item has that version."""
        if version == HEAD_VERSION:
            raise RotationError("bad_version", "registry version 0 is the head, not a key: read it with head()")
        item = await self._get(version)
        return None if item is None else from_item(item)

    async def _get(self, version: int) -> Mapping[str, Any] | None:
        key = {"version": {"N": str(version)}}
        response = await self.client.call("GetItem", lambda client: client.get_item(
            TableName=self.table, Key=key, ConsistentRead=True))
        return response.get("Item")

    async def records(self) -> list[KeyRecord]:
        """Every key (not the head), oldest first, from a strongly consistent scan (a few items a year)."""
        return (await self.scan())[1]

    async def scan(self) -> tuple[RegistryHead | None, list[KeyRecord]]:
        """The head (None before it was written) and every key, oldest first, from one strongly consistent scan."""
        items: list[Mapping[str, Any]] = []
        start: Mapping[str, Any] | None = None
        while True:
            response = await self._page(start)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            start = response["LastEvaluatedKey"]
        heads = [item for item in items if item.get("version", {}).get("N") == str(HEAD_VERSION)]
        keys = (item for item in items if item.get("version", {}).get("N") != str(HEAD_VERSION))
        return (head_from_item(heads[0]) if heads else None,
                sorted((from_item(item) for item in keys), key=lambda r: r.version))

    async def _page(self, start: Mapping[str, Any] | None) -> ScanOutputTypeDef:
        params: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        if start is not None:
            params["ExclusiveStartKey"] = start
        return await self.client.call("Scan", lambda client: client.scan(**params))
