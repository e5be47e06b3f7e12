"""End to end: a real moto server on 127.0.0.1 behind jwksd, real HTTP through aiohttp's test client."""

from __future__ import annotations

import asyncio
import errno
import json
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from jwksd.http.app import REFRESH_TASK
from jwksd.sources import file as file_source
from tests.conftest import FakeClock, Secrets, closed_endpoint, endpoint_of
from tests.daemon_helpers import (
    JWKS,
    WAIT_S,
    get_jwks,
    kids_of,
    metric,
    refresh_now,
    refresher_of,
    sm_config,
    start,
    wait_refreshes,
    with_paths,
)
from tests.keys import ec_jwk, jwk_set, key, kid_map
from tests.test_refresh import one_file

PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


async def test_serves_jwk_set_form(aiohttp_client: Any, secrets: Secrets) -> None:
    """A secret in JWK Set form is served, re-serialised, with every documented header."""
    secret = secrets.create(jwk_set(key(1), key(0)))
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secret))
    status, headers, body = await get_jwks(client)
    assert status == 200
    assert kids_of(body) == ["key-0", "key-1"]  # sorted by kid
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "public, max-age=120, stale-while-revalidate=60, stale-if-error=86400"
    assert headers["ETag"].startswith('"') and headers["ETag"].endswith('"')
    assert headers["Vary"] == "Accept-Encoding"
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["X-JWKS-Source"] == "fresh"
    assert "Last-Modified" in headers


async def test_serves_kid_map_form(aiohttp_client: Any, secrets: Secrets) -> None:
    """A secret in the kid-map form is served as a JWK Set whose kids are the map's keys."""
    secret = secrets.create(kid_map(key(0, "88672a69-26ae-45db-b73c-93debf7ea87d")))
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secret))
    status, _, body = await get_jwks(client)
    assert status == 200
    assert kids_of(body) == ["88672a69-26ae-45db-b73c-93debf7ea87d"]
    assert json.loads(body)["keys"][0]["kty"] == "RSA"


async def test_update_shows_after_one_refresh(aiohttp_client: Any, secrets: Secrets) -> None:
    """A new secret version is served after one refresh, with a new ETag."""
    secret = secrets.create(jwk_set(key(0)))
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secret, version_stages=("AWSCURRENT",)))
    _, before, _ = await get_jwks(client)
    secrets.put(secret, jwk_set(key(1)))
    await refresh_now(client)
    _, after, body = await get_jwks(client)
    assert kids_of(body) == ["key-1"]
    assert after["ETag"] != before["ETag"]


async def test_refreshes_on_its_own_schedule(aiohttp_client: Any, secrets: Secrets) -> None:
    """With a short interval the loop refreshes by itself and picks up an update."""
    secret = secrets.create(jwk_set(key(0)))
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secret, interval_s=0.1, max_age_s=10))
    secrets.put(secret, jwk_set(key(0), key(2)))
    await wait_refreshes(client, 3)
    assert kids_of((await get_jwks(client))[2]) == ["key-0", "key-2"]


async def test_invalid_secret_keeps_previous_set_and_etag(aiohttp_client: Any, secrets: Secrets) -> None:
    """A new AWSCURRENT that is rejected fails the refresh; the served bytes and ETag stay, and it is counted."""
    secret = secrets.create(jwk_set(key(0)))
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secret))
    _, before, body_before = await get_jwks(client)
    secrets.put(secret, '{"keys": [}')
    await refresh_now(client)
    _, after, body_after = await get_jwks(client)
    assert body_after == body_before
    assert after["ETag"] == before["ETag"]
    assert after["X-JWKS-Source"] == "stale"
    assert metric(client, "jwksd_refreshes_total", source="secretsmanager", outcome="rejected_document") == 1
    assert metric(client, "jwksd_documents_rejected_total", reason="invalid_json") == 1
    health = await (await client.get("/health")).json()
    assert health["checks"]["jwks"]["last_error"]["code"] == "invalid_json"


async def test_rejected_previous_alone_serves_current(aiohttp_client: Any, secrets: Secrets) -> None:
    """A rejected AWSPREVIOUS document is counted and skipped; AWSCURRENT's keys are served."""
    secret = secrets.create('{"not": "a key"}')
    secrets.put(secret, jwk_set(key(3)))
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secret))
    status, headers, body = await get_jwks(client)
    assert (status, kids_of(body), headers["X-JWKS-Source"]) == (200, ["key-3"], "fresh")
    assert metric(client, "jwksd_refreshes_total", source="secretsmanager", outcome="success") == 1


async def test_private_material_never_served(aiohttp_client: Any, secrets: Secrets) -> None:
    """A secret holding a private key is refused whole and raises the alarm; the public set stays."""
    secret = secrets.create(jwk_set(key(0)))
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secret, version_stages=("AWSCURRENT",)))
    leaked = dict(key(1), d="AQAB")
    secrets.put(secret, jwk_set(key(1), leaked))
    await refresh_now(client)
    _, _, body = await get_jwks(client)
    assert kids_of(body) == ["key-0"]
    for member in PRIVATE_MEMBERS:
        assert all(member not in served for served in json.loads(body)["keys"])
    assert metric(client, "jwksd_documents_rejected_total", reason="private_key_material") == 1


