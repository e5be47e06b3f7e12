"""AWS faults injected between jwksd and moto by tests/fault_proxy.py, one test per fault.

For each fault: the served bytes and ETag stay as they were (marked stale); every attempt is
counted at the proxy and matches ``max_retries`` and the logged full-jitter delays; metrics and
/health name the error; and the first refresh after the fault ends brings the set back to fresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from itertools import pairwise
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.conftest import Secrets
from tests.daemon_helpers import WAIT_S, get_jwks, refresher_of, sm_config, start
from tests.fault_proxy import FAULTS, Attempt, FaultProxy, start_proxy
from tests.keys import jwk_set, rsa_jwk, rsa_key
from tests.test_http_app import metric

MAX_RETRIES = 2
AWS_RETRY_BASE_S, AWS_RETRY_CAP_S = 0.05, 0.2
REFRESH_RETRY_BASE_S = 0.05  # sm_config's refresh backoff: the first retry waits at least half of it
INTERVAL_S = 1.0
# What each fault must be reported as (metrics, /health) and whether it is retried.
EXPECTED = {
    "http_500": ("InternalServiceError", True),
    "http_503": ("ServiceUnavailable", True),
    "throttling": ("ThrottlingException", True),
    "access_denied": ("AccessDeniedException", False),
    "not_found": ("ResourceNotFoundException", False),
    "latency": ("timeout", True),
    "reset": ("network", True),
    "truncated": ("network", True),
    "endless": ("timeout", True),
}


@pytest.fixture
async def proxy(moto_endpoint: str) -> AsyncIterator[FaultProxy]:
    running = await start_proxy(moto_endpoint, latency_s=1.0)
    yield running
    await running.close()


async def bounded(predicate: Any, what: str) -> None:
    """Poll ``predicate`` on the loop until true, failing after WAIT_S."""
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)
    try:
        await asyncio.wait_for(poll(), WAIT_S)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


def groups(attempts: list[Attempt], size: int) -> list[list[Attempt]]:
    return [attempts[i:i + size] for i in range(0, len(attempts), size)]


@pytest.mark.parametrize("fault", FAULTS)
async def test_aws_fault(aiohttp_client: Any, secrets: Secrets, proxy: FaultProxy, fault: str) -> None:
    """Under the fault the set stays served and marked stale, retries follow the config, and it recovers.

    Only AWSCURRENT is read, so every GetSecretValue the metrics count is one the proxy saw.
    """
    code, retried = EXPECTED[fault]
    per_refresh = MAX_RETRIES + 1 if retried else 1
    secret = secrets.create(jwk_set(rsa_jwk(rsa_key(0), "fault-0")))
    config = sm_config(proxy.url, secret, interval_s=INTERVAL_S, max_age_s=60, max_retries=MAX_RETRIES,
                       retry_base_s=AWS_RETRY_BASE_S, retry_cap_s=AWS_RETRY_CAP_S, connect_timeout_s=0.3,
                       read_timeout_s=0.4, version_stages=("AWSCURRENT",))
    with capture_logs() as logs:
        client = await start(aiohttp_client, config)
        refresher = refresher_of(client)
        _, before, body = await get_jwks(client)
        proxy.fault = fault  # the loop is idle between refreshes: the next one meets the fault from its start
        await bounded(lambda: metric(client, "jwksd_refreshes_total", source="secretsmanager",
                                     outcome="fetch_error") >= 2, "two failed refreshes")

        status, during, served = await get_jwks(client)
        assert (status, served, during["ETag"]) == (200, body, before["ETag"])
        assert during["X-JWKS-Source"] == "stale"
        assert refresher.store.age_s() >= INTERVAL_S * 0.9  # a failed refresh does not make the set younger
        assert (await client.get("/readyz")).status == 200
        health = await (await client.get("/health")).json()
        assert (health["checks"]["jwks"]["source"], health["checks"]["jwks"]["last_error"]["code"]) == ("stale", code)
        assert metric(client, "jwksd_serving", source="stale") == 1

        await bounded(lambda: not refresher.running, "the loop to be idle")
        proxy.fault = None  # no await since the check: the next refresh starts after the fault
        after_fault = refresher.completed
        failed = metric(client, "jwksd_refreshes_total", source="secretsmanager", outcome="fetch_error")
        calls = metric(client, "jwksd_aws_calls_total", operation="GetSecretValue", code=code)
        await asyncio.wait_for(refresher.wait_for_refreshes(after_fault + 1), WAIT_S)
        assert not refresher.store.failing
        assert (await get_jwks(client))[1]["X-JWKS-Source"] == "fresh"
        assert metric(client, "jwksd_serving", source="fresh") == 1

    faulted = proxy.faulted(fault)  # all made by the `failed` refreshes before the fault was cleared
    assert len(faulted) == failed * per_refresh
    assert {a.stage for a in faulted} == {"AWSCURRENT"}
    assert calls == len(faulted)
    retries = [event for event in logs if event["event"] == "aws_retry"]
    assert len(retries) == failed * (per_refresh - 1)
    for group, delays in zip(groups(faulted, per_refresh), groups(retries, per_refresh - 1) if retried
                             else [[]] * len(faulted), strict=True):
        for attempt, (first, second), event in zip(range(1, per_refresh), pairwise(group), delays, strict=True):
            assert event["attempt"] == attempt and event["code"] == code
            assert 0 <= event["delay_s"] <= min(AWS_RETRY_CAP_S, AWS_RETRY_BASE_S * 2 ** (attempt - 1)) + 0.001
            assert second.at - first.at >= event["delay_s"] - 0.002  # it really slept that long
    for earlier, later in pairwise(groups(faulted, per_refresh)):
        assert later[0].at - earlier[-1].at >= REFRESH_RETRY_BASE_S / 2 - 0.002  # refresh backoff, not a tight loop
    loud = [event for event in logs if event["event"] == "aws_error"]
    assert bool(loud) == (not retried)  # operator errors are logged as errors; transient ones as warnings
    assert all(event["log_level"] == "error" and event["code"] == code for event in loud)
