"""Local faults around the ladder's files: SIGKILL mid-write, a read-only or full state_dir, a deleted fallback,
a far-future time, FIFOs where files belong, a huge file source, Kubernetes-style symlinked files.

The read-only and full state directories are real: each daemon runs in a mount namespace of its
own (``unshare``) on a tiny tmpfs, remounted read-only or filled up before jwksd starts, so its
writes fail with EROFS or ENOSPC exactly as on a host. Nothing outside the namespace sees the mount.
"""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from jwksd.config import ValidationConfig
from jwksd.errors import StateError
from jwksd.state import LastKnownGood, lkg_path, load_last_known_good, save_last_known_good
from jwksd.validate import serialize_keys, validate_document
from tests.conftest import Secrets
from tests.daemon_process import Daemon, sm_sections, wait_until
from tests.keys import jwk_set, rsa_jwk, rsa_key
from tests.test_local_file import kubernetes_mount

KILLS = 12
# A writer that saves two sets in turn, as fast as it can, until killed.
WRITER = """
import json, sys
from pathlib import Path
from jwksd.state import save_last_known_good
state_dir, sets = Path(sys.argv[1]), json.loads(sys.argv[2])
print("ready", flush=True)
n = 0
while True:
    save_last_known_good(state_dir, tuple(sets[n % 2]), fetched_at=float(n), changed_at=float(n))
    n += 1
"""


def key_set(first: int, count: int) -> list[dict[str, object]]:
    return [rsa_jwk(rsa_key(first + i), f"lkg-{first + i}") for i in range(count)]


def test_sigkill_mid_write_leaves_old_or_new(tmp_path: Path) -> None:
    """Killed at random points while writing, the file is always one complete set or the other, never torn."""
    sets = [key_set(0, 4), key_set(4, 4)]  # several keys, so a write takes long enough to be hit
    expected = {serialize_keys(validate_document(jwk_set(*keys).encode(), ValidationConfig()).keys)
                for keys in sets}
    save_last_known_good(tmp_path, tuple(sets[0]), fetched_at=0.0, changed_at=0.0)
    rng = random.Random(7)
    seen = set()
    for _ in range(KILLS):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), json.dumps(sets)],
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        try:
            writer.wait(timeout=rng.uniform(0.0, 0.05))
        except subprocess.TimeoutExpired:
            writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
        writer.stdout.close()
        assert writer.returncode == -signal.SIGKILL
        body = lkg_path(tmp_path).read_bytes()
        loaded = load_last_known_good(tmp_path, ValidationConfig())  # also clears temp files the kill left
        assert loaded is not None
        served = serialize_keys(loaded.keyset.keys)
        assert served in expected, body[:200]
        seen.add(served)
        assert not list(tmp_path.glob(".lkg-*.tmp"))
    assert seen == expected  # the kills landed while both sets were being written


