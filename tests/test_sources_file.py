"""The file source: the document on disk, read again on each fetch, versioned by its content."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from jwksd.config import FileSourceConfig
from jwksd.errors import SourceError
from jwksd.sources.file import FileSource
from tests.keys import jwk_set, key


async def test_reads_the_file_each_fetch(tmp_path: Path) -> None:
    """Each fetch reads the file anew: one required document labelled with the file name, versioned by its hash."""
    path = tmp_path / "jwks.json"
    path.write_text(jwk_set(key(0)))
    source = FileSource(FileSourceConfig(path=path))
    first = (await source.fetch()).documents
    path.write_text(jwk_set(key(1)))
    second = (await source.fetch()).documents
    await source.close()
    assert [(d.label, d.required, d.content) for d in first] == [("jwks.json", True, jwk_set(key(0)).encode())]
    assert second[0].content == jwk_set(key(1)).encode()
    assert second[0].version == hashlib.sha256(jwk_set(key(1)).encode()).hexdigest()[:16] != first[0].version


async def test_missing_file_is_a_retryable_error(tmp_path: Path) -> None:
    """A file that is not there fails the fetch by name; it may appear, so the error is retryable."""
    path = tmp_path / "absent.json"
    with pytest.raises(SourceError) as info:
        await FileSource(FileSourceConfig(path=path)).fetch()
    assert str(info.value) == f"file_unreadable: {str(path)!r}: No such file or directory"
    assert info.value.retryable
