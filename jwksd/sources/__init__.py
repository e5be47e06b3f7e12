"""Where key documents come from: one module per origin, all behind the small Source protocol.

A source fetches raw documents; it never validates. Adding an origin means one module here and
one branch in :func:`open_source`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from jwksd.config import FileSourceConfig, SecretsManagerSourceConfig, SourceConfig
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
    """Everything one fetch brought back; documents in priority order (the first wins a kid conflict)."""

    documents: tuple[Document, ...]

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


async def open_source(config: SourceConfig, metrics: Metrics) -> Source:
    """Create and connect the source that ``config`` describes."""
    if isinstance(config, SecretsManagerSourceConfig):
        from jwksd.sources.secretsmanager import SecretsManagerSource

        return await SecretsManagerSource.open(config, metrics)
    if isinstance(config, FileSourceConfig):
        from jwksd.sources.file import FileSource

        return FileSource(config)
    raise TypeError(f"unknown source config {type(config).__name__}")
