"""A key document on local disk, read again on every refresh: a regular file, bounded, off the loop."""

from __future__ import annotations

import hashlib

from jwksd.config import FileSourceConfig, ValidationConfig
from jwksd.errors import SourceError
from jwksd.local_file import FileTooLarge, NotRegularFile, read_file
from jwksd.sources import Document, Fetch


class FileSource:
    """Reads ``config.path`` (at most ``max_document_bytes``); any problem is a (retryable) fetch error."""

    def __init__(self, config: FileSourceConfig, *,
                 max_document_bytes: int = ValidationConfig.max_document_bytes) -> None:
        self.name = config.name
        self.path = config.path
        self.max_document_bytes = max_document_bytes

    async def fetch(self) -> Fetch:
        try:
            content, _ = await read_file(self.path, self.max_document_bytes)
        except OSError as exc:
            raise SourceError(_code(exc), f"{str(self.path)!r}: {exc.strerror or exc}", retryable=True) from exc
        version = hashlib.sha256(content).hexdigest()[:16]
        return Fetch((Document(label=self.path.name, content=content, required=True, version=version),))

    async def close(self) -> None:
        return None


def _code(exc: OSError) -> str:
    """The error code a refresh records: what kind of problem, never the path."""
    if isinstance(exc, FileTooLarge):
        return "file_too_large"
    if isinstance(exc, NotRegularFile):
        return "file_not_regular"
    if isinstance(exc, TimeoutError):
        return "file_timeout"
    return "file_unreadable"