@pytest.mark.parametrize("problem", ["read-only", "full"])
def test_unwritable_state_dir_serving_goes_on(problem: str, secrets: Secrets, tmp_path: Path) -> None:
    """A read-only or full state_dir fails each write: logged and counted, and the set is served and rotated."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    prepare = ("mount -o remount,ro {d}" if problem == "read-only"
               else "dd if=/dev/zero of={d}/filler bs=4096 count=64 2>/dev/null; true").format(d=state_dir)
    wrapper = ["unshare", "--mount", "--map-root-user", "sh", "-c",
               f'mount -t tmpfs -o size=16k tmpfs {state_dir} && {prepare} && exec "$@"', "sh"]
    secret = secrets.create(jwk_set(rsa_jwk(rsa_key(0), "state-0")))
    sections = sm_sections(secret)
    sections["state"] = {"state_dir": str(state_dir)}
    with Daemon.from_toml(tmp_path, sections, endpoint=secrets.endpoint, wrapper=wrapper) as daemon:
        assert daemon.kids() == {"state-0"}
        wait_until(lambda: daemon.metric("jwksd_state_errors_total", operation="write") >= 1, "a failed write")
        secrets.put(secret, jwk_set(rsa_jwk(rsa_key(1), "state-1")))
        daemon.refresh()
        assert daemon.kids() == {"state-0", "state-1"}
        assert daemon.get()[1]["X-JWKS-Source"] == "fresh"
        wait_until(lambda: daemon.metric("jwksd_state_errors_total", operation="write") >= 2, "a second failed write")
        errors = [e for e in daemon.events() if e["event"] == "state_write_failed"]
    assert len(errors) >= 2 and all(e["level"] == "error" for e in errors)
    reason = "Read-only file system" if problem == "read-only" else "No space left on device"
    assert reason in errors[0]["message"]
    assert not (state_dir / "last-known-good.json").exists()  # the tmpfs was never visible out here


def test_fallback_deleted_while_running(secrets: Secrets, tmp_path: Path) -> None:
    """Deleting the fallback file changes nothing while running; the next start stops with a clear error."""
    fallback = tmp_path / "fallback.json"
    fallback.write_text(jwk_set(rsa_jwk(rsa_key(2), "fallback-2")))
    secret = secrets.create(jwk_set(rsa_jwk(rsa_key(0), "live-0")))
    sections = sm_sections(secret)
    sections["state"] = {"fallback_file": str(fallback)}
    with Daemon.from_toml(tmp_path, sections, endpoint=secrets.endpoint) as daemon:
        fallback.unlink()
        daemon.refresh()
        assert daemon.kids() == {"live-0"}
        assert daemon.get("/health")[0] == 200
        assert not [e for e in daemon.events() if e.get("level") == "error"]
        assert daemon.stop() == 0
    restart = Daemon.from_toml(tmp_path, sections, endpoint=secrets.endpoint, wait_ready=False)
    assert restart.process.wait(timeout=30) == 2
    assert f"fallback_file {str(fallback)!r} cannot be read: No such file or directory" in restart.log_path.read_text()


def file_sections(source: Path, **state: str) -> dict[str, dict[str, object]]:
    """A daemon serving a local file, refreshed only when told (SIGUSR1), with these [state] settings."""
    return {"source": {"kind": "file", "path": str(source)}, "refresh": {"interval_s": 3600, "max_age_s": 3600},
            "log": {"level": "info"}, "state": dict(state)}


def sane_last_known_good(state_dir: Path) -> LastKnownGood | None:
    """The last-known-good file if it reads back with sane times, else None (it may not be rewritten yet)."""
    try:
        return load_last_known_good(state_dir, ValidationConfig())
    except StateError:
        return None


def test_far_future_time_in_state_skipped(tmp_path: Path) -> None:
    """A last-known-good changed_at of 1e20 is skipped (logged, counted): JWKS 503 not 500, never written back."""
    state_dir, source = tmp_path / "state", tmp_path / "keys.json"
    state_dir.mkdir()
    save_last_known_good(state_dir, tuple(key_set(0, 1)), fetched_at=time.time(), changed_at=1e20)
    with Daemon.from_toml(tmp_path, file_sections(source, state_dir=str(state_dir)), wait_ready=False) as daemon:
        skipped = daemon.wait_event("last_known_good_skipped")
        assert skipped["level"] == "error"
        assert skipped["message"].startswith(f"last-known-good file {str(lkg_path(state_dir))!r} has changed_at "
                                             "1e+20, which is not a time between 0 and now (")
        # The listeners open after the ladder has run, so wait for them before asking.
        wait_until(lambda: daemon.metric("jwksd_state_errors_total", operation="read") == 1, "the read error counted")
        wait_until(lambda: daemon.get("/readyz")[0] == 503, "the listener, not ready")
        assert daemon.get()[0] == 503  # nothing valid to serve yet: 503 with Retry-After, not a 500
        source.write_text(jwk_set(*key_set(1, 1)))
        daemon.refresh()
        status, headers, _ = daemon.get()
        assert (status, daemon.get("/readyz")[0]) == (200, 200)
        assert parsedate_to_datetime(headers["Last-Modified"]).timestamp() <= time.time() + 1
        rewritten = wait_until(lambda: sane_last_known_good(state_dir), "a sane rewrite")
        assert rewritten.changed_at <= time.time() and rewritten.keyset.kids == ("lkg-1",)
    with Daemon.from_toml(tmp_path, file_sections(source, state_dir=str(state_dir))) as restarted:
        assert restarted.kids() == {"lkg-1"} and not restarted.events("last_known_good_skipped")


def test_fifo_state_file_at_start(tmp_path: Path) -> None:
    """A FIFO in place of the last-known-good file is skipped at start with its reason; the first write replaces it."""
    state_dir, source = tmp_path / "state", tmp_path / "keys.json"
    state_dir.mkdir()
    os.mkfifo(lkg_path(state_dir))
    source.write_text(jwk_set(*key_set(0, 1)))
    with Daemon.from_toml(tmp_path, file_sections(source, state_dir=str(state_dir))) as daemon:
        assert daemon.kids() == {"lkg-0"}
        assert daemon.wait_event("last_known_good_skipped")["message"] == (
            f"last-known-good file {str(lkg_path(state_dir))!r} cannot be read: it is a FIFO; expected a regular "
            "file (or a symlink to one)")
        wait_until(lambda: daemon.metric("jwksd_state_errors_total", operation="read") == 1, "the read error counted")
        wait_until(lambda: stat.S_ISREG(lkg_path(state_dir).lstat().st_mode), "the FIFO replaced by a written file")


def test_fifo_fallback_on_sighup(tmp_path: Path) -> None:
    """A FIFO as fallback_file on SIGHUP is refused with its reason, and the daemon answers all the while."""
    source, fallback = tmp_path / "keys.json", tmp_path / "fallback.json"
    source.write_text(jwk_set(*key_set(0, 1)))
    fallback.write_text(jwk_set(*key_set(1, 1)))
    with Daemon.from_toml(tmp_path, file_sections(source, fallback_file=str(fallback))) as daemon:
        fallback.unlink()
        os.mkfifo(fallback)
        daemon.signal(signal.SIGHUP)
        assert daemon.get()[0] == 200  # answered while the reload runs (it used to block the loop for good)
        rejected = daemon.wait_event("reload_rejected")
        assert rejected["problems"] == [f"fallback_file {str(fallback)!r} is not a regular file"]
        assert daemon.metric("jwksd_config_reloads_total", outcome="rejected") == 1
        assert daemon.kids() == {"lkg-0"} and daemon.get("/healthz")[0] == 200


def test_huge_file_source_refused(tmp_path: Path) -> None:
    """A file source grown to 1 TiB (sparse) fails the refresh as file_too_large; the set served before stays."""
    source = tmp_path / "keys.json"
    source.write_text(jwk_set(*key_set(0, 1)))
    with Daemon.from_toml(tmp_path, file_sections(source)) as daemon:
        rss_before = daemon.rss_kb()
        with source.open("r+b") as handle:
            handle.truncate(1 << 40)
        daemon.refresh()
        status, headers, _ = daemon.get()
        assert (status, headers["X-JWKS-Source"], daemon.kids()) == (200, "stale", {"lkg-0"})
        health = json.loads(daemon.get("/health")[2])
        assert health["checks"]["jwks"]["sources"]["file"]["last_error"]["code"] == "file_too_large"
        assert daemon.rss_kb() < rss_before + 50_000  # not one chunk of the terabyte was read


def test_kubernetes_mounted_files(tmp_path: Path) -> None:
    """Source and fallback files mounted as Kubernetes mounts a Secret (symlinks) are read; a remount is picked up."""
    mount = tmp_path / "secret"
    source = kubernetes_mount(mount, "keys.json", jwk_set(*key_set(0, 1)).encode())
    fallback = kubernetes_mount(tmp_path / "fallback", "fallback.json", jwk_set(*key_set(1, 1)).encode())
    with Daemon.from_toml(tmp_path, file_sections(source, fallback_file=str(fallback))) as daemon:
        assert daemon.kids() == {"lkg-0"}
        update = mount / "..2026_11_30_15_00_00.000000002"  # the kubelet's atomic update: a new dir, ..data swapped
        update.mkdir()
        (update / "keys.json").write_text(jwk_set(*key_set(2, 1)))
        (mount / "..data.tmp").symlink_to(update.name)
        (mount / "..data.tmp").rename(mount / "..data")
        daemon.refresh()
        assert daemon.kids() == {"lkg-2"}
