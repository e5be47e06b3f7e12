"""The key rules of JWK_RULES.md: one entry in, the allow-listed public JWK to serve out, or KeyDropped.

Every value is checked by jwksd itself; ``cryptography`` only loads the key as a last check (it
accepts an even modulus, e = 3, any 32 octets as Ed25519 and x + p as a P-521 coordinate) and
compares x5c's key. Details name the member and what was expected, never key material.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from jwksd.config import ValidationConfig
from jwksd.validate.curves import (
    EC_CURVES,
    OKP_SIGNING,
    OKP_SIZES,
    ed25519_decode,
    ed25519_small_order,
    xdh_small_order,
)
from jwksd.validate.encoding import b64u_decode, b64u_encode
from jwksd.validate.kid import kid_problem
from jwksd.validate.roca import has_roca_fingerprint
from jwksd.validate.rsa import small_factors
from jwksd.validate.x509 import check_x509

DropReason = Literal[
    "not_an_object", "bad_kty", "missing_kid", "bad_kid", "kid_mismatch", "thumbprint_mismatch",
    "bad_use", "bad_key_ops", "use_key_mismatch", "bad_alg", "alg_key_mismatch", "alg_use_mismatch",
    "kid_format_character", "missing_member", "bad_base64url",
    "rsa_not_minimal", "rsa_too_small", "rsa_too_large", "rsa_even_modulus", "rsa_small_factor", "rsa_bad_exponent",
    "rsa_roca", "ec_bad_curve", "ec_bad_coordinate", "ec_not_on_curve",
    "okp_bad_curve", "okp_bad_x", "okp_unexpected_y", "ed25519_not_on_curve", "ed25519_small_order",
    "xdh_small_order",
    "bad_x5c", "x5c_mismatch", "bad_x5t", "x5t_mismatch", "bad_x5u", "crypto_rejected", "revoked",
]
DROP_REASONS: tuple[str, ...] = get_args(DropReason)

# The members that may be served, in the order they are written.
SERVED_MEMBERS = ("kty", "kid", "use", "key_ops", "alg", "crv", "n", "e", "x", "y", "x5c", "x5t", "x5t#S256", "x5u")
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}

SIG_OPS = frozenset({"verify"})
ENC_OPS = frozenset({"encrypt", "wrapKey", "deriveKey", "deriveBits"})
PRIVATE_OPS = frozenset({"sign", "decrypt", "unwrapKey"})

# A key is (kty, crv), crv None for RSA. alg -> (the use it implies, the keys it fits).
KeyKind = tuple[str, str | None]
_RSA: frozenset[KeyKind] = frozenset({("RSA", None)})
_ECDH: frozenset[KeyKind] = frozenset({*(("EC", crv) for crv in EC_CURVES), ("OKP", "X25519"), ("OKP", "X448")})
ALGORITHMS: dict[str, tuple[str, frozenset[KeyKind]]] = {
    **{alg: ("sig", _RSA) for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": ("sig", frozenset({("EC", "P-256")})),
    "ES384": ("sig", frozenset({("EC", "P-384")})),
    "ES512": ("sig", frozenset({("EC", "P-521")})),
    "ES256K": ("sig", frozenset({("EC", "secp256k1")})),
    "EdDSA": ("sig", frozenset({("OKP", "Ed25519"), ("OKP", "Ed448")})),
    "Ed25519": ("sig", frozenset({("OKP", "Ed25519")})),
    "Ed448": ("sig", frozenset({("OKP", "Ed448")})),
    **{alg: ("enc", _RSA) for alg in ("RSA-OAEP", "RSA-OAEP-256", "RSA-OAEP-384", "RSA-OAEP-512")},
    **{alg: ("enc", _ECDH) for alg in ("ECDH-ES", "ECDH-ES+A128KW", "ECDH-ES+A192KW", "ECDH-ES+A256KW")},
}

# Names a detail may quote: registry vocabulary, never content that could be key material.
_VOCABULARY = frozenset({
    "RSA", "EC", "OKP", "oct", "sig", "enc", "P-256K", *EC_CURVES, *OKP_SIZES, *ALGORITHMS,
    *SIG_OPS, *ENC_OPS, *PRIVATE_OPS, "none", "dir", "RSA1_5", "HS256", "HS384", "HS512",
    "A128KW", "A192KW", "A256KW", "A128GCMKW", "A192GCMKW", "A256GCMKW",
    "PBES2-HS256+A128KW", "PBES2-HS384+A192KW", "PBES2-HS512+A256KW",
    "A128GCM", "A192GCM", "A256GCM", "A128CBC-HS256", "A192CBC-HS384", "A256CBC-HS512",
})
_OKP_LOADERS: dict[str, Callable[[bytes], PublicKeyTypes]] = {
    "Ed25519": ed25519.Ed25519PublicKey.from_public_bytes,
    "Ed448": ed448.Ed448PublicKey.from_public_bytes,
    "X25519": x25519.X25519PublicKey.from_public_bytes,
    "X448": x448.X448PublicKey.from_public_bytes,
}
_EC_CLASSES: dict[str, Callable[[], ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1, "secp256k1": ec.SECP256K1,
}


class KeyDropped(Exception):
    """One entry breaks a key rule; ``reason`` is one of DROP_REASONS."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK, base64url without padding."""
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]  # already in lexicographic order
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"), ensure_ascii=False)
    return b64u_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def usable_kid(value: object) -> str | None:
    """The kid if it passes the kid rule (so it may be logged), else None."""
    return value if isinstance(value, str) and kid_problem(value) is None else None


