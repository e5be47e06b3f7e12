"""Several sources at once: the union, kid conflicts by source order, per-source state and last-known-good shares."""

from __future__ import annotations

import asyncio
import json
from dataclasses import FrozenInstanceError, replace
from pathlib import Path
from typing import Any

import pytest
import structlog

from jwksd import local_file
from jwksd.config import (
    Config,
    FileSourceConfig,
    RefreshConfig,
    SecretsManagerSourceConfig,
    StateConfig,
    ValidationConfig,
)
from jwksd.errors import StateError
from jwksd.http.app import METRICS, REFRESH_TASK
from jwksd.state import LKG_NAME, load_last_known_good, save_last_known_good
from tests.conftest import REGION, Secrets
from tests.daemon_helpers import WAIT_S, get_jwks, health_of, kids_of, refresh_now, refresher_of, sm_config, start
from tests.keys import jwk_set, key


def two_sources(endpoint: str, secret: str, path: Path, state_dir: Path | None = None) -> Config:
    """Secrets Manager first (it wins conflicts), then a local file."""
    first = SecretsManagerSourceConfig(secret_id=secret, endpoint_url=endpoint, region=REGION, name="aws",
                                       version_stages=("AWSCURRENT",), max_retries=0, connect_timeout_s=1.0,
                                       read_timeout_s=2.0)
    config = sm_config(endpoint, secret)
    return replace(config, sources=(first, FileSourceConfig(path=path, name="disk")),
                   state=StateConfig(state_dir=state_dir))


async def test_kid_conflict_resolved_by_source_order(aiohttp_client: Any, secrets: Secrets, tmp_path: Path) -> None:
    """The served set is the union; a kid both sources hold with different keys comes from the first, logged."""
    secret = secrets.create(jwk_set(key(0, "shared"), key(1, "aws-only")))
    disk = tmp_path / "keys.json"
    disk.write_text(jwk_set(key(2, "shared"), key(3, "disk-only")))
    with structlog.testing.capture_logs() as logs:
        client = await start(aiohttp_client, two_sources(secrets.endpoint, secret, disk))
    _, _, body = await get_jwks(client)
    served = {k["kid"]: k["n"] for k in json.loads(body)["keys"]}
    assert sorted(served) == ["aws-only", "disk-only", "shared"]
    assert served["shared"] == key(0, "shared")["n"]
    assert {"event": "kid_conflict", "kid": "shared", "kept": "aws", "ignored": "disk",
            "log_level": "warning"} in logs


async def test_failing_source_keeps_its_own_keys(aiohttp_client: Any, secrets: Secrets, tmp_path: Path) -> None:
    """One failing source neither removes the other's keys nor loses its own last good keys; each has its state."""
    secret = secrets.create(jwk_set(key(0)))
    disk = tmp_path / "keys.json"
    disk.write_text(jwk_set(key(1)))
    client = await start(aiohttp_client, two_sources(secrets.endpoint, secret, disk))
    disk.unlink()
    secrets.put(secret, jwk_set(key(2)))
    await refresh_now(client)
    status, headers, body = await get_jwks(client)
    assert (status, kids_of(body), headers["X-JWKS-Source"]) == (200, ["key-1", "key-2"], "stale")
    sources = (await health_of(client))["checks"]["jwks"]["sources"]
    assert sources["aws"]["status"] == "pass" and sources["aws"]["last_error"] is None
    assert sources["disk"]["status"] == "warn" and sources["disk"]["last_error"]["code"] == "file_unreadable"
    registry = client.server.app[METRICS].registry
    assert registry.get_sample_value("jwksd_refreshes_total", {"source": "disk", "outcome": "fetch_error"}) == 1
    assert registry.get_sample_value("jwksd_refreshes_total", {"source": "aws", "outcome": "success"}) == 2


