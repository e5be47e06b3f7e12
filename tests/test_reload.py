"""SIGHUP reload: what a new config changes in place, what needs a restart, and what an invalid one leaves alone."""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from jwksd.config import Config, Listen, StateConfig, ValidationConfig
from jwksd.errors import ConfigError
from jwksd.http.app import CONFIG, REFRESHER
from jwksd.reload import plan, reload_config
from jwksd.validate.jwk import thumbprint
from tests.conftest import REGION, Secrets, free_port
from tests.daemon_helpers import JWKS, get_jwks, kids_of, metric, refresh_now, sm_config, start, wait_refreshes
from tests.daemon_process import Daemon, base_env, sm_sections, wait_until
from tests.fault_proxy import FaultProxy, start_proxy
from tests.keys import jwk_set, rsa_jwk, rsa_key


@pytest.fixture(autouse=True)
def restore_structlog() -> Iterator[None]:
    """A reload sets the log level globally; put structlog back as it was for the other tests."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def loader(config: Config) -> Any:
    return lambda: config


def test_plan_keeps_start_only_settings() -> None:
    """Listener, path and log format changes are reported and kept as running; the rest is applied."""
    old = sm_config("http://127.0.0.1:1", "s")
    new = replace(old, server=replace(old.server, listen=Listen("127.0.0.1", 9), paths=("/a",)),
                  refresh=replace(old.refresh, interval_s=30.0), log=replace(old.log, level="debug", format="json"))
    applied, changed, restart = plan(old, new)
    assert applied.server == old.server and applied.log.format == old.log.format
    assert (applied.refresh.interval_s, applied.log.level) == (30.0, "debug")
    assert changed == ["refresh.interval_s", "log.level"]
    assert restart == ["server.listen", "server.paths", "log.format"]


async def test_headers_and_budgets_change_without_touching_the_set(aiohttp_client: Any, secrets: Secrets) -> None:
    """New max_age and cache settings show in the next response; the set, its ETag and the source stay."""
    config = sm_config(secrets.endpoint, secrets.create(jwk_set(rsa_jwk(rsa_key(0), "k1"))))
    client = await start(aiohttp_client, config)
    _, before, body = await get_jwks(client)
    source = client.server.app[REFRESHER].sources[0]
    new = replace(config, refresh=replace(config.refresh, max_age_s=900.0),
                  http_cache=replace(config.http_cache, stale_while_revalidate_s=5))
    assert await reload_config(client.server.app, loader(new))
    _, after, body_after = await get_jwks(client)
    assert after["Cache-Control"] == "public, max-age=900, stale-while-revalidate=5, stale-if-error=86400"
    assert (after["ETag"], body_after) == (before["ETag"], body)
    assert client.server.app[REFRESHER].sources[0] is source  # unchanged source settings: not re-opened
    assert metric(client, "jwksd_max_age_seconds") == 900
    assert metric(client, "jwksd_config_reloads_total", outcome="applied") == 1


async def test_new_secret_is_opened_and_served_after_one_refresh(aiohttp_client: Any, secrets: Secrets) -> None:
    """A changed source is re-opened; the old set is served until the new source delivers."""
    config = sm_config(secrets.endpoint, secrets.create(jwk_set(rsa_jwk(rsa_key(0), "old"))))
    client = await start(aiohttp_client, config)
    old_source = client.server.app[REFRESHER].sources[0]
    new = sm_config(secrets.endpoint, secrets.create(jwk_set(rsa_jwk(rsa_key(1), "new"))))
    completed = client.server.app[REFRESHER].completed
    assert await reload_config(client.server.app, loader(new))
    assert client.server.app[REFRESHER].sources[0] is not old_source
    status, _, body = await get_jwks(client)
    assert status == 200 and kids_of(body) in (["old"], ["new"])  # never empty in between
    await wait_refreshes(client, completed + 1)
    assert kids_of((await get_jwks(client))[2]) == ["new"]


async def test_validation_limits_apply_to_the_next_refresh(aiohttp_client: Any, secrets: Secrets) -> None:
    """A tighter max_keys rejects the next document, and the served set stays as it was."""
    config = sm_config(secrets.endpoint, secrets.create(jwk_set(rsa_jwk(rsa_key(0), "a"), rsa_jwk(rsa_key(1), "b"))))
    client = await start(aiohttp_client, config)
    assert await reload_config(client.server.app, loader(replace(config, validation=ValidationConfig(max_keys=1))))
    await refresh_now(client)
    assert metric(client, "jwksd_documents_rejected_total", reason="too_many_keys") == 1
    assert kids_of((await get_jwks(client))[2]) == ["a", "b"]


async def test_invalid_config_changes_nothing(aiohttp_client: Any, secrets: Secrets) -> None:
    """Every problem is logged; the config, sources and headers in force stay."""
    config = sm_config(secrets.endpoint, secrets.create(jwk_set(rsa_jwk(rsa_key(0), "k1"))))
    client = await start(aiohttp_client, config)
    problems = ["refresh.interval_s = -1: expected a number > 0", "log.level = 'loud': expected debug or info"]

    def broken() -> Config:
        raise ConfigError(problems)

    with capture_logs() as logs:
        assert not await reload_config(client.server.app, broken)
    assert [(e["event"], e["problems"]) for e in logs] == [("reload_rejected", problems)]
    assert client.server.app[CONFIG].current is config
    assert metric(client, "jwksd_config_reloads_total", outcome="rejected") == 1
    assert (await get_jwks(client))[1]["Cache-Control"].startswith("public, max-age=120,")


async def test_invalid_fallback_file_rejects_the_reload(aiohttp_client: Any, secrets: Secrets,
                                                        tmp_path: Path) -> None:
    """A fallback file that would stop a restart also stops the reload, naming the file."""
    config = sm_config(secrets.endpoint, secrets.create(jwk_set(rsa_jwk(rsa_key(0), "k1"))))
    client = await start(aiohttp_client, config)
    fallback = tmp_path / "fallback.json"
    fallback.write_text('{"keys": []}')
    with capture_logs() as logs:
        assert not await reload_config(client.server.app, loader(replace(config, state=StateConfig(
            fallback_file=fallback))))
    assert f"fallback_file {str(fallback)!r} is not a valid key set" in logs[0]["problems"][0]
    assert client.server.app[CONFIG].current is config


async def test_listener_change_is_logged_and_the_rest_applied(aiohttp_client: Any, secrets: Secrets) -> None:
    """A new listen address needs a restart: logged by name; the refresh change is applied anyway."""
    config = sm_config(secrets.endpoint, secrets.create(jwk_set(rsa_jwk(rsa_key(0), "k1"))))
    client = await start(aiohttp_client, config)
    new = replace(config, server=replace(config.server, listen=Listen("127.0.0.1", 1)),
                  refresh=replace(config.refresh, interval_s=90.0))
    with capture_logs() as logs:
        assert await reload_config(client.server.app, loader(new))
    events = {e["event"]: e for e in logs}
    assert events["reload_needs_restart"]["settings"] == ["server.listen"]
    assert events["reload_applied"]["changed"] == ["refresh.interval_s"]
    current = client.server.app[CONFIG].current
    assert (current.server, current.refresh.interval_s) == (config.server, 90.0)


def test_sighup_reloads_a_running_daemon(secrets: Secrets, tmp_path: Path) -> None:
    """SIGHUP re-reads the file: applied on an open keep-alive connection; an invalid file is refused whole."""
    secret = secrets.create(jwk_set(rsa_jwk(rsa_key(0), "k1")))
    port = free_port()
    path = tmp_path / "jwksd.toml"
    body = (f'[server]\nlisten = "127.0.0.1:{port}"\nmetrics_listen = "off"\nkeepalive_timeout_s = 60\n'
            f'[source]\nsecret_id = "{secret}"\nendpoint_url = "{secrets.endpoint}"\nregion = "{REGION}"\n'
            '[log]\nlevel = "info"\n')
    path.write_text(body + "[refresh]\ninterval_s = 3600\nmax_age_s = 3600\n")
    daemon = Daemon.from_env(base_env(JWKSD_CONFIG=str(path)), tmp_path / "jwksd.log", port=port)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # kept open for 60 s
        connection.request("GET", JWKS)
        first = connection.getresponse()
        assert (first.status, first.getheader("Cache-Control")[:22]) == (200, "public, max-age=3600, ")
        etag = first.getheader("ETag")
        first.read()

        path.write_text(body.replace('level = "info"', 'level = "debug"').replace(f":{port}", f":{free_port()}")
                        + "[refresh]\ninterval_s = 3600\nmax_age_s = 7200\n")
        daemon.signal(signal.SIGHUP)
        applied = daemon.wait_event("reload_applied")
        assert applied["changed"] == ["refresh.max_age_s", "log.level"]
        assert daemon.events("reload_needs_restart")[0]["settings"] == ["server.listen"]
        connection.request("GET", JWKS)  # the same connection: nothing was dropped
        second = connection.getresponse()
        assert (second.status, second.getheader("ETag")) == (200, etag)
        assert second.getheader("Cache-Control").startswith("public, max-age=7200,")
        second.read()

        path.write_text(body + "[refresh]\ninterval_s = -1\nmax_age_s = 7200\nbogus = 1\n")
        daemon.signal(signal.SIGHUP)
        rejected = daemon.wait_event("reload_rejected")
        assert rejected["problems"] == ["refresh.interval_s = -1: expected a number > 0", "refresh.bogus: unknown key"]
        connection.request("GET", JWKS)
        third = connection.getresponse()
        assert third.status == 200 and third.getheader("Cache-Control").startswith("public, max-age=7200,")
        third.read()
        connection.close()
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_revoked_kids_on_sighup_and_after_a_restart_with_aws_down(secrets: Secrets, tmp_path: Path) -> None:
    """revoked_kids + SIGHUP drops a kid still in the secret; restarted with AWS down, last-known-good omits it."""
    secret = secrets.create(jwk_set(rsa_jwk(rsa_key(0), "k1"), rsa_jwk(rsa_key(1), "leaked")))
    state_dir, before = tmp_path / "state", tmp_path / "state-before-revocation"
    state_dir.mkdir()
    sections = {**sm_sections(secret), "state": {"state_dir": str(state_dir)}}
    with Daemon.from_toml(tmp_path, sections, endpoint=secrets.endpoint) as daemon:
        assert daemon.kids() == {"k1", "leaked"}
        wait_until(lambda: any(state_dir.iterdir()), "the last-known-good file")
        shutil.copytree(state_dir, before)
        (tmp_path / "jwksd.toml").write_text((tmp_path / "jwksd.toml").read_text()
                                             + '[validation]\nrevoked_kids = ["leaked"]\n')
        daemon.signal(signal.SIGHUP)
        assert daemon.wait_event("reload_applied")["changed"] == ["validation.revoked_kids"]
        wait_until(lambda: daemon.kids() == {"k1"}, "the revoked kid to leave the served set")
        dropped = daemon.wait_event("key_dropped")
        assert (dropped["kid"], dropped["reason"]) == ("leaked", "revoked")
        assert daemon.metric("jwksd_keys_dropped_total", reason="revoked") >= 1
    assert "leaked" in "".join(path.read_text() for path in before.iterdir())  # the old state still holds it
    shutil.rmtree(state_dir)
    shutil.copytree(before, state_dir)
    down = f"http://127.0.0.1:{free_port()}"
    with Daemon.from_toml(tmp_path, {**sections, "validation": {"revoked_kids": ["leaked"]}}, endpoint=down) as daemon:
        assert daemon.kids() == {"k1"}
        assert daemon.wait_event("serving_from_disk")["kids"] == ["k1"]


async def _daemon_behind_down_aws(secrets: Secrets, tmp_path: Path) -> tuple[Daemon, FaultProxy, dict[str, Any]]:
    """A daemon serving k1 and leaked from a secret behind the fault proxy, last-known-good written, then AWS down."""
    secret = secrets.create(jwk_set(rsa_jwk(rsa_key(0), "k1"), rsa_jwk(rsa_key(1), "leaked")))
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    sections = {**sm_sections(secret), "state": {"state_dir": str(state_dir)}}
    proxy = await start_proxy(secrets.endpoint)
    daemon = await asyncio.to_thread(Daemon.from_toml, tmp_path, sections, endpoint=proxy.url)
    assert await asyncio.to_thread(daemon.kids) == {"k1", "leaked"}
    await asyncio.to_thread(wait_until, lambda: any(state_dir.iterdir()), "the last-known-good file")
    proxy.fault = "http_503"
    await asyncio.to_thread(daemon.refresh)
    assert proxy.faulted("http_503") and await asyncio.to_thread(daemon.kids) == {"k1", "leaked"}
    return daemon, proxy, sections


async def _revoke(daemon: Daemon, tmp_path: Path, kids: list[str]) -> None:
    """Append ``[validation] revoked_kids`` to the daemon's config file and SIGHUP it; wait for the reload."""
    config = tmp_path / "jwksd.toml"
    config.write_text(config.read_text() + f"[validation]\nrevoked_kids = {json.dumps(kids)}\n")
    daemon.signal(signal.SIGHUP)
    applied = await asyncio.to_thread(daemon.wait_event, "reload_applied")
    assert applied["changed"] == ["validation.revoked_kids"]


