"""Key material for tests: fresh key pairs and their public JWKs, built with cryptography."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_b64(number: int, size: int | None = None) -> str:
    return b64(number.to_bytes(size or (number.bit_length() + 7) // 8, "big"))


_RSA_CACHE: dict[int, list[rsa.RSAPrivateKey]] = {}


def rsa_key(index: int = 0, bits: int = 2048) -> rsa.RSAPrivateKey:
    """The index-th RSA key of a size, generated once per test session (RSA generation is slow)."""
    keys = _RSA_CACHE.setdefault(bits, [])
    while len(keys) <= index:
        keys.append(rsa.generate_private_key(public_exponent=65537, key_size=bits))
    return keys[index]


def rsa_jwk(private: rsa.RSAPrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    numbers = private.public_key().public_numbers()
    return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": int_b64(numbers.n),
            "e": int_b64(numbers.e), **extra}


def key(index: int, kid: str | None = None) -> dict[str, Any]:
    """The index-th session RSA key as a public JWK, kid ``key-<index>`` unless given."""
    return rsa_jwk(rsa_key(index), kid or f"key-{index}")


def ec_jwk(private: ec.EllipticCurvePrivateKey, kid: str, alg: str = "ES256") -> dict[str, Any]:
    numbers = private.public_key().public_numbers()
    size = (private.curve.key_size + 7) // 8
    crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[private.curve.name]
    return {"kty": "EC", "kid": kid, "use": "sig", "alg": alg, "crv": crv, "x": int_b64(numbers.x, size),
            "y": int_b64(numbers.y, size)}


def ed25519_jwk(private: ed25519.Ed25519PrivateKey, kid: str) -> dict[str, Any]:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "kid": kid, "use": "sig", "alg": "EdDSA", "crv": "Ed25519", "x": b64(raw)}


def jwk_set(*keys: dict[str, Any]) -> str:
    return json.dumps({"keys": list(keys)})


def kid_map(*keys: dict[str, Any]) -> str:
    """The kid-map form: {"<kid>": {JWK without kid}}."""
    return json.dumps({key["kid"]: {k: v for k, v in key.items() if k != "kid"} for key in keys})
