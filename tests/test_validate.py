"""The document rules of JWK_RULES.md, the KeySet and the served bytes (jwksd/validate/__init__.py)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from jwcrypto import jwk as jwcrypto_jwk

from jwksd import validate
from jwksd.config import ValidationConfig
from jwksd.errors import DocumentRejected
from jwksd.validate import DROP_REASONS, REJECT_REASONS, KeySet, serialize_keys, validate_document
from jwksd.validate.jwk import SERVED_MEMBERS, thumbprint
from tests.keys import int_b64

DEFAULT = ValidationConfig()


def key(kid: str | None = "k", **extra: Any) -> dict[str, Any]:
    """A fresh, valid P-256 public JWK."""
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    entry = {"kty": "EC", "crv": "P-256", "x": int_b64(numbers.x, 32), "y": int_b64(numbers.y, 32), **extra}
    return entry if kid is None else {"kid": kid, **entry}


def encode(document: object) -> bytes:
    return json.dumps(document).encode()


def accept(data: bytes, **config: Any) -> KeySet:
    return validate_document(data, ValidationConfig(**config))


def rejected(data: bytes, **config: Any) -> str:
    with pytest.raises(DocumentRejected) as info:
        validate_document(data, ValidationConfig(**config))
    assert info.value.reason in REJECT_REASONS
    return info.value.reason


def with_member(raw: str) -> bytes:
    """A valid document with one extra, ignored top-level member written as raw JSON text."""
    return ('{"keys":' + json.dumps([key()]) + ', "extra": ' + raw + "}").encode()


# --- rule 1: size, emptiness ----------------------------------------------------------------------


def test_too_large_before_parsing() -> None:
    """A document over max_document_bytes is rejected before it is parsed."""
    assert rejected(b"[" * (DEFAULT.max_document_bytes + 1)) == "too_large"
    assert rejected(encode({"keys": [key()]}), max_document_bytes=100) == "too_large"


def test_size_limit_is_inclusive() -> None:
    """A document of exactly max_document_bytes is accepted."""
    data = encode({"keys": [key()]})
    assert accept(data + b" " * (DEFAULT.max_document_bytes - len(data))).kids == ("k",)


@pytest.mark.parametrize("data", [b"", b" ", b"\n\t\r "])
def test_empty(data: bytes) -> None:
    """An empty or whitespace-only document is rejected."""
    assert rejected(data) == "empty"


# --- rule 2: UTF-8 --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80"])
def test_invalid_utf8(bad: bytes) -> None:
    """Invalid, overlong, surrogate or truncated UTF-8 sequences reject the document."""
    assert rejected(b'{"keys": [], "x": "' + bad + b'"}') == "invalid_utf8"


def test_byte_order_mark() -> None:
    """A UTF-8 byte-order mark rejects the document."""
    assert rejected(b"\xef\xbb\xbf" + encode({"keys": [key()]})) == "invalid_utf8"


# --- rules 3 and 4: strict JSON ---------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    '{"keys": []} x', '{"keys": []}{}', '{"keys": []} // note', '/* note */ {"keys": []}', '{"keys": [],}',
    "{'keys': []}", "{keys: []}", '{"keys": [1,]}', '{"keys": [01]}', '{"keys": ["a\tb"]}', '{"keys": [',
])
def test_strict_json(text: str) -> None:
    """Trailing data, comments, trailing commas, single quotes and other non-JSON reject the document."""
    assert rejected(text.encode()) == "invalid_json"


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e400", "-1.5e309", "1" * 5000])
def test_invalid_numbers(raw: str) -> None:
    """NaN, Infinity, a double overflow or an integer over CPython's digit limit rejects the document."""
    assert rejected(with_member(raw)) == "invalid_number"


@pytest.mark.parametrize("raw", ["1e-400", "1" * 4000, "-0", "1.5"])
def test_valid_numbers(raw: str) -> None:
    """Underflow, long integers within the limit and ordinary numbers are fine."""
    assert accept(with_member(raw)).outcome == "accept"


@pytest.mark.parametrize("raw", ['"\\ud800"', '"x\\udc00y"', '{"\\udbff": 1}', '["\\ud83d"]', '"\\ude00\\ud83d"'])
def test_lone_surrogate(raw: str) -> None:
    """A lone surrogate escape in any string, member names included, rejects the document."""
    assert rejected(with_member(raw)) == "lone_surrogate"


