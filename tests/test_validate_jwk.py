"""The key rules of JWK_RULES.md (jwksd/validate/jwk.py and the modules beside it), each asserted by its drop reason."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections.abc import Mapping
from math import prod
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x448, x25519
from cryptography.x509.oid import NameOID
from jwcrypto import jwk as jwcrypto_jwk

from jwksd.config import ValidationConfig
from jwksd.validate import DROP_REASONS, KeySet, jwk, validate_document
from jwksd.validate.curves import EC_CURVES, ED25519_D, ED25519_P, ed25519_decode, ed25519_small_order
from jwksd.validate.encoding import b64_decode, b64u_decode
from jwksd.validate.roca import MARKERS, PRIMES, has_roca_fingerprint
from tests.keys import b64 as b64u
from tests.keys import int_b64 as uint

CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1(), "secp256k1": ec.SECP256K1(),
}
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknj"
    "hMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQ"
    "vRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKn"
    "qDKgw"
)


def rsa_entry(n: int, e: int = 65537, **extra: Any) -> dict[str, Any]:
    return {"kty": "RSA", "kid": "k", "n": uint(n), "e": uint(e), **extra}


def ec_pair(crv: str = "P-256", **extra: Any) -> tuple[ec.EllipticCurvePrivateKey, dict[str, Any]]:
    key = ec.generate_private_key(CURVES[crv])
    numbers, size = key.public_key().public_numbers(), EC_CURVES[crv].size
    return key, {"kty": "EC", "kid": "k", "crv": crv, "x": uint(numbers.x, size), "y": uint(numbers.y, size), **extra}


def ec_entry(crv: str = "P-256", **extra: Any) -> dict[str, Any]:
    return ec_pair(crv, **extra)[1]


def okp_entry(crv: str = "Ed25519", **extra: Any) -> dict[str, Any]:
    makers = {"Ed25519": ed25519.Ed25519PrivateKey, "Ed448": ed448.Ed448PrivateKey,
              "X25519": x25519.X25519PrivateKey, "X448": x448.X448PrivateKey}
    raw = makers[crv].generate().public_key().public_bytes_raw()
    return {"kty": "OKP", "kid": "k", "crv": crv, "x": b64u(raw), **extra}


def check(entry: object, **config: Any) -> tuple[KeySet, str]:
    """Validate a document of a good anchor key plus ``entry``; return the outcome and the anchor's kid."""
    anchor = ec_entry()
    anchor["kid"] = jwk.thumbprint(anchor) if config.get("require_thumbprint_kid") else "anchor"
    document = json.dumps({"keys": [anchor, entry]}).encode()
    return validate_document(document, ValidationConfig(**config)), anchor["kid"]


def dropped(entry: object, **config: Any) -> str:
    keyset, _ = check(entry, **config)
    assert len(keyset.dropped) == 1, keyset
    assert keyset.dropped[0].reason in DROP_REASONS
    return keyset.dropped[0].reason


def served(entry: object, **config: Any) -> Mapping[str, Any]:
    keyset, anchor = check(entry, **config)
    assert keyset.dropped == (), keyset.dropped
    return next(key for key in keyset.keys if key.get("kid") != anchor)