def show(value: object) -> str:
    """Quote a value in a detail only when it is registry vocabulary; otherwise name its JSON type."""
    if isinstance(value, str):
        return repr(value) if value in _VOCABULARY else "an unrecognised string"
    kinds = {bool: "a boolean", int: "a number", float: "a number", list: "an array", dict: "an object"}
    return kinds.get(type(value), "null")


def public_jwk(entry: object, config: ValidationConfig, *, map_kid: str | None = None) -> dict[str, Any]:
    """Apply every key rule to one entry; return the public JWK to serve, or raise KeyDropped.

    ``map_kid`` is the member name in the kid-map form (None in the JWK Set form).
    """
    if not isinstance(entry, dict):
        raise KeyDropped("not_an_object", f"the entry is {show(entry)}; expected a JWK object")
    kty = entry.get("kty")
    if kty not in ("RSA", "EC", "OKP"):
        raise KeyDropped("bad_kty", f"kty is {show(kty)}; expected 'RSA', 'EC' or 'OKP'")
    public: dict[str, Any] = {"kty": kty}
    kid = _kid(entry, config, map_kid)
    if kid is not None:
        public["kid"] = kid
    purpose = _purpose(entry, public)
    if kty == "RSA":
        key = _rsa(entry, public)
    elif kty == "EC":
        key = _ec(entry, public, config)
    else:
        key = _okp(entry, public)
    kind: KeyKind = (kty, public.get("crv"))
    if kty == "OKP":
        needed = "sig" if public["crv"] in OKP_SIGNING else "enc"
        if purpose not in (None, needed):
            raise KeyDropped("use_key_mismatch", f"a {public['crv']} key is for {needed} only, not {purpose}")
    if "alg" in entry:
        _alg(entry["alg"], kind, purpose)
        public["alg"] = entry["alg"]
    if config.require_thumbprint_kid and kid != thumbprint(public):
        raise KeyDropped("thumbprint_mismatch", "kid must equal the key's RFC 7638 SHA-256 thumbprint")
    problem = check_x509(entry, key, public)
    if problem is not None:
        raise KeyDropped(*problem)
    return {name: public[name] for name in SERVED_MEMBERS if name in public}


def _kid(entry: Mapping[str, Any], config: ValidationConfig, map_kid: str | None) -> str | None:
    if map_kid is not None:
        if problem := kid_problem(map_kid):
            raise KeyDropped(problem[0], f"the map key is no kid: {problem[1]}")
        if "kid" in entry and entry["kid"] != map_kid:
            raise KeyDropped("kid_mismatch", "the inner kid differs from the map key it is listed under")
        return map_kid
    if "kid" in entry:
        kid = entry["kid"]
        if not isinstance(kid, str):
            raise KeyDropped("bad_kid", f"kid is {show(kid)}; expected a string of 1 to 256 characters")
        if problem := kid_problem(kid):
            raise KeyDropped(*problem)
        return kid
    if config.require_kid or config.require_thumbprint_kid:
        raise KeyDropped("missing_kid", "kid is required")
    return None