def test_lone_surrogate_in_kid() -> None:
    """A lone surrogate in a kid rejects the document; an escaped pair is a character like any other."""
    text = json.dumps({"keys": [key(kid="PLACEHOLDER")]})
    assert rejected(text.replace("PLACEHOLDER", "\\ud800").encode()) == "lone_surrogate"
    assert accept(text.replace("PLACEHOLDER", "\\ud83d\\ude00").encode()).kids == ("\U0001f600",)


@pytest.mark.parametrize("text", [
    '{"keys": [], "keys": []}',
    '{"keys": [{"kty": "EC", "kty": "EC"}]}',
    '{"keys": [], "meta": {"a": {"b": 1, "b": 2}}}',
    '{"a": {"kty": "EC"}, "a": {"kty": "EC"}}',
])
def test_duplicate_member(text: str) -> None:
    """A member name twice in one object, at any depth, rejects the document."""
    assert rejected(text.encode()) == "duplicate_member"


def test_same_member_in_sibling_objects() -> None:
    """The same name in different objects is no duplicate."""
    assert accept(with_member('[{"a": 1}, {"a": 2}]')).outcome == "accept"


# --- rule 5: depth --------------------------------------------------------------------------------


def test_depth_limit() -> None:
    """Nesting of 20 (the top object counting 1) is accepted and 21 is rejected."""
    assert accept(with_member("[" * 19 + "]" * 19)).outcome == "accept"
    assert rejected(with_member("[" * 20 + "]" * 20)) == "too_deep"
    assert rejected(with_member("[[[[]]]]"), max_depth=4) == "too_deep"


def test_recursion_error_is_too_deep() -> None:
    """Nesting deep enough to exhaust the parser's recursion is rejected, not raised."""
    depth = 100_000
    assert rejected(b"[" * depth + b"]" * depth, max_document_bytes=4 * depth) == "too_deep"
    assert rejected(b'{"a":' * depth + b"1" + b"}" * depth, max_document_bytes=8 * depth) == "too_deep"


# --- rule 6: the two forms ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["[]", '"keys"', "1", "null", "true", f"[{json.dumps({'keys': []})}]"])
def test_top_level_object(text: str) -> None:
    """A top level other than an object rejects the document."""
    assert rejected(text.encode()) == "not_an_object"


@pytest.mark.parametrize("value", [{}, {"k": {"kty": "EC"}}, "x", None, 1])
def test_keys_must_be_array(value: object) -> None:
    """A keys member that is not an array rejects the document."""
    assert rejected(encode({"keys": value})) == "keys_not_array"


def test_other_top_level_members_not_published() -> None:
    """Top-level members beside keys are ignored and never re-published."""
    keyset = accept(encode({"issuer": "https://example", "keys": [key()], "meta": {"n": 1}}))
    assert serialize_keys(keyset.keys).startswith(b'{"keys":[{"kty":"EC","kid":"k",')
    assert b"issuer" not in serialize_keys(keyset.keys)


def test_kid_map_form() -> None:
    """In the kid-map form each member name is the kid; an equal inner kid is fine."""
    keyset = accept(encode({"one": key(kid=None), "two": key(kid="two")}))
    assert keyset.kids == ("one", "two")
    assert keyset.outcome == "accept"


def test_kid_map_inner_kid_differs() -> None:
    """An inner kid different from its map key drops that entry."""
    keyset = accept(encode({"one": key(kid=None), "two": key(kid="three")}))
    assert [(d.kid, d.reason) for d in keyset.dropped] == [("two", "kid_mismatch")]


def test_kid_map_value_not_object() -> None:
    """A kid-map value that is not an object is dropped; a member spelled Keys is a kid."""
    keyset = accept(encode({"one": key(kid=None), "Keys": [key()], "three": "x"}))
    assert [(d.kid, d.reason) for d in keyset.dropped] == [("Keys", "not_an_object"), ("three", "not_an_object")]


def test_kid_map_bad_key() -> None:
    """A map key that cannot be a kid drops the entry, reported without a kid."""
    keyset = accept(encode({"one": key(kid=None), "bad\nkid": key(kid=None), "x" * 257: key(kid=None)}))
    assert [(d.kid, d.reason) for d in keyset.dropped] == [(None, "bad_kid"), (None, "bad_kid")]


