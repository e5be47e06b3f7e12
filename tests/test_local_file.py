"""Reading local key files (jwksd/local_file.py): regular files and symlinks to them only, bounded, never blocking."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from jwksd import local_file
from jwksd.local_file import FileTooLarge, NotRegularFile, read_file, read_regular_file


def kubernetes_mount(directory: Path, name: str, content: bytes) -> Path:
    """A file laid out as Kubernetes mounts a Secret: name -> ..data/name, ..data -> a timestamped directory."""
    version = directory / "..2026_11_30_14_00_00.000000001"
    version.mkdir(parents=True)
    (version / name).write_bytes(content)
    (directory / "..data").symlink_to(version.name)
    (directory / name).symlink_to(f"..data/{name}")
    return directory / name


def test_regular_file_read(tmp_path: Path) -> None:
    """A regular file is read whole, with its mtime."""
    path = tmp_path / "keys.json"
    path.write_bytes(b'{"keys": []}')
    os.utime(path, (1700000000, 1700000000))
    assert read_regular_file(path, 100) == (b'{"keys": []}', 1700000000.0)


def test_symlink_chain_to_regular_file_read(tmp_path: Path) -> None:
    """A symlink chain to a regular file, as Kubernetes mounts secrets, is read like the file itself."""
    path = kubernetes_mount(tmp_path / "secret", "keys.json", b"content")
    assert read_regular_file(path, 100)[0] == b"content"


def test_exactly_max_bytes_read(tmp_path: Path) -> None:
    """A file of exactly max_bytes is read; one byte more is refused."""
    path = tmp_path / "keys.json"
    path.write_bytes(b"x" * 100)
    assert read_regular_file(path, 100)[0] == b"x" * 100
    with pytest.raises(FileTooLarge) as caught:
        read_regular_file(path, 99)
    assert caught.value.strerror == "it has 100 bytes; at most 99 are read"


def test_huge_sparse_file_refused_without_reading(tmp_path: Path) -> None:
    """A 1 TiB sparse file is refused from its size alone (reading it would exhaust memory)."""
    path = tmp_path / "huge.json"
    with path.open("wb") as handle:
        handle.truncate(1 << 40)
    with pytest.raises(FileTooLarge) as caught:
        read_regular_file(path, 65536)
    assert caught.value.strerror == "it has 1099511627776 bytes; at most 65536 are read"


def test_fifo_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO with no writer is refused at once (opening it without O_NONBLOCK would wait for a writer forever)."""
    path = tmp_path / "fifo.json"
    os.mkfifo(path)
    with pytest.raises(NotRegularFile) as caught:
        asyncio.run(read_file(path, 100, timeout_s=10))
    assert caught.value.strerror == "it is a FIFO; expected a regular file (or a symlink to one)"


@pytest.mark.parametrize(("target", "kind"), [(".", "a directory"), ("/dev/null", "a character device")])
@pytest.mark.parametrize("through_symlink", [False, True])
def test_other_kinds_refused(target: str, kind: str, through_symlink: bool, tmp_path: Path) -> None:
    """A directory or a device, named directly or through a symlink, is refused, naming what it is."""
    path = tmp_path / target
    if through_symlink:
        (tmp_path / "link").symlink_to(path)
        path = tmp_path / "link"
    with pytest.raises(NotRegularFile) as caught:
        read_regular_file(path, 100)
    assert caught.value.strerror == f"it is {kind}; expected a regular file (or a symlink to one)"


def test_missing_file(tmp_path: Path) -> None:
    """A missing file raises FileNotFoundError, as open does."""
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "missing.json", 100)


def test_read_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read that does not return in time (a hung network mount, simulated) raises TimeoutError naming the limit."""
    release = threading.Event()

    def hung(path: Path, max_bytes: int) -> tuple[bytes, float]:
        release.wait(10)
        return b"", 0.0

    monkeypatch.setattr(local_file, "read_regular_file", hung)

    async def attempt() -> TimeoutError:
        try:
            await read_file(tmp_path / "keys.json", 100, timeout_s=0.2)
        except TimeoutError as exc:
            return exc
        finally:
            release.set()  # let the worker thread end, so the loop's executor shuts down at once
        raise AssertionError("the read did not time out")

    assert asyncio.run(attempt()).strerror == "not read within 0.2 s"


def test_cancel_as_the_read_ends_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancel that reaches the loop just as the worker thread's read ends still cancels the reader (not lost)."""
    real_read = local_file.read_regular_file

    async def attempt() -> None:
        loop, reader = asyncio.get_running_loop(), asyncio.current_task()
        assert reader is not None

        def cancelled_as_it_ends(path: Path, max_bytes: int) -> tuple[bytes, float]:
            try:
                return real_read(path, max_bytes)
            finally:  # queued before the thread's result: the cancel lands once the read is done, before it is seen
                loop.call_soon_threadsafe(loop.call_soon, reader.cancel)

        monkeypatch.setattr(local_file, "read_regular_file", cancelled_as_it_ends)
        await read_file(tmp_path / "missing.json", 100)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(attempt())
