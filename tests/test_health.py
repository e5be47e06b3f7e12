"""Health endpoints: /healthz, /readyz and /health in the documented shape."""

from __future__ import annotations

from typing import Any

from tests.conftest import Secrets
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
