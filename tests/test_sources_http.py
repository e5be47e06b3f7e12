"""The http source against a real aiohttp upstream on 127.0.0.1: conditional requests, Cache-Control, failures."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from jwksd.config import Config, HttpSourceConfig, RefreshConfig
from jwksd.metrics import Metrics
from jwksd.sources.http import HttpSource
from tests.daemon_helpers import detailed_health_of, get_jwks, kids_of, metric, refresh_now, refresher_of, start
from tests.keys import jwk_set, key, rsa_jwk, rsa_key


class Upstream:
    """A JWKS endpoint whose answers the test sets; it records each request's headers."""

    def __init__(self) -> None:
        self.body = jwk_set(key(0)).encode()
        self.status = 200
        self.headers: dict[str, str] = {}
        self.requests: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        if self.status != 200:
            return web.Response(status=self.status, text="upstream says no", headers=self.headers)
        etag, modified = self.headers.get("ETag"), self.headers.get("Last-Modified")
        if (etag and request.headers.get("If-None-Match") == etag) or (
                not etag and modified and request.headers.get("If-Modified-Since") == modified):
            return web.Response(status=304, headers=self.headers)
        return web.Response(body=self.body, headers=self.headers, content_type="application/json")


@pytest.fixture
async def upstream(aiohttp_server: Any) -> tuple[Upstream, str]:
    """An upstream on 127.0.0.1 and its JWKS URL."""
    state = Upstream()
    app = web.Application()
    app.router.add_get("/jwks.json", state.handle)
    server: TestServer = await aiohttp_server(app, host="127.0.0.1")
    return state, f"http://127.0.0.1:{server.port}/jwks.json"


def http_config(url: str, **source: Any) -> Config:
    source.setdefault("allow_insecure_loopback", True)
    source.setdefault("max_retries", 0)
    source.setdefault("retry_base_s", 0.01)
    source.setdefault("min_refresh_s", 30.0)
    source.setdefault("max_refresh_s", 600.0)
    return Config(sources=(HttpSourceConfig(url=url, name="idp", **source),),
                  refresh=RefreshConfig(interval_s=60.0, max_age_s=120.0, retry_base_s=0.05, retry_cap_s=0.2))


async def test_etag_revalidation_gets_304(aiohttp_client: Any, upstream: tuple[Upstream, str]) -> None:
    """The second request carries If-None-Match; the 304 keeps the same set, fresh; a new ETag brings new keys."""
    state, url = upstream
    state.headers = {"ETag": '"v1"'}
    client = await start(aiohttp_client, http_config(url))
    await refresh_now(client)
    assert state.requests[1]["If-None-Match"] == '"v1"'
    status, headers, body = await get_jwks(client)
    assert (status, kids_of(body), headers["X-JWKS-Source"]) == (200, ["key-0"], "fresh")
    assert metric(client, "jwksd_upstream_requests_total", source="idp", result="304") == 1
    state.body, state.headers = jwk_set(key(1)).encode(), {"ETag": '"v2"'}
    await refresh_now(client)
    assert kids_of((await get_jwks(client))[2]) == ["key-1"]


async def test_last_modified_revalidation_gets_304(aiohttp_client: Any, upstream: tuple[Upstream, str]) -> None:
    """Without an ETag the source revalidates with If-Modified-Since."""
    state, url = upstream
    state.headers = {"Last-Modified": "Sun, 22 Nov 2026 00:00:00 GMT"}
    client = await start(aiohttp_client, http_config(url))
    await refresh_now(client)
    assert state.requests[1]["If-Modified-Since"] == "Sun, 22 Nov 2026 00:00:00 GMT"
    assert "If-None-Match" not in state.requests[1]
    assert metric(client, "jwksd_upstream_requests_total", source="idp", result="304") == 1
    assert kids_of((await get_jwks(client))[2]) == ["key-0"]


