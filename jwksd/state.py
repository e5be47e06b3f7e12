"""The files behind rungs 3 and 4 of the ladder: the last-known-good snapshot and the fallback key file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jwksd.config import ValidationConfig
from jwksd.errors import DocumentRejected, StateError
from jwksd.validate import KeySet, validate_document

LKG_NAME = "last-known-good.json"
META = "jwksd_last_known_good"


@dataclass(frozen=True)
class LastKnownGood:
    """A key set read back from the state directory, validated again."""

    keyset: KeySet
    fetched_at: float
    changed_at: float


def lkg_path(state_dir: Path) -> Path:
    """Where the last-known-good snapshot lives inside ``state_dir``."""
    return state_dir / LKG_NAME


def save_last_known_good(state_dir: Path, keys: tuple[Mapping[str, Any], ...], *, fetched_at: float,
                         changed_at: float) -> None:
    """Write atomically: a temp file in the same directory, fsync, rename, fsync the directory."""
    document = {META: {"fetched_at": fetched_at, "changed_at": changed_at}, "keys": list(keys)}
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


def load_last_known_good(state_dir: Path, validation: ValidationConfig) -> LastKnownGood | None:
    """Read and re-validate the snapshot; None when there is none. A bad file raises StateError."""
    path = lkg_path(state_dir)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    try:
        keyset = validate_document(data, validation)
    except DocumentRejected as exc:
        raise StateError(f"{str(path)!r} is not a valid key set ({exc.reason}: {exc.detail})") from exc
    fetched_at = changed_at = path.stat().st_mtime
    try:
        meta = json.loads(data).get(META, {})
        fetched_at = float(meta.get("fetched_at", fetched_at))
        changed_at = float(meta.get("changed_at", changed_at))
    except (ValueError, TypeError, AttributeError):
        pass  # the keys were valid; times fall back to the file's mtime
    return LastKnownGood(keyset=keyset, fetched_at=fetched_at, changed_at=changed_at)


def load_fallback(path: Path, validation: ValidationConfig) -> KeySet:
    """Read and validate the fallback key file; any problem raises StateError (fatal at start)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StateError(f"fallback_file {str(path)!r} cannot be read: {exc.strerror or exc}") from exc
    try:
        return validate_document(data, validation)
    except DocumentRejected as exc:
        raise StateError(f"fallback_file {str(path)!r} is not a valid key set ({exc.reason}: {exc.detail})") from exc
