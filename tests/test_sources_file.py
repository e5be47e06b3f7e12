"""The file source: the document on disk, read again on each fetch, versioned by its content; regular files, bounded."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from jwksd.config import FileSourceConfig
from jwksd.errors import SourceError
from jwksd.sources.file import FileSource
from tests.keys import jwk_set, key
from tests.test_local_file import kubernetes_mount


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


async def refused(path: Path) -> tuple[str, str, bool]:
    with pytest.raises(SourceError) as caught:
        await FileSource(FileSourceConfig(path=path)).fetch()
    return caught.value.code, caught.value.message, caught.value.retryable


async def test_symlinked_file_read(tmp_path: Path) -> None:
    """A document mounted as Kubernetes mounts a Secret (symlinks to a regular file) is read."""
    path = kubernetes_mount(tmp_path, "keys.json", jwk_set(key(0)).encode())
    assert (await FileSource(FileSourceConfig(path=path)).fetch()).documents[0].content == jwk_set(key(0)).encode()


async def test_huge_file_refused(tmp_path: Path) -> None:
    """A 1 TiB sparse file is refused from its size (file_too_large), never read into memory."""
    path = tmp_path / "keys.json"
    with path.open("wb") as handle:
        handle.truncate(1 << 40)
    assert await refused(path) == ("file_too_large", f"{str(path)!r}: it has 1099511627776 bytes; at most 65536 are "
                                                     "read", True)


async def test_fifo_refused(tmp_path: Path) -> None:
    """A FIFO at the path is refused at once (file_not_regular), with no writer needed."""
    path = tmp_path / "keys.json"
    os.mkfifo(path)
    assert await refused(path) == ("file_not_regular", f"{str(path)!r}: it is a FIFO; expected a regular file (or a "
                                                       "symlink to one)", True)