def test_dropped_kid_only_when_usable() -> None:
    """A dropped entry is reported under its kid only when that kid passes the kid rule."""
    keyset = accept(encode({"keys": [key(), key("ok", kty="rsa"), key("bad\n"), {**key(kid=None), "kid": 5}]}))
    assert [(d.kid, d.reason) for d in keyset.dropped] == [("ok", "bad_kty"), (None, "bad_kid"), (None, "bad_kid")]


def test_revoked_kids_drop_by_kid_or_thumbprint() -> None:
    """A key whose kid or thumbprint is in revoked_kids is dropped with reason revoked; all revoked rejects."""
    by_kid, by_print, kept = key("leaked"), key("other"), key("kept")
    document = encode({"keys": [by_kid, by_print, kept]})
    keyset = accept(document, revoked_kids=("leaked", thumbprint(by_print)))
    assert keyset.kids == ("kept",)
    assert [(d.kid, d.reason, d.detail) for d in keyset.dropped] == [
        ("leaked", "revoked", "the key is listed in validation.revoked_kids"),
        ("other", "revoked", "the key is listed in validation.revoked_kids")]
    assert rejected(encode({"keys": [by_kid]}), revoked_kids=("leaked",)) == "no_valid_keys"


def test_entry_not_object() -> None:
    """A JWK Set entry that is not an object is dropped without a kid."""
    keyset = accept(encode({"keys": [key(), "k", 5, None, []]}))
    assert [(d.kid, d.reason) for d in keyset.dropped] == [(None, "not_an_object")] * 4
    assert keyset.outcome == "drop_keys"


# --- rules 7 and 8: counts and kids -----------------------------------------------------------------


@pytest.mark.parametrize("document", [{"keys": []}, {}])
def test_no_keys(document: object) -> None:
    """A document with no entries is rejected."""
    assert rejected(encode(document)) == "no_keys"


def test_too_many_keys() -> None:
    """More than max_keys entries are rejected, never truncated; exactly max_keys is fine."""
    one = key()
    keys = [{**one, "kid": f"k{index:03}"} for index in range(101)]
    assert rejected(encode({"keys": keys})) == "too_many_keys"
    assert len(accept(encode({"keys": keys[:100]})).keys) == 100
    assert rejected(encode({"keys": keys[:3]}), max_keys=2) == "too_many_keys"
    assert rejected(encode({f"k{index}": {} for index in range(3)}), max_keys=2) == "too_many_keys"


def test_duplicate_kid_identical_entries() -> None:
    """The same kid twice rejects the document even when both entries are identical."""
    entry = key()
    assert rejected(encode({"keys": [entry, entry]})) == "duplicate_kid"


def test_duplicate_kid_different_entries() -> None:
    """The same kid on two different keys, one of them invalid, rejects the document."""
    assert rejected(encode({"keys": [key("a"), key("b"), {"kid": "a", "kty": "bad"}]})) == "duplicate_kid"


# --- rule 9: private material ---------------------------------------------------------------------


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "oth", "k"])
def test_private_member(member: str) -> None:
    """Any private or symmetric member in an entry rejects the whole document."""
    entry = key(**{member: "AQAB"})
    assert rejected(encode({"keys": [key("other"), entry]})) == "private_key_material"
    assert rejected(encode({"other": key(kid=None), "priv": entry})) == "private_key_material"


@pytest.mark.parametrize("entry", [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}, {"kty": "oct", "kid": "s"}])
def test_symmetric_key(entry: dict[str, Any]) -> None:
    """A kty oct entry rejects the document, with or without k."""
    assert rejected(encode({"keys": [key(), entry]})) == "private_key_material"


@pytest.mark.parametrize("make", [
    lambda: jwcrypto_jwk.JWK.generate(kty="RSA", size=2048).export_private(as_dict=True),
    lambda: jwcrypto_jwk.JWK.generate(kty="EC", crv="P-256").export_private(as_dict=True),
    lambda: jwcrypto_jwk.JWK.generate(kty="OKP", crv="Ed25519").export_private(as_dict=True),
])
def test_real_private_jwk(make: Any) -> None:
    """A private JWK as libraries export it rejects the document."""
    assert rejected(encode({"keys": [key(), {**make(), "kid": "priv"}]})) == "private_key_material"