async def test_restart_keeps_a_failing_sources_last_known_good_share(aiohttp_client: Any, secrets: Secrets,
                                                                     tmp_path: Path) -> None:
    """After a restart with one source still down, its keys from last-known-good stay once the other delivers."""
    secret = secrets.create(jwk_set(key(0)))
    disk, state_dir = tmp_path / "keys.json", tmp_path / "state"
    disk.write_text(jwk_set(key(1)))
    state_dir.mkdir()
    config = two_sources(secrets.endpoint, secret, disk, state_dir)
    first = await start(aiohttp_client, config)
    assert kids_of((await get_jwks(first))[2]) == ["key-0", "key-1"]
    await first.close()

    disk.unlink()
    secrets.put(secret, jwk_set(key(2)))
    second = await start(aiohttp_client, config)
    status, headers, body = await get_jwks(second)
    assert (status, kids_of(body), headers["X-JWKS-Source"]) == (200, ["key-1", "key-2"], "stale")
    sources = (await health_of(second))["checks"]["jwks"]["sources"]
    assert sources["disk"]["origin"] == "last-known-good"
    assert sources["aws"]["origin"] == "fresh"
    saved = load_last_known_good(state_dir, ValidationConfig())
    assert saved is not None and sorted(saved.sources) == ["aws", "disk"]
    assert saved.sources["disk"].kids == ("key-1",)


def one_file(path: Path) -> Config:
    """The file source alone, retried quickly while it fails."""
    return Config(sources=(FileSourceConfig(path=path, name="disk"),),
                  refresh=RefreshConfig(interval_s=60.0, retry_base_s=0.05, retry_cap_s=0.2))


