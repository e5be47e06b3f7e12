"""``jwksd keys sign``: a JWT signed by the active key (through KMS Sign for the kms backend).

``iat`` and ``exp`` are set from ``now`` and the TTL, which may not exceed ``max_token_lifetime_s``:
the retire grace period is computed from it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jwksd.errors import RotationError
from jwksd.rotation.keyring import Keyring
from jwksd.rotation.policy import single
from jwksd.validate.encoding import b64u_encode


def _part(value: Mapping[str, Any]) -> str:
    return b64u_encode(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


async def sign_jwt(ring: Keyring, claims: Mapping[str, Any], *, now: int, ttl_s: int | None = None) -> str:
    """A compact JWS of ``claims`` plus iat and exp, header ``alg``, ``kid`` and ``typ``."""
    lifetime = ring.config.max_token_lifetime_s
    ttl = lifetime if ttl_s is None else ttl_s
    if not 0 < ttl <= lifetime:
        raise RotationError("bad_ttl", f"--ttl-s {ttl}: expected 1 to rotation.max_token_lifetime_s ({lifetime}), "
                                       "which the retire grace period is computed from")
    reserved = sorted({"iat", "exp"} & set(claims))
    if reserved:
        raise RotationError("bad_claims", f"claims {', '.join(reserved)}: set by jwksd keys sign from --now "
                                          "and --ttl-s; leave them out")
    active = single(await ring.registry.records(), "active")
    if active is None:
        raise RotationError("no_active_key", f"{ring.config.table} has no active key yet: `jwksd keys rotate` "
                                             "activates the first one publish_ahead_s after creating it")
    header = {"alg": active.alg, "kid": active.kid, "typ": "JWT"}
    signing_input = f"{_part(header)}.{_part({**claims, 'iat': now, 'exp': now + ttl})}"
    signature = await ring.backend_for(active).sign(active, signing_input.encode("ascii"))
    return f"{signing_input}.{b64u_encode(signature)}"
