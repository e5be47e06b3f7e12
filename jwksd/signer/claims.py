"""A sign request's body, checked, and the compact JWS made of it: every refusal names what was wrong.

The body is ``{"claims": {...}, "ttl_s": N, "jti": true}``; ``ttl_s`` and ``jti`` may be left out.
The signer sets ``iat`` and ``exp`` (``exp = iat + ttl_s``, ``ttl_s`` at most the registry's
``max_token_lifetime_s`` and that by default: the retire grace is computed from it), and ``jti``
(128 random bits) when asked; claims that set ``iat``, ``exp`` or ``nbf`` themselves are refused.
JSON that Python alone accepts (NaN, Infinity, a number overflowing to it, more digits than int()
reads) and objects with a member twice are refused too.
"""

from __future__ import annotations

import functools
import json
import math
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jwksd.aws.registry import KeyRecord
from jwksd.errors import SignerError
from jwksd.validate.encoding import b64u_encode

RESERVED = ("iat", "exp", "nbf")
MEMBERS = ("claims", "ttl_s", "jti")


@dataclass(frozen=True)
class SignRequest:
    """What a caller asked for: its claims, the token's lifetime (None: the longest allowed), a jti or not."""

    claims: Mapping[str, Any]
    ttl_s: int | None
    jti: bool


def _bad(code: str, message: str) -> SignerError:
    return SignerError(code, message)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _bad("bad_json", f"request body: the member {json.dumps(key)[:64]} appears twice in one object")
        seen[key] = value
    return seen


def _constant(name: str) -> Any:
    raise _bad("bad_json", f"request body: {name} is not JSON")


def _float(text: str) -> float:
    """A JSON number with a fraction or exponent; refused when it overflows (1e999 would sign as Infinity)."""
    value = float(text)
    if not math.isfinite(value):
        raise _bad("bad_json", f"request body: the number {text[:32]} is out of range (not finite)")
    return value


def _type(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def parse(body: bytes) -> SignRequest:
    """The request in ``body``; SignerError (400) naming the first thing wrong with it."""
    try:
        data = json.loads(body.decode("utf-8"), object_pairs_hook=_pairs, parse_constant=_constant,
                          parse_float=_float)
    except UnicodeDecodeError as exc:
        raise _bad("bad_json", f"request body: not UTF-8 (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise _bad("bad_json", f"request body: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
                   ) from exc
    except RecursionError as exc:
        raise _bad("bad_json", "request body: nested too deeply") from exc
    except ValueError as exc:  # int(): more digits than sys.get_int_max_str_digits()
        raise _bad("bad_json", f"request body: a number has more than {sys.get_int_max_str_digits()} digits"
                   ) from exc
    if not isinstance(data, dict):
        raise _bad("not_an_object", f"request body: expected a JSON object, got {_type(data)}")
    unknown = sorted(set(data) - set(MEMBERS))
    if unknown:
        raise _bad("unknown_member", f"request body: unknown member {json.dumps(unknown[0])[:64]}: expected "
                                     f"{', '.join(MEMBERS)}")
    claims = data.get("claims")
    if not isinstance(claims, dict):
        raise _bad("bad_claims", f"claims: expected a JSON object, got {_type(claims) if 'claims' in data else 'none'}")
    reserved = [name for name in RESERVED if name in claims]
    if reserved:
        raise _bad("reserved_claim", f"claims.{reserved[0]}: set by the signer (iat and exp from ttl_s; no nbf); "
                                     "leave it out")
    ttl_s = data.get("ttl_s")
    if ttl_s is not None and (isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or ttl_s < 1):
        raise _bad("bad_ttl", f"ttl_s: expected a whole number of seconds >= 1, got {json.dumps(ttl_s)[:32]}")
    jti = data.get("jti", False)
    if not isinstance(jti, bool):
        raise _bad("bad_jti", f"jti: expected true or false, got {_type(jti)}")
    if jti and "jti" in claims:
        raise _bad("reserved_claim", "claims.jti: \"jti\": true asks the signer for one; leave it out of the claims")
    return SignRequest(claims, ttl_s, jti)


def _part(value: Mapping[str, Any]) -> str:
    return b64u_encode(json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8"))


@dataclass(frozen=True)
class Unsigned:
    """The token before its signature: the signing input, and the claims the audit line names."""

    signing_input: bytes
    exp: int
    jti: str | None


def unsigned(request: SignRequest, key: KeyRecord, *, now: int, max_lifetime_s: int) -> Unsigned:
    """Header and payload of the token; SignerError when ``ttl_s`` is over the registry's ``max_token_lifetime_s``."""
    ttl = max_lifetime_s if request.ttl_s is None else request.ttl_s
    if ttl > max_lifetime_s:
        raise _bad("bad_ttl", f"ttl_s: {ttl} is over the registry's max_token_lifetime_s ({max_lifetime_s})")
    payload = dict(request.claims)
    jti = secrets.token_urlsafe(16) if request.jti else None
    if jti is not None:
        payload["jti"] = jti
    payload.update(iat=now, exp=now + ttl)
    return Unsigned(f"{_header(key.alg, key.kid)}.{_part(payload)}".encode("ascii"), now + ttl, jti)


@functools.lru_cache(maxsize=8)
def _header(alg: str, kid: str) -> str:
    """The encoded header of a key's tokens: the same for each of them, so made once."""
    return _part({"alg": alg, "kid": kid, "typ": "JWT"})