async def test_cancel_as_a_file_read_fails_stops_the_loop(aiohttp_client: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The shutdown's cancel landing as the file source's read of a removed file ends stops the refresh task."""
    disk = tmp_path / "keys.json"
    disk.write_text(jwk_set(key(0)))
    client = await start(aiohttp_client, one_file(disk))
    task, loop, real_read = client.server.app[REFRESH_TASK], asyncio.get_running_loop(), local_file.read_regular_file
    armed = [True]  # once: a loop that lost this cancel still ends on the fixture's

    def cancelled_as_it_ends(path: Path, max_bytes: int) -> tuple[bytes, float]:
        try:
            return real_read(path, max_bytes)
        finally:  # the order of the hang seen under load: the read is done, its result not yet seen, then the cancel
            if armed and armed.pop():
                loop.call_soon_threadsafe(loop.call_soon, task.cancel)

    monkeypatch.setattr(local_file, "read_regular_file", cancelled_as_it_ends)
    disk.unlink()
    refresher_of(client).trigger()
    await asyncio.wait({task}, timeout=WAIT_S)
    assert not armed and task.cancelled()


async def test_cancel_with_a_wake_up_stops_the_loop(aiohttp_client: Any, tmp_path: Path) -> None:
    """A cancel in the same turn as a wake-up (SIGUSR1, a stale read) stops the idle refresh loop."""
    disk = tmp_path / "keys.json"
    disk.write_text(jwk_set(key(0)))
    client = await start(aiohttp_client, one_file(disk))
    task, refresher = client.server.app[REFRESH_TASK], refresher_of(client)
    async with asyncio.timeout(WAIT_S):
        while not refresher._wake._waiters:  # until the loop waits to be woken
            await asyncio.sleep(0.01)
    refresher.trigger()
    task.cancel()
    await asyncio.wait({task}, timeout=WAIT_S)
    assert task.cancelled()


def test_bad_share_in_last_known_good_is_skipped(tmp_path: Path) -> None:
    """A source share that fails validation is left out and named; the rest of the file is still used."""
    save_last_known_good(tmp_path, (key(0),), fetched_at=1.0, changed_at=1.0,
                         sources={"aws": (key(0),), "disk": (key(1),)})
    data = json.loads((tmp_path / LKG_NAME).read_text())
    data["jwksd_last_known_good"]["sources"]["disk"]["keys"] = []
    (tmp_path / LKG_NAME).write_text(json.dumps(data))
    loaded = load_last_known_good(tmp_path, ValidationConfig())
    assert loaded is not None
    assert sorted(loaded.sources) == ["aws"]
    assert loaded.skipped[0].startswith("source 'disk': no_keys: ")


def test_private_key_anywhere_in_last_known_good_refuses_the_file(tmp_path: Path) -> None:
    """Private key material in a source share refuses the whole file, as in any document."""
    save_last_known_good(tmp_path, (key(0),), fetched_at=1.0, changed_at=1.0, sources={"disk": (key(1),)})
    data = json.loads((tmp_path / LKG_NAME).read_text())
    data["jwksd_last_known_good"]["sources"]["disk"]["keys"][0]["d"] = "AQAB"
    (tmp_path / LKG_NAME).write_text(json.dumps(data))
    with pytest.raises(StateError, match="private_key_material"):
        load_last_known_good(tmp_path, ValidationConfig())


def test_last_known_good_may_exceed_one_documents_limits(tmp_path: Path) -> None:
    """The file holds two sources' documents, so the per-document size and count limits do not apply to it."""
    keys = tuple(key(i % 4, f"kid-{i}") for i in range(12))
    save_last_known_good(tmp_path, keys, fetched_at=1.0, changed_at=1.0, sources={"a": keys[:6], "b": keys[6:]})
    loaded = load_last_known_good(tmp_path, ValidationConfig(max_keys=5, max_document_bytes=4096))
    assert loaded is not None and len(loaded.keyset.keys) == 12 and len(loaded.sources["b"].keys) == 6


def test_accepted_fetch_times_survive_in_last_known_good(tmp_path: Path) -> None:
    """Each shared source's newest accepted fetch time is read back; one not in the past is named and left out."""
    save_last_known_good(tmp_path, (key(0),), fetched_at=1.0, changed_at=1.0, sources={"aws": (key(0),)},
                         accepted_at={"aws": 1_700_000_000.5})
    loaded = load_last_known_good(tmp_path, ValidationConfig())
    assert loaded is not None and loaded.accepted_at == {"aws": 1_700_000_000.5}
    data = json.loads((tmp_path / LKG_NAME).read_text())
    data["jwksd_last_known_good"]["accepted_at"] = {"aws": 1e20, "idp": "soon", "ok": 5.0}
    (tmp_path / LKG_NAME).write_text(json.dumps(data))
    loaded = load_last_known_good(tmp_path, ValidationConfig())
    assert loaded is not None and loaded.accepted_at == {"ok": 5.0}
    assert loaded.skipped == ("source 'aws': accepted_at = 1e+20: expected a time before the file was written",
                              "source 'idp': accepted_at = soon: expected a time before the file was written")


async def test_status_is_replaced_whole_after_each_refresh(aiohttp_client: Any, secrets: Secrets,
                                                           tmp_path: Path) -> None:
    """Readers hold a frozen status that a later refresh never changes; the refresher swaps in a new one."""
    disk = tmp_path / "keys.json"
    disk.write_text(jwk_set(key(1)))
    client = await start(aiohttp_client, two_sources(secrets.endpoint, secrets.create(jwk_set(key(0))), disk))
    refresher = refresher_of(client)
    before = refresher.status
    disk.unlink()
    await refresh_now(client)
    after = refresher.status
    assert after is not before and after.completed == before.completed + 1
    assert [(s.name, s.failing, s.last_error) for s in before.sources] == [("aws", False, None), ("disk", False, None)]
    assert [(s.name, s.failing) for s in after.sources] == [("aws", False), ("disk", True)]
    assert after.sources[1].last_error is not None and after.sources[1].last_error.code == "file_unreadable"
    with pytest.raises(FrozenInstanceError):
        before.sources[1].failing = True  # type: ignore[misc]