def _purpose(entry: Mapping[str, Any], public: dict[str, Any]) -> str | None:
    """Check use and key_ops; return the purpose they declare ('sig', 'enc' or None)."""
    use = entry.get("use")
    if "use" in entry:
        if use not in ("sig", "enc"):
            raise KeyDropped("bad_use", f"use is {show(use)}; expected 'sig' or 'enc'")
        public["use"] = use
    if "key_ops" not in entry:
        return use
    ops = entry["key_ops"]
    if (not isinstance(ops, list) or not ops or not all(isinstance(op, str) for op in ops)
            or len(set(ops)) != len(ops)):
        raise KeyDropped("bad_key_ops", "key_ops must be a non-empty array of unique strings")
    if private := PRIVATE_OPS.intersection(ops):
        raise KeyDropped("bad_key_ops", f"key_ops {sorted(private)} are private-key operations; expected "
                                        "verify, encrypt, wrapKey, deriveKey or deriveBits")
    if not SIG_OPS.union(ENC_OPS).issuperset(ops):
        raise KeyDropped("bad_key_ops", "key_ops holds an unknown operation; expected "
                                        "verify, encrypt, wrapKey, deriveKey or deriveBits")
    ops_purpose = "sig" if SIG_OPS.issuperset(ops) else "enc" if ENC_OPS.issuperset(ops) else None
    if ops_purpose is None:
        raise KeyDropped("bad_key_ops", "key_ops mixes signature (verify) and encryption operations")
    if use is not None and use != ops_purpose:
        raise KeyDropped("bad_key_ops", f"key_ops are {ops_purpose} operations but use is {use!r}")
    public["key_ops"] = tuple(sorted(ops))  # a set: sorted so the same key always gives the same bytes
    return ops_purpose


def _alg(alg: object, kind: KeyKind, purpose: str | None) -> None:
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise KeyDropped("bad_alg", f"alg {show(alg)} may not be published; expected RS*, PS*, ES*, EdDSA, "
                                    "Ed25519, Ed448, RSA-OAEP* or ECDH-ES*")
    alg_use, kinds = ALGORITHMS[alg]
    if kind not in kinds:
        kty, crv = kind
        raise KeyDropped("alg_key_mismatch", f"alg {alg!r} does not fit a {kty}{f' {crv}' if crv else ''} key")
    if purpose is not None and purpose != alg_use:
        raise KeyDropped("alg_use_mismatch", f"alg {alg!r} is for {alg_use}, but the key is declared for {purpose}")


def _octets(entry: Mapping[str, Any], name: str) -> bytes:
    if name not in entry:
        raise KeyDropped("missing_member", f"a {entry['kty']} key needs {name!r}")
    data = b64u_decode(entry[name])
    if data is None:
        raise KeyDropped("bad_base64url", f"{name} must be canonical base64url: A-Z a-z 0-9 - _, no padding")
    return data


def _last_check(load: Callable[[], PublicKeyTypes]) -> PublicKeyTypes:
    """Load the key with cryptography, after jwksd's own checks passed."""
    try:
        return load()
    except Exception as exc:  # any refusal drops the key; the library's words are not key material
        raise KeyDropped("crypto_rejected", f"cryptography refused the key ({type(exc).__name__})") from exc


