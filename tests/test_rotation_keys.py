"""Key material: DER ECDSA signatures to JWS R||S against known vectors, JWKs of public keys, private JWKs."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from jwksd.aws.registry import jwk_from_spki, public_jwk
from jwksd.errors import RotationError
from jwksd.rotation.keys import der_to_raw, generate, load_private_jwk, private_jwk, sign_local
from jwksd.validate.encoding import b64u_decode
from jwksd.validate.jwk import thumbprint

# RFC 7515, Appendix A.3: the ES256 example. R and S as printed there; S has its top bit set, so its
# DER INTEGER needs a leading zero octet.
A3_R = bytes([14, 209, 33, 83, 121, 99, 108, 72, 60, 47, 127, 21, 88, 7, 212, 2, 163, 178, 40, 3, 58, 249, 124, 126,
              23, 129, 154, 195, 22, 158, 166, 101])
A3_S = bytes([197, 10, 7, 211, 140, 60, 112, 229, 216, 241, 45, 175, 8, 74, 84, 128, 166, 101, 144, 197, 242, 147,
              80, 154, 143, 63, 127, 138, 131, 163, 84, 213])
A3_DER = bytes.fromhex("3045" "0220" + A3_R.hex() + "0221" "00" + A3_S.hex())
A3_SIGNATURE = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
A3_JWK = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
          "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
A3_INPUT = ("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19y"
            "b290Ijp0cnVlfQ")


def test_der_to_raw_rfc7515_vector() -> None:
    """The DER form of RFC 7515 A.3's signature converts to exactly the JWS signature printed there."""
    raw = der_to_raw(A3_DER, 32)
    assert raw == A3_R + A3_S == b64u_decode(A3_SIGNATURE)
    token = f"{A3_INPUT}.{A3_SIGNATURE}"
    key = jwt.PyJWK({**A3_JWK, "alg": "ES256"}).key
    assert jwt.api_jws.PyJWS().decode(token, key, algorithms=["ES256"])  # the vector itself verifies


def test_der_to_raw_pads_short_integers() -> None:
    """An R of 31 octets (leading zero dropped in DER) is left-padded back to the curve size."""
    der = bytes.fromhex("3043" "021f" + "11" * 31 + "0220" + "22" * 32)
    assert der_to_raw(der, 32) == b"\x00" + b"\x11" * 31 + b"\x22" * 32
    p384 = bytes.fromhex("3062" "0230" + "33" * 48 + "022e" + "44" * 46)
    assert der_to_raw(p384, 48) == b"\x33" * 48 + b"\x00\x00" + b"\x44" * 46


def test_der_to_raw_refuses_garbage() -> None:
    """Bytes that are not an ECDSA-Sig-Value, or integers too wide for the curve, are refused by name."""
    with pytest.raises(RotationError, match="bad_signature: the ECDSA signature is not DER"):
        der_to_raw(b"\x01\x02", 32)
    with pytest.raises(RotationError, match="does not fit 32-byte integers"):
        der_to_raw(bytes.fromhex("3046" "0221" "01" + "11" * 32 + "0221" "00" + "a2" * 32), 32)


@pytest.mark.parametrize(("key_spec", "alg"), [("ECC_NIST_P256", "ES256"), ("ECC_NIST_P384", "ES384"),
                                               ("ECC_NIST_P521", "ES512"), ("RSA_2048", "PS256"),
                                               ("RSA_2048", "RS256")])
def test_local_signatures_verify_with_pyjwt(key_spec: str, alg: str) -> None:
    """A key made and signed with here, reloaded from its private JWK, verifies with PyJWT; kid is the thumbprint."""
    private = load_private_jwk(private_jwk(generate(key_spec), alg))
    jwk = public_jwk(private.public_key(), alg)
    assert jwk["kid"] == thumbprint(jwk)
    spki = private.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    assert jwk_from_spki(spki, alg) == jwk
    signing_input = jwt.utils.base64url_encode(f'{{"alg":"{alg}"}}'.encode()) + b".e30"
    token = f"{signing_input.decode()}.{jwt.utils.base64url_encode(sign_local(private, alg, signing_input)).decode()}"
    assert jwt.api_jws.PyJWS().decode(token, jwt.PyJWK(jwk).key, algorithms=[alg]) == b"{}"
