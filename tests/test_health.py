"""Health endpoints: /healthz, /readyz and /health in the documented shape."""

from __future__ import annotations

from typing import Any

from jwksd.config import Config, LiveConfig, RefreshConfig
from jwksd.health import Health
from jwksd.status import ErrorInfo, RefreshStatus, SourceStatus
from jwksd.store import Store, build_snapshot
from tests.conftest import FakeClock, Secrets
from tests.daemon_helpers import sm_config, start
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
    """The /health document for a store holding one fresh set (or none) and a given refresh status."""
    store = Store(clock)
    if served:
        store.swap(build_snapshot((key(0),), "fresh", clock))
    config = Config(sources=(), refresh=RefreshConfig(max_age_s=60, max_staleness_s=3600))
    return Health(LiveConfig(config), store, lambda: status, lambda: None, lambda: None).document()


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