def _rsa(entry: Mapping[str, Any], public: dict[str, Any]) -> PublicKeyTypes:
    n_octets, e_octets = _octets(entry, "n"), _octets(entry, "e")
    for name, octets in (("n", n_octets), ("e", e_octets)):
        if not octets or octets[0] == 0:
            raise KeyDropped("rsa_not_minimal", f"{name} must use the minimum number of octets, without a "
                                                "leading zero octet")
    n, e = int.from_bytes(n_octets, "big"), int.from_bytes(e_octets, "big")
    bits = n.bit_length()
    if bits < 2048:
        raise KeyDropped("rsa_too_small", f"the modulus has {bits} bits; expected 2048 to 8192")
    if bits > 8192:
        raise KeyDropped("rsa_too_large", f"the modulus has {bits} bits; expected 2048 to 8192")
    if not n & 1:
        raise KeyDropped("rsa_even_modulus", "the modulus is even; an RSA modulus is odd")
    if factors := small_factors(n):
        raise KeyDropped("rsa_small_factor", f"the modulus is divisible by {', '.join(map(str, factors[:3]))}"
                                             f"{' and more' if len(factors) > 3 else ''}: a real modulus has no "
                                             "prime factor below 10000")
    if not (e & 1 and 2**16 < e < 2**256 and e < n):
        raise KeyDropped("rsa_bad_exponent", "e must be odd, above 2^16, below 2^256 and below n "
                                             f"(FIPS 186-4 B.3.1); it has {e.bit_length()} bits")
    if has_roca_fingerprint(n):
        raise KeyDropped("rsa_roca", "the modulus has the ROCA fingerprint (CVE-2017-15361): it can be factored")
    public.update(n=entry["n"], e=entry["e"])
    return _last_check(lambda: rsa.RSAPublicNumbers(e, n).public_key())


def _ec(entry: Mapping[str, Any], public: dict[str, Any], config: ValidationConfig) -> PublicKeyTypes:
    if "crv" not in entry:
        raise KeyDropped("missing_member", "an EC key needs 'crv'")
    crv = entry["crv"]
    curve = EC_CURVES.get(crv) if isinstance(crv, str) else None
    if curve is None or (crv == "secp256k1" and not config.allow_secp256k1):
        allowed = "P-256, P-384, P-521" + (" or secp256k1" if config.allow_secp256k1 else "")
        raise KeyDropped("ec_bad_curve", f"crv is {show(crv)}; expected {allowed}")
    coordinates = {}
    for name in ("x", "y"):
        octets = _octets(entry, name)
        if len(octets) != curve.size:
            raise KeyDropped("ec_bad_coordinate", f"{name} has {len(octets)} octets; {crv} needs {curve.size}")
        coordinates[name] = int.from_bytes(octets, "big")
        if coordinates[name] >= curve.p:
            raise KeyDropped("ec_bad_coordinate", f"{name} is not below the field prime of {crv}")
    x, y = coordinates["x"], coordinates["y"]
    if not curve.contains(x, y):
        raise KeyDropped("ec_not_on_curve", f"(x, y) is not a point on {crv}")
    public.update(crv=crv, x=entry["x"], y=entry["y"])
    return _last_check(lambda: ec.EllipticCurvePublicNumbers(x, y, _EC_CLASSES[crv]()).public_key())


def _okp(entry: Mapping[str, Any], public: dict[str, Any]) -> PublicKeyTypes:
    if "crv" not in entry:
        raise KeyDropped("missing_member", "an OKP key needs 'crv'")
    crv = entry["crv"]
    if not isinstance(crv, str) or crv not in OKP_SIZES:
        raise KeyDropped("okp_bad_curve", f"crv is {show(crv)}; expected Ed25519, Ed448, X25519 or X448")
    if "y" in entry:
        raise KeyDropped("okp_unexpected_y", "an OKP key has no 'y' member")
    x = _octets(entry, "x")
    if len(x) != OKP_SIZES[crv]:
        raise KeyDropped("okp_bad_x", f"x has {len(x)} octets; {crv} needs {OKP_SIZES[crv]}")
    if crv == "Ed25519":
        point = ed25519_decode(x)
        if point is None:
            raise KeyDropped("ed25519_not_on_curve", "x does not decode to an Ed25519 point (RFC 8032 5.1.3)")
        if ed25519_small_order(point):
            raise KeyDropped("ed25519_small_order", "x is an Ed25519 point of small order")
    elif crv in ("X25519", "X448") and xdh_small_order(crv, x):
        raise KeyDropped("xdh_small_order", f"x is a small-order {crv} u-coordinate: a peer would derive an "
                                            "all-zero shared secret")
    public.update(crv=crv, x=entry["x"])
    return _last_check(lambda: _OKP_LOADERS[crv](x))
