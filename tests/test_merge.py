"""Merging the sources' sets: identity by kid or thumbprint, earlier set wins, sorted by kid."""

from __future__ import annotations

import structlog

from jwksd.merge import key_id, merge, same_keys
from jwksd.validate.jwk import thumbprint
from tests.keys import key


def test_merge_earlier_set_wins_a_kid_conflict() -> None:
    """The union is sorted by kid; the same kid with other material keeps the earlier set's key and logs it."""
    with structlog.testing.capture_logs() as logs:
        merged = merge([("aws", (key(0, "same"), key(1))), ("disk", (key(2, "same"),))])
    assert [k["kid"] for k in merged] == ["key-1", "same"] and merged[1]["n"] == key(0, "same")["n"]
    assert logs == [{"event": "kid_conflict", "kid": "same", "kept": "aws", "ignored": "disk",
                     "log_level": "warning"}]


def test_a_key_without_kid_is_known_by_its_thumbprint() -> None:
    """A key without a kid merges under '#' and its RFC 7638 thumbprint, so two sources' copies are one key."""
    anonymous = {k: v for k, v in key(0).items() if k != "kid"}
    assert key_id(anonymous) == "#" + thumbprint(anonymous)
    assert key_id(key(0)) == "key-0"
    assert merge([("aws", (anonymous,)), ("disk", (dict(anonymous),))]) == (anonymous,)


def test_same_keys_needs_the_same_keys_in_the_same_order() -> None:
    """Order and content both count; a different length is never the same."""
    assert same_keys((key(0), key(1)), (dict(key(0)), dict(key(1))))
    assert not same_keys((key(0), key(1)), (key(1), key(0)))
    assert not same_keys((key(0),), (key(0), key(1)))
