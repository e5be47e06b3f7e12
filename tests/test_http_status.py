"""/status and /status.json: the documented shape, the page's limits and headers, where they are served."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from moto.server import ThreadedMotoServer

from jwksd.config import Config, FileSourceConfig, RefreshConfig
from jwksd.http.app import HEALTH, METRICS, STATUS, make_metrics_app
from jwksd.http.status_page import CSP, CSS
from jwksd.http.status_registry import CACHE_S
from jwksd.rotation.rotate import rotate
from jwksd.status import HISTORY
from jwksd.status_cli import run_status
from tests.conftest import FakeClock, Secrets, endpoint_of
from tests.daemon_helpers import refresh_now, sm_config, start
from tests.keys import jwk_set, key
from tests.rotation_helpers import DAY, keyring, rotation_config
from tests.test_http_app import metric

Client = TestClient[web.Request, web.Application]


async def side(aiohttp_client: Any, client: Client) -> Client:
    """The metrics listener of the app behind ``client``, as daemon.py builds it."""
    app = client.server.app
    metrics_app = make_metrics_app(app[METRICS], app[HEALTH], app[STATUS])
    result: Client = await aiohttp_client(metrics_app, server_kwargs={"host": "127.0.0.1"})
    return result


async def get(client: Client, path: str) -> tuple[int, dict[str, str], str]:
    async with client.get(path) as response:
        return response.status, dict(response.headers), await response.text()


async def test_status_json_tells_what_is_served_and_how_refreshes_went(aiohttp_client: Any, secrets: Secrets) -> None:
    """The document names each kid's type, alg, source and since, the source's schedule, and kids added on hover."""
    secret = secrets.create(jwk_set(key(0)))
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secret))
    secrets.put(secret, jwk_set(key(0), key(1)))
    await refresh_now(client)
    status = await side(aiohttp_client, client)
    async with status.get("/status.json") as response:
        doc = await response.json()
        assert response.headers["Cache-Control"] == "no-store"
    assert (doc["version"], doc["status"], doc["ready"]) == (1, "pass", True)
    served = doc["served"]
    assert (served["rung"], served["standby"], [k["kid"] for k in served["keys"]]) == ("fresh", False,
                                                                                       ["key-0", "key-1"])
    first, second = served["keys"]
    assert {k: first[k] for k in ("kty", "alg", "use", "crv", "sources")} == {
        "kty": "RSA", "alg": "RS256", "use": "sig", "crv": None, "sources": ["secretsmanager"]}
    assert first["since"] <= second["since"] <= doc["generated_at"]
    assert "n" not in first and "e" not in first  # kids and algorithms, never key material
    (source,) = doc["sources"]
    assert {k: source[k] for k in ("name", "kind", "origin", "status", "consecutive_failures", "last_error")} == {
        "name": "secretsmanager", "kind": "secretsmanager", "origin": "fresh", "status": "pass",
        "consecutive_failures": 0, "last_error": None}
    assert source["next_due"] > doc["generated_at"] and source["last_success"] <= doc["generated_at"]
    history = doc["refreshes"]["history"]
    assert [(o["outcome"], o["added"], o["removed"], o["served"]) for o in history] == [
        ("success", ["key-0"], [], "fresh"), ("success", ["key-1"], [], "fresh")]
    assert (doc["shared_cache"], doc["registry"], doc["refreshes"]["completed"]) == (None, None, 2)


async def test_status_names_the_failing_source_and_its_error(aiohttp_client: Any, own_moto: ThreadedMotoServer) -> None:
    """AWS down: the source warns with its error code and message, consecutive failures count, the set goes stale."""
    endpoint = endpoint_of(own_moto)
    client = await start(aiohttp_client, sm_config(endpoint, Secrets(endpoint).create(jwk_set(key(0)))))
    own_moto.stop()
    await refresh_now(client)
    await refresh_now(client)
    doc = await (await (await side(aiohttp_client, client)).get("/status.json")).json()
    (source,) = doc["sources"]
    assert (doc["status"], doc["served"]["rung"], source["status"], source["consecutive_failures"]) == (
        "pass", "stale", "warn", 2)
    assert source["last_error"]["code"] == "network" and "Could not connect" in source["last_error"]["message"]
    assert [o["outcome"] for o in doc["refreshes"]["history"]] == ["success", "fetch_error", "fetch_error"]
    _, _, page = await get(await side(aiohttp_client, client), "/status")
    assert "Could not connect" in page and 'data-outcome="fetch_error"' in page


async def test_page_is_self_contained_under_its_csp_and_100_kb(aiohttp_client: Any, tmp_path: Path) -> None:
    """A full history of 100 refreshes: a page under 100 KB, no script or outside URL, the stylesheet's hash in CSP."""
    keys = tmp_path / "keys.json"
    keys.write_text(jwk_set(*(key(i) for i in range(20))))
    config = Config(sources=(FileSourceConfig(path=keys),), refresh=RefreshConfig(interval_s=3600, max_age_s=3600))
    client = await start(aiohttp_client, config)
    for _ in range(HISTORY + 5):
        await refresh_now(client)
    status, headers, page = await get(await side(aiohttp_client, client), "/status")
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert len(page.encode()) < 100_000
    digest = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    assert headers["Content-Security-Policy"] == CSP
    assert CSP.startswith(f"default-src 'none'; style-src 'sha256-{digest}';")
    assert f"<style>{CSS}</style>" in page
    assert re.findall(r"<script|\sstyle=|\ssrc=|\shref=|https?://(?!www\.w3\.org/2000/svg)", page) == []
    assert page.count('data-outcome="unchanged"') == HISTORY and page.count('class="key"') == 20
    doc = await (await (await side(aiohttp_client, client)).get("/status.json")).json()
    assert (len(doc["refreshes"]["history"]), doc["refreshes"]["completed"]) == (HISTORY, HISTORY + 6)


