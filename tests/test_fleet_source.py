"""The shared source against an attacker who can write Redis: real `jwksd serve` replicas, redis-server and moto.

Entries stay fresh for an hour (``interval_s`` 3600), so a replayed entry is fresh by its age and only
the replica's memory of what it has accepted refuses it.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

from tests.conftest import Secrets
from tests.daemon_process import Daemon, sm_sections, wait_until
from tests.keys import jwk_set, key
from tests.redis_server import RedisServer

NAMESPACE = "fleet"
ENTRY = f"{NAMESPACE}:entry:secretsmanager"
FIFTY_MB = 50 * 1024 * 1024


def replica(workdir: Path, endpoint: str, secret: str, redis: RedisServer, hmac_key_file: Path | None,
            **shared: Any) -> Daemon:
    """A replica with its own state directory, started and past its first refresh."""
    workdir.mkdir(exist_ok=True)
    (workdir / "state").mkdir(exist_ok=True)
    sections = sm_sections(secret)
    sections["state"] = {"state_dir": str(workdir / "state")}
    sections["shared_cache"] = {"url": redis.url, "namespace": NAMESPACE, "lease_s": 2.0, **shared}
    if hmac_key_file is not None:
        sections["shared_cache"]["hmac_key_file"] = str(hmac_key_file)
    daemon = Daemon.from_toml(workdir, sections, endpoint=endpoint)
    try:
        daemon.wait_event("refresh")
    except BaseException:
        daemon.stop()
        raise
    return daemon


def lkg_kids(workdir: Path) -> set[str]:
    data = json.loads((workdir / "state" / "last-known-good.json").read_bytes())
    return {k["kid"] for k in data["keys"]}


def refused(daemon: Daemon, reason: str) -> list[dict[str, Any]]:
    return [e for e in daemon.events("shared_entry_refused") if e["reason"] == reason]


def test_replayed_entry_never_brings_back_a_removed_kid(tmp_path: Path, moto_endpoint: str, secrets: Secrets,
                                                        redis: RedisServer, hmac_key_file: Path) -> None:
    """An entry saved with DUMP and put back with RESTORE after a key was removed is refused by every replica."""
    secret = secrets.create(jwk_set(key(0), key(1)))
    one, two = tmp_path / "one", tmp_path / "two"
    first = replica(one, moto_endpoint, secret, redis, hmac_key_file)
    second = replica(two, moto_endpoint, secret, redis, hmac_key_file)
    try:
        assert first.kids() == second.kids() == {"key-0", "key-1"}
        with redis.client() as plain:
            saved, old_value = plain.dump(ENTRY), plain.get(ENTRY)
            assert saved is not None and old_value is not None

            for _ in range(2):  # key-1 leaves AWSCURRENT, then AWSPREVIOUS too
                secrets.put(secret, jwk_set(key(0)))
            first.refresh()  # SIGUSR1: from the source, written back
            assert first.kids() == {"key-0"}
            second.stop()
            second = replica(two, moto_endpoint, secret, redis, hmac_key_file)  # learns key-0 alone from Redis
            assert second.kids() == {"key-0"}
            assert second.metric("jwksd_shared_cache_events_total", event="hit") == 1

            plain.restore(ENTRY, 0, saved, replace=True)  # the replay, correctly signed and fresh by its age
            assert plain.get(ENTRY) == old_value
            # The first replica reloads a changed source setting: a new shared source reads the entry.
            config = one / "jwksd.toml"
            config.write_text(re.sub(r"read_timeout_s = 2\.0", "read_timeout_s = 2.5", config.read_text()))
            before = first.metric("jwksd_refreshes_total")
            first.signal(signal.SIGHUP)
            wait_until(lambda: first.metric("jwksd_refreshes_total") > before, "a refresh after the reload")
            assert first.kids() == {"key-0"}
            # The second one is restarted: only its last-known-good file remembers what it accepted.
            second.stop()
            plain.restore(ENTRY, 0, saved, replace=True)  # the first replica has overwritten it: again
            second = replica(two, moto_endpoint, secret, redis, hmac_key_file)

            for daemon, workdir in ((first, one), (second, two)):
                assert daemon.kids() == {"key-0"}
                assert lkg_kids(workdir) == {"key-0"}
                assert daemon.metric("jwksd_shared_cache_events_total", event="rolled_back") == 1
                assert [e["detail"].startswith("the entry was fetched at ") for e in refused(daemon, "rolled_back")] \
                    == [True]
            assert plain.get(ENTRY) != old_value  # overwritten by a fetch from the source
    finally:
        first.stop()
        second.stop()


def test_no_hmac_key_and_no_opt_out_refuses_to_start(tmp_path: Path, moto_endpoint: str, secrets: Secrets,
                                                     redis: RedisServer) -> None:
    """A Redis URL without hmac_key_file stops `jwksd serve` (exit 2) naming the setting and the opt-out."""
    secret = secrets.create(jwk_set(key(0)))
    sections = {**sm_sections(secret), "shared_cache": {"url": redis.url}}
    daemon = Daemon.from_toml(tmp_path, sections, endpoint=moto_endpoint, wait_ready=False)
    assert daemon.process.wait(timeout=20) == 2
    assert daemon.log_path.read_text() == (
        "jwksd: invalid configuration:\n"
        "  - shared_cache.hmac_key_file = None: expected the path of a key file (32 bytes or more, the same on "
        "every replica), or shared_cache.allow_unauthenticated = true to let whoever can write to Redis choose the "
        "keys every replica serves\n")


def test_opt_out_starts_with_a_warning_every_time(tmp_path: Path, moto_endpoint: str, secrets: Secrets,
                                                  redis: RedisServer) -> None:
    """allow_unauthenticated = true starts without a key, and every start logs the warning."""
    secret = secrets.create(jwk_set(key(0)))
    for _ in range(2):
        daemon = replica(tmp_path, moto_endpoint, secret, redis, None, allow_unauthenticated=True)
        with daemon:
            assert daemon.kids() == {"key-0"}
            [warning] = daemon.events("preflight_warning")
            assert (warning["level"], warning["problem"]) == (
                "warning", f"shared_cache.allow_unauthenticated = true: whoever can write to {redis.url} chooses "
                           "the keys every replica serves")


def test_entry_for_another_secret_is_refused(tmp_path: Path, moto_endpoint: str, secrets: Secrets,
                                             redis: RedisServer, hmac_key_file: Path) -> None:
    """A replica of another secret, with the same namespace, source name and HMAC key, cannot feed its entry."""
    ours, theirs = secrets.create(jwk_set(key(0))), secrets.create(jwk_set(key(1)))
    with replica(tmp_path / "theirs", moto_endpoint, theirs, redis, hmac_key_file) as other:
        assert other.kids() == {"key-1"}
        with redis.client() as plain:
            written = plain.get(ENTRY)
        with replica(tmp_path / "ours", moto_endpoint, ours, redis, hmac_key_file) as daemon:
            assert daemon.kids() == {"key-0"}
            assert daemon.metric("jwksd_shared_cache_events_total", event="wrong_source") == 1
            assert [e["detail"] for e in refused(daemon, "wrong_source")] == [
                "the entry was written for another source (another kind, secret id, stages or URL)"]
            with redis.client() as plain:
                assert plain.get(ENTRY) != written  # replaced by its own fetch


def test_fifty_megabyte_entry_is_refused_without_reading_it(tmp_path: Path, moto_endpoint: str, secrets: Secrets,
                                                            redis: RedisServer, hmac_key_file: Path) -> None:
    """A 50 MB entry is refused by its length: Redis sends the replica a few bytes, not the entry."""
    secret = secrets.create(jwk_set(key(0)))
    with redis.client() as plain:
        plain.set(ENTRY, b"jwksd-entry-2 " + b"x" * FIFTY_MB)
        sent_before = int(plain.info("stats")["total_net_output_bytes"])
        with replica(tmp_path, moto_endpoint, secret, redis, hmac_key_file) as daemon:
            assert daemon.kids() == {"key-0"}
            sent = int(plain.info("stats")["total_net_output_bytes"]) - sent_before
            assert sent < 1024 * 1024
            assert daemon.metric("jwksd_shared_cache_events_total", event="too_large") == 1
            [line] = refused(daemon, "too_large")
            assert re.fullmatch(r"the entry is 52428814 bytes, more than the \d+ its documents can fill "
                                r"\(validation.max_document_bytes per document\): not read", line["detail"])
            assert len(plain.get(ENTRY) or b"") < 100_000  # replaced by its own fetch


def test_sigusr1_goes_past_a_fresh_entry(tmp_path: Path, moto_endpoint: str, secrets: Secrets, redis: RedisServer,
                                         hmac_key_file: Path) -> None:
    """SIGUSR1 fetches from the source although the entry is fresh, and writes the result back for the fleet."""
    secret = secrets.create(jwk_set(key(0)))
    with replica(tmp_path, moto_endpoint, secret, redis, hmac_key_file) as daemon, redis.client() as plain:
        written = plain.get(ENTRY)
        secrets.put(secret, jwk_set(key(1)))
        daemon.refresh()
        assert daemon.kids() == {"key-0", "key-1"}  # the new version is AWSCURRENT, the old one AWSPREVIOUS
        assert daemon.metric("jwksd_shared_cache_events_total", event="bypassed") == 1
        assert daemon.metric("jwksd_shared_cache_events_total", event="write") == 2
        entry = plain.get(ENTRY)
        assert entry is not None and entry != written
        payload = json.loads(entry.split(b" ", 3)[3])
        assert [doc["label"] for doc in payload["documents"]] == ["AWSCURRENT", "AWSPREVIOUS"]