def certificate(key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jwksd test")])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
    builder = builder.serial_number(1).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=1))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def noncanonical(text: str) -> str:
    """The same octets with a padding bit set in the last character (the text must end in a partial group)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return text[:-1] + alphabet[alphabet.index(text[-1]) + 1]


@pytest.fixture(scope="module")
def rsa_n() -> int:
    return rsa.generate_private_key(65537, 2048).public_key().public_numbers().n


# --- common members ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kty", ["rsa", "", 5, None, "RSA-PSS", ["RSA"]])
def test_kty_must_be_exact(kty: object) -> None:
    """A kty other than exactly RSA, EC or OKP drops the key."""
    assert dropped(ec_entry(kty=kty)) == "bad_kty"


def test_kty_missing() -> None:
    """A key without kty is dropped."""
    entry = ec_entry()
    del entry["kty"]
    assert dropped(entry) == "bad_kty"


def test_kid_required() -> None:
    """With require_kid a key without kid is dropped."""
    entry = ec_entry()
    del entry["kid"]
    assert dropped(entry) == "missing_kid"


def test_kid_optional() -> None:
    """With require_kid off a key without kid is served without one."""
    entry = ec_entry()
    del entry["kid"]
    assert "kid" not in served(entry, require_kid=False)


@pytest.mark.parametrize("kid", ["", "a" * 257, "a\nb", "tab\t", "del\x7f", "c1\x85", 5, None, ["k"]])
def test_kid_must_be_short_text(kid: object) -> None:
    """A kid that is not 1 to 256 characters free of control characters drops the key."""
    assert dropped(ec_entry(kid=kid)) == "bad_kid"


@pytest.mark.parametrize("kid", ["a", "é" * 256, "2024-01-01 key/1"])
def test_kid_accepted(kid: str) -> None:
    """A kid of 1 to 256 printable characters is served as given."""
    assert served(ec_entry(kid=kid))["kid"] == kid


def test_thumbprint_kid() -> None:
    """With require_thumbprint_kid the kid must be the RFC 7638 thumbprint."""
    entry = ec_entry()
    assert dropped(entry, require_thumbprint_kid=True) == "thumbprint_mismatch"
    entry["kid"] = jwk.thumbprint(entry)
    assert served(entry, require_thumbprint_kid=True)["kid"] == entry["kid"]


def test_thumbprint_kid_needs_a_kid() -> None:
    """With require_thumbprint_kid a key without kid is dropped even when require_kid is off."""
    entry = ec_entry()
    del entry["kid"]
    assert dropped(entry, require_kid=False, require_thumbprint_kid=True) == "missing_kid"


@pytest.mark.parametrize("use", ["sig", "enc"])
def test_use_accepted(use: str) -> None:
    """use sig or enc is served."""
    assert served(ec_entry(use=use))["use"] == use


@pytest.mark.parametrize("use", ["SIG", "", "verify", 1, None])
def test_use_rejected(use: object) -> None:
    """Any other use drops the key."""
    assert dropped(ec_entry(use=use)) == "bad_use"


@pytest.mark.parametrize("ops", [["verify"], ["encrypt", "wrapKey"], ["deriveKey", "deriveBits"]])
def test_key_ops_accepted(ops: list[str], rsa_n: int) -> None:
    """Public key_ops of one kind are served, sorted."""
    assert served(rsa_entry(rsa_n, key_ops=ops))["key_ops"] == tuple(sorted(ops))


@pytest.mark.parametrize("ops", [
    [], "verify", ["verify", "verify"], [1], ["sign"], ["verify", "sign"], ["decrypt"], ["unwrapKey"],
    ["verify", "encrypt"], ["fly"],
])
def test_key_ops_rejected(ops: object, rsa_n: int) -> None:
    """Empty, repeated, private, mixed or unknown key_ops drop the key."""
    assert dropped(rsa_entry(rsa_n, key_ops=ops)) == "bad_key_ops"


@pytest.mark.parametrize(("use", "ops"), [("sig", ["encrypt"]), ("enc", ["verify"])])
def test_key_ops_agree_with_use(use: str, ops: list[str], rsa_n: int) -> None:
    """key_ops of the other kind than use drop the key."""
    assert dropped(rsa_entry(rsa_n, use=use, key_ops=ops)) == "bad_key_ops"


# --- alg and key (second table) ---------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                 "RSA-OAEP", "RSA-OAEP-256", "RSA-OAEP-384", "RSA-OAEP-512"])
def test_alg_rsa(alg: str, rsa_n: int) -> None:
    """The RSA algorithms are served on an RSA key."""
    assert served(rsa_entry(rsa_n, alg=alg))["alg"] == alg


@pytest.mark.parametrize(("alg", "crv"), [("ES256", "P-256"), ("ES384", "P-384"), ("ES512", "P-521"),
                                          ("ES256K", "secp256k1")])
def test_alg_ecdsa(alg: str, crv: str) -> None:
    """Each ES* algorithm is served on its own curve."""
    assert served(ec_entry(crv, alg=alg), allow_secp256k1=True)["alg"] == alg


@pytest.mark.parametrize(("alg", "crv"), [("EdDSA", "Ed25519"), ("EdDSA", "Ed448"), ("Ed25519", "Ed25519"),
                                          ("Ed448", "Ed448")])
def test_alg_eddsa(alg: str, crv: str) -> None:
    """EdDSA fits both Edwards curves, Ed25519 and Ed448 only their own."""
    assert served(okp_entry(crv, alg=alg))["alg"] == alg


@pytest.mark.parametrize("alg", ["ECDH-ES", "ECDH-ES+A128KW", "ECDH-ES+A192KW", "ECDH-ES+A256KW"])
@pytest.mark.parametrize("key", ["P-256", "P-384", "P-521", "secp256k1", "X25519", "X448"])
def test_alg_ecdh(alg: str, key: str) -> None:
    """The ECDH-ES algorithms fit every allowed EC curve and X25519 / X448."""
    entry = okp_entry(key, alg=alg) if key.startswith("X") else ec_entry(key, alg=alg)
    assert served(entry, allow_secp256k1=True)["alg"] == alg


@pytest.mark.parametrize("alg", [
    "none", "RSA1_5", "HS256", "HS384", "HS512", "dir", "A128KW", "A256KW", "A128GCMKW", "PBES2-HS256+A128KW",
    "A128GCM", "A256CBC-HS512", "ES256k", "", 256, None,
])
def test_alg_never_published(alg: object) -> None:
    """none, RSA1_5, HS*, dir, AES key wrap, PBES2, content algorithms and unknown names drop the key."""
    assert dropped(ec_entry(alg=alg)) == "bad_alg"


@pytest.mark.parametrize(("alg", "make"), [
    ("RS256", ec_entry), ("RSA-OAEP", ec_entry), ("ES256", lambda: ec_entry("P-384")),
    ("ES384", lambda: ec_entry("P-521")), ("ES512", lambda: ec_entry("P-256")), ("ES256", okp_entry),
    ("EdDSA", ec_entry), ("EdDSA", lambda: okp_entry("X25519", use="enc")),
    ("Ed25519", lambda: okp_entry("Ed448")), ("Ed448", lambda: okp_entry("Ed25519")),
    ("ECDH-ES", lambda: okp_entry("Ed25519", use="sig")),
])
def test_alg_key_mismatch(alg: str, make: Any) -> None:
    """An alg that does not fit the key type or curve drops the key."""
    assert dropped({**make(), "alg": alg}) == "alg_key_mismatch"


def test_alg_ecdh_on_rsa_key(rsa_n: int) -> None:
    """ECDH-ES on an RSA key drops it."""
    assert dropped(rsa_entry(rsa_n, alg="ECDH-ES")) == "alg_key_mismatch"


@pytest.mark.parametrize(("alg", "members"), [
    ("RS256", {"use": "enc"}), ("RSA-OAEP", {"use": "sig"}), ("RS256", {"key_ops": ["encrypt"]}),
    ("RSA-OAEP-256", {"key_ops": ["verify"]}),
])
def test_alg_use_mismatch(alg: str, members: dict[str, Any], rsa_n: int) -> None:
    """An alg for the other use than use or key_ops declare drops the key."""
    assert dropped(rsa_entry(rsa_n, alg=alg, **members)) == "alg_use_mismatch"


def test_alg_use_mismatch_ec() -> None:
    """ES256 on a P-256 key declared for encryption drops it."""
    assert dropped(ec_entry(alg="ES256", use="enc")) == "alg_use_mismatch"


# --- encodings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["AQAB=", "AQAB==", "AQ+B", "AQ/B", "AQ AB", "AQAB\n", "AQABA", 65537, None])
def test_base64url_strict(bad: object, rsa_n: int) -> None:
    """Padding, the +/ alphabet, whitespace, a length of 1 mod 4 or a non-string drop the key."""
    assert dropped({**rsa_entry(rsa_n), "e": bad}) == "bad_base64url"


def test_base64url_canonical(rsa_n: int) -> None:
    """A base64url text with padding bits set (not the canonical encoding) drops the key."""
    entry = rsa_entry(rsa_n)
    entry["n"] = noncanonical(entry["n"])  # 256 octets: the last character carries 4 padding bits
    assert dropped(entry) == "bad_base64url"


def test_base64url_decoder() -> None:
    """The decoder takes exactly the canonical texts."""
    assert b64u_decode("AQAB") == b"\x01\x00\x01"
    assert b64u_decode("AQ") == b"\x01"
    assert b64u_decode("AR") is None
    assert b64u_decode("") == b""
    assert b64u_decode("A") is None


def test_base64_decoder() -> None:
    """The standard decoder wants padding and the canonical text."""
    assert b64_decode("AA==") == b"\x00"
    assert b64_decode("AB==") is None
    assert b64_decode("AA") is None
    assert b64_decode("A-==") is None
    assert b64_decode("AA==\n") is None


@pytest.mark.parametrize("member", ["n", "e"])
def test_rsa_minimal_octets(member: str, rsa_n: int) -> None:
    """n or e with a leading zero octet drops the key."""
    entry = rsa_entry(rsa_n)
    entry[member] = b64u(b"\x00" + (b64u_decode(entry[member]) or b""))
    assert dropped(entry) == "rsa_not_minimal"


# --- RSA row --------------------------------------------------------------------------------------


def test_rsa_served(rsa_n: int) -> None:
    """A good RSA key is served with only its public members."""
    key = served(rsa_entry(rsa_n, alg="RS256", use="sig", ext=True, x="junk"))
    assert list(key) == ["kty", "kid", "use", "alg", "n", "e"]


@pytest.mark.parametrize("member", ["n", "e"])
def test_rsa_required_members(member: str, rsa_n: int) -> None:
    """An RSA key without n or e is dropped."""
    entry = rsa_entry(rsa_n)
    del entry[member]
    assert dropped(entry) == "missing_member"


def test_rsa_too_small() -> None:
    """A 1024-bit modulus (or a 2047-bit one) drops the key."""
    small = rsa.generate_private_key(65537, 1024).public_key().public_numbers().n
    assert dropped(rsa_entry(small)) == "rsa_too_small"
    assert dropped(rsa_entry((1 << 2046) + 1)) == "rsa_too_small"


def test_rsa_size_bounds() -> None:
    """Moduli of exactly 2048 and 8192 bits are served; 8193 bits drops the key."""
    assert served(rsa_entry((1 << 2047) + 0x1D))  # the first odd offsets without a prime factor below 10,000
    assert served(rsa_entry((1 << 8191) + 0x03))
    assert dropped(rsa_entry((1 << 8192) + 0xC3)) == "rsa_too_large"


def test_rsa_even_modulus(rsa_n: int) -> None:
    """An even modulus drops the key (cryptography would accept it)."""
    assert dropped(rsa_entry(rsa_n + 1)) == "rsa_even_modulus"


@pytest.mark.parametrize("e", [3, 65535, 65536, 65538, 2**16, 2**256 + 1, 2**257 + 1])
def test_rsa_bad_exponent(e: int, rsa_n: int) -> None:
    """e even, at most 2^16 or at least 2^256 drops the key (e < n is implied by the size rule)."""
    assert dropped(rsa_entry(rsa_n, e)) == "rsa_bad_exponent"


@pytest.mark.parametrize("e", [65537, 2**16 + 3, 2**256 - 1])
def test_rsa_exponent_bounds(e: int, rsa_n: int) -> None:
    """Odd exponents strictly between 2^16 and 2^256 are served."""
    assert served(rsa_entry(rsa_n, e))


def roca_modulus(bits: int = 2048) -> int:
    """A modulus with the ROCA structure: 65537^a modulo every listed prime."""
    primorial = prod(PRIMES)
    n = pow(65537, 12345, primorial) + ((1 << (bits - 1)) // primorial + 1) * primorial
    n = n if n & 1 else n + primorial
    while any(n % divisor == 0 for divisor in range(3, 10000, 2)):  # no small factor, as in a real modulus
        n += 2 * primorial
    return n


def test_rsa_roca() -> None:
    """A modulus carrying the ROCA fingerprint drops the key."""
    assert dropped(rsa_entry(roca_modulus())) == "rsa_roca"


def test_roca_markers_match_roca_detect(rsa_n: int) -> None:
    """The markers computed at import equal roca-detect's published ones, and a fresh key is not flagged."""
    published = {3: 6, 5: 30, 7: 126, 11: 1026, 13: 5658, 17: 107286, 19: 199410,
                 167: 187072209578355573530071658587684226515959365500926}
    assert {prime: marker for prime, marker in MARKERS if prime in published} == published
    assert len(MARKERS) == 38
    assert has_roca_fingerprint(roca_modulus(4096))
    assert not has_roca_fingerprint(rsa_n)


