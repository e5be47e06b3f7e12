"""The X.509 members of a JWK: x5c must certify the JWK's own key, x5t and x5t#S256 must hash x5c[0].

The chain itself is not verified (no trust anchors here): x5c is published for verifiers that do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from jwksd.validate.encoding import b64_decode, b64u_decode

X509Reason = Literal["bad_x5c", "x5c_mismatch", "bad_x5t", "x5t_mismatch", "bad_x5u"]
Problem = tuple[X509Reason, str]

_THUMBPRINTS: tuple[tuple[str, Callable[[bytes], bytes], int], ...] = (
    ("x5t", lambda der: hashlib.sha1(der, usedforsecurity=False).digest(), 20),  # SHA-1 is what RFC 7517 names
    ("x5t#S256", lambda der: hashlib.sha256(der).digest(), 32),
)
_NOT_IN_URL = re.compile(r"[\x00-\x20\x7f-\x9f]")


def check_x509(entry: Mapping[str, Any], key: PublicKeyTypes, public: dict[str, Any]) -> Problem | None:
    """Check x5c, x5t, x5t#S256 and x5u where present, copying each valid one into ``public``."""
    first: bytes | None = None
    if "x5c" in entry:
        chain = entry["x5c"]
        problem = _check_chain(chain, key)
        if problem is not None:
            return problem
        first = b64_decode(chain[0])
        public["x5c"] = tuple(chain)
    for name, digest, size in _THUMBPRINTS:
        if name not in entry:
            continue
        value = b64u_decode(entry[name])
        if value is None or len(value) != size:
            return "bad_x5t", f"{name} must be {size} octets in canonical base64url"
        # Without x5c there is no certificate to hash: a well-formed thumbprint is served as given.
        if first is not None and value != digest(first):
            return "x5t_mismatch", f"{name} is not the digest of x5c[0]"
        public[name] = entry[name]
    if "x5u" in entry:
        if not _https_url(entry["x5u"]):
            return "bad_x5u", "x5u must be an https:// URL with a host and no spaces or control characters"
        public["x5u"] = entry["x5u"]
    return None


def _check_chain(chain: object, key: PublicKeyTypes) -> Problem | None:
    if not isinstance(chain, list) or not chain:
        return "bad_x5c", "x5c must be a non-empty array of base64 DER certificates"
    certificates = []
    for index, item in enumerate(chain):
        der = b64_decode(item)
        if not der:
            return "bad_x5c", f"x5c[{index}] must be standard base64 (+/ alphabet, padded, no whitespace)"
        try:
            certificates.append(x509.load_der_x509_certificate(der))
        except Exception:  # any parser refusal is a bad certificate, never a failed refresh
            return "bad_x5c", f"x5c[{index}] is not a DER X.509 certificate"
    try:
        certified = certificates[0].public_key()
    except Exception:  # e.g. an algorithm cryptography does not know
        return "bad_x5c", "the public key of x5c[0] cannot be read"
    if _spki(certified) != _spki(key):
        return "x5c_mismatch", "x5c[0] certifies a different key than the JWK holds"
    return None


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _https_url(value: object) -> bool:
    if not isinstance(value, str) or not value.startswith("https://") or _NOT_IN_URL.search(value):
        return False
    try:
        return bool(urlsplit(value).hostname)
    except ValueError:
        return False
