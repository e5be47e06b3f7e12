"""The shared cache's entry format: what the MAC binds, what a source's identity is, how large an entry may be."""

from __future__ import annotations

import pytest

from jwksd.config import DynamoDBSourceConfig, HttpSourceConfig, SecretsManagerSourceConfig
from jwksd.errors import DocumentRejected
from jwksd.fleet.entry import Entry, Sealer, max_entry_bytes, source_identity
from jwksd.sources import Document
from tests.conftest import HMAC_KEY

REDIS_KEY = "jwksd:entry:aws"


def sm(secret_id: str, stages: tuple[str, ...] = ("AWSCURRENT", "AWSPREVIOUS")) -> SecretsManagerSourceConfig:
    return SecretsManagerSourceConfig(secret_id=secret_id, name="aws", version_stages=stages)


def entry(content: bytes = b'{"keys":[]}', documents: int = 1) -> Entry:
    return Entry(tuple(Document(label=f"STAGE{i}", content=content, required=i == 0, version="v" * 36)
                       for i in range(documents)), fetched_at=1_800_000_000.0, fresh_for_s=300.0)


def refusal(sealer: Sealer, value: bytes) -> tuple[str, str]:
    with pytest.raises(DocumentRejected) as info:
        sealer.open("aws", value)
    return info.value.reason, info.value.detail


def test_identity_names_kind_secret_stages_url_and_table() -> None:
    """Every part of what a source reads changes its identity: secret id, stages, URL (its query too), table."""
    identities = [source_identity(config) for config in (
        sm("jwt/keys"), sm("jwt/other"), sm("jwt/keys", ("AWSCURRENT",)),
        HttpSourceConfig(url="https://idp.example/jwks?token=a", name="aws"),
        HttpSourceConfig(url="https://idp.example/jwks?token=b", name="aws"),
        DynamoDBSourceConfig(table="jwksd-keys", name="aws"))]
    assert len({identity.text for identity in identities}) == len(identities)
    assert [identity.documents for identity in identities] == [2, 2, 1, 1, 1, 1]


def test_identity_digest_holds_no_url_credential() -> None:
    """The digest stored in Redis is the same for URLs that differ only in password or query token."""
    one = source_identity(HttpSourceConfig(url="https://u:pw1@idp.example/jwks?token=a", name="aws"))
    two = source_identity(HttpSourceConfig(url="https://v:pw2@idp.example/jwks?token=b", name="aws"))
    assert one.digest == two.digest and one.text != two.text


def test_entry_round_trips() -> None:
    """What one replica seals, another with the same key and source opens unchanged."""
    sealer = Sealer(HMAC_KEY, REDIS_KEY, source_identity(sm("jwt/keys")))
    assert sealer.open("aws", sealer.seal("aws", entry())) == entry()


def test_entry_signed_for_another_secret_is_refused() -> None:
    """An entry sealed with the right key for another secret id is refused, with or without a forged digest."""
    ours = Sealer(HMAC_KEY, REDIS_KEY, source_identity(sm("jwt/keys")))
    theirs = Sealer(HMAC_KEY, REDIS_KEY, source_identity(sm("jwt/other")))
    value = theirs.seal("aws", entry())
    assert refusal(ours, value) == ("wrong_source", "the entry was written for another source (another kind, "
                                                    "secret id, stages or URL)")
    magic, _, mac, payload = value.split(b" ", 3)
    forged = b" ".join((magic, ours.identity.digest.encode(), mac, payload))
    assert refusal(ours, forged) == ("bad_hmac", "the entry's HMAC does not match (another key, or another writer)")


def test_entry_moved_to_another_key_or_source_name_is_refused() -> None:
    """The Redis key is in the MAC, and the source name in the payload must be the reader's."""
    identity = source_identity(sm("jwt/keys"))
    value = Sealer(HMAC_KEY, "jwksd:entry:other", identity).seal("aws", entry())
    assert refusal(Sealer(HMAC_KEY, REDIS_KEY, identity), value)[0] == "bad_hmac"
    unsigned = Sealer(None, REDIS_KEY, identity)
    assert refusal(unsigned, unsigned.seal("other", entry())) == (
        "wrong_source", "the entry names source 'other', not 'aws'")


def test_format_one_entries_are_refused() -> None:
    """An entry in the previous format (no identity) is not read."""
    assert refusal(Sealer(None, REDIS_KEY, source_identity(sm("jwt/keys"))), b'jwksd-entry-1 - {"a":1}') == (
        "invalid_entry", "not a jwksd shared cache entry (format 2)")


@pytest.mark.parametrize("documents", [1, 2])
def test_largest_valid_entry_fits_the_bound(documents: int) -> None:
    """Documents of max_document_bytes each seal to no more than max_entry_bytes, and not much less."""
    limit = 65536
    sealer = Sealer(HMAC_KEY, REDIS_KEY, source_identity(sm("jwt/keys")))
    size = len(sealer.seal("aws", entry(b"x" * limit, documents)))
    assert size <= max_entry_bytes(documents, limit) < size + documents * 2048 + 1024