# --- EC row and curve rules -------------------------------------------------------------------------


@pytest.mark.parametrize("crv", ["P-256", "P-384", "P-521"])
def test_ec_served(crv: str) -> None:
    """A good key on each NIST curve is served with crv, x and y."""
    assert list(served(ec_entry(crv))) == ["kty", "kid", "crv", "x", "y"]


@pytest.mark.parametrize("crv", ["P-256K", "p-256", "P-192", "Ed25519", "", 256, None])
def test_ec_bad_curve(crv: object) -> None:
    """Any other crv drops the key."""
    assert dropped({**ec_entry(), "crv": crv}) == "ec_bad_curve"


def test_ec_secp256k1_only_when_allowed() -> None:
    """secp256k1 is dropped by default and served with allow_secp256k1."""
    assert dropped(ec_entry("secp256k1")) == "ec_bad_curve"
    assert served(ec_entry("secp256k1"), allow_secp256k1=True)["crv"] == "secp256k1"


@pytest.mark.parametrize("member", ["crv", "x", "y"])
def test_ec_required_members(member: str) -> None:
    """An EC key without crv, x or y is dropped."""
    entry = ec_entry()
    del entry[member]
    assert dropped(entry) == "missing_member"


@pytest.mark.parametrize("crv", ["P-256", "P-384", "P-521", "secp256k1"])
@pytest.mark.parametrize("member", ["x", "y"])
def test_ec_coordinate_size(crv: str, member: str) -> None:
    """A coordinate one octet longer or shorter than the curve's size drops the key."""
    entry = ec_entry(crv)
    octets = b64u_decode(entry[member])
    assert octets is not None
    assert dropped({**entry, member: b64u(b"\x00" + octets)}, allow_secp256k1=True) == "ec_bad_coordinate"
    assert dropped({**entry, member: b64u(octets[1:])}, allow_secp256k1=True) == "ec_bad_coordinate"