async def test_aws_down_keeps_serving_stale(aiohttp_client: Any, own_moto: ThreadedMotoServer) -> None:
    """With AWS unreachable the last good set is served, marked stale, and health says why."""
    secrets = Secrets(endpoint_of(own_moto))
    secret = secrets.create(jwk_set(key(0)))
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secret))
    _, before, body_before = await get_jwks(client)
    own_moto.stop()
    await refresh_now(client)
    status, after, body_after = await get_jwks(client)
    assert (status, body_after, after["ETag"]) == (200, body_before, before["ETag"])
    assert after["X-JWKS-Source"] == "stale"
    assert (await client.get("/readyz")).status == 200  # staleness never drains a replica
    health = await (await client.get("/health")).json()
    assert health["checks"]["jwks"]["source"] == "stale"
    assert health["checks"]["jwks"]["last_error"]["code"] in ("network", "timeout")
    assert metric(client, "jwksd_refreshes_total", source="secretsmanager", outcome="fetch_error") >= 1


async def test_stale_by_age_triggers_one_revalidation(aiohttp_client: Any, secrets: Secrets,
                                                     clock: FakeClock) -> None:
    """A read of a set older than max_age_s is answered at once and wakes one refresh."""
    secret = secrets.create(jwk_set(key(0)))
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secret, interval_s=3600, max_age_s=3600),
                         clock=clock)
    clock.advance(3601)
    status, headers, _ = await get_jwks(client)
    assert (status, headers["X-JWKS-Source"]) == (200, "stale")
    await wait_refreshes(client, 2)
    assert (await get_jwks(client))[1]["X-JWKS-Source"] == "fresh"





async def test_nothing_valid_gives_503(aiohttp_client: Any) -> None:
    """No source, no state, no fallback: 503 with a JSON error, and not ready."""
    client = await start(aiohttp_client, sm_config(closed_endpoint(), "x"))
    async with client.get(JWKS) as response:
        assert response.status == 503
        assert (await response.json())["error"] == "no_valid_keys"
        assert response.headers["Cache-Control"] == "no-store"
    assert (await client.get("/readyz")).status == 503
    health = await client.get("/health")
    assert health.status == 503
    assert (await health.json())["status"] == "fail"






async def test_head(aiohttp_client: Any, secrets: Secrets) -> None:
    """HEAD gives the GET headers with no body."""
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secrets.create(jwk_set(key(0)))))
    _, get_headers, body = await get_jwks(client, **{"Accept-Encoding": "identity"})
    async with client.head(JWKS, headers={"Accept-Encoding": "identity"}) as response:
        assert response.status == 200
        assert response.headers["ETag"] == get_headers["ETag"]
        assert response.headers["Content-Length"] == str(len(body))
        assert await response.read() == b""


async def test_other_methods_get_405(aiohttp_client: Any, secrets: Secrets) -> None:
    """POST, PUT and DELETE get 405 with an Allow header."""
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secrets.create(jwk_set(key(0)))))
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        async with client.request(method, JWKS) as response:
            assert response.status == 405
            assert set(response.headers["Allow"].split(",")) >= {"GET", "HEAD"}




async def test_extra_paths_serve_the_same_set(aiohttp_client: Any, secrets: Secrets) -> None:
    """Configured extra paths serve the same bytes; unknown paths are 404."""
    config = with_paths(sm_config(secrets.endpoint, secrets.create(jwk_set(key(0)))), "/api/.well-known/jwks.json")
    client = await start(aiohttp_client, config)
    assert (await get_jwks(client))[2] == (await get_jwks(client, "/api/.well-known/jwks.json"))[2]
    assert (await get_jwks(client, "/.well-known/jwks.json/"))[0] == 404



async def test_mixed_key_types_served(aiohttp_client: Any, secrets: Secrets) -> None:
    """RSA and EC keys in one document are both served with only public members."""
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_key = ec_jwk(ec.generate_private_key(ec.SECP256R1()), "ec-1")
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secrets.create(jwk_set(key(0), ec_key))))
    served = {k["kid"]: k for k in json.loads((await get_jwks(client))[2])["keys"]}
    assert set(served) == {"ec-1", "key-0"}
    assert set(served["ec-1"]) <= {"kty", "kid", "use", "alg", "crv", "x", "y"}


async def test_stops_when_the_refresh_task_loses_its_cancel(aiohttp_client: Any, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh task whose cancel a source swallows (turned into a timeout) is cancelled again: the app stops."""
    disk = tmp_path / "keys.json"
    disk.write_text(jwk_set(key(0)))
    client = await start(aiohttp_client, one_file(disk))
    task, entered, real_read = client.server.app[REFRESH_TASK], asyncio.Event(), file_source.read_file

    async def loses_the_cancel(path: Path, max_bytes: int) -> tuple[bytes, float]:
        if entered.is_set():
            return await real_read(path, max_bytes)
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise TimeoutError(errno.ETIMEDOUT, "the cancel, swallowed") from None
        raise AssertionError("never set")

    monkeypatch.setattr(file_source, "read_file", loses_the_cancel)
    refresher_of(client).trigger()
    await asyncio.wait_for(entered.wait(), WAIT_S)
    closing = asyncio.create_task(client.close())
    done, _ = await asyncio.wait({closing}, timeout=WAIT_S)  # not wait_for: its own cancel would end the task
    closing.cancel()  # only when it did not end: a close still awaiting a task that runs on
    assert closing in done and task.cancelled()
