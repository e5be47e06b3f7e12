"""Tests of jwksd/signer/claims.py: JSON that would make a token no verifier parses is refused."""

from __future__ import annotations

import pytest

from jwksd.errors import SignerError
from jwksd.signer.claims import parse


@pytest.mark.parametrize(("body", "message"), [
    (b'{"claims": {"big": 1e999}}', "request body: the number 1e999 is out of range (not finite)"),
    (b'{"claims": {"n": [-1E400]}}', "request body: the number -1E400 is out of range (not finite)"),
    (b'{"claims": {"big": ' + b"9" * 5000 + b"}}", "request body: a number has more than 4300 digits"),
])
def test_numbers_json_cannot_carry_are_refused(body: bytes, message: str) -> None:
    """A number that overflows to infinity, or has too many digits to read, is a bad_json 400, not a 500."""
    with pytest.raises(SignerError) as caught:
        parse(body)
    assert (caught.value.code, caught.value.message) == ("bad_json", message)
