"""Where private keys live: the Backend protocol that ``kms.py`` and ``local.py`` implement."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from jwksd.aws.registry import KeyRecord

CREATION_ID_TAG = "jwksd-creation-id"


def new_creation_id() -> str:
    """A unique id for one key a rotate is about to make (128 random bits, hex)."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class NewKey:
    """A key just made: its reference, its public JWK (kid = thumbprint), whether the registry keeps that JWK."""

    key_ref: str
    jwk: dict[str, Any]
    store_public: bool


class Backend(Protocol):
    """Makes, uses and destroys signing keys; never hands out a private key."""

    name: str

    async def create(self, version: int, *, key_spec: str, alg: str, creation_id: str) -> NewKey:
        """Make a ``key_spec`` key pair for registry ``version``, its JWK for ``alg`` (the registry's policy).

        The key (or its secret) is tagged ``CREATION_ID_TAG`` = ``creation_id`` as it is made, so
        ``jwksd keys gc`` finds it even if it is never recorded.
        """
        ...

    async def public_jwk(self, record: KeyRecord) -> dict[str, Any]:
        """The public JWK of a recorded key, its kid checked against the record."""
        ...

    async def sign(self, record: KeyRecord, data: bytes) -> bytes:
        """A JWS signature (raw R‖S for ECDSA) over ``data`` with the recorded key."""
        ...

    async def check_usable(self, record: KeyRecord) -> None:
        """RotationError unless the key can sign now and its public key still has the recorded kid."""
        ...

    async def disable(self, key_ref: str) -> None:
        """Make the key unusable at once (KMS DisableKey; nothing more for a secret, which destroy removes)."""
        ...

    async def destroy(self, key_ref: str, window_days: int) -> None:
        """Schedule the key's deletion after ``window_days``; done already counts as done."""
        ...
