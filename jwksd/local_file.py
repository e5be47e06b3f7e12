"""Reading local key files (last-known-good, fallback, a file source): regular files only, bounded, off the loop.

A FIFO, a device or a directory named where a key file belongs must never block or flood the
daemon: the file is opened with O_NONBLOCK (opening a FIFO then returns at once) and its type is
checked with fstat on the descriptor that is read, so a swap between check and read cannot sneak
one in. A symlink to a regular file is fine (Kubernetes mounts secrets and ConfigMaps that way).
Every problem is an OSError whose strerror says what is wrong, so callers report them all alike;
the two found here have classes of their own for callers that tell them apart.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from pathlib import Path

READ_TIMEOUT_S = 5.0  # a hung network file system must not stall start-up or a reload forever
_CHUNK = 1 << 16
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class NotRegularFile(OSError):
    """The path leads to a directory, a FIFO, a device or a socket."""


class FileTooLarge(OSError):
    """The file holds more than the bytes a reader takes."""


def read_regular_file(path: Path, max_bytes: int) -> tuple[bytes, float]:
    """The content of a regular file of at most ``max_bytes`` and its mtime; OSError naming the problem otherwise.

    Blocking: call it in a worker thread (``read_file``), never on the event loop.
    """
    data, info = read_regular_file_stat(path, max_bytes)
    return data, info.st_mtime


def read_regular_file_stat(path: Path, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """As ``read_regular_file``, with the fstat of the descriptor read (owner and mode of exactly what was read)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
            raise NotRegularFile(errno.EINVAL, f"it is {kind}; expected a regular file (or a symlink to one)")
        if info.st_size > max_bytes:
            raise FileTooLarge(errno.EFBIG, f"it has {info.st_size} bytes; at most {max_bytes} are read")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(_CHUNK, max_bytes + 1 - size)):  # one byte more tells a file that grew
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise FileTooLarge(errno.EFBIG, f"it grew past {max_bytes} bytes while being read")
        return b"".join(chunks), info
    finally:
        os.close(fd)


async def read_file(path: Path, max_bytes: int, timeout_s: float = READ_TIMEOUT_S) -> tuple[bytes, float]:
    """``read_regular_file`` in a worker thread, given up after ``timeout_s`` (TimeoutError, an OSError).

    ``asyncio.timeout``, not ``wait_for``: on Python 3.11 ``wait_for`` drops a cancel that lands as the read
    ends (it returns the read's result instead), and a refresh task that lost its cancel never stops.
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await asyncio.to_thread(read_regular_file, path, max_bytes)
    except TimeoutError:
        # The thread may stay blocked in the kernel; the loop goes on without it.
        raise TimeoutError(errno.ETIMEDOUT, f"not read within {timeout_s:g} s") from None