@pytest.mark.parametrize("member", ["x", "y"])
def test_ec_coordinate_below_prime(member: str) -> None:
    """A P-521 coordinate written as c + p (same point modulo p, still 66 octets) drops the key."""
    entry = ec_entry("P-521")
    value = int.from_bytes(b64u_decode(entry[member]) or b"", "big") + EC_CURVES["P-521"].p
    assert dropped({**entry, member: uint(value, 66)}) == "ec_bad_coordinate"


@pytest.mark.parametrize("crv", ["P-256", "P-384", "P-521", "secp256k1"])
def test_ec_not_on_curve(crv: str) -> None:
    """A point off the curve drops the key."""
    entry = ec_entry(crv)
    y = int.from_bytes(b64u_decode(entry["y"]) or b"", "big")
    size = EC_CURVES[crv].size
    assert dropped({**entry, "y": uint((y + 1) % EC_CURVES[crv].p, size)}, allow_secp256k1=True) == "ec_not_on_curve"


# --- OKP row --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("crv", "use"), [("Ed25519", "sig"), ("Ed448", "sig"), ("X25519", "enc"), ("X448", "enc")])
def test_okp_served(crv: str, use: str) -> None:
    """A good key on each OKP curve is served with crv and x."""
    assert list(served(okp_entry(crv, use=use))) == ["kty", "kid", "use", "crv", "x"]


