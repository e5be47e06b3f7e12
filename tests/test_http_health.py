"""Health endpoints: /healthz, /readyz and /health in the documented shape."""

from __future__ import annotations

import json
from typing import Any

from jwksd.config import Config, LiveConfig, RefreshConfig
from jwksd.http.app import HEALTH, make_metrics_app
from jwksd.http.health import Health
from jwksd.metrics import Metrics
from jwksd.status import ErrorInfo, RefreshStatus, SourceStatus
from jwksd.store import Store, build_snapshot
from tests.conftest import FakeClock, Secrets
from tests.daemon_helpers import refresh_now, sm_config, start
from tests.fault_proxy import start_proxy
from tests.keys import jwk_set, key


async def test_health_endpoints(aiohttp_client: Any, secrets: Secrets) -> None:
    """/healthz, /readyz and /health report a healthy daemon in the documented shape."""
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secrets.create(jwk_set(key(0)))))
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    health = await (await client.get("/health")).json()
    check = health["checks"]["jwks"]
    assert health["status"] == "pass"
    assert (check["status"], check["source"], check["kids"], check["last_error"]) == ("pass", "fresh", ["key-0"], None)
    assert check["last_success"].endswith("Z")
    assert check["age_s"] >= 0


def health_of_status(clock: FakeClock, status: RefreshStatus, *, served: bool = True) -> tuple[int, dict[str, Any]]:
    """The detailed /health document for a store holding one fresh set (or none) and a given refresh status."""
    store = Store(clock)
    if served:
        store.swap(build_snapshot((key(0),), "fresh", clock))
    config = Config(sources=(), refresh=RefreshConfig(max_age_s=60, max_staleness_s=3600))
    return Health(LiveConfig(config), store, lambda: status, lambda: None, lambda: None).document(detail=True)


def test_health_reads_the_frozen_status(clock: FakeClock) -> None:
    """Each source's part and the latest success and error come from the status object handed in, as it is."""
    error = ErrorInfo("network", "connection refused", clock.wall - 5)
    status = RefreshStatus((SourceStatus("aws", "fresh", False, clock.wall - 10, None),
                            SourceStatus("disk", "last-known-good", True, None, error)), completed=3)
    code, body = health_of_status(clock, status)
    check = body["checks"]["jwks"]
    assert (code, body["status"], check["status"]) == (200, "pass", "pass")
    assert check["last_success"] == "2027-01-15T07:59:50Z"
    assert check["last_error"] == {"code": "network", "message": "connection refused", "at": "2027-01-15T07:59:55Z"}
    assert check["sources"] == {
        "aws": {"status": "pass", "origin": "fresh", "last_success": "2027-01-15T07:59:50Z", "last_error": None},
        "disk": {"status": "warn", "origin": "last-known-good", "last_success": None,
                 "last_error": check["last_error"]},
    }


def test_health_verdicts(clock: FakeClock) -> None:
    """Nothing served fails with 503; a set older than max_staleness_s warns; a fresh one passes."""
    assert health_of_status(clock, RefreshStatus(), served=False)[0] == 503
    assert health_of_status(clock, RefreshStatus(), served=False)[1]["status"] == "fail"
    assert health_of_status(clock, RefreshStatus())[1]["status"] == "pass"
    store_clock = FakeClock()
    store = Store(store_clock)
    store.swap(build_snapshot((key(0),), "fresh", store_clock))
    store_clock.advance(3601)
    config = Config(sources=(), refresh=RefreshConfig(max_age_s=60, max_staleness_s=3600))
    code, body = Health(LiveConfig(config), store, RefreshStatus, lambda: None, lambda: None).document()
    assert (code, body["status"], body["checks"]["jwks"]["source"]) == (200, "warn", "stale")


ARN_MESSAGE = ("User: arn:aws:sts::123456789012:assumed-role/jwksd-reader/i-0abc123 is not authorized to perform: "
               "secretsmanager:GetSecretValue on resource: arn:aws:secretsmanager:us-east-1:123456789012:secret:"
               "jwt/keys-AbCdEf because no identity-based policy allows the secretsmanager:GetSecretValue action")


