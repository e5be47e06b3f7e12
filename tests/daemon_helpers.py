"""Building configs and driving a running app in tests."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from jwksd.config import Config, RefreshConfig, SecretsManagerSourceConfig, StateConfig
from jwksd.http.app import HEALTH, METRICS, REFRESHER, make_app
from jwksd.metrics import Metrics
from jwksd.refresh import Refresher
from jwksd.store import Clock
from tests.conftest import REGION

JWKS = "/.well-known/jwks.json"
WAIT_S = 15.0


def sm_config(endpoint: str, secret_id: str, *, state_dir: Path | None = None, fallback: Path | None = None,
              interval_s: float = 60.0, max_age_s: float = 120.0, **source: Any) -> Config:
    """A config reading one secret from ``endpoint``, with quick timeouts and no retries by default."""
    source.setdefault("max_retries", 0)
    source.setdefault("connect_timeout_s", 1.0)
    source.setdefault("read_timeout_s", 2.0)
    return Config(
        sources=(SecretsManagerSourceConfig(secret_id=secret_id, endpoint_url=endpoint, region=REGION, **source),),
        refresh=RefreshConfig(interval_s=interval_s, max_age_s=max_age_s, retry_base_s=0.05, retry_cap_s=0.2),
        state=StateConfig(state_dir=state_dir, fallback_file=fallback),
    )


def with_paths(config: Config, *paths: str) -> Config:
    return replace(config, server=replace(config.server, paths=(JWKS, *paths)))


async def start(aiohttp_client: Any, config: Config, *, clock: Clock | None = None,
                metrics: Metrics | None = None, refreshes: int = 1) -> TestClient[web.Request, web.Application]:
    """Start the app on 127.0.0.1 and wait for its first ``refreshes`` refreshes."""
    client: TestClient[web.Request, web.Application] = await aiohttp_client(
        make_app(config, clock=clock, metrics=metrics), server_kwargs={"host": "127.0.0.1"})
    if refreshes:
        await wait_refreshes(client, refreshes)
    return client


def refresher_of(client: TestClient[web.Request, web.Application]) -> Refresher:
    return client.server.app[REFRESHER]


async def wait_refreshes(client: TestClient[web.Request, web.Application], count: int) -> None:
    """Wait (bounded) until ``count`` refreshes have completed since start."""
    await asyncio.wait_for(refresher_of(client).wait_for_refreshes(count), WAIT_S)


async def refresh_now(client: TestClient[web.Request, web.Application]) -> None:
    """Trigger one refresh and wait for it."""
    refresher = refresher_of(client)
    target = refresher.completed + 1
    while refresher.running:  # a refresh already in flight may have started before the change under test
        await asyncio.sleep(0.01)
        target = refresher.completed + 1
    refresher.trigger()
    await asyncio.wait_for(refresher.wait_for_refreshes(target), WAIT_S)


async def get_jwks(client: TestClient[web.Request, web.Application], path: str = JWKS,
                   **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
    async with client.get(path, headers=headers) as response:
        return response.status, CIMultiDict(response.headers), await response.read()


def metric(client: TestClient[web.Request, web.Application], name: str, **labels: str) -> float:
    """The app registry's sample ``name`` with exactly ``labels`` (0 when it has none yet)."""
    value = client.server.app[METRICS].registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


async def health_of(client: TestClient[web.Request, web.Application]) -> dict[str, Any]:
    """The /health document."""
    async with client.get("/health") as response:
        body: dict[str, Any] = await response.json(content_type=None)
        return body


def detailed_health_of(client: TestClient[web.Request, web.Application]) -> dict[str, Any]:
    """The metrics listener's /health document (with the upstream messages) of the app behind ``client``."""
    return client.server.app[HEALTH].document(detail=True)[1]


def kids_of(body: bytes) -> list[str]:
    import json

    return [key["kid"] for key in json.loads(body)["keys"]]
