"""The kid rule (jwksd/validate/kid.py): 1 to 256 characters, no control, format or separator characters."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jwksd.config import ValidationConfig
from jwksd.errors import DocumentRejected
from jwksd.validate import validate_document
from jwksd.validate.kid import kid_problem
from tests.test_validate_jwk import check, dropped, ec_entry, served
from tests.test_validate_properties import FUZZ

# Characters that make two kids look alike: bidi overrides, embeddings and isolates, zero-width
# characters, the byte-order mark, the soft hyphen, the Arabic letter mark, the line and paragraph separators.
LOOKALIKE = ["\u202e", "\u202d", "\u202a", "\u2066", "\u2067", "\u2068", "\u2069", "\u200b", "\u200c", "\u200d",
             "\u200e", "\u200f", "\u2060", "\ufeff", "\u00ad", "\u061c", "\u2028", "\u2029"]
# What a kid may hold: letters, marks, numbers, punctuation, symbols and spaces (Zs), in any script.
ALLOWED_CATEGORIES = ("Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe",
                      "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs")
REFUSED_CATEGORIES = ("Cf", "Zl", "Zp")


@pytest.mark.parametrize("char", LOOKALIKE)
def test_kid_format_character_dropped(char: str) -> None:
    """A kid holding a format or separator character (bidi override, zero-width, U+2028, ...) drops the key."""
    assert unicodedata.category(char) in REFUSED_CATEGORIES
    assert dropped(ec_entry(kid=f"key{char}1")) == "kid_format_character"


def test_kid_format_character_detail() -> None:
    """The detail names the code point, its category and position, and never quotes the kid."""
    keyset, _ = check(ec_entry(kid="admin\u202egnp.key"))
    (drop,) = keyset.dropped
    assert drop.kid is None  # logged without the kid, which is the look-alike
    assert drop.detail == ("kid holds U+202E (Unicode category Cf) at position 5; format and separator characters "
                           "make different kids look alike")


def test_kid_format_character_in_kid_map() -> None:
    """In the kid-map form a map key with a format character drops its entry with the same reason."""
    good, bad = ec_entry(), ec_entry()
    del good["kid"], bad["kid"]
    document = json.dumps({"good": good, "bad\u200b": bad}).encode()
    keyset = validate_document(document, ValidationConfig())
    assert keyset.kids == ("good",)
    assert [(drop.kid, drop.reason) for drop in keyset.dropped] == [(None, "kid_format_character")]
    assert keyset.dropped[0].detail.startswith("the map key is no kid: kid holds U+200B (Unicode category Cf)")


def test_duplicate_lookalike_kid_not_quoted() -> None:
    """A duplicated kid with a bidi override rejects the document without quoting it."""
    entry = ec_entry(kid="k\u202e")
    with pytest.raises(DocumentRejected) as caught:
        validate_document(json.dumps({"keys": [entry, entry]}).encode(), ValidationConfig())
    assert (caught.value.reason, caught.value.detail) == ("duplicate_kid", "a kid is listed 2 times; expected each "
                                                                           "kid once")


@pytest.mark.parametrize(("kid", "detail"), [
    ("", "kid has 0 characters; expected 1 to 256"),
    ("a" * 257, "kid has 257 characters; expected 1 to 256"),
    ("a\u0085b", "kid holds the control character U+0085 at position 1"),
])
def test_kid_bad_detail(kid: str, detail: str) -> None:
    """Length and control characters keep the bad_kid reason, with a detail naming what is wrong."""
    assert kid_problem(kid) == ("bad_kid", detail)


@pytest.mark.parametrize("kid", ["a" * 256, "\u00e9" * 256, "\U0001f511" * 256, "\u9375-2024", "key\u00a0one",
                                 "e\u0301", "\u0627\u0644\u0645\u0641\u062a\u0627\u062d", "k\u3000j"])
def test_kid_accept_edge(kid: str) -> None:
    """256 characters, any script, combining marks and space separators (Zs) are served as given."""
    assert served(ec_entry(kid=kid))["kid"] == kid


@FUZZ
@given(st.text(st.characters(categories=ALLOWED_CATEGORIES), min_size=1, max_size=256))
def test_kid_of_printable_characters_accepted(kid: str) -> None:
    """Any 1 to 256 characters of letters, marks, numbers, punctuation, symbols and spaces pass the kid rule."""
    assert kid_problem(kid) is None


@FUZZ
@given(st.text(st.characters(categories=ALLOWED_CATEGORIES), max_size=255), st.data())
def test_kid_with_format_character_refused(prefix: str, data: st.DataObject) -> None:
    """One format or separator character anywhere in an otherwise good kid refuses it, at its position."""
    char = data.draw(st.characters(categories=REFUSED_CATEGORIES))
    position = data.draw(st.integers(0, len(prefix)))
    kid = prefix[:position] + char + prefix[position:]
    problem = kid_problem(kid)
    assert problem is not None
    reason, detail = problem
    assert reason == "kid_format_character"
    assert detail.startswith(f"kid holds U+{ord(char):04X} (Unicode category {unicodedata.category(char)}) "
                             f"at position {position};")
