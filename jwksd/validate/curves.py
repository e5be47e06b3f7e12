"""Curve parameters and the point arithmetic jwksd does itself, because ``cryptography`` accepts too much.

Coordinates are integers; sizes are octets. Only public operations: nothing here is secret or
needs constant time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WeierstrassCurve:
    """A short Weierstrass curve y^2 = x^3 + ax + b over GF(p), with coordinates of ``size`` octets."""

    name: str
    p: int
    a: int
    b: int
    size: int

    def contains(self, x: int, y: int) -> bool:
        """Whether the affine point (x, y), both already below p, is on the curve."""
        return (y * y - (x * x * x + self.a * x + self.b)) % self.p == 0


# SEC 2 / FIPS 186-4 D.1.2 domain parameters. All four have cofactor 1, so a point on the curve is
# in the prime-order group and no subgroup check is needed.
EC_CURVES: dict[str, WeierstrassCurve] = {
    curve.name: curve
    for curve in (
        WeierstrassCurve(
            "P-256", 2**256 - 2**224 + 2**192 + 2**96 - 1, -3,
            0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B, 32,
        ),
        WeierstrassCurve(
            "P-384", 2**384 - 2**128 - 2**96 + 2**32 - 1, -3,
            0xB3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875AC656398D8A2ED19D2A85C8EDD3EC2AEF, 48,
        ),
        WeierstrassCurve(
            "P-521", 2**521 - 1, -3,
            0x0051953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF109E156193951EC7E937B1652C0BD3BB1BF073573DF883D2C34F1EF451FD46B503F00,
            66,
        ),
        WeierstrassCurve("secp256k1", 2**256 - 2**32 - 977, 0, 7, 32),
    )
}

# RFC 8037: the public key is the raw encoding, of exactly this many octets.
OKP_SIZES: dict[str, int] = {"Ed25519": 32, "Ed448": 57, "X25519": 32, "X448": 56}
OKP_SIGNING = frozenset({"Ed25519", "Ed448"})

# edwards25519 (RFC 8032 §5.1): -x^2 + y^2 = 1 + d x^2 y^2 over GF(2^255 - 19).
ED25519_P = 2**255 - 19
ED25519_D = -121665 * pow(121666, -1, ED25519_P) % ED25519_P
_SQRT_M1 = pow(2, (ED25519_P - 1) // 4, ED25519_P)
_IDENTITY = (0, 1)

Point = tuple[int, int]


def ed25519_decode(data: bytes) -> Point | None:
    """Decode a 32-octet Ed25519 public key to (x, y) as RFC 8032 §5.1.3 says, or None when it is no point."""
    p = ED25519_P
    encoded = int.from_bytes(data, "little")
    y = encoded & ((1 << 255) - 1)
    sign = encoded >> 255
    if y >= p:
        return None
    u = (y * y - 1) % p
    v = (ED25519_D * y * y + 1) % p
    x = u * pow(v, 3, p) * pow(u * pow(v, 7, p), (p - 5) // 8, p) % p
    vxx = v * x * x % p
    if vxx == u:
        pass
    elif vxx == (-u) % p:
        x = x * _SQRT_M1 % p
    else:
        return None
    if x == 0 and sign == 1:
        return None
    if x & 1 != sign:
        x = p - x
    return x, y


def _ed25519_add(first: Point, second: Point) -> Point:
    """Affine twisted Edwards addition; the formula is complete (d is not a square), so it never divides by 0."""
    p = ED25519_P
    (x1, y1), (x2, y2) = first, second
    t = ED25519_D * x1 * x2 * y1 * y2 % p
    x3 = (x1 * y2 + y1 * x2) * pow(1 + t, -1, p) % p
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, -1, p) % p
    return x3, y3


def ed25519_small_order(point: Point) -> bool:
    """Whether the point's order divides the cofactor 8 (the identity included): [8]P is the identity."""
    for _ in range(3):
        point = _ed25519_add(point, point)
    return point == _IDENTITY


# RFC 7748: the u-coordinates of X25519 and X448 public keys. A peer that computes a shared secret
# with a small-order point gets all zeros, whatever its own private key.
X25519_P = 2**255 - 19
X448_P = 2**448 - 2**224 - 1
_X25519_ORDER_8 = frozenset({
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
})
XDH_PRIMES: dict[str, int] = {"X25519": X25519_P, "X448": X448_P}


def xdh_small_order(crv: str, data: bytes) -> bool:
    """Whether an X25519 or X448 public key is a small-order u-coordinate.

    Read as RFC 7748 §5 decodes it: little-endian, the top bit cleared for X25519, then reduced
    mod p, so a non-canonical encoding (u + p) of a small-order point is caught too.
    """
    p = XDH_PRIMES[crv]
    u = int.from_bytes(data, "little")
    if crv == "X25519":
        u &= (1 << 255) - 1
    u %= p
    return u in (0, 1, p - 1) or (crv == "X25519" and u in _X25519_ORDER_8)
