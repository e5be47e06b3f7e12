"""Property tests of the validator (hypothesis): any input gives a KeySet or a rejection, never anything else.

The strategies build raw bytes, arbitrary JSON, and documents made of real public keys that are then
mutated (members dropped, replaced, added, private members slipped in), so most examples reach the
key rules rather than stopping at the parser. An ``internal_error`` rejection counts as a failure:
it is the catch-all that hides a bug.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from jwksd.config import ValidationConfig
from jwksd.errors import DocumentRejected
from jwksd.validate import PRIVATE_MEMBERS, REJECT_REASONS, KeySet, serialize_keys, validate_document
from jwksd.validate.jwk import SERVED_MEMBERS
from tests.keys import ec_jwk, ed25519_jwk, rsa_jwk, rsa_key

CONFIG = ValidationConfig()
# Key material that must never appear in a detail or a log line (short values like "AQAB" excepted).
MATERIAL_MEMBERS = ("n", "x", "y", "d", "p", "q", "dp", "dq", "qi", "k")
PUBLIC_KEYS: list[dict[str, Any]] = [
    rsa_jwk(rsa_key(0), "rsa-0"),
    rsa_jwk(rsa_key(1), "rsa-1", alg="PS256"),
    ec_jwk(ec.generate_private_key(ec.SECP256R1()), "ec-256"),
    ec_jwk(ec.generate_private_key(ec.SECP384R1()), "ec-384", "ES384"),
    ed25519_jwk(ed25519.Ed25519PrivateKey.generate(), "ed-0"),
]
MEMBER_NAMES = (*SERVED_MEMBERS, *sorted(PRIVATE_MEMBERS), "ext", "foo", "")
# Characters no kid may hold: they break log lines or make two kids look alike (JWK_RULES.md).
NOT_IN_KID = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False,
                allow_infinity=False) | st.text(max_size=24))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.sampled_from(MEMBER_NAMES) | st.text(max_size=6), inner, max_size=4),
                           max_leaves=16)


@st.composite
def mutated_key(draw: st.DrawFn) -> dict[str, Any]:
    """A real public key, then up to three mutations."""
    key = dict(draw(st.sampled_from(PUBLIC_KEYS)))
    for _ in range(draw(st.sampled_from((0, 0, 0, 1, 1, 2, 3)))):
        action = draw(st.sampled_from(("drop", "replace", "add") * 3 + ("private",)))
        name = draw(st.sampled_from(sorted(key) if action in ("drop", "replace") else MEMBER_NAMES))
        if action == "drop":
            key.pop(name, None)
        elif action == "private":
            key[draw(st.sampled_from(sorted(PRIVATE_MEMBERS)))] = draw(st.sampled_from(("AQAB", key.get("n", "x"))))
        else:
            key[name] = draw(json_values)
    return key


@st.composite
def documents(draw: st.DrawFn) -> tuple[bytes, list[Any]]:
    """A JWK Set or kid-map of mutated keys (sometimes arbitrary JSON entries) as bytes, with its entries."""
    entries: list[Any] = draw(st.lists(st.one_of(mutated_key(), mutated_key(), mutated_key(), json_values),
                                       min_size=0, max_size=5))
    if draw(st.booleans()):
        document: Any = {"keys": entries}
    else:
        document = {}
        for i, entry in enumerate(entries):  # the inner kid, when there is one, names the entry
            kid = entry.get("kid") if isinstance(entry, dict) else None
            document[kid if isinstance(kid, str) and kid not in (*document, "keys") else f"map-{i}"] = entry
    return json.dumps(document).encode(), entries


def outcome(data: bytes) -> KeySet | DocumentRejected:
    """The validator's answer; any other exception propagates and fails the test."""
    try:
        return validate_document(data, CONFIG)
    except DocumentRejected as exc:
        return exc


