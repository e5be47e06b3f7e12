"""Key document bytes -> KeySet (the keys to serve, the keys dropped and why), or DocumentRejected.

The document rules of JWK_RULES.md live here; the key rules are in jwk.py. The JSON parser is
translated at this one boundary: any exception it raises becomes DocumentRejected, so a refresh
survives any input. Details name what was wrong and where, never key material or raw content.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, get_args

from jwksd.config import ValidationConfig
from jwksd.errors import DocumentRejected
from jwksd.validate import jwk
from jwksd.validate.jwk import KeyDropped, public_jwk, show, thumbprint, usable_kid

RejectReason = Literal[
    "too_large", "empty", "invalid_utf8", "invalid_json", "invalid_number", "lone_surrogate",
    "duplicate_member", "too_deep", "not_an_object", "keys_not_array", "no_keys", "too_many_keys",
    "duplicate_kid", "private_key_material", "no_valid_keys", "internal_error",
]
REJECT_REASONS: tuple[str, ...] = get_args(RejectReason)
DROP_REASONS: tuple[str, ...] = jwk.DROP_REASONS

PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_JSON_WHITESPACE = b" \t\r\n"
# Member names a detail may quote; any other name could be a kid or worse.
_KNOWN_MEMBERS = frozenset({"keys", *jwk.SERVED_MEMBERS, *PRIVATE_MEMBERS})


@dataclass(frozen=True)
class DroppedKey:
    """An entry left out of the served set."""

    kid: str | None  # None when the entry had no usable kid; never key material
    reason: str  # one of DROP_REASONS
    detail: str  # human words, never key material


@dataclass(frozen=True)
class KeySet:
    """The outcome of a document that may be served."""

    keys: tuple[Mapping[str, Any], ...]  # allow-listed public JWKs, sorted by kid (kid-less last, by thumbprint)
    dropped: tuple[DroppedKey, ...]

    @property
    def kids(self) -> tuple[str, ...]:
        """The kids of the served keys, in served order (kid-less keys have none)."""
        return tuple(key["kid"] for key in self.keys if "kid" in key)

    @property
    def outcome(self) -> str:
        """``accept`` when every entry is served, ``drop_keys`` when some were left out."""
        return "drop_keys" if self.dropped else "accept"


def validate_document(data: bytes, config: ValidationConfig) -> KeySet:
    """Apply every rule to a fetched document; raise DocumentRejected when nothing of it may be served."""
    try:
        return _validate(data, config)
    except DocumentRejected:
        raise
    except Exception as exc:  # a bug must not end the refresh loop; the last good set keeps being served
        raise DocumentRejected("internal_error", f"unexpected {type(exc).__name__} while validating") from exc


def serialize_keys(keys: Iterable[Mapping[str, Any]]) -> bytes:
    """The canonical body: compact, allow-listed members in a fixed order, keys sorted; same set, same bytes."""
    body = [{name: key[name] for name in jwk.SERVED_MEMBERS if name in key} for key in sorted(keys, key=_order)]
    return json.dumps({"keys": body}, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _order(key: Mapping[str, Any]) -> tuple[int, str]:
    kid = key.get("kid")
    return (0, kid) if isinstance(kid, str) else (1, thumbprint(key))


def _reject(reason: RejectReason, detail: str) -> NoReturn:
    raise DocumentRejected(reason, detail)


def _validate(data: bytes, config: ValidationConfig) -> KeySet:
    document = _parse(data, config)
    _inspect(document, config.max_depth)
    entries = _entries(document, config)
    served: list[dict[str, Any]] = []
    dropped: list[DroppedKey] = []
    for map_kid, entry in entries:
        try:
            served.append(_not_revoked(public_jwk(entry, config, map_kid=map_kid), config))
        except KeyDropped as exc:
            dropped.append(DroppedKey(kid=_reported_kid(map_kid, entry), reason=exc.reason, detail=exc.detail))
    if not served:
        reasons = ", ".join(sorted({drop.reason for drop in dropped}))
        _reject("no_valid_keys", f"all {len(dropped)} entries were dropped ({reasons})")
    return KeySet(keys=tuple(sorted(served, key=_order)), dropped=tuple(dropped))


def revoked(key: Mapping[str, Any], config: ValidationConfig) -> bool:
    """Whether ``revoked_kids`` lists the kid or the RFC 7638 thumbprint of ``key`` (a served, public JWK)."""
    return bool(config.revoked_kids) and (key.get("kid") in config.revoked_kids
                                          or thumbprint(key) in config.revoked_kids)


def _not_revoked(key: dict[str, Any], config: ValidationConfig) -> dict[str, Any]:
    """``key`` unless it is :func:`revoked` (checked after every other rule)."""
    if revoked(key, config):
        raise KeyDropped("revoked", "the key is listed in validation.revoked_kids")
    return key


def _entries(document: Any, config: ValidationConfig) -> list[tuple[str | None, Any]]:
    """The (map kid, entry) pairs of either form, under the form, count and kid rules."""
    if not isinstance(document, dict):
        _reject("not_an_object", f"the document is {show(document)}; expected a JSON object")
    if "keys" in document:
        if not isinstance(document["keys"], list):
            _reject("keys_not_array", f"'keys' is {show(document['keys'])}; expected an array")
        entries: list[tuple[str | None, Any]] = [(None, entry) for entry in document["keys"]]
    else:
        entries = list(document.items())  # the kid-map form
    if not entries:
        _reject("no_keys", f"the document lists no keys; expected 1 to {config.max_keys}")
    if len(entries) > config.max_keys:
        _reject("too_many_keys", f"the document lists {len(entries)} keys; expected at most {config.max_keys}")
    # Kid-map kids are member names, already unique; an inner kid is checked against its map key.
    kids = Counter(entry["kid"] for map_kid, entry in entries
                   if map_kid is None and isinstance(entry, dict) and isinstance(entry.get("kid"), str))
    for kid, count in sorted(kids.items()):
        if count > 1:
            shown = repr(kid) if usable_kid(kid) else "a kid"
            _reject("duplicate_kid", f"{shown} is listed {count} times; expected each kid once")
    return entries


def _reported_kid(map_kid: str | None, entry: Any) -> str | None:
    """The kid a dropped entry is logged under: only a value that passes the kid rule, never anything else."""
    if map_kid is not None:
        return usable_kid(map_kid)
    return usable_kid(entry.get("kid")) if isinstance(entry, dict) else None


def _parse(data: bytes, config: ValidationConfig) -> Any:
    """Bytes -> a JSON value, under the size, encoding and strict-JSON rules."""
    if len(data) > config.max_document_bytes:
        _reject("too_large", f"the document has {len(data)} bytes; expected at most {config.max_document_bytes}")
    if not data.strip(_JSON_WHITESPACE):
        _reject("empty", "the document is empty or only whitespace")
    if data.startswith(b"\xef\xbb\xbf"):
        _reject("invalid_utf8", "the document starts with a byte-order mark; expected UTF-8 without one")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        _reject("invalid_utf8", f"the document is not valid UTF-8 (byte offset {exc.start})")
    try:
        return json.loads(text, object_pairs_hook=_object, parse_constant=_constant, parse_float=_float,
                          parse_int=_int)
    except DocumentRejected:
        raise
    except RecursionError:
        _reject("too_deep", f"the document nests too deeply for the parser; expected at most {config.max_depth}")
    except json.JSONDecodeError as exc:
        _reject("invalid_json", f"{exc.msg} at line {exc.lineno} column {exc.colno}")
    except Exception as exc:  # the parser's contract is ValueError; anything else must not end the refresh
        _reject("invalid_json", f"the parser refused the document ({type(exc).__name__})")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                shown = repr(name) if name in _KNOWN_MEMBERS else "a member"
                _reject("duplicate_member", f"{shown} appears twice in one object")
            seen.add(name)
    return obj


def _constant(name: str) -> NoReturn:
    _reject("invalid_number", f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        _reject("invalid_number", "a number overflows a double")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # CPython's limit on the digits of an int (sys.get_int_max_str_digits)
        _reject("invalid_number", f"an integer has {len(text.lstrip('-'))} digits, more than CPython converts")


def _inspect(document: Any, max_depth: int) -> None:
    """Walk the parsed document once, without recursion: private keys anywhere, depth, lone surrogates."""
    too_deep = surrogate = False
    # Every entry counts even without kty, and so does anything shaped like a key outside the entries.
    private = [entry for entry in _entry_values(document) if isinstance(entry, dict) and _private_members(entry)]
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            too_deep = too_deep or depth > max_depth
            if isinstance(node.get("kty"), str) and _private_members(node):
                private.append(node)
            surrogate = surrogate or any(_has_surrogate(name) for name in node)
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            too_deep = too_deep or depth > max_depth
            stack.extend((value, depth + 1) for value in node)
        elif isinstance(node, str):
            surrogate = surrogate or _has_surrogate(node)
    # A private key is an incident whatever else is wrong, so it is reported first.
    if private:
        kid = usable_kid(private[0].get("kid"))
        _reject("private_key_material", f"{f'the key {kid!r}' if kid else 'a key'} holds private or symmetric "
                                        f"key material ({', '.join(_private_members(private[0]))})")
    if too_deep:
        _reject("too_deep", f"the document nests deeper than {max_depth} levels")
    if surrogate:
        _reject("lone_surrogate", "a string holds a lone UTF-16 surrogate escape")


def _entry_values(document: Any) -> list[Any]:
    """The entries of either form; none when the form is wrong (that is reported later)."""
    if not isinstance(document, dict):
        return []
    if "keys" in document:
        return document["keys"] if isinstance(document["keys"], list) else []
    return list(document.values())


def _private_members(obj: Mapping[str, Any]) -> list[str]:
    """What makes ``obj`` private or symmetric key material: member names and kty oct, never values."""
    found = sorted(PRIVATE_MEMBERS.intersection(obj))
    return [*found, "kty oct"] if obj.get("kty") == "oct" else found


def _has_surrogate(text: str) -> bool:
    # Valid UTF-8 input cannot hold a surrogate, and the parser joins escaped pairs, so any left is lone.
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
