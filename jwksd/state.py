"""The files behind rungs 3 and 4 of the ladder: the last-known-good snapshot and the fallback key file.

The last-known-good file is the served set (``keys``) plus, in its metadata, each source's own
share, so that after a restart a source that is still failing keeps its keys once another source
delivers. It is a union of validated documents, so on reading it back every key is validated
again with the per-document size and count limits lifted (two full documents may make one file).
Its times must be finite and no later than now plus MAX_CLOCK_SKEW_S, or the file is skipped: a
time that cannot become a Last-Modified header would fail every request and be written back.
Both files are read through local_file.py: regular files only, bounded, in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jwksd.config import ValidationConfig
from jwksd.errors import DocumentRejected, StateError
from jwksd.local_file import read_file, read_regular_file
from jwksd.validate import KeySet, validate_document

LKG_NAME = "last-known-good.json"
META = "jwksd_last_known_good"
LKG_MAX_BYTES = 16 * 1024 * 1024
LKG_MAX_KEYS = 10000
MAX_CLOCK_SKEW_S = 300.0  # a time this far ahead of this host's clock is still believed (hosts disagree a little)


@dataclass(frozen=True)
class LastKnownGood:
    """A key set read back from the state directory, validated again."""

    keyset: KeySet
    fetched_at: float
    changed_at: float
    sources: Mapping[str, KeySet] = field(default_factory=dict)  # each source's share, when recorded
    skipped: tuple[str, ...] = ()  # problems with a source's share, which is then left out
    accepted_at: Mapping[str, float] = field(default_factory=dict)  # each shared source's newest accepted fetch
    since: Mapping[str, float] = field(default_factory=dict)  # when each kid was first served (the status page)


def lkg_path(state_dir: Path) -> Path:
    """Where the last-known-good snapshot lives inside ``state_dir``."""
    return state_dir / LKG_NAME


def save_last_known_good(state_dir: Path, keys: tuple[Mapping[str, Any], ...], *, fetched_at: float,
                         changed_at: float, sources: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                         accepted_at: Mapping[str, float] | None = None,
                         since: Mapping[str, float] | None = None) -> None:
    """Write atomically: a temp file in the same directory, fsync, rename, fsync the directory."""
    meta: dict[str, Any] = {"fetched_at": fetched_at, "changed_at": changed_at}
    if accepted_at:
        meta["accepted_at"] = dict(accepted_at)
    if since:
        meta["since"] = dict(since)
    if sources is not None:
        meta["sources"] = {name: {"keys": list(share)} for name, share in sources.items()}
    document = {META: meta, "keys": list(keys)}
    data = json.dumps(document, separators=(",", ":"), sort_keys=False).encode()
    target = lkg_path(state_dir)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".lkg-", suffix=".tmp", dir=state_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(state_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise StateError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from exc


def load_last_known_good(state_dir: Path, validation: ValidationConfig, *,
                        now: float | None = None) -> LastKnownGood | None:
    """Read and re-validate the snapshot; None when there is none. A bad file raises StateError.

    Called once at start, before any write (so the file cannot vanish between the check and the read):
    temp files left by a process killed mid-write are removed. Blocking: ``read_last_known_good``
    is the form for the event loop.
    """
    _remove_stale_temp_files(state_dir)
    path = lkg_path(state_dir)
    try:
        data, mtime = read_regular_file(path, LKG_MAX_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unreadable("last-known-good file", path, exc) from exc
    return _last_known_good(path, data, mtime, validation, time.time() if now is None else now)


async def read_last_known_good(state_dir: Path, validation: ValidationConfig, *, now: float) -> LastKnownGood | None:
    """``load_last_known_good`` off the event loop, the read bounded by local_file's timeout."""
    await asyncio.to_thread(_remove_stale_temp_files, state_dir)
    path = lkg_path(state_dir)
    try:
        data, mtime = await read_file(path, LKG_MAX_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unreadable("last-known-good file", path, exc) from exc
    return await asyncio.to_thread(_last_known_good, path, data, mtime, validation, now)


def _remove_stale_temp_files(state_dir: Path) -> None:
    for stale in state_dir.glob(".lkg-*.tmp"):
        with contextlib.suppress(OSError):  # a read-only state_dir is reported by the first write
            stale.unlink()


def _last_known_good(path: Path, data: bytes, mtime: float, validation: ValidationConfig,
                     now: float) -> LastKnownGood:
    """The snapshot in ``data``, its keys validated again and its times checked against ``now``."""
    validation = replace(validation, max_document_bytes=LKG_MAX_BYTES, max_keys=LKG_MAX_KEYS)
    keyset = _valid(path, data, validation, "last-known-good file")
    fetched_at = changed_at = mtime
    meta: Any = {}
    try:
        meta = json.loads(data).get(META, {})
        fetched_at = float(meta.get("fetched_at", fetched_at))
        changed_at = float(meta.get("changed_at", changed_at))
    except (ValueError, TypeError, AttributeError):
        pass  # the keys were valid; times fall back to the file's mtime
    for name, value in (("fetched_at", fetched_at), ("changed_at", changed_at)):
        if not (math.isfinite(value) and 0 <= value <= now + MAX_CLOCK_SKEW_S):
            raise StateError(f"last-known-good file {str(path)!r} has {name} {value!r}, which is not a time "
                             f"between 0 and now ({now:.0f}) + {MAX_CLOCK_SKEW_S:g} s")
    sources, skipped = _read_shares(meta, validation)
    accepted_at, bad_times = _read_times(meta, "accepted_at", "source", mtime, "before the file was written")
    since, bad_since = _read_times(meta, "since", "kid", now, "before now")
    return LastKnownGood(keyset=keyset, fetched_at=fetched_at, changed_at=changed_at, sources=sources,
                         skipped=skipped + bad_times + bad_since, accepted_at=accepted_at, since=since)


def _read_times(meta: Any, member: str, what: str, latest: float,
                expected: str) -> tuple[dict[str, float], tuple[str, ...]]:
    """The times ``meta[member]`` maps names to; one that is not a time before ``latest`` (plus the skew) is named."""
    times = meta.get(member) if isinstance(meta, dict) else None
    if not isinstance(times, dict):
        return {}, ()
    found: dict[str, float] = {}
    skipped: list[str] = []
    for name, at in times.items():
        if isinstance(at, int | float) and not isinstance(at, bool) and 0 < at <= latest + MAX_CLOCK_SKEW_S:
            found[str(name)] = float(at)
        else:
            skipped.append(f"{what} {str(name)!r}: {member} = {str(at)[:40]}: expected a time {expected}")
    return found, tuple(skipped)


def _read_shares(meta: Any, validation: ValidationConfig) -> tuple[dict[str, KeySet], tuple[str, ...]]:
    """Each source's share, validated again; a bad one is left out and named."""
    shares = meta.get("sources") if isinstance(meta, dict) else None
    if not isinstance(shares, dict):
        return {}, ()
    sources: dict[str, KeySet] = {}
    skipped: list[str] = []
    for name, share in shares.items():
        try:
            sources[str(name)] = validate_document(json.dumps(share).encode(), validation)
        except DocumentRejected as exc:
            skipped.append(f"source {str(name)!r}: {exc.reason}: {exc.detail}")
    return sources, tuple(skipped)


def load_fallback(path: Path, validation: ValidationConfig) -> KeySet:
    """Read and validate the fallback key file; any problem raises StateError. Blocking: see ``read_fallback``."""
    try:
        data, _ = read_regular_file(path, validation.max_document_bytes)
    except OSError as exc:
        raise _unreadable("fallback_file", path, exc) from exc
    return _valid(path, data, validation, "fallback_file")


async def read_fallback(path: Path, validation: ValidationConfig) -> KeySet:
    """``load_fallback`` off the event loop, the read bounded by local_file's timeout."""
    try:
        data, _ = await read_file(path, validation.max_document_bytes)
    except OSError as exc:
        raise _unreadable("fallback_file", path, exc) from exc
    return await asyncio.to_thread(_valid, path, data, validation, "fallback_file")


def _unreadable(label: str, path: Path, exc: OSError) -> StateError:
    return StateError(f"{label} {str(path)!r} cannot be read: {exc.strerror or exc}")


def _valid(path: Path, data: bytes, validation: ValidationConfig, label: str) -> KeySet:
    """The validated key set of a file's bytes; an invalid one raises StateError."""
    try:
        return validate_document(data, validation)
    except DocumentRejected as exc:
        raise StateError(f"{label} {str(path)!r} is not a valid key set ({exc.reason}: {exc.detail})") from exc
