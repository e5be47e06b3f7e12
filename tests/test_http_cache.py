"""HTTP caching through real HTTP: ETag and If-Modified-Since give 304, gzip negotiation, the CORS preflight."""

from __future__ import annotations

import gzip
from typing import Any

from jwksd.config import Config, HttpCacheConfig, RefreshConfig
from jwksd.http.cache import ConditionalGet, accepts_gzip, etag_matches, not_modified_since
from jwksd.store import build_snapshot
from tests.conftest import FakeClock, Secrets
from tests.daemon_helpers import JWKS, get_jwks, sm_config, start
from tests.keys import jwk_set, key


async def test_etag_gives_304(aiohttp_client: Any, secrets: Secrets) -> None:
    """If-None-Match with the ETag, in a list, weak, or *, gives 304 with the same ETag and no body."""
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secrets.create(jwk_set(key(0)))))
    _, headers, _ = await get_jwks(client)
    etag = headers["ETag"]
    for value in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        status, again, body = await get_jwks(client, **{"If-None-Match": value})
        assert (status, again["ETag"], body) == (304, etag, b"")
        assert again["Cache-Control"] == headers["Cache-Control"]
    status, _, _ = await get_jwks(client, **{"If-None-Match": '"nope"'})
    assert status == 200


async def test_if_modified_since(aiohttp_client: Any, secrets: Secrets) -> None:
    """If-Modified-Since at or after Last-Modified gives 304 when no If-None-Match is sent."""
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secrets.create(jwk_set(key(0)))))
    _, headers, _ = await get_jwks(client)
    assert (await get_jwks(client, **{"If-Modified-Since": headers["Last-Modified"]}))[0] == 304
    assert (await get_jwks(client, **{"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}))[0] == 200
    assert (await get_jwks(client, **{"If-Modified-Since": "garbage"}))[0] == 200


async def test_cors_preflight(aiohttp_client: Any, secrets: Secrets) -> None:
    """OPTIONS answers a browser's preflight for a conditional GET."""
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secrets.create(jwk_set(key(0)))))
    async with client.options(JWKS) as response:
        assert response.status == 204
        assert "If-None-Match" in response.headers["Access-Control-Allow-Headers"]


async def test_gzip_from_precompressed_copy(aiohttp_client: Any, secrets: Secrets) -> None:
    """Accept-Encoding: gzip gets the gzip copy with its own ETag; identity gets plain bytes."""
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secrets.create(jwk_set(key(0), key(1)))))
    async with client.get(JWKS, headers={"Accept-Encoding": "identity"}, auto_decompress=False) as response:
        plain, plain_etag = await response.read(), response.headers["ETag"]
        assert "Content-Encoding" not in response.headers
    async with client.get(JWKS, headers={"Accept-Encoding": "gzip"}, auto_decompress=False) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await response.read()) == plain
        assert response.headers["ETag"] != plain_etag
        gz_etag = response.headers["ETag"]
    async with client.get(JWKS, headers={"Accept-Encoding": "gzip;q=0"}, auto_decompress=False) as response:
        assert "Content-Encoding" not in response.headers
    status, headers, _ = await get_jwks(client, **{"If-None-Match": gz_etag, "Accept-Encoding": "gzip"})
    assert (status, headers["ETag"]) == (304, gz_etag)


def test_etag_matching_is_weak_and_covers_both_representations(clock: FakeClock) -> None:
    """If-None-Match matches either ETag, weak or strong, in a list or as ``*``; anything else does not."""
    snapshot = build_snapshot((key(0),), "fresh", clock)
    for header in (snapshot.etag, snapshot.gzip_etag, f'"x", W/{snapshot.gzip_etag}', " * "):
        assert etag_matches(header, snapshot), header
    for header in ('"x"', "", snapshot.etag.strip('"')):
        assert not etag_matches(header, snapshot), header


def test_not_modified_since_compares_whole_seconds(clock: FakeClock) -> None:
    """A date at or after Last-Modified's second is not modified; an earlier or unparsable one is."""
    snapshot = build_snapshot((key(0),), "fresh", clock, changed_at=1_800_000_000.7)
    assert not_modified_since(snapshot.last_modified, snapshot)
    assert not not_modified_since("Thu, 01 Jan 1970 00:00:00 GMT", snapshot)
    assert not not_modified_since("yesterday", snapshot)


def test_accepts_gzip_reads_codings_and_q() -> None:
    """gzip, x-gzip and * count unless their q is 0 or unreadable; other codings do not."""
    assert [accepts_gzip(h) for h in ("gzip", "br, x-gzip", "*", "GZIP;q=0.5", "gzip;q=0", "gzip;q=x", "br", "")] == [
        True, True, True, True, False, False, False, False]


def test_sets_read_from_disk_are_cached_briefly(clock: FakeClock) -> None:
    """last-known-good and fallback get max-age of at most degraded_max_age_s and no stale-*; stale keeps the rest."""
    config = Config(sources=(), refresh=RefreshConfig(interval_s=300, max_age_s=600),
                    http_cache=HttpCacheConfig(stale_while_revalidate_s=60, stale_if_error_s=86400,
                                               degraded_max_age_s=30))
    snapshot = build_snapshot((key(0),), "last-known-good", clock)
    get = ConditionalGet()
    control = {source: get.headers(snapshot, config, source).plain_body["Cache-Control"]
               for source in ("fresh", "stale", "last-known-good", "fallback")}
    full = "public, max-age=600, stale-while-revalidate=60, stale-if-error=86400"
    assert control == {"fresh": full, "stale": full, "last-known-good": "public, max-age=30",
                       "fallback": "public, max-age=30"}
    short = Config(sources=(), refresh=RefreshConfig(interval_s=10, max_age_s=20))  # never longer than max_age_s
    assert get.headers(snapshot, short, "fallback").plain["Cache-Control"] == "public, max-age=20"
