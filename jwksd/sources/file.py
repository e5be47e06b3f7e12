"""A key document on local disk, read again on every refresh."""

from __future__ import annotations

import asyncio
import hashlib

from jwksd.config import FileSourceConfig
from jwksd.errors import SourceError
from jwksd.sources import Document, Fetch


class FileSource:
    """Reads ``config.path``; a missing or unreadable file is a (retryable) fetch error."""

    def __init__(self, config: FileSourceConfig) -> None:
        self.name = config.name
        self.path = config.path

    async def fetch(self) -> Fetch:
        try:
            content = await asyncio.to_thread(self.path.read_bytes)
        except OSError as exc:
            raise SourceError("file_unreadable", f"{str(self.path)!r}: {exc.strerror or exc}", retryable=True) from exc
        version = hashlib.sha256(content).hexdigest()[:16]
        return Fetch((Document(label=self.path.name, content=content, required=True, version=version),))

    async def close(self) -> None:
        return None