async def test_status_is_on_the_public_listener_only_when_configured(aiohttp_client: Any, own_moto: ThreadedMotoServer
                                                                     ) -> None:
    """By default the JWKS listener has no /status; with server.status_on_main it has one without upstream words."""
    endpoint = endpoint_of(own_moto)
    config = sm_config(endpoint, Secrets(endpoint).create(jwk_set(key(0))))
    public = await start(aiohttp_client, config)
    assert (await get(public, "/status"))[0] == 404 and (await get(public, "/status.json"))[0] == 404
    opened = await start(aiohttp_client, replace(config, server=replace(config.server, status_on_main=True)))
    own_moto.stop()
    await refresh_now(opened)
    doc = await (await opened.get("/status.json")).json()
    assert doc["sources"][0]["last_error"]["code"] == "network"
    assert "message" not in doc["sources"][0]["last_error"]
    status, headers, page = await get(opened, "/status")
    assert (status, headers["Content-Security-Policy"]) == (200, CSP) and "Could not connect" not in page


async def test_registry_of_rotation_is_read_at_most_once_per_cache(aiohttp_client: Any, moto_endpoint: str,
                                                                   secrets: Secrets, clock: FakeClock) -> None:
    """With [rotation] and no dynamodb source, page views share one Scan per CACHE_S; the stored policy is shown,
    with what this host's file sets differently."""
    rotation = rotation_config(moto_endpoint)
    async with keyring(rotation) as ring:
        await rotate(ring, int(clock.wall) - 3 * DAY)  # the first rotate stores the policy in the head
    mine = replace(rotation, rotate_every_s=7 * DAY, explicit=frozenset({"rotate_every_s"}))
    config = replace(sm_config(secrets.endpoint, secrets.create(jwk_set(key(0)))), rotation=mine)
    client = await start(aiohttp_client, config, clock=clock)
    status = await side(aiohttp_client, client)
    first = await (await status.get("/status.json")).json()
    await (await status.get("/status")).read()
    assert metric(client, "jwksd_aws_calls_total", operation="Scan", code="ok") == 1
    registry = first["registry"]
    assert (registry["table"], registry["read_by"], registry["last_error"]) == (rotation.table, "status", None)
    assert [(k["version"], k["status"]) for k in registry["keys"]] == [(1, "pending")]
    assert registry["policy"] == {
        "rotate_every_s": rotation.rotate_every_s, "publish_ahead_s": rotation.publish_ahead_s,
        "retire_grace_s": rotation.retire_grace_s, "max_token_lifetime_s": 3600, "alg": "ES256",
        "key_spec": "ECC_NIST_P256", "from": "registry"}
    assert registry["policy_differences"] == [
        {"setting": "rotation.rotate_every_s", "config": 7 * DAY, "registry": rotation.rotate_every_s}]
    assert registry["revision"] >= 1
    _, _, page = await get(status, "/status")
    assert "This host's [rotation] disagrees with the registry" in page and "(from the registry)" in page
    out = io.StringIO()
    assert await asyncio.to_thread(run_status, str(status.make_url("")), None, out=out, environ={}) == 0
    assert f"this host's rotation.rotate_every_s = {7 * DAY}, the registry holds {rotation.rotate_every_s}" \
           in out.getvalue()
    clock.advance(CACHE_S)
    await (await status.get("/status.json")).read()
    assert metric(client, "jwksd_aws_calls_total", operation="Scan", code="ok") == 2


