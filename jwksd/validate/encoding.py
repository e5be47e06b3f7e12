"""The two base64 encodings of JWK members, decoded strictly: one text for each octet string.

A lenient decoder would let two different documents stand for the same key (or hide junk in
padding bits), so each decoder re-encodes and demands the input back.
"""

from __future__ import annotations

import base64
import re

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def b64u_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: object) -> bytes | None:
    """Strict base64url: alphabet only, no padding, length mod 4 never 1, canonical; None when it is not."""
    if not isinstance(text, str) or len(text) % 4 == 1 or not _BASE64URL.fullmatch(text):
        return None
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return data if b64u_encode(data) == text else None


def b64_decode(text: object) -> bytes | None:
    """Strict standard base64 (``+/``, padded, no whitespace), canonical; None when it is not."""
    if not isinstance(text, str) or not _BASE64.fullmatch(text):
        return None
    data = base64.b64decode(text, validate=True)  # the pattern already admits only well-formed text
    return data if base64.b64encode(data).decode("ascii") == text else None