@pytest.mark.parametrize("document", [
    {"keys": [key()], "backup": {"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB"}},
    {"keys": [key(), {"kty": "bad", "kid": "x", "d": "AQAB"}]},
    {"keys": [key(), {"kid": "x", "d": "AQAB"}]},
    {"keys": [key(), {"kid": "x", "kty": "EC", "nested": [{"kty": "oct", "k": "AQAB"}]}]},
    {"kty": "EC", "crv": "P-256", "x": "AQAB", "y": "AQAB", "d": "AQAB"},
    {"keys": {"kty": "EC", "d": "AQAB"}},
])
def test_private_material_anywhere(document: object) -> None:
    """Private material outside the entries, in dropped entries or as a bare top-level JWK rejects the document."""
    assert rejected(encode(document)) == "private_key_material"


def test_private_material_detail() -> None:
    """The alarm names the key and the private members, never their values."""
    with pytest.raises(DocumentRejected) as info:
        validate_document(encode({"keys": [key(), key("p", d="c2VjcmV0", qi="c2VjcmV0")]}), DEFAULT)
    assert info.value.detail == "the key 'p' holds private or symmetric key material (d, qi)"
    with pytest.raises(DocumentRejected) as info:
        validate_document(encode({"keys": [key(), {"kty": "oct", "k": "c2VjcmV0"}]}), DEFAULT)
    assert info.value.detail == "a key holds private or symmetric key material (k, kty oct)"


def test_private_material_reported_first() -> None:
    """A private key is reported even when the document breaks other rules too."""
    private = key("p", d="AQAB")
    assert rejected(encode({"keys": [private, private]})) == "private_key_material"
    assert rejected(encode({"keys": [private, key(), key()]}), max_keys=2) == "private_key_material"
    assert rejected(encode({"keys": [private], "deep": [[[[[]]]]]}), max_depth=4) == "private_key_material"


# --- rule 10 and the outcomes ---------------------------------------------------------------------


def test_no_valid_keys() -> None:
    """A document whose every entry is dropped is rejected, naming the drop reasons."""
    with pytest.raises(DocumentRejected) as info:
        validate_document(encode({"keys": [key(kty="rsa"), key("b", use="x")]}), DEFAULT)
    assert (info.value.reason, info.value.detail) == ("no_valid_keys", "all 2 entries were dropped (bad_kty, bad_use)")


def test_outcomes() -> None:
    """accept when all entries are served, drop_keys when some are dropped."""
    assert accept(encode({"keys": [key("a"), key("b")]})).outcome == "accept"
    keyset = accept(encode({"keys": [key("a"), key("b", kty="rsa")]}))
    assert (keyset.outcome, keyset.kids, keyset.dropped[0].kid, keyset.dropped[0].reason) == \
        ("drop_keys", ("a",), "b", "bad_kty")