@pytest.mark.parametrize(("cache_control", "age", "expected"), [
    ("public, max-age=120", None, 120.0),   # within bounds: honoured
    ("max-age=5", None, 30.0),              # shorter than min_refresh_s: clamped up
    ("max-age=86400", None, 600.0),         # longer than max_refresh_s: clamped down
    ("max-age=300", "200", 100.0),          # what a cache in front of the upstream already used up
    ("no-store", None, 30.0),               # no freshness at all: the minimum
    (None, None, None),                     # no opinion: refresh.interval_s
])
async def test_cache_control_within_bounds(upstream: tuple[Upstream, str], cache_control: str | None,
                                           age: str | None, expected: float | None) -> None:
    """Cache-Control max-age (less Age) sets when the source is asked again, clamped to its bounds."""
    state, url = upstream
    state.headers = {k: v for k, v in (("Cache-Control", cache_control), ("Age", age)) if v is not None}
    config = http_config(url).sources[0]
    assert isinstance(config, HttpSourceConfig)
    source = HttpSource(config, Metrics(), max_document_bytes=65536)
    try:
        assert (await source.fetch()).refresh_in_s == expected
    finally:
        await source.close()


async def test_max_age_schedules_the_next_fetch(aiohttp_client: Any, upstream: tuple[Upstream, str]) -> None:
    """The refresh loop schedules the source by its clamped max-age (with jitter), not by interval_s."""
    state, url = upstream
    state.headers = {"Cache-Control": "max-age=400"}
    client = await start(aiohttp_client, http_config(url))
    refresher = refresher_of(client)
    delay = refresher.states["idp"].due - asyncio.get_running_loop().time()
    assert 400 * 0.85 < delay <= 400 * 1.1


async def test_upstream_500_keeps_last_good_set(aiohttp_client: Any, upstream: tuple[Upstream, str]) -> None:
    """Upstream 500s are retried, then the last good set stays served as stale with the error in health."""
    state, url = upstream
    client = await start(aiohttp_client, http_config(url, max_retries=1))
    state.status = 500
    await refresh_now(client)
    assert len(state.requests) == 3  # the first fetch, then one attempt and one retry
    status, headers, body = await get_jwks(client)
    assert (status, kids_of(body), headers["X-JWKS-Source"]) == (200, ["key-0"], "stale")
    health = detailed_health_of(client)  # the metrics listener's: the public one has no messages
    assert health["checks"]["jwks"]["last_error"]["code"] == "http_500"
    assert health["checks"]["jwks"]["last_error"]["message"] == f"GET {url}: HTTP 500"
    assert metric(client, "jwksd_upstream_requests_total", source="idp", result="5xx") == 2


@pytest.mark.parametrize(("body", "reason"), [
    (b"<html>maintenance</html>", "invalid_json"),
    (b'{"keys": []}', "no_keys"),
    (jwk_set({**rsa_jwk(rsa_key(0), "k"), "d": "AQAB"}).encode(), "private_key_material"),
])
async def test_garbage_keeps_last_good_set(aiohttp_client: Any, upstream: tuple[Upstream, str], body: bytes,
                                           reason: str) -> None:
    """An upstream that starts serving garbage, an empty set or a private key is refused; the last set stays."""
    state, url = upstream
    client = await start(aiohttp_client, http_config(url))
    state.body = body
    await refresh_now(client)
    status, headers, served = await get_jwks(client)
    assert (status, kids_of(served), headers["X-JWKS-Source"]) == (200, ["key-0"], "stale")
    assert metric(client, "jwksd_documents_rejected_total", reason=reason) == 1


async def test_redirect_is_not_followed(aiohttp_client: Any, upstream: tuple[Upstream, str]) -> None:
    """A redirect (which could downgrade https to http) fails the fetch and names why."""
    state, url = upstream
    state.status, state.headers = 302, {"Location": "http://example.invalid/jwks.json"}
    client = await start(aiohttp_client, http_config(url))
    health = detailed_health_of(client)  # the metrics listener's: the public one has no messages
    assert health["checks"]["jwks"]["last_error"]["message"] == f"GET {url}: HTTP 302 (redirects are not followed)"
    assert len(state.requests) == 1


async def test_oversized_body_is_refused_by_name(aiohttp_client: Any, upstream: tuple[Upstream, str]) -> None:
    """A body beyond validation.max_document_bytes is read only up to the limit and rejected as too_large."""
    state, url = upstream
    state.body = json.dumps({"keys": [key(0)], "padding": "x" * 70000}).encode()
    client = await start(aiohttp_client, http_config(url))
    assert (await get_jwks(client))[0] == 503
    assert metric(client, "jwksd_documents_rejected_total", reason="too_large") == 1
