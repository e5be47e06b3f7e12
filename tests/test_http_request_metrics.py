"""Per-route accounting without middlewares: every request counted by path, status and source."""

from __future__ import annotations

from typing import Any

from tests.conftest import Secrets
from tests.daemon_helpers import JWKS, get_jwks, sm_config, start, with_paths
from tests.keys import jwk_set, rsa_jwk, rsa_key
from tests.test_http_app import metric


async def test_jwks_counted_by_path_status_and_source(aiohttp_client: Any, secrets: Secrets) -> None:
    """200s and 304s on each JWKS path are counted under that path with the served source."""
    config = with_paths(sm_config(secrets.endpoint, secrets.create(jwk_set(rsa_jwk(rsa_key(0), "a")))), "/keys")
    client = await start(aiohttp_client, config)
    _, headers, _ = await get_jwks(client)
    await get_jwks(client, **{"If-None-Match": headers["ETag"]})
    await get_jwks(client, "/keys")
    assert metric(client, "jwksd_requests_total", path=JWKS, status="200", source="fresh") == 1
    assert metric(client, "jwksd_requests_total", path=JWKS, status="304", source="fresh") == 1
    assert metric(client, "jwksd_requests_total", path="/keys", status="200", source="fresh") == 1
    assert metric(client, "jwksd_request_duration_seconds_count", path=JWKS) == 2


async def test_unknown_paths_and_methods_counted_as_other(aiohttp_client: Any, secrets: Secrets) -> None:
    """The catch-all answers 404 and 405 (with Allow) as the router would, and counts them under 'other'."""
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secrets.create(jwk_set(rsa_jwk(rsa_key(0), "a")))))
    assert (await get_jwks(client, "/nowhere"))[0] == 404
    async with client.delete(JWKS) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "GET,HEAD,OPTIONS"
    async with client.post("/healthz") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "GET,HEAD"
    assert metric(client, "jwksd_requests_total", path="other", status="404", source="none") == 1
    assert metric(client, "jwksd_requests_total", path="other", status="405", source="none") == 2


async def test_body_refused_and_counted(aiohttp_client: Any, secrets: Secrets) -> None:
    """A request with a body gets 413 on any route, known or not, and is counted."""
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secrets.create(jwk_set(rsa_jwk(rsa_key(0), "a")))))
    for path in (JWKS, "/nowhere"):
        async with client.get(path, data=b"x" * 10) as response:
            assert response.status == 413
    assert metric(client, "jwksd_requests_total", path=JWKS, status="413", source="none") == 1
    assert metric(client, "jwksd_requests_total", path="other", status="413", source="none") == 1


def test_request_stats_buckets_and_zero_series() -> None:
    """Prepared series read 0; a duration on a bucket bound counts in that bucket; counts are cumulative."""
    from jwksd.metrics import Metrics

    metrics = Metrics()
    metrics.prepare([JWKS], [], [], [])
    registry = metrics.registry
    assert registry.get_sample_value("jwksd_requests_total", {"path": JWKS, "status": "304", "source": "stale"}) == 0
    for seconds in (0.0001, 0.0003, 2.0):
        metrics.http.observe(JWKS, 200, "fresh", seconds)

    def bucket(le: str) -> float | None:
        return registry.get_sample_value("jwksd_request_duration_seconds_bucket", {"path": JWKS, "le": le})

    assert (bucket("0.0001"), bucket("0.0005"), bucket("1.0"), bucket("+Inf")) == (1, 2, 2, 3)
    assert registry.get_sample_value("jwksd_request_duration_seconds_count", {"path": JWKS}) == 3
    assert registry.get_sample_value("jwksd_request_duration_seconds_sum", {"path": JWKS}) == 2.0004
    assert registry.get_sample_value("jwksd_requests_total", {"path": JWKS, "status": "200", "source": "fresh"}) == 3