def test_unexpected_error_rejects(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception while validating rejects the document instead of escaping."""
    def explode(*args: object, **kwargs: object) -> dict[str, Any]:
        raise RuntimeError("boom")
    monkeypatch.setattr(validate, "public_jwk", explode)
    assert rejected(encode({"keys": [key()]})) == "internal_error"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes(data: bytes) -> None:
    """Arbitrary bytes either validate or raise DocumentRejected, nothing else."""
    try:
        validate_document(data, DEFAULT)
    except DocumentRejected as exc:
        assert exc.reason in REJECT_REASONS


ANCHOR = key("anchor")
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["kty", "kid", "crv", "x", "y", "n", "e", "use", "alg", "key_ops"]), JSON))
def test_any_entry(entry: dict[str, Any]) -> None:
    """Arbitrary JSON entries are dropped (or the document rejected) with a listed reason, never raised."""
    try:
        keyset = validate_document(encode({"keys": [ANCHOR, entry]}), DEFAULT)
    except DocumentRejected as exc:
        assert exc.reason in REJECT_REASONS
        return
    assert {dropped.reason for dropped in keyset.dropped} <= set(DROP_REASONS)


def test_details_hold_no_key_material() -> None:
    """Drop and reject details never repeat key material or document content."""
    entries = [key("a"), key("b", crv="P-384"), key("c", use="x"), key("d", kty="EC2"), key("e", x="AQAB="),
               key("f", alg="HS256"), key("g", y="A" * 43)]
    keyset = accept(encode({"keys": entries}))
    assert len(keyset.dropped) == 6
    secrets = [entry[name][:12] for entry in entries for name in ("x", "y") if isinstance(entry.get(name), str)]
    for dropped in keyset.dropped:
        assert not any(secret in dropped.detail for secret in secrets), dropped
    with pytest.raises(DocumentRejected) as info:
        validate_document(b'{"keys": ["SECRETSECRET" "x"]}', DEFAULT)
    assert "SECRET" not in info.value.detail


def test_reason_codes() -> None:
    """Reason codes are unique snake_case labels, including the alarm reason."""
    for reasons in (REJECT_REASONS, DROP_REASONS):
        assert len(set(reasons)) == len(reasons)
        assert all(re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", reason) for reason in reasons)
    assert "private_key_material" in REJECT_REASONS


# --- what is served -------------------------------------------------------------------------------


def test_served_bytes_are_canonical() -> None:
    """The body is compact, members in a fixed order, keys sorted by kid, kid-less keys last by thumbprint."""
    a, b = key("a", use="sig", alg="ES256", ext=True), key("b", key_ops=["verify"])
    anonymous = [key(kid=None), key(kid=None)]
    keyset = accept(encode({"keys": [b, anonymous[0], a, anonymous[1]]}), require_kid=False)
    body = serialize_keys(keyset.keys)
    expected_a = {"kty": "EC", "kid": "a", "use": "sig", "alg": "ES256", "crv": "P-256", "x": a["x"], "y": a["y"]}
    assert body.startswith(b'{"keys":[' + json.dumps(expected_a, separators=(",", ":")).encode() + b',{"kty":"EC",')
    assert [k.get("kid") for k in keyset.keys] == ["a", "b", None, None]
    assert [thumbprint(k) for k in keyset.keys[2:]] == sorted(thumbprint(k) for k in anonymous)
    assert b" " not in body


def test_same_set_same_bytes() -> None:
    """Two documents differing only in member order, key order and key_ops order serve identical bytes."""
    a, b = key("a", use="enc", key_ops=["wrapKey", "deriveKey"]), key("b", alg="ES256")
    first = accept(encode({"keys": [a, b]}))
    second = accept(encode({"keys": [dict(reversed(list(b.items()))),
                                     {**dict(reversed(list(a.items()))), "key_ops": ["deriveKey", "wrapKey"]}]}))
    assert serialize_keys(first.keys) == serialize_keys(second.keys)
    assert serialize_keys(reversed(first.keys)) == serialize_keys(first.keys)


def test_idempotent() -> None:
    """Validating the served bytes again gives the same bytes."""
    keyset = accept(encode({"z": key(kid=None, use="sig"), "é": key(kid=None, alg="ES256"), "a": key(kid=None)}))
    body = serialize_keys(keyset.keys)
    assert serialize_keys(accept(body).keys) == body
    assert accept(body).keys == keyset.keys


def test_only_allow_listed_members() -> None:
    """Served keys hold only allow-listed members; serialize_keys drops anything else it is handed."""
    keyset = accept(encode({"keys": [key("a", ext=True, iat=1, x5u_note="x", private="no", kid_alt="b")]}))
    assert set(keyset.keys[0]) <= set(SERVED_MEMBERS)
    body = json.loads(serialize_keys([{**keyset.keys[0], "d": "AQAB", "k": "AQAB", "p": "AQAB"}]))
    assert set(body["keys"][0]) == {"kty", "kid", "crv", "x", "y"}


def test_large_rsa_document_is_fast() -> None:
    """A 100-key RSA-4096 document validates well within a refresh's budget."""
    numbers = rsa.generate_private_key(65537, 4096).public_key().public_numbers()
    entry = {"kty": "RSA", "n": int_b64(numbers.n, 512), "e": "AQAB", "use": "sig", "alg": "RS256"}
    data = encode({"keys": [{**entry, "kid": f"key-{index:03}"} for index in range(100)]})
    config = ValidationConfig(max_document_bytes=len(data))  # about 77 kB: over the 64 KiB default
    started = time.perf_counter()
    keyset = validate_document(data, config)
    assert time.perf_counter() - started < 1.0
    assert len(keyset.keys) == 100
