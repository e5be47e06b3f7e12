"""The keys the signer signs with, on top of rotation's backends: prepared once per key, dropped when it leaves.

A key is *prepared* before it may sign: a KMS key's public half is fetched and its thumbprint checked
against the recorded kid (GetPublicKey, once); a local key's private JWK is read from its secret once,
checked the same way, and held in memory. The active key and the pending one (ready for its
promotion) are kept prepared; any other key is dropped at once, so a revoked or retired local key's
private half is no longer in memory. KMS signs one token per Sign call, at most ``kms_concurrency`` at
a time, each retried by the AWS boundary's policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from jwksd.aws.registry import KeyRecord
from jwksd.errors import AwsError, RotationError
from jwksd.rotation.keys import KMS_SIGNING_ALGORITHMS, PrivateKey, sign_local
from jwksd.rotation.kms import KmsBackend
from jwksd.rotation.local import LocalBackend

UNUSABLE = frozenset({"DisabledException", "KMSInvalidStateException", "NotFoundException"})


class SigningKeys:
    """The prepared keys of one backend, by kid."""

    def __init__(self, backend: KmsBackend | LocalBackend, *, kms_concurrency: int) -> None:
        self.backend = backend
        self.name = backend.name
        self._private: dict[str, PrivateKey] = {}  # local backend: the private halves held
        self._verified: set[str] = set()  # kms backend: kids whose KMS key was checked
        self._slots = asyncio.Semaphore(kms_concurrency)

    def prepared(self, record: KeyRecord) -> bool:
        """Whether ``record``'s key may sign now."""
        return record.kid in (self._private if self.name == "local" else self._verified)

    async def prepare(self, record: KeyRecord) -> None:
        """Make ``record``'s key ready to sign; RotationError or AwsError when it cannot be."""
        if self.prepared(record):
            return
        if record.backend != self.name:
            raise RotationError("backend_mismatch", f"registry version {record.version} is a {record.backend} key "
                                                    f"and rotation.backend is {self.name}")
        if record.alg not in KMS_SIGNING_ALGORITHMS:
            raise RotationError("unsupported_alg", f"registry version {record.version}: alg {record.alg} is not one "
                                                   "the signer signs with")
        if isinstance(self.backend, LocalBackend):
            self._private[record.kid] = await self.backend.private_key(record)
        else:
            await self.backend.public_jwk(record)  # kid_mismatch when the KMS key is not the recorded one
            self._verified.add(record.kid)

    def keep_only(self, kids: Iterable[str]) -> list[str]:
        """Drop every prepared key not in ``kids`` (private halves leave memory); the kids dropped."""
        keep = set(kids)
        dropped = sorted((set(self._private) | self._verified) - keep)
        for kid in dropped:
            self._private.pop(kid, None)
            self._verified.discard(kid)
        return dropped

    async def sign(self, record: KeyRecord, data: bytes) -> bytes:
        """The JWS signature of ``data`` with ``record``'s prepared key."""
        private = self._private.get(record.kid)
        if private is not None:
            return sign_local(private, record.alg, data)
        if record.kid not in self._verified:
            raise RotationError("key_unprepared", f"registry version {record.version} kid={record.kid} is not "
                                                  "ready to sign")
        async with self._slots:
            try:
                return await self.backend.sign(record, data)
            except AwsError as exc:
                if exc.code in UNUSABLE:  # disabled or deleted (a revoke): prepared again only if it recovers
                    self._verified.discard(record.kid)
                raise