@pytest.mark.parametrize("crv", ["ed25519", "Ed25519ph", "P-256", "X25519 ", 25519, None])
def test_okp_bad_curve(crv: object) -> None:
    """Any other OKP crv drops the key."""
    assert dropped({**okp_entry(), "crv": crv}) == "okp_bad_curve"


@pytest.mark.parametrize("member", ["crv", "x"])
def test_okp_required_members(member: str) -> None:
    """An OKP key without crv or x is dropped."""
    entry = okp_entry()
    del entry[member]
    assert dropped(entry) == "missing_member"


@pytest.mark.parametrize(("crv", "size"), [("Ed25519", 32), ("Ed448", 57), ("X25519", 32), ("X448", 56)])
def test_okp_x_size(crv: str, size: int) -> None:
    """An x of any length but the curve's drops the key."""
    for wrong in (size - 1, size + 1):
        assert dropped(okp_entry(crv, x=b64u(b"\x09" * wrong))) == "okp_bad_x"


def test_okp_has_no_y() -> None:
    """An OKP key with a y member is dropped."""
    assert dropped(okp_entry(y=b64u(b"\x01" * 32))) == "okp_unexpected_y"


@pytest.mark.parametrize(("crv", "members"), [
    ("Ed25519", {"use": "enc"}), ("Ed448", {"key_ops": ["encrypt"]}), ("X25519", {"use": "sig"}),
    ("X448", {"key_ops": ["verify"]}),
])
def test_okp_curve_purpose(crv: str, members: dict[str, Any]) -> None:
    """Ed25519/Ed448 are for signing only and X25519/X448 for encryption only."""
    assert dropped(okp_entry(crv, **members)) == "use_key_mismatch"


