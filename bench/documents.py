"""The key documents the suite serves and validates, generated once and cached under bench/results/."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

RESULTS = Path(__file__).resolve().parent / "results"


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _public_jwk(index: int, bits: int) -> dict[str, Any]:
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key().public_numbers()
    return {"kty": "RSA", "kid": f"bench-{bits}-{index:03d}", "use": "sig", "alg": "RS256",
            "n": _b64(numbers.n), "e": _b64(numbers.e)}


def rsa_document(count: int, bits: int, *, cache: Path = RESULTS) -> bytes:
    """A JWK Set of ``count`` fresh RSA public keys; only public halves are kept, cached by size."""
    path = cache / f"jwks-{count}x{bits}.json"
    if path.exists():
        return path.read_bytes()
    # RSA-4096 generation is slow (about a second a key): both cores, once.
    with ProcessPoolExecutor(max_workers=2) as pool:
        keys = list(pool.map(_public_jwk, range(count), [bits] * count))
    data = json.dumps({"keys": keys}).encode()
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def split_stages(document: bytes) -> tuple[bytes, bytes]:
    """The same keys as two stages (AWSPREVIOUS, AWSCURRENT): the first key alone, then the rest."""
    keys = json.loads(document)["keys"]
    return json.dumps({"keys": keys[:1]}).encode(), json.dumps({"keys": keys[1:] or keys}).encode()
