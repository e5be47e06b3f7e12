"""The shared cache: replicas on one real redis-server and the moto server, AWS calls counted by a proxy.

The replicas share one FakeClock, so "an interval passes" is ``clock.advance`` and every replica
refreshes at the same instant: the worst case for the lease, and no test waits on wall time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from jwksd.config import Config, SharedCacheConfig
from jwksd.errors import ConfigError
from jwksd.fleet.cache import SharedCache
from jwksd.metrics import Metrics
from jwksd.store import SystemClock
from tests.conftest import HMAC_KEY, FakeClock, Secrets, free_port
from tests.counting_proxy import CountingProxy
from tests.daemon_helpers import (
    detailed_health_of,
    get_jwks,
    health_of,
    kids_of,
    metric,
    refresh_now,
    refresher_of,
    sm_config,
    start,
)
from tests.keys import jwk_set, key
from tests.redis_server import RedisServer

Client = TestClient[web.Request, web.Application]
INTERVAL_S = 60.0
SOURCE = "secretsmanager"


@pytest.fixture
async def proxy(moto_endpoint: str) -> AsyncIterator[CountingProxy]:
    """Counts what reaches the moto server."""
    counting = CountingProxy(moto_endpoint)
    await counting.start()
    yield counting
    await counting.close()


def fleet_config(endpoint: str, secret: str, redis_url: str | None, *, hmac_key_file: Path | None = None,
                 namespace: str = "fleet") -> Config:
    config = sm_config(endpoint, secret, interval_s=INTERVAL_S, version_stages=("AWSCURRENT",))
    if redis_url is None:
        return config
    return replace(config, shared_cache=SharedCacheConfig(url=redis_url, namespace=namespace, lease_s=5.0,
                                                          hmac_key_file=hmac_key_file, timeout_s=0.5,
                                                          allow_unauthenticated=hmac_key_file is None))


async def start_fleet(aiohttp_client: Any, config: Config, clock: FakeClock, size: int) -> list[Client]:
    return [await start(aiohttp_client, config, clock=clock, metrics=Metrics()) for _ in range(size)]


async def interval_passes(fleet: list[Client], clock: FakeClock) -> None:
    """An interval passes and every replica refreshes at once."""
    clock.advance(INTERVAL_S)
    await asyncio.gather(*(refresh_now(client) for client in fleet))


def seal(payload: bytes, *, key: bytes | None, redis_key: str, secret: str) -> bytes:
    """An entry as the wire format says: magic, identity digest, HMAC-SHA256 over key, identity and payload."""
    identity = f"secretsmanager\n{secret}\nAWSCURRENT".encode()
    digest = hashlib.sha256(identity).hexdigest()[:32].encode()
    bound = b"\n".join((b"jwksd-entry-2", redis_key.encode(), identity, payload))
    mac = hmac.new(key, bound, hashlib.sha256).hexdigest().encode() if key else b"-"
    return b" ".join((b"jwksd-entry-2", digest, mac, payload))


def entry_payload(clock: FakeClock, content: bytes) -> bytes:
    return json.dumps({"source": SOURCE, "fetched_at": clock.time(), "fresh_for_s": INTERVAL_S,
                       "documents": [{"label": "AWSCURRENT", "required": True, "version": "evil",
                                      "content": base64.b64encode(content).decode()}]}).encode()


async def test_five_replicas_share_one_call_per_interval(aiohttp_client: Any, secrets: Secrets, redis: RedisServer,
                                                         proxy: CountingProxy, clock: FakeClock) -> None:
    """Five replicas over ten intervals make eleven GetSecretValue calls (one at start, one per interval), not 55."""
    secret = secrets.create(jwk_set(key(0)))
    fleet = await start_fleet(aiohttp_client, fleet_config(proxy.url, secret, redis.url), clock, 5)
    assert proxy.calls["GetSecretValue"] == 1
    for round_ in range(10):
        if round_ == 5:
            secrets.put(secret, jwk_set(key(1)))  # a rotation reaches every replica through the shared entry
        await interval_passes(fleet, clock)
    assert proxy.calls["GetSecretValue"] == 11
    assert sum(metric(c, "jwksd_shared_cache_events_total", source=SOURCE, event="write") for c in fleet) == 11
    for client in fleet:
        status, headers, body = await get_jwks(client)
        assert (status, kids_of(body), headers["X-JWKS-Source"]) == (200, ["key-1"], "fresh")
        assert metric(client, "jwksd_aws_calls_total", operation="GetSecretValue", code="ok") <= 11


async def test_without_shared_cache_every_replica_calls(aiohttp_client: Any, secrets: Secrets, proxy: CountingProxy,
                                                        clock: FakeClock) -> None:
    """The control: the same five replicas without Redis make one call each per interval."""
    secret = secrets.create(jwk_set(key(0)))
    fleet = await start_fleet(aiohttp_client, fleet_config(proxy.url, secret, None), clock, 5)
    for _ in range(10):
        await interval_passes(fleet, clock)
    assert proxy.calls["GetSecretValue"] == 55


async def test_redis_outage_falls_back_then_sharing_resumes(aiohttp_client: Any, secrets: Secrets,
                                                            redis: RedisServer, proxy: CountingProxy,
                                                            clock: FakeClock) -> None:
    """Redis stopped: every replica serves and fetches directly, health warns; Redis back: one call per interval."""
    secret = secrets.create(jwk_set(key(0)))
    fleet = await start_fleet(aiohttp_client, fleet_config(proxy.url, secret, redis.url), clock, 5)
    await interval_passes(fleet, clock)
    assert proxy.calls["GetSecretValue"] == 2

    redis.stop()
    for _ in range(2):
        before = proxy.calls["GetSecretValue"]
        await interval_passes(fleet, clock)
        assert proxy.calls["GetSecretValue"] - before == 5
    for client in fleet:
        status, headers, body = await get_jwks(client)
        assert (status, kids_of(body), headers["X-JWKS-Source"]) == (200, ["key-0"], "fresh")
        health = await health_of(client)
        assert health["status"] == "warn"
        assert health["checks"]["shared_cache"]["reachable"] is False
        assert metric(client, "jwksd_shared_cache_up") == 0
        assert metric(client, "jwksd_shared_cache_events_total", source=SOURCE, event="unavailable") >= 2

    redis.start()
    await interval_passes(fleet, clock)  # reconnects; the restarted Redis is empty
    for _ in range(2):
        before = proxy.calls["GetSecretValue"]
        await interval_passes(fleet, clock)
        assert proxy.calls["GetSecretValue"] - before == 1
    for client in fleet:
        assert (await health_of(client))["status"] == "pass"
        assert metric(client, "jwksd_shared_cache_up") == 1


async def test_slow_redis_times_out_and_fetches_directly(aiohttp_client: Any, secrets: Secrets, redis: RedisServer,
                                                          proxy: CountingProxy, clock: FakeClock) -> None:
    """Redis slower than timeout_s (every client paused) counts as down; afterwards no reply is read out of turn."""
    secret = secrets.create(jwk_set(key(0)))
    fleet = await start_fleet(aiohttp_client, fleet_config(proxy.url, secret, redis.url), clock, 2)
    with redis.client() as plain:
        plain.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        before = proxy.calls["GetSecretValue"]
        await interval_passes(fleet, clock)
        assert proxy.calls["GetSecretValue"] - before == 2
        for client in fleet:
            assert detailed_health_of(client)["checks"]["shared_cache"]["last_error"]["message"] == "read: TimeoutError"
            assert metric(client, "jwksd_shared_cache_errors_total", operation="read") == 1
        assert plain.ping()  # answered once the pause is over
    for _ in range(2):
        before = proxy.calls["GetSecretValue"]
        await interval_passes(fleet, clock)
        assert proxy.calls["GetSecretValue"] - before == 1
    for client in fleet:
        assert kids_of((await get_jwks(client))[2]) == ["key-0"]
        assert (await health_of(client))["status"] == "pass"


async def test_redis_unreachable_at_start(aiohttp_client: Any, secrets: Secrets, clock: FakeClock) -> None:
    """With nothing listening at the Redis URL a replica starts, fetches directly and says so in health."""
    secret = secrets.create(jwk_set(key(0)))
    config = fleet_config(secrets.endpoint, secret, f"redis://127.0.0.1:{free_port()}/0")
    client = await start(aiohttp_client, config, clock=clock)
    status, _, body = await get_jwks(client)
    assert (status, kids_of(body)) == (200, ["key-0"])
    health = await health_of(client)
    assert health["status"] == "warn"
    assert detailed_health_of(client)["checks"]["shared_cache"]["last_error"]["message"].startswith("read: ")
    public = health["checks"]["shared_cache"]  # no Redis host on the public listener
    assert "url" not in public and public["last_error"]["code"] == "read: ConnectionError"
    assert set(public["last_error"]) == {"code", "at"} and "127.0.0.1" not in json.dumps(health)
    assert metric(client, "jwksd_shared_cache_errors_total", operation="read") >= 1


@pytest.mark.parametrize("tamper", ["bad_json", "private_key", "wrong_hmac", "no_hmac"])
async def test_tampered_entry_refused_by_every_replica(aiohttp_client: Any, secrets: Secrets, redis: RedisServer,
                                                       hmac_key_file: Path, tamper: str) -> None:
    """Bad JSON, a private key or a wrong or missing HMAC in Redis is refused, counted and replaced, never served."""
    clock = FakeClock()
    secret = secrets.create(jwk_set(key(0)))
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    fleet = await start_fleet(aiohttp_client, fleet_config(secrets.endpoint, secret, redis.url,
                                                           hmac_key_file=hmac_key_file, namespace=namespace), clock, 3)
    redis_key = f"{namespace}:entry:{SOURCE}"
    private = {**key(2, "evil"), "d": base64.urlsafe_b64encode(b"\x01" * 256).rstrip(b"=").decode()}
    evil = {
        "bad_json": seal(b'{"source": "secretsmanager", ', key=HMAC_KEY, redis_key=redis_key, secret=secret),
        "private_key": seal(entry_payload(clock, jwk_set(private).encode()), key=HMAC_KEY, redis_key=redis_key,
                            secret=secret),
        "wrong_hmac": seal(entry_payload(clock, jwk_set(key(2, "evil")).encode()), key=b"x" * 40,
                           redis_key=redis_key, secret=secret),
        "no_hmac": seal(entry_payload(clock, jwk_set(key(2, "evil")).encode()), key=None, redis_key=redis_key,
                        secret=secret),
    }[tamper]
    event = "bad_hmac" if tamper in ("wrong_hmac", "no_hmac") else "invalid_entry"
    with redis.client() as plain:
        for client in fleet:
            plain.set(redis_key, evil)
            await refresh_now(client)
            status, _, body = await get_jwks(client)
            assert (status, kids_of(body)) == (200, ["key-0"])
            assert b'"d"' not in body
            assert metric(client, "jwksd_shared_cache_events_total", source=SOURCE, event=event) == 1
            stored = plain.get(redis_key)
            assert stored is not None and stored != evil  # replaced by the replica's own good fetch
            assert stored == seal(stored.split(b" ", 3)[3], key=HMAC_KEY, redis_key=redis_key, secret=secret)


async def test_without_hmac_whoever_writes_redis_chooses_keys(aiohttp_client: Any, secrets: Secrets,
                                                              redis: RedisServer, clock: FakeClock) -> None:
    """With allow_unauthenticated and no hmac_key_file a valid entry written by anyone is served (the docs warn)."""
    secret = secrets.create(jwk_set(key(0)))
    client = await start(aiohttp_client, fleet_config(secrets.endpoint, secret, redis.url, namespace="open"),
                         clock=clock)
    with redis.client() as plain:
        plain.set(f"open:entry:{SOURCE}", seal(entry_payload(clock, jwk_set(key(2, "chosen")).encode()), key=None,
                                               redis_key=f"open:entry:{SOURCE}", secret=secret))
    await refresh_now(client)
    assert kids_of((await get_jwks(client))[2]) == ["chosen"]


def test_short_hmac_key_is_refused(tmp_path: Path) -> None:
    """An HMAC key file with fewer than 32 bytes stops the daemon with a message naming it."""
    key_file = tmp_path / "short.key"
    key_file.write_bytes(b"too short\n")
    config = SharedCacheConfig(url="redis://127.0.0.1:6379/0", hmac_key_file=key_file)
    with pytest.raises(ConfigError) as info:
        SharedCache.open(config, Metrics(), SystemClock())
    assert info.value.problems == [f"shared_cache.hmac_key_file = {str(key_file)!r}: expected at least 32 bytes "
                                   "of key, found 9"]


async def test_refused_entry_is_logged_once_not_per_poll(aiohttp_client: Any, secrets: Secrets, redis: RedisServer,
                                                         hmac_key_file: Path, clock: FakeClock) -> None:
    """Waiting on another replica's lease meets the same bad entry at every poll: one log line, one count a refresh."""
    secret = secrets.create(jwk_set(key(0)))
    config = fleet_config(secrets.endpoint, secret, redis.url, hmac_key_file=hmac_key_file, namespace="once")
    config = replace(config, shared_cache=replace(config.shared_cache, lease_s=0.5))
    client = await start(aiohttp_client, config, clock=clock)
    evil = seal(entry_payload(clock, jwk_set(key(2, "evil")).encode()), key=b"x" * 40,
                redis_key=f"once:entry:{SOURCE}", secret=secret)
    with redis.client() as plain, capture_logs() as logs:
        for _ in range(2):
            plain.set(f"once:lease:{SOURCE}", b"another replica", px=5000)
            plain.set(f"once:entry:{SOURCE}", evil)
            await refresh_now(client)
    assert [(e["event"], e["reason"]) for e in logs if e["event"] == "shared_entry_refused"] == [
        ("shared_entry_refused", "bad_hmac")]
    assert metric(client, "jwksd_shared_cache_events_total", source=SOURCE, event="bad_hmac") == 2
    assert metric(client, "jwksd_shared_cache_events_total", source=SOURCE, event="lease_timeout") == 2
    assert kids_of((await get_jwks(client))[2]) == ["key-0"]