async def test_aws_error_text_only_on_the_metrics_listener(aiohttp_client: Any, secrets: Secrets,
                                                           moto_endpoint: str) -> None:
    """AccessDenied's own text (account, role session, secret ARN) is on the metrics listener's /health only."""
    proxy = await start_proxy(moto_endpoint)
    try:
        client = await start(aiohttp_client, sm_config(proxy.url, secrets.create(jwk_set(key(0)))))
        proxy.fault, proxy.message = "access_denied", ARN_MESSAGE
        await refresh_now(client)
        metrics_listener = await aiohttp_client(make_metrics_app(Metrics(), client.server.app[HEALTH]),
                                                server_kwargs={"host": "127.0.0.1"})
        async with client.get("/health") as response:
            public = await response.text()
        async with metrics_listener.get("/health") as response:
            assert response.content_type == "application/health+json"
            detailed = await response.json(content_type=None)
    finally:
        await proxy.close()
    for secret in ("123456789012", "arn:aws", "jwksd-reader", "i-0abc123", "jwt/keys", "not authorized"):
        assert secret not in public
    error = json.loads(public)["checks"]["jwks"]["last_error"]
    assert set(error) == {"code", "at"} and error["code"] == "AccessDeniedException"
    assert json.loads(public)["checks"]["jwks"]["sources"]["secretsmanager"]["last_error"] == error
    assert detailed["checks"]["jwks"]["last_error"] == {**error, "message": f"GetSecretValue AWSCURRENT: {ARN_MESSAGE}"}
    same = [json.loads(public), _without_messages(detailed)]
    for document in same:
        del document["checks"]["jwks"]["age_s"]  # the two requests were some milliseconds apart
    assert same[0] == same[1]


def _without_messages(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_messages(v) for k, v in value.items() if k not in ("message", "url")}
    return value


def test_public_health_is_the_detailed_one_without_messages(clock: FakeClock) -> None:
    """The public document has every member of the detailed one except the messages."""
    error = ErrorInfo("network", "connect to 10.1.2.3:443 refused", clock.wall - 5)
    status = RefreshStatus((SourceStatus("aws", "fresh", True, clock.wall - 10, error),))
    store = Store(clock)
    store.swap(build_snapshot((key(0),), "fresh", clock))
    health = Health(LiveConfig(Config(sources=())), store, lambda: status, lambda: None, lambda: None)
    public, detailed = health.document()[1], health.document(detail=True)[1]
    assert "10.1.2.3" not in json.dumps(public) and "10.1.2.3" in json.dumps(detailed)
    assert public["checks"]["jwks"]["last_error"] == {"code": "network", "at": "2027-01-15T07:59:55Z"}


def test_health_while_the_disk_rung_stands_by(clock: FakeClock) -> None:
    """Before the first fetch answers, /health says starting (503, as /readyz) with the standby origin and kids."""
    store = Store(clock)
    store.stand_by(build_snapshot((key(0), key(1)), "last-known-good", clock, fetched_at=clock.wall - 86400))
    since = "2027-01-15T08:00:00Z"
    clock.advance(5)
    config = Config(sources=(), refresh=RefreshConfig(max_age_s=60, max_staleness_s=3600))
    status = RefreshStatus((SourceStatus("aws", "none", False),))
    health = Health(LiveConfig(config), store, lambda: status, lambda: None, lambda: None)
    for code, body in (health.document(), health.document(detail=True)):
        check = body["checks"]["jwks"]
        assert (code, body["status"], check["status"], check["source"]) == (503, "starting", "starting",
                                                                            "last-known-good")
        assert check["kids"] == ["key-0", "key-1"] and check["age_s"] == 86405
        assert check["standby"] == {"origin": "last-known-good", "kids": ["key-0", "key-1"], "since": since}
