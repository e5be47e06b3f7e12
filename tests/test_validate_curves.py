"""Small-order X25519 and X448 public keys (jwksd/validate/curves.py, xdh_small_order), checked against OpenSSL."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import x448, x25519
from hypothesis import given
from hypothesis import strategies as st

from jwksd.validate.curves import xdh_small_order
from tests.test_validate_jwk import b64u, check, dropped, okp_entry, served
from tests.test_validate_properties import FUZZ

P25519 = 2**255 - 19
P448 = 2**448 - 2**224 - 1
# RFC 7748 / JWK_RULES.md: the u-coordinates of small order.
ORDER_8 = (325606250916557431795983626356110631294008115727848805560023387167927233504,
           39382357235489614581723060781553021112529911719440698176882885853963445705823)
SMALL_25519 = (0, 1, P25519 - 1, *ORDER_8)
SMALL_448 = (0, 1, P448 - 1)


def x25519_bytes(u: int, top_bit: bool = False) -> bytes:
    return (u | (1 << 255 if top_bit else 0)).to_bytes(32, "little")


def all_zero_secret(crv: str, data: bytes) -> bool:
    """OpenSSL's verdict: exchanging with this public key gives (and so refuses) an all-zero secret."""
    private = x25519.X25519PrivateKey.generate() if crv == "X25519" else x448.X448PrivateKey.generate()
    public = (x25519.X25519PublicKey if crv == "X25519" else x448.X448PublicKey).from_public_bytes(data)
    try:
        secret = private.exchange(public)  # type: ignore[arg-type]
    except ValueError:
        return True
    return secret == bytes(len(secret))


ENCODINGS_25519 = [
    *(x25519_bytes(u) for u in SMALL_25519),
    *(x25519_bytes(u, top_bit=True) for u in SMALL_25519 if u < 2**255),  # the top bit is ignored
    *(x25519_bytes(u + P25519) for u in SMALL_25519 if u + P25519 < 2**255),  # non-canonical u + p
]
ENCODINGS_448 = [*(u.to_bytes(56, "little") for u in SMALL_448),
                 *((u + P448).to_bytes(56, "little") for u in SMALL_448 if u + P448 < 2**448)]


@pytest.mark.parametrize("data", ENCODINGS_25519, ids=lambda data: data.hex()[:12])
def test_x25519_small_order_dropped(data: bytes) -> None:
    """Every encoding of a small-order X25519 u-coordinate drops the key, and OpenSSL agrees it is one."""
    assert all_zero_secret("X25519", data)
    assert dropped(okp_entry("X25519", x=b64u(data))) == "xdh_small_order"


@pytest.mark.parametrize("data", ENCODINGS_448, ids=lambda data: data.hex()[:12])
def test_x448_small_order_dropped(data: bytes) -> None:
    """Every encoding of a small-order X448 u-coordinate (0, 1, p - 1, also plus p) drops the key."""
    assert all_zero_secret("X448", data)
    assert dropped(okp_entry("X448", x=b64u(data))) == "xdh_small_order"


def test_all_zero_keys_dropped() -> None:
    """The all-zero X25519 and X448 keys of the issue are dropped, with a detail naming the curve."""
    for crv, size in (("X25519", 32), ("X448", 56)):
        keyset, _ = check(okp_entry(crv, x=b64u(bytes(size))))
        assert [(drop.reason, drop.detail) for drop in keyset.dropped] == [
            ("xdh_small_order", f"x is a small-order {crv} u-coordinate: a peer would derive an all-zero shared "
                                "secret")]


@pytest.mark.parametrize(("crv", "u"), [
    ("X25519", 2), ("X25519", 9), ("X25519", P25519 - 2), ("X25519", ORDER_8[0] + 1), ("X25519", ORDER_8[1] - 1),
    ("X448", 2), ("X448", 5), ("X448", P448 - 2),
])
def test_xdh_accept_edge(crv: str, u: int) -> None:
    """Neighbours of the small-order values (and the base points 9 and 5) are served."""
    data = u.to_bytes(32 if crv == "X25519" else 56, "little")
    assert not all_zero_secret(crv, data)
    assert served(okp_entry(crv, x=b64u(data)))["x"] == b64u(data)


@FUZZ
@given(st.binary(min_size=32, max_size=32))
def test_x25519_agrees_with_openssl(data: bytes) -> None:
    """For any 32 octets, jwksd refuses exactly the keys with which OpenSSL derives an all-zero secret."""
    assert xdh_small_order("X25519", data) == all_zero_secret("X25519", data)


@FUZZ
@given(st.sampled_from(SMALL_25519), st.booleans(), st.booleans())
def test_x25519_small_order_any_encoding(u: int, plus_p: bool, top_bit: bool) -> None:
    """A small-order u, with or without p added and the top bit set, is refused whenever it fits 32 octets."""
    value = u + P25519 if plus_p and u + P25519 < 2**255 else u
    assert xdh_small_order("X25519", x25519_bytes(value, top_bit))


@FUZZ
@given(st.binary(min_size=56, max_size=56))
def test_x448_agrees_with_openssl(data: bytes) -> None:
    """For any 56 octets, jwksd refuses exactly the X448 keys with which OpenSSL derives an all-zero secret."""
    assert xdh_small_order("X448", data) == all_zero_secret("X448", data)
