"""Running the daemon: listeners, signals, and an orderly shutdown."""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiohttp import web

from jwksd.app import REFRESHER, make_app, make_metrics_app
from jwksd.config import Config, Listen
from jwksd.metrics import Metrics

log = structlog.get_logger("jwksd.daemon")


async def _start_site(runner: web.AppRunner, listen: Listen) -> None:
    await runner.setup()
    await web.TCPSite(runner, listen.host, listen.port, reuse_address=True).start()


async def serve(config: Config, *, metrics: Metrics | None = None) -> None:
    """Serve until SIGTERM or SIGINT; SIGUSR1 forces a refresh. Returns after a clean shutdown."""
    metrics = metrics or Metrics()
    app = make_app(config, metrics=metrics)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=config.server.keepalive_timeout_s,
                           shutdown_timeout=config.server.shutdown_timeout_s, handle_signals=False)
    metrics_runner = None
    if config.server.metrics_listen is not None:
        metrics_runner = web.AppRunner(make_metrics_app(metrics), access_log=None,
                                       keepalive_timeout=config.server.keepalive_timeout_s, shutdown_timeout=1.0)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    try:
        await _start_site(runner, config.server.listen)
        if metrics_runner is not None and config.server.metrics_listen is not None:
            await _start_site(metrics_runner, config.server.metrics_listen)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: _force_refresh(app))
        log.info("listening", url=f"http://{config.server.listen}{config.server.paths[0]}",
                 metrics=f"http://{config.server.metrics_listen}/metrics" if config.server.metrics_listen else None,
                 sources=[s.name for s in config.sources])
        await stop.wait()
        log.info("stopping")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            loop.remove_signal_handler(signum)
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()
    log.info("stopped")


def _force_refresh(app: web.Application) -> None:
    refresher = app.get(REFRESHER)
    if refresher is not None:
        log.info("refresh_requested", signal="SIGUSR1")
        refresher.trigger()