async def test_registry_unreachable_shows_the_last_read_and_its_error(aiohttp_client: Any, own_moto: ThreadedMotoServer,
                                                                      clock: FakeClock, tmp_path: Path) -> None:
    """AWS down after a read: the page keeps the keys read before, names the failed read, and answers at once."""
    endpoint = endpoint_of(own_moto)
    rotation = rotation_config(endpoint, connect_timeout_s=0.5, read_timeout_s=0.5)
    async with keyring(rotation) as ring:
        await rotate(ring, int(clock.wall))
    keys = tmp_path / "keys.json"
    keys.write_text(jwk_set(key(0)))
    config = Config(sources=(FileSourceConfig(path=keys),), rotation=rotation)
    client = await start(aiohttp_client, config, clock=clock)
    status = await side(aiohttp_client, client)
    assert len((await (await status.get("/status.json")).json())["registry"]["keys"]) == 1
    own_moto.stop()
    clock.advance(CACHE_S)
    registry = (await (await status.get("/status.json")).json())["registry"]
    assert (len(registry["keys"]), registry["last_error"]["code"]) == (1, "network")
    assert registry["read_at"] == clock.wall - CACHE_S
    _, _, page = await get(status, "/status")
    assert "Last read failed" in page and 'class="bar"' in page


async def test_served_since_survives_a_restart_on_last_known_good(aiohttp_client: Any, own_moto: ThreadedMotoServer,
                                                                  clock: FakeClock, tmp_path: Path) -> None:
    """A daemon restarted with AWS down still says since when each kid has been served, from its state file."""
    endpoint = endpoint_of(own_moto)
    config = sm_config(endpoint, Secrets(endpoint).create(jwk_set(key(0))), state_dir=tmp_path)
    first = await start(aiohttp_client, config, clock=clock)
    served_at = clock.wall
    await first.close()
    own_moto.stop()
    clock.advance(7200)
    again = await side(aiohttp_client, await start(aiohttp_client, config, clock=clock))
    doc = await (await again.get("/status.json")).json()
    assert (doc["served"]["rung"], doc["served"]["keys"][0]["since"]) == ("last-known-good", served_at)
    assert doc["served"]["keys"][0]["sources"] == ["last-known-good"]


async def test_dynamodb_source_registry_costs_no_scan(aiohttp_client: Any, moto_endpoint: str,
                                                      clock: FakeClock) -> None:
    """On the dynamodb source the page draws the head and keys of the source's last Scan: a view makes no AWS call."""
    from tests.test_sources_dynamodb import daemon_config

    rotation = rotation_config(moto_endpoint)
    async with keyring(rotation) as ring:
        for at in (int(clock.wall) - 2 * DAY, int(clock.wall) - DAY):
            await rotate(ring, at)
    client = await start(aiohttp_client, daemon_config(moto_endpoint, rotation.table), clock=clock)
    scans = metric(client, "jwksd_aws_calls_total", operation="Scan", code="ok")
    status = await side(aiohttp_client, client)
    registry = (await (await status.get("/status.json")).json())["registry"]
    await (await status.get("/status")).read()
    assert metric(client, "jwksd_aws_calls_total", operation="Scan", code="ok") == scans == 1
    assert (registry["read_by"], registry["policy"]["from"], registry["policy_differences"]) == ("source", "registry",
                                                                                                 [])
    assert [(k["version"], k["status"]) for k in registry["keys"]] == [(1, "active"), (2, "pending")]
    assert registry["next_change"] == {"at": registry["keys"][0]["activated"] + rotation.rotate_every_s,
                                       "change": "version 2 becomes active"}
