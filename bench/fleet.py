"""AWS calls per refresh interval for fleets of 1, 5 and 20 replicas, with and without the shared Redis cache.

``python -m bench.fleet`` (not part of ``make test`` nor ``make bench``; about two minutes). The replicas are
jwksd applications in this process, each with its own Metrics and its own refresh task on real timers
(``interval_s`` with the default ±10% jitter), reading one secret with both stages (two GetSecretValue
calls a fetch) from moto through a proxy that counts the calls, as AWS would bill them. Each run with
Redis starts from an empty redis-server. Prints the Markdown table of docs/fleet.md ("Measured").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from bench.documents import rsa_document, split_stages
from bench.source import CREDENTIALS, REGION, Moto, Proxy
from jwksd.config import Config, RefreshConfig, SecretsManagerSourceConfig, ServerConfig, SharedCacheConfig
from jwksd.http.app import make_app
from jwksd.log import configure_logging
from jwksd.metrics import Metrics
from tests.redis_server import RedisServer

SIZES = (1, 5, 20)


@dataclass(frozen=True)
class Result:
    """One fleet size, with or without Redis."""

    replicas: int
    redis: bool
    intervals: float  # measured wall time / interval_s
    calls: int  # GetSecretValue at the proxy

    @property
    def per_interval(self) -> float:
        return self.calls / self.intervals


def fleet_config(endpoint: str, secret: str, interval_s: float, redis_url: str | None) -> Config:
    shared = SharedCacheConfig(url=redis_url, namespace=f"bench-{uuid.uuid4().hex[:8]}", lease_s=interval_s / 2,
                               timeout_s=0.5, allow_unauthenticated=True) if redis_url else SharedCacheConfig()
    return Config(
        sources=(SecretsManagerSourceConfig(secret_id=secret, endpoint_url=endpoint, region=REGION),),
        server=ServerConfig(metrics_listen=None),
        refresh=RefreshConfig(interval_s=interval_s, max_age_s=2 * interval_s),
        shared_cache=shared,
    )


async def run(size: int, config: Config, proxy: Proxy, interval_s: float, intervals: int) -> Result:
    """Start ``size`` replicas, let one interval settle the start-up fetches, then count for ``intervals``."""
    runners = [web.AppRunner(make_app(config, metrics=Metrics()), access_log=None) for _ in range(size)]
    for runner in runners:
        await runner.setup()  # runs the cleanup contexts: sources, shared cache, refresh task
    try:
        await asyncio.sleep(interval_s)
        before, started = proxy.get_secret_calls(), time.monotonic()
        await asyncio.sleep(intervals * interval_s)
        calls, elapsed = proxy.get_secret_calls() - before, time.monotonic() - started
    finally:
        for runner in runners:
            await runner.cleanup()
    return Result(size, config.shared_cache.enabled, elapsed / interval_s, calls)


async def measure(interval_s: float, intervals: int) -> list[Result]:
    os.environ.update(CREDENTIALS)
    moto = Moto()
    proxy = Proxy(moto.endpoint).start()
    results = []
    with tempfile.TemporaryDirectory(prefix="jwksd-fleet-") as tmp:
        redis = RedisServer(Path(tmp))
        redis.start()
        try:
            secret = moto.create(*split_stages(rsa_document(3, 2048)))
            for size in SIZES:
                for redis_url in (None, redis.url):
                    if redis_url:
                        with redis.client() as client:
                            client.flushall()
                    config = fleet_config(proxy.endpoint, secret, interval_s, redis_url)
                    result = await run(size, config, proxy, interval_s, intervals)
                    print(f"{size:3d} replicas, redis={result.redis!s:5}: {result.calls:4d} calls in "
                          f"{result.intervals:.1f} intervals = {result.per_interval:.2f} per interval", flush=True)
                    results.append(result)
        finally:
            redis.stop()
            proxy.stop()
            moto.stop()
    return results


def table(results: list[Result]) -> str:
    """The docs/fleet.md table: GetSecretValue calls per interval (two per fetch: AWSCURRENT and AWSPREVIOUS)."""
    by = {(r.replicas, r.redis): r for r in results}
    lines = ["| replicas | without Redis | with Redis |", "|---:|---:|---:|"]
    for size in SIZES:
        lines.append(f"| {size} | {by[size, False].per_interval:.1f} | {by[size, True].per_interval:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--interval-s", type=float, default=1.0, help="refresh.interval_s of every replica")
    parser.add_argument("--intervals", type=int, default=15, help="intervals counted per run")
    args = parser.parse_args()
    configure_logging("error", "console")
    results = asyncio.run(measure(args.interval_s, args.intervals))
    print()
    print(f"GetSecretValue calls per interval (interval_s = {args.interval_s:g}, {args.intervals} intervals a run):")
    print(table(results))


if __name__ == "__main__":
    main()
