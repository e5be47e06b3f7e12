"""Where key documents come from: one module per origin, all behind the small Source protocol.

A source fetches raw documents; it never validates. Adding an origin means one module here and
one branch in :func:`open_source`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from jwksd.config import (
    DynamoDBSourceConfig,
    FileSourceConfig,
    HttpSourceConfig,
    SecretsManagerSourceConfig,
    SourceConfig,
)
from jwksd.metrics import Metrics


@dataclass(frozen=True)
class Document:
    """One raw document as fetched, with the label it was fetched under."""

    label: str  # e.g. "AWSCURRENT", "AWSPREVIOUS", the file name
    content: bytes
    required: bool  # a rejection of a required document fails the whole refresh
    version: str | None = None


@dataclass(frozen=True)
class Fetch:
    """Everything one fetch brought back; documents in priority order (the first wins a kid conflict).

    ``refresh_in_s`` is the source's wish for when to be asked again (an upstream's clamped
    max-age, or what is left of a shared entry's freshness); None means ``refresh.interval_s``.
    """

    documents: tuple[Document, ...]
    refresh_in_s: float | None = None

    @property
    def version(self) -> str:
        return "|".join(f"{doc.label}={doc.version}" for doc in self.documents)


class Source(Protocol):
    """An origin of key documents."""

    name: str

    async def fetch(self) -> Fetch:
        """Fetch the current documents; raise SourceError when that is impossible."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


async def open_source(config: SourceConfig, metrics: Metrics, *, max_document_bytes: int) -> Source:
    """Create and connect the source that ``config`` describes (a larger body is cut short, a larger file refused)."""
    if isinstance(config, SecretsManagerSourceConfig):
        from jwksd.sources.secretsmanager import SecretsManagerSource

        return await SecretsManagerSource.open(config, metrics)
    if isinstance(config, FileSourceConfig):
        from jwksd.sources.file import FileSource

        return FileSource(config, max_document_bytes=max_document_bytes)
    if isinstance(config, HttpSourceConfig):
        from jwksd.sources.http import HttpSource

        return HttpSource(config, metrics, max_document_bytes=max_document_bytes)
    if isinstance(config, DynamoDBSourceConfig):
        from jwksd.sources.dynamodb import DynamoDBSource

        return await DynamoDBSource.open(config, metrics)
    raise TypeError(f"unknown source config {type(config).__name__}")