async def test_replica_that_accepted_newer_refuses_a_replay(aiohttp_client: Any, secrets: Secrets,
                                                            redis: RedisServer, hmac_key_file: Path,
                                                            clock: FakeClock) -> None:
    """Replicas that took the newer entry refuse the older one put back while it is still fresh by its age."""
    secret = secrets.create(jwk_set(key(0), key(1)))
    fleet = await start_fleet(aiohttp_client, fleet_config(secrets.endpoint, secret, redis.url,
                                                           hmac_key_file=hmac_key_file), clock, 3)
    with redis.client() as plain:
        saved = plain.dump(f"fleet:entry:{SOURCE}")
        secrets.put(secret, jwk_set(key(0)))
        clock.advance(1)
        cache = refresher_of(fleet[0]).source_set.cache
        assert cache is not None
        cache.bypass()  # what SIGUSR1 does
        await refresh_now(fleet[0])
        clock.advance(1)
        for client in fleet[1:]:
            await refresh_now(client)  # the newer entry, from Redis
        clock.advance(1)
        for client in fleet:
            plain.restore(f"fleet:entry:{SOURCE}", 0, saved, replace=True)  # each refusal overwrites it
            await refresh_now(client)
            assert kids_of((await get_jwks(client))[2]) == ["key-0"]
            assert metric(client, "jwksd_shared_cache_events_total", source=SOURCE, event="rolled_back") == 1