async def test_revoked_kids_act_at_once_while_aws_is_down(secrets: Secrets, tmp_path: Path) -> None:
    """With AWS down, SIGHUP + revoked_kids drops the kid from the served set and last-known-good, restart included."""
    daemon, proxy, sections = await _daemon_behind_down_aws(secrets, tmp_path)
    try:
        await _revoke(daemon, tmp_path, ["leaked"])
        await asyncio.to_thread(wait_until, lambda: daemon.kids() == {"k1"}, "the revoked kid to leave the set")
        removed = daemon.events("revoked_kids_removed")[0]
        assert (removed["kids"], removed["origin"]) == (["leaked"], "fresh")
        state = "".join(path.read_text() for path in (tmp_path / "state").iterdir())
        assert '"k1"' in state and "leaked" not in state
        await asyncio.to_thread(daemon.refresh)  # another failed refresh does not bring it back
        assert await asyncio.to_thread(daemon.kids) == {"k1"}
        assert await asyncio.to_thread(daemon.metric, "jwksd_kids_removed_total") == 1
        assert await asyncio.to_thread(daemon.stop) == 0
        restarted = {**sections, "validation": {"revoked_kids": ["leaked"]}}
        daemon = await asyncio.to_thread(Daemon.from_toml, tmp_path, restarted, endpoint=proxy.url)
        assert await asyncio.to_thread(daemon.kids) == {"k1"}
        assert daemon.events("serving_from_disk")[0]["kids"] == ["k1"]
    finally:
        await asyncio.to_thread(daemon.stop)
        await proxy.close()