def _non_square_y() -> int:
    """A y below p whose x^2 = (y^2 - 1) / (d y^2 + 1) has no root (Euler's criterion, independent of jwksd)."""
    p = ED25519_P
    for y in range(2, 1000):
        ratio = (y * y - 1) * pow(ED25519_D * y * y + 1, -1, p) % p
        if pow(ratio, (p - 1) // 2, p) == p - 1:
            return y
    raise AssertionError("no non-square found")


@pytest.mark.parametrize("encoded", [
    ED25519_P.to_bytes(32, "little"),  # y = p: not below the field prime
    (ED25519_P + 1).to_bytes(32, "little"),  # y = p + 1: a non-canonical identity
    (1 | 1 << 255).to_bytes(32, "little"),  # x = 0 with the sign bit set
    _non_square_y().to_bytes(32, "little"),  # no square root exists
])
def test_ed25519_not_on_curve(encoded: bytes) -> None:
    """An Ed25519 x that does not decode per RFC 8032 5.1.3 drops the key."""
    assert dropped(okp_entry(x=b64u(encoded))) == "ed25519_not_on_curve"


@pytest.mark.parametrize("hex_point", [
    "0100000000000000000000000000000000000000000000000000000000000000",  # the identity, order 1
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
])
def test_ed25519_small_order(hex_point: str) -> None:
    """An Ed25519 point of order 1, 2, 4 or 8 drops the key (cryptography would accept it)."""
    assert dropped(okp_entry(x=b64u(bytes.fromhex(hex_point)))) == "ed25519_small_order"


def test_ed25519_decode_base_point() -> None:
    """The RFC 8032 base point decodes to its published coordinates and is not of small order."""
    point = ed25519_decode(bytes.fromhex("5866666666666666666666666666666666666666666666666666666666666666"))
    assert point == (15112221349535400772501151409588531511454012693041857206046113283949847762202,
                     46316835694926478169428394003475163141307993866256225615783033603165251855960)
    assert not ed25519_small_order(point)


def test_cryptography_last_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key cryptography refuses after jwksd's own checks passed is dropped."""
    def refuse(data: bytes) -> x25519.X25519PublicKey:
        raise ValueError("refused")
    monkeypatch.setitem(jwk._OKP_LOADERS, "X25519", refuse)
    assert dropped(okp_entry("X25519")) == "crypto_rejected"


# --- x5c, x5t, x5t#S256, x5u ---------------------------------------------------------------------------


def test_x5c_served() -> None:
    """A matching x5c with both thumbprints is served."""
    key, entry = ec_pair()
    der = certificate(key)
    x5t, s256 = b64u(hashlib.sha1(der).digest()), b64u(hashlib.sha256(der).digest())
    issuer = certificate(ec.generate_private_key(CURVES["P-256"]))
    chain = [base64.b64encode(der).decode(), base64.b64encode(issuer).decode()]
    key_out = served({**entry, "x5c": chain, "x5t": x5t, "x5t#S256": s256, "x5u": "https://keys.example/a.pem"})
    assert key_out["x5c"] == tuple(chain)
    assert (key_out["x5t"], key_out["x5t#S256"], key_out["x5u"]) == (x5t, s256, "https://keys.example/a.pem")


def test_x5c_other_key() -> None:
    """An x5c whose first certificate holds another key drops the key."""
    other = certificate(ec.generate_private_key(CURVES["P-256"]))
    assert dropped(ec_entry(x5c=[base64.b64encode(other).decode()])) == "x5c_mismatch"


def _chain() -> tuple[dict[str, Any], str]:
    """A key and its certificate whose base64 holds '+' or '/', so a URL-safe re-spelling differs."""
    for _ in range(100):  # a few certificates in a thousand lack both characters
        key, entry = ec_pair()
        text = base64.b64encode(certificate(key)).decode()
        if "+" in text or "/" in text:
            return entry, text
    raise AssertionError("no certificate with '+' or '/' in 100 tries")


@pytest.mark.parametrize("mangle", [
    lambda text: [text.rstrip("=") if text.endswith("=") else text + "="],
    lambda text: [text.replace("+", "-").replace("/", "_")],
    lambda text: [text[:40] + "\n" + text[40:]], lambda text: [" " + text], lambda text: text,
    lambda text: [], lambda text: [5], lambda text: [base64.b64encode(b"not a certificate").decode()],
    lambda text: [text, "AB=="],
])
def test_bad_x5c(mangle: Any) -> None:
    """x5c not an array of padded standard base64 DER certificates drops the key."""
    entry, text = _chain()
    assert dropped({**entry, "x5c": mangle(text)}) == "bad_x5c"


@pytest.mark.parametrize(("name", "size"), [("x5t", 20), ("x5t#S256", 32)])
def test_x5t_mismatch(name: str, size: int) -> None:
    """A thumbprint that is not x5c[0]'s digest drops the key."""
    entry, text = _chain()
    assert dropped({**entry, "x5c": [text], name: b64u(b"\x01" * size)}) == "x5t_mismatch"


@pytest.mark.parametrize(("name", "size"), [("x5t", 20), ("x5t#S256", 32)])
def test_bad_x5t(name: str, size: int) -> None:
    """A thumbprint of the wrong length or encoding drops the key, with or without x5c."""
    assert dropped(ec_entry(**{name: b64u(b"\x01" * (size + 1))})) == "bad_x5t"
    assert dropped(ec_entry(**{name: base64.b64encode(b"\x01" * size).decode()})) == "bad_x5t"
    assert served(ec_entry(**{name: b64u(b"\x01" * size)}))[name] == b64u(b"\x01" * size)


@pytest.mark.parametrize("url", ["http://keys.example/a.pem", "HTTPS://keys.example/", "https://", "https:///x",
                                 "https://keys.example/a b", "ftp://keys.example", 5, "https://[::1/"])
def test_bad_x5u(url: object) -> None:
    """An x5u that is not an https:// URL with a host drops the key."""
    assert dropped(ec_entry(x5u=url)) == "bad_x5u"


# --- thumbprint -----------------------------------------------------------------------------------


def test_thumbprint_rfc7638_example() -> None:
    """The RFC 7638 section 3.1 example gives its published thumbprint, ignoring optional members."""
    key = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    assert jwk.thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("make", [lambda: ec_entry("P-384"), lambda: okp_entry("Ed448"), lambda: okp_entry("X25519")])
def test_thumbprint_matches_jwcrypto(make: Any) -> None:
    """EC and OKP thumbprints agree with jwcrypto's."""
    entry = make()
    assert jwk.thumbprint(entry) == jwcrypto_jwk.JWK(**entry).thumbprint()