def check_outcome(data: bytes) -> KeySet | DocumentRejected:
    """The invariants every outcome keeps, whatever the input."""
    result = outcome(data)
    event(result.reason if isinstance(result, DocumentRejected) else result.outcome)
    if isinstance(result, DocumentRejected):
        assert result.reason in REJECT_REASONS
        assert result.reason != "internal_error", result.__cause__
        return result
    body = serialize_keys(result.keys)
    for key in result.keys:
        assert not PRIVATE_MEMBERS.intersection(key), key
        assert key.get("kty") != "oct"
        assert set(key) <= set(SERVED_MEMBERS)
        assert "kid" not in key or prints_as_itself(key["kid"]), key["kid"]
    for drop in result.dropped:  # the kid a dropped entry is logged under
        assert drop.kid is None or prints_as_itself(drop.kid), drop.kid
    again = validate_document(body, CONFIG)  # the served bytes validate again, to the same bytes
    assert (again.dropped, serialize_keys(again.keys)) == ((), body)
    return result


def prints_as_itself(kid: str) -> bool:
    """Independent of jwksd: 1 to 256 characters, none of them control, format, separator or surrogate."""
    return 1 <= len(kid) <= 256 and all(unicodedata.category(char) not in NOT_IN_KID for char in kid)


def material_in(entries: list[Any]) -> set[str]:
    return {str(entry[name]) for entry in entries if isinstance(entry, dict)
            for name in MATERIAL_MEMBERS if isinstance(entry.get(name), str) and len(entry[name]) >= 12}


@FUZZ
@given(st.binary(max_size=512))
def test_any_bytes_give_keyset_or_rejection(data: bytes) -> None:
    """Arbitrary bytes give a KeySet or a DocumentRejected with a known reason, never another exception."""
    check_outcome(data)


@FUZZ
@given(json_values)
def test_any_json_gives_keyset_or_rejection(value: Any) -> None:
    """Arbitrary JSON values give a KeySet or a DocumentRejected with a known reason."""
    check_outcome(json.dumps(value).encode())


@FUZZ
@given(documents())
def test_mutated_documents_keep_every_invariant(document: tuple[bytes, list[Any]]) -> None:
    """Mutated key documents: private material rejects the whole document, and no detail echoes key material."""
    data, entries = document
    result = check_outcome(data)
    if any(isinstance(entry, dict) and PRIVATE_MEMBERS.intersection(entry) for entry in entries):
        assert isinstance(result, DocumentRejected) and result.reason == "private_key_material"
    details = [result.detail] if isinstance(result, DocumentRejected) else [d.detail for d in result.dropped]
    for secret in material_in(entries):
        assert all(secret not in detail for detail in details)


@FUZZ
@given(st.permutations(PUBLIC_KEYS), st.randoms(use_true_random=False), st.booleans())
def test_served_bytes_independent_of_member_order(keys: list[dict[str, Any]], rng: Any, kid_map: bool) -> None:
    """The served bytes depend only on the key set: not on key order, member order or the document form."""
    shuffled = []
    for key in keys:
        items = list(key.items())
        rng.shuffle(items)
        shuffled.append(dict(items))
    if kid_map:
        document: Any = {key["kid"]: {k: v for k, v in key.items() if k != "kid"} for key in shuffled}
    else:
        document = {"keys": shuffled}
    canonical = serialize_keys(validate_document(json.dumps({"keys": PUBLIC_KEYS}).encode(), CONFIG).keys)
    result = check_outcome(json.dumps(document).encode())
    assert isinstance(result, KeySet)
    assert serialize_keys(result.keys) == canonical


@FUZZ
@given(st.sampled_from(PUBLIC_KEYS), st.text(st.characters(exclude_categories=["Cs"]), max_size=300))
def test_any_kid_served_only_when_it_prints_as_itself(key: dict[str, Any], kid: str) -> None:
    """A key is served under any kid of 1 to 256 characters without control, format or separator ones, else dropped."""
    anchor = next(other for other in PUBLIC_KEYS if other["kid"] != key["kid"])
    document = {"keys": [anchor, {**key, "kid": kid}]} if kid != anchor["kid"] else {"keys": [{**key, "kid": kid}]}
    result = check_outcome(json.dumps(document).encode())
    assert isinstance(result, KeySet)
    if prints_as_itself(kid):
        assert kid in result.kids
    else:
        assert [drop.reason for drop in result.dropped] in (["bad_kid"], ["kid_format_character"])
