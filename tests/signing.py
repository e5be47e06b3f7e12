"""Signing JWTs for tests with cryptography alone, so no verifier under test signs its own tokens."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.keys import b64, ec_jwk, ed25519_jwk, rsa_jwk, rsa_key

SIGNING_ALGS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA")
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_CURVES: dict[str, ec.EllipticCurve] = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class SigningKey:
    """A private key, its algorithm and kid, and the public JWK that belongs in the secret."""

    alg: str
    kid: str
    private: PrivateKey
    jwk: dict[str, Any]

    def sign(self, claims: dict[str, Any] | None = None, *, kid: str | None = None) -> str:
        """A compact JWS over ``claims`` (default: sub and an hour's exp), with ``kid`` in the header."""
        header = {"alg": self.alg, "typ": "JWT", "kid": kid or self.kid}
        payload = claims if claims is not None else {"sub": "tester", "exp": int(time.time()) + 3600}
        signing_input = f"{_part(header)}.{_part(payload)}".encode()
        return f"{signing_input.decode()}.{b64(_signature(self.alg, self.private, signing_input))}"


def signing_key(alg: str, kid: str, index: int = 0) -> SigningKey:
    """A fresh key for ``alg`` (RSA keys come from the session cache in keys.py)."""
    if alg.startswith(("RS", "PS")):
        private_rsa = rsa_key(index)
        return SigningKey(alg, kid, private_rsa, rsa_jwk(private_rsa, kid, alg=alg))
    if alg in _CURVES:
        private_ec = ec.generate_private_key(_CURVES[alg])
        return SigningKey(alg, kid, private_ec, ec_jwk(private_ec, kid, alg))
    if alg == "EdDSA":
        private_ed = ed25519.Ed25519PrivateKey.generate()
        return SigningKey(alg, kid, private_ed, ed25519_jwk(private_ed, kid))
    raise ValueError(f"unsupported alg {alg}")


def _part(value: dict[str, Any]) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def _signature(alg: str, private: PrivateKey, data: bytes) -> bytes:
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return private.sign(data)
    digest = _HASHES[alg[2:]]()
    if isinstance(private, rsa.RSAPrivateKey):
        pad: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size) if alg.startswith("PS")
            else padding.PKCS1v15())
        return private.sign(data, pad, digest)
    # JWS wants ECDSA as the fixed-size r || s, not DER (RFC 7518 section 3.4).
    r, s = decode_dss_signature(private.sign(data, ec.ECDSA(digest)))
    size = (private.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")
