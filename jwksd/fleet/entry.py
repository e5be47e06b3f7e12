"""The shared cache's entry: what one replica fetched, sealed so the others can tell who wrote it and for what.

Wire format, one Redis string::

    jwksd-entry-2 <identity digest> <HMAC-SHA256 hex or "-"> <JSON payload>

The MAC covers the magic, the Redis key, the source's identity (kind, secret id and stages, URL,
or table: :func:`source_identity`) and the payload, which holds the fetch time and freshness. So
an entry moved to another key, written for another source, or edited is refused. The identity
digest (SHA-256 of the identity with any URL credential removed) only makes "another source" a
precise refusal reason; without an HMAC key it is the only check. An entry's size is bounded
before it is read (:func:`max_entry_bytes`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from typing import Any

from jwksd.config import (
    DynamoDBSourceConfig,
    FileSourceConfig,
    HttpSourceConfig,
    SecretsManagerSourceConfig,
    SourceConfig,
)
from jwksd.errors import DocumentRejected
from jwksd.redact import public_url
from jwksd.sources import Document

MAGIC = b"jwksd-entry-2"
MAC_HEX_CHARS = 64
DIGEST_HEX_CHARS = 32
# JSON around the documents and around each one (source name, label, version, numbers), generously.
ENTRY_OVERHEAD_BYTES = 1024
DOCUMENT_OVERHEAD_BYTES = 1024


@dataclass(frozen=True)
class SourceIdentity:
    """What a source reads, as entries are bound to it; ``documents`` is how many an entry may carry."""

    text: str  # bound into the MAC; may hold a URL's credentials, so never logged or stored
    digest: str  # of the same with any URL credential removed: stored in the entry
    documents: int


def source_identity(config: SourceConfig) -> SourceIdentity:
    """The identity of a source: its kind and what it reads (secret id and stages, URL, table, path)."""
    parts: tuple[str, ...]
    shown: tuple[str, ...]
    if isinstance(config, SecretsManagerSourceConfig):
        parts = ("secretsmanager", config.secret_id, ",".join(config.version_stages))
        shown, documents = parts, len(config.version_stages)
    elif isinstance(config, HttpSourceConfig):
        parts, shown, documents = ("http", config.url), ("http", public_url(config.url)), 1
    elif isinstance(config, DynamoDBSourceConfig):
        parts = shown = ("dynamodb", config.table)
        documents = 1
    else:
        assert isinstance(config, FileSourceConfig)
        parts = shown = ("file", str(config.path))
        documents = 1
    digest = hashlib.sha256("\n".join(shown).encode()).hexdigest()[:DIGEST_HEX_CHARS]
    return SourceIdentity("\n".join(parts), digest, documents)


def max_entry_bytes(documents: int, max_document_bytes: int) -> int:
    """The largest entry a source can write: its documents at max_document_bytes each, base64, plus JSON."""
    base64_bytes = 4 * math.ceil(max_document_bytes / 3)
    header = len(MAGIC) + DIGEST_HEX_CHARS + MAC_HEX_CHARS + 3
    return header + ENTRY_OVERHEAD_BYTES + documents * (base64_bytes + DOCUMENT_OVERHEAD_BYTES)


@dataclass(frozen=True)
class Entry:
    """A source's documents as one replica fetched them."""

    documents: tuple[Document, ...]
    fetched_at: float  # wall time of the fetch
    fresh_for_s: float

    def age_s(self, now: float) -> float:
        return now - self.fetched_at


class Sealer:
    """Seals and opens the entries of one source under one Redis key and HMAC key (or none)."""

    def __init__(self, hmac_key: bytes | None, redis_key: str, identity: SourceIdentity) -> None:
        self.hmac_key = hmac_key
        self.redis_key = redis_key
        self.identity = identity

    def _mac(self, payload: bytes) -> bytes:
        assert self.hmac_key is not None
        bound = b"\n".join((MAGIC, self.redis_key.encode(), self.identity.text.encode(), payload))
        return hmac.new(self.hmac_key, bound, hashlib.sha256).hexdigest().encode()

    def seal(self, source: str, entry: Entry) -> bytes:
        """The stored value of ``entry``."""
        payload = json.dumps({
            "source": source, "fetched_at": entry.fetched_at, "fresh_for_s": entry.fresh_for_s,
            "documents": [{"label": d.label, "required": d.required, "version": d.version,
                           "content": base64.b64encode(d.content).decode()} for d in entry.documents],
        }, separators=(",", ":"), sort_keys=True).encode()
        mac = self._mac(payload) if self.hmac_key is not None else b"-"
        return b" ".join((MAGIC, self.identity.digest.encode(), mac, payload))

    def open(self, source: str, value: bytes) -> Entry:
        """The entry in ``value``; DocumentRejected (invalid_entry, wrong_source, bad_hmac) names the problem."""
        magic, digest, mac, payload = [*value.split(b" ", 3), b"", b"", b""][:4]
        if magic != MAGIC or not payload:
            raise DocumentRejected("invalid_entry", "not a jwksd shared cache entry (format 2)")
        if digest != self.identity.digest.encode():
            raise DocumentRejected("wrong_source", "the entry was written for another source (another kind, "
                                                   "secret id, stages or URL)")
        if self.hmac_key is not None and not hmac.compare_digest(mac, self._mac(payload)):
            raise DocumentRejected("bad_hmac", "the entry's HMAC does not match (another key, or another writer)")
        try:
            data: Any = json.loads(payload)
            fetched_at, fresh_for_s = float(data["fetched_at"]), float(data["fresh_for_s"])
            documents = tuple(Document(label=str(d["label"]), required=d["required"] is True,
                                       version=None if d["version"] is None else str(d["version"]),
                                       content=base64.b64decode(d["content"], validate=True))
                              for d in data["documents"])
            named = data["source"]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DocumentRejected("invalid_entry", f"malformed entry ({type(exc).__name__})") from exc
        if named != source:
            raise DocumentRejected("wrong_source", f"the entry names source {str(named)[:64]!r}, not {source!r}")
        if not documents or not math.isfinite(fetched_at + fresh_for_s) or fresh_for_s <= 0 or fetched_at <= 0:
            raise DocumentRejected("invalid_entry", "entry fields out of range")
        return Entry(documents, fetched_at, fresh_for_s)
