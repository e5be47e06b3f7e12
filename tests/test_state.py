"""The ladder's files (jwksd/state.py): times that must be real times, and files that must be regular files."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from jwksd.config import ValidationConfig
from jwksd.errors import StateError
from jwksd.state import (
    MAX_CLOCK_SKEW_S,
    META,
    lkg_path,
    load_fallback,
    load_last_known_good,
    read_fallback,
    read_last_known_good,
    save_last_known_good,
)
from tests.keys import jwk_set, rsa_jwk, rsa_key
from tests.test_local_file import kubernetes_mount

NOW = 1_800_000_000.0
VALIDATION = ValidationConfig()


def keys() -> tuple[dict[str, object], ...]:
    return (rsa_jwk(rsa_key(0), "lkg-0"),)


def write_lkg(state_dir: Path, meta: dict[str, object]) -> Path:
    """A last-known-good file with these metadata, written as jwksd writes it but for the times."""
    path = lkg_path(state_dir)
    path.write_text(json.dumps({META: meta, "keys": list(keys())}))
    return path


@pytest.mark.parametrize("at", [0.0, NOW, NOW + MAX_CLOCK_SKEW_S])
def test_times_accepted_up_to_skew(at: float, tmp_path: Path) -> None:
    """Times from 0 up to now plus the allowed skew are believed."""
    save_last_known_good(tmp_path, keys(), fetched_at=at, changed_at=at)
    loaded = load_last_known_good(tmp_path, VALIDATION, now=NOW)
    assert loaded is not None and (loaded.fetched_at, loaded.changed_at) == (at, at)


@pytest.mark.parametrize(("name", "value"), [
    ("changed_at", 1e20), ("changed_at", NOW + MAX_CLOCK_SKEW_S + 1), ("fetched_at", -1.0), ("fetched_at", 1e308),
])
def test_time_out_of_range_skips_file(name: str, value: float, tmp_path: Path) -> None:
    """A changed_at of 1e20 (or any time before 0 or beyond now plus the skew) makes the file unusable, named."""
    path = write_lkg(tmp_path, {"fetched_at": NOW, "changed_at": NOW, name: value})
    with pytest.raises(StateError) as caught:
        load_last_known_good(tmp_path, VALIDATION, now=NOW)
    assert str(caught.value) == (f"last-known-good file {str(path)!r} has {name} {value!r}, which is not a time "
                                 "between 0 and now (1800000000) + 300 s")


def test_future_mtime_skips_file(tmp_path: Path) -> None:
    """Without recorded times the file's mtime stands in, and is held to the same bounds."""
    path = lkg_path(tmp_path)
    path.write_text(jwk_set(*keys()))
    os.utime(path, (NOW + 3600, NOW + 3600))
    with pytest.raises(StateError, match=r"has fetched_at 1800003600\.0, which is not a time"):
        load_last_known_good(tmp_path, VALIDATION, now=NOW)
    os.utime(path, (NOW - 60, NOW - 60))
    loaded = load_last_known_good(tmp_path, VALIDATION, now=NOW)
    assert loaded is not None and loaded.changed_at == NOW - 60


def test_fifo_state_file_refused(tmp_path: Path) -> None:
    """A FIFO in place of the last-known-good file is refused at once, from the loop's form too."""
    os.mkfifo(lkg_path(tmp_path))
    expected = (f"last-known-good file {str(lkg_path(tmp_path))!r} cannot be read: it is a FIFO; expected a "
                "regular file (or a symlink to one)")
    with pytest.raises(StateError) as caught:
        asyncio.run(read_last_known_good(tmp_path, VALIDATION, now=NOW))
    assert str(caught.value) == expected


def test_state_file_over_cap_refused(tmp_path: Path) -> None:
    """A last-known-good file over 16 MiB is refused without being read."""
    with lkg_path(tmp_path).open("wb") as handle:
        handle.truncate(16 * 1024 * 1024 + 1)
    with pytest.raises(StateError, match="cannot be read: it has 16777217 bytes; at most 16777216 are read"):
        load_last_known_good(tmp_path, VALIDATION, now=NOW)


def test_missing_state_file_is_none(tmp_path: Path) -> None:
    """No last-known-good file is no error: there is nothing to install."""
    assert asyncio.run(read_last_known_good(tmp_path, VALIDATION, now=NOW)) is None


def test_fallback_fifo_and_size(tmp_path: Path) -> None:
    """A FIFO or an oversized fallback file is refused by name; max_document_bytes is its cap."""
    fifo, big = tmp_path / "fifo.json", tmp_path / "big.json"
    os.mkfifo(fifo)
    big.write_bytes(b" " * 65537)
    with pytest.raises(StateError) as caught:
        asyncio.run(read_fallback(fifo, VALIDATION))
    assert str(caught.value) == (f"fallback_file {str(fifo)!r} cannot be read: it is a FIFO; expected a regular "
                                 "file (or a symlink to one)")
    with pytest.raises(StateError) as caught:
        load_fallback(big, VALIDATION)
    assert str(caught.value) == f"fallback_file {str(big)!r} cannot be read: it has 65537 bytes; at most 65536 are read"


def test_fallback_through_kubernetes_symlinks(tmp_path: Path) -> None:
    """A fallback file mounted as Kubernetes mounts a Secret (two symlinks deep) is read and validated."""
    path = kubernetes_mount(tmp_path / "secret", "fallback.json", jwk_set(*keys()).encode())
    assert asyncio.run(read_fallback(path, VALIDATION)).kids == ("lkg-0",)


def test_since_times_read_back_and_bad_ones_named(tmp_path: Path) -> None:
    """Each kid's first-served time comes back from the file; one that is not a past time is left out and named."""
    save_last_known_good(tmp_path, keys(), fetched_at=NOW, changed_at=NOW, since={"lkg-0": NOW - 86400})
    loaded = load_last_known_good(tmp_path, VALIDATION, now=NOW)
    assert loaded is not None and (loaded.since, loaded.skipped) == ({"lkg-0": NOW - 86400}, ())
    write_lkg(tmp_path, {"fetched_at": NOW, "changed_at": NOW, "since": {"lkg-0": "soon", "gone": 1e20}})
    loaded = load_last_known_good(tmp_path, VALIDATION, now=NOW)
    assert loaded is not None and loaded.since == {}
    assert loaded.skipped == ("kid 'lkg-0': since = soon: expected a time before now",
                              "kid 'gone': since = 1e+20: expected a time before now")
