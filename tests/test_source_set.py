"""SourceSet on reload: a source is built anew when a setting it keeps changes, and keeps what it delivered."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from jwksd.config import (
    Config,
    FileSourceConfig,
    HttpSourceConfig,
    RefreshConfig,
    SecretsManagerSourceConfig,
    ValidationConfig,
)
from jwksd.reload import reload_config
from jwksd.source_set import built_from
from tests.conftest import HMAC_KEY, FakeClock, Secrets
from tests.daemon_helpers import get_jwks, kids_of, metric, refresh_now, refresher_of, start
from tests.keys import jwk_set, key
from tests.redis_server import RedisServer
from tests.test_fleet_cache import SOURCE, entry_payload, fleet_config, seal
from tests.test_sources_http import Upstream, http_config


def reloaded(config: Config) -> Any:
    """What SIGHUP's handler calls to read the config again: here, ``config``."""
    return lambda: config


async def test_http_body_cap_follows_a_reload(aiohttp_client: Any, aiohttp_server: Any) -> None:
    """Raising validation.max_document_bytes by SIGHUP lets the http source read the larger body it cut before."""
    upstream = Upstream()
    upstream.body = json.dumps({"keys": [key(0)], "padding": "x" * 6000}).encode()
    app = web.Application()
    app.router.add_get("/jwks.json", upstream.handle)
    server: TestServer = await aiohttp_server(app, host="127.0.0.1")
    config = replace(http_config(f"http://127.0.0.1:{server.port}/jwks.json"),
                     validation=ValidationConfig(max_document_bytes=4096))
    client = await start(aiohttp_client, config)
    assert (await get_jwks(client))[0] == 503
    assert metric(client, "jwksd_documents_rejected_total", reason="too_large") == 1

    assert await reload_config(client.server.app, reloaded(replace(config, validation=ValidationConfig())))
    await refresh_now(client)
    status, _, body = await get_jwks(client)
    assert (status, kids_of(body)) == (200, ["key-0"])
    assert metric(client, "jwksd_documents_rejected_total", reason="too_large") == 1


async def test_file_size_cap_follows_a_reload(aiohttp_client: Any, tmp_path: Path) -> None:
    """Raising validation.max_document_bytes by SIGHUP lets the file source read the file it refused before."""
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [key(0)], "padding": "x" * 6000}))
    config = Config(sources=(FileSourceConfig(path=path),), validation=ValidationConfig(max_document_bytes=4096),
                    refresh=RefreshConfig(interval_s=60.0, max_age_s=120.0, retry_base_s=0.05, retry_cap_s=0.2))
    client = await start(aiohttp_client, config)
    assert (await get_jwks(client))[0] == 503
    assert await reload_config(client.server.app, reloaded(replace(config, validation=ValidationConfig())))
    await refresh_now(client)
    status, _, body = await get_jwks(client)
    assert (status, kids_of(body)) == (200, ["key-0"])


async def test_shared_source_follows_interval_and_limits(aiohttp_client: Any, secrets: Secrets, redis: RedisServer,
                                                         hmac_key_file: Path, clock: FakeClock) -> None:
    """After SIGHUP the shared entry is written fresh for the new interval_s and read with the new max_keys."""
    secret = secrets.create(jwk_set(key(0)))
    config = replace(fleet_config(secrets.endpoint, secret, redis.url, hmac_key_file=hmac_key_file),
                     validation=ValidationConfig(max_keys=2))
    client = await start(aiohttp_client, config, clock=clock)
    entry_key = f"fleet:entry:{SOURCE}"
    with redis.client() as plain:
        assert json.loads(plain.get(entry_key).split(b" ", 3)[3])["fresh_for_s"] == 60.0
    source = refresher_of(client).sources[0]

    longer = replace(config, refresh=replace(config.refresh, interval_s=120.0, max_age_s=240.0))
    assert await reload_config(client.server.app, reloaded(longer))
    assert refresher_of(client).sources[0] is not source  # wrapped anew for the new interval,
    assert refresher_of(client).states[SOURCE].keys is not None  # keeping what it delivered (no await since)
    clock.advance(61.0)  # the entry written at start is stale: the next refresh fetches and writes anew
    await refresh_now(client)
    with redis.client() as plain:
        assert json.loads(plain.get(entry_key).split(b" ", 3)[3])["fresh_for_s"] == 120.0

    three = jwk_set(key(1), key(2), key(3)).encode()  # another replica's entry, more keys than max_keys = 2
    entry = seal(entry_payload(clock, three), key=HMAC_KEY, redis_key=entry_key, secret=secret)
    with redis.client() as plain:
        plain.set(entry_key, entry)
    await refresh_now(client)
    assert kids_of((await get_jwks(client))[2]) == ["key-0"]  # refused by the shared source, fetched directly
    with redis.client() as plain:
        plain.set(entry_key, entry)
    assert await reload_config(client.server.app, reloaded(replace(longer, validation=ValidationConfig(max_keys=5))))
    await refresh_now(client)
    assert sorted(kids_of((await get_jwks(client))[2])) == ["key-1", "key-2", "key-3"]


def test_built_from_names_what_each_source_keeps() -> None:
    """An http source keeps the body cap; behind the shared cache a remote source also keeps interval and limits."""

    config = Config(sources=(), refresh=RefreshConfig(interval_s=30.0))
    http, sm, local = HttpSourceConfig(url="https://x/j"), SecretsManagerSourceConfig(secret_id="s"), \
        FileSourceConfig(path=Path("/k"))
    assert built_from(config, http, shared=False) == (http, 65536)
    assert built_from(config, sm, shared=False) == (sm,)
    assert built_from(config, sm, shared=True) == (sm, 30.0, config.validation)
    assert built_from(config, local, shared=True) == (local, 65536)
