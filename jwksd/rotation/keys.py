"""Key material: JWS algorithms as KMS names them, private JWKs, and DER to JWS signatures.

Public JWKs come from the registry's read side (``jwksd.aws.registry.public_jwk``). ECDSA signatures
come from KMS and from ``cryptography`` as DER; JWS wants the raw, fixed-width R‖S (RFC 7518, section 3.4).
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from jwksd.aws.registry import CURVES, b64u_int, public_jwk
from jwksd.errors import RotationError
from jwksd.validate.encoding import b64u_decode

# JWS alg -> KMS SigningAlgorithm.
KMS_SIGNING_ALGORITHMS = {
    "RS256": "RSASSA_PKCS1_V1_5_SHA_256", "RS384": "RSASSA_PKCS1_V1_5_SHA_384",
    "RS512": "RSASSA_PKCS1_V1_5_SHA_512", "PS256": "RSASSA_PSS_SHA_256", "PS384": "RSASSA_PSS_SHA_384",
    "PS512": "RSASSA_PSS_SHA_512", "ES256": "ECDSA_SHA_256", "ES384": "ECDSA_SHA_384", "ES512": "ECDSA_SHA_512",
}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_SPEC_CURVES = {"ECC_NIST_P256": "P-256", "ECC_NIST_P384": "P-384", "ECC_NIST_P521": "P-521"}
_ES_SIZES = {"ES256": 32, "ES384": 48, "ES512": 66}
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def der_to_raw(signature: bytes, size: int) -> bytes:
    """A DER ECDSA-Sig-Value as the JWS R‖S, each integer left-padded to ``size`` bytes."""
    try:
        r, s = decode_dss_signature(signature)
    except ValueError as exc:
        raise RotationError("bad_signature", "the ECDSA signature is not DER") from exc
    if r.bit_length() > size * 8 or s.bit_length() > size * 8:
        raise RotationError("bad_signature", f"the ECDSA signature does not fit {size}-byte integers")
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def jws_signature(alg: str, signature: bytes) -> bytes:
    """The signature as JWS carries it: ECDSA converted from DER, RSA as is."""
    return der_to_raw(signature, _ES_SIZES[alg]) if alg in _ES_SIZES else signature


def generate(key_spec: str) -> PrivateKey:
    """A fresh key pair of a KMS key spec, made with ``cryptography`` (the local backend)."""
    if key_spec.startswith("RSA_"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_spec[4:]))
    return ec.generate_private_key(CURVES[_SPEC_CURVES[key_spec]][0]())


def private_jwk(private: PrivateKey, alg: str) -> dict[str, Any]:
    """The full private JWK (RFC 7518, section 6): the public members plus the private ones."""
    jwk = public_jwk(private.public_key(), alg)
    if isinstance(private, rsa.RSAPrivateKey):
        n = private.private_numbers()
        jwk.update(d=b64u_int(n.d), p=b64u_int(n.p), q=b64u_int(n.q), dp=b64u_int(n.dmp1), dq=b64u_int(n.dmq1),
                   qi=b64u_int(n.iqmp))
    else:
        jwk["d"] = b64u_int(private.private_numbers().private_value, CURVES[jwk["crv"]][1])
    return jwk


def load_private_jwk(jwk: dict[str, Any]) -> PrivateKey:
    """The ``cryptography`` key of a private JWK written by :func:`private_jwk`."""
    def number(name: str) -> int:
        raw = b64u_decode(jwk.get(name))
        if raw is None:
            raise RotationError("bad_private_key", f"the private JWK's {name!r} is not base64url")
        return int.from_bytes(raw, "big")

    try:
        if jwk.get("kty") == "RSA":
            public = rsa.RSAPublicNumbers(number("e"), number("n"))
            return rsa.RSAPrivateNumbers(number("p"), number("q"), number("d"), number("dp"), number("dq"),
                                         number("qi"), public).private_key()
        curve = CURVES[str(jwk.get("crv"))][0]()
        point = ec.EllipticCurvePublicNumbers(number("x"), number("y"), curve)
        return ec.EllipticCurvePrivateNumbers(number("d"), point).private_key()
    except (KeyError, ValueError) as exc:
        raise RotationError("bad_private_key", "the private JWK does not hold a usable key") from exc


def sign_local(private: PrivateKey, alg: str, data: bytes) -> bytes:
    """A JWS signature over ``data`` made in this process (RSA-PSS salt = hash length, as RFC 7518 says)."""
    digest = _HASHES[alg[2:]]()
    if isinstance(private, rsa.RSAPrivateKey):
        pad: padding.AsymmetricPadding = (padding.PSS(padding.MGF1(digest), digest.digest_size)
                                          if alg.startswith("PS") else padding.PKCS1v15())
        return private.sign(data, pad, digest)
    return jws_signature(alg, private.sign(data, ec.ECDSA(digest)))