async def test_revoking_every_served_key_keeps_serving_and_says_so(secrets: Secrets, tmp_path: Path) -> None:
    """Revoking every served key (by kid and by thumbprint) keeps them served, logged, counted and on /health."""
    daemon, proxy, _ = await _daemon_behind_down_aws(secrets, tmp_path)
    try:
        await _revoke(daemon, tmp_path, ["k1", thumbprint(rsa_jwk(rsa_key(1), "leaked"))])
        refused = await asyncio.to_thread(daemon.wait_event, "revoked_kids_would_empty")
        assert (refused["level"], refused["kids"]) == ("error", ["k1", "leaked"])
        assert await asyncio.to_thread(daemon.kids) == {"k1", "leaked"}
        assert await asyncio.to_thread(daemon.metric, "jwksd_revocations_kept_total") >= 1
        status, _, body = await asyncio.to_thread(daemon.get, "/health")
        health = json.loads(body)
        assert (status, health["status"], health["checks"]["jwks"]["status"]) == (200, "warn", "warn")
        assert health["checks"]["jwks"]["revoked_kept"] == ["k1", "leaked"]
        assert "leaked" in "".join(path.read_text() for path in (tmp_path / "state").iterdir())
    finally:
        await asyncio.to_thread(daemon.stop)
        await proxy.close()
