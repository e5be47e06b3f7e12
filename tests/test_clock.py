"""The wall clock jumping (NTP steps, a VM resumed): ages and the schedule use the monotonic clock.

The injected FakeClock moves wall time alone; freshness, /health's age and the next refresh must
not notice. Last-Modified is wall time, so it is kept moving forward across a step back.
"""

from __future__ import annotations

import asyncio
from email.utils import parsedate_to_datetime
from typing import Any

from tests.conftest import FakeClock, Secrets
from tests.daemon_helpers import get_jwks, kids_of, refresh_now, refresher_of, sm_config, start, wait_refreshes
from tests.keys import jwk_set, rsa_jwk, rsa_key

DAY_S = 86400.0


def key(index: int) -> dict[str, Any]:
    return rsa_jwk(rsa_key(index), f"clock-{index}")


async def test_wall_clock_jumps_change_nothing(aiohttp_client: Any, secrets: Secrets, clock: FakeClock) -> None:
    """A day forwards or back on the wall clock leaves the set fresh, its age and the next refresh as they were."""
    secret = secrets.create(jwk_set(key(0)))
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secret, interval_s=3600, max_age_s=3600),
                         clock=clock)
    refresher = refresher_of(client)
    delay_before, completed = refresher.next_delay_s(), refresher.completed
    for jump in (DAY_S, -2 * DAY_S):
        clock.wall += jump
        status, headers, _ = await get_jwks(client)
        assert (status, headers["X-JWKS-Source"]) == (200, "fresh")
        health = await (await client.get("/health")).json()
        assert (health["status"], health["checks"]["jwks"]["age_s"]) == ("pass", 0.0)
        assert 0 < refresher.next_delay_s() <= delay_before  # the loop's timer did not move with the wall
        await asyncio.sleep(0.05)
        assert refresher.completed == completed  # no refresh was woken
    clock.mono += 3601  # monotonic time past max_age_s: now the set is stale and a read wakes a refresh
    assert (await get_jwks(client))[1]["X-JWKS-Source"] == "stale"
    await wait_refreshes(client, completed + 1)


async def test_last_modified_moves_forward_when_clock_steps_back(aiohttp_client: Any, secrets: Secrets,
                                                                 clock: FakeClock) -> None:
    """After the wall clock steps back, a new set still gets a later Last-Modified, so If-Modified-Since sees it."""
    secret = secrets.create(jwk_set(key(0)))
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secret, version_stages=("AWSCURRENT",)),
                         clock=clock)
    _, first, _ = await get_jwks(client)
    clock.wall -= 3600
    secrets.put(secret, jwk_set(key(1)))
    await refresh_now(client)
    status, second, body = await get_jwks(client, **{"If-Modified-Since": first["Last-Modified"]})
    assert (status, kids_of(body)) == (200, ["clock-1"])
    assert parsedate_to_datetime(second["Last-Modified"]) > parsedate_to_datetime(first["Last-Modified"])


async def test_two_changes_in_one_second_get_distinct_last_modified(aiohttp_client: Any, secrets: Secrets,
                                                                   clock: FakeClock) -> None:
    """Two changes within one wall-clock second: a cache holding the first still gets the second (200, not 304)."""
    secret = secrets.create(jwk_set(key(0)))
    client = await start(aiohttp_client, sm_config(secrets.endpoint, secret, version_stages=("AWSCURRENT",)),
                         clock=clock)
    secrets.put(secret, jwk_set(key(1)))
    await refresh_now(client)
    _, first, _ = await get_jwks(client)
    secrets.put(secret, jwk_set(key(2)))
    await refresh_now(client)  # the FakeClock has not moved: same wall second
    status, _, body = await get_jwks(client, **{"If-Modified-Since": first["Last-Modified"]})
    assert (status, kids_of(body)) == (200, ["clock-2"])
