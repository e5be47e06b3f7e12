"""Running the daemon: listeners, signals, systemd notifications, reload, and an orderly shutdown.

Tasks owned here, each cancelled and awaited (bounded, see shutdown.py) on the way out: the readiness
announcer, the reload loop, the TLS file watch and the watchdog. Signals only set events or wake tasks.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Callable

import structlog
from aiohttp import web

from jwksd.config import Config
from jwksd.http.app import CONFIG, HEALTH, REFRESH_TASK, REFRESHER, STATUS, STORE, TLS, make_app, make_metrics_app
from jwksd.http.server import start_listeners
from jwksd.http.tls_renewal import TlsRenewal
from jwksd.metrics import Metrics
from jwksd.notify import Notifier, watchdog_loop
from jwksd.reload import reload_config
from jwksd.shutdown import stop_tasks

log = structlog.get_logger("jwksd.daemon")
SWITCH_INTERVAL_S = 0.0005


def open_tls(config: Config, metrics: Metrics) -> TlsRenewal | None:
    """The listener's certificate pair when configured; ConfigError when it cannot be served."""
    server = config.server
    if server.tls_cert_file is None or server.tls_key_file is None:
        return None
    return TlsRenewal(server.tls_cert_file, server.tls_key_file, metrics,
                      watch_interval_s=server.tls_watch_interval_s)


async def serve(config: Config, *, metrics: Metrics | None = None, load: Callable[[], Config] | None = None) -> None:
    """Serve until SIGTERM or SIGINT; SIGUSR1 forces a refresh, SIGHUP reloads with ``load``.

    Returns after a clean shutdown.
    """
    metrics = metrics or Metrics()
    notifier = Notifier(config.systemd.notify_socket)
    app = make_app(config, metrics=metrics)
    tls = open_tls(config, metrics)
    if tls is not None:
        app[TLS] = tls
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=config.server.keepalive_timeout_s,
                           shutdown_timeout=config.server.shutdown_timeout_s, handle_signals=False)
    metrics_runner = None
    if config.server.metrics_listen is not None:
        metrics_runner = web.AppRunner(make_metrics_app(metrics, app[HEALTH], app[STATUS]), access_log=None,
                                       keepalive_timeout=config.server.keepalive_timeout_s, shutdown_timeout=1.0)
    loop = asyncio.get_running_loop()
    stop, reload_requested = asyncio.Event(), asyncio.Event()
    lifecycle = Lifecycle(app, notifier, load, tls)
    tasks: list[asyncio.Task[None]] = []
    try:
        await start_listeners(config.server, metrics, runner, metrics_runner, tls.listener if tls else None)
        # Everything imported and opened so far (botocore's models above all) lives as long as the
        # process: out of the collector's sight, a full collection under load costs ~1 ms, not ~100.
        gc.freeze()
        # While the validator runs in its thread (a 100-key RSA-4096 set holds the GIL ~20 ms), the
        # loop waits for the GIL a whole switch interval at a time: 0.5 ms, not Python's 5 ms.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: _force_refresh(app))
        loop.add_signal_handler(signal.SIGHUP, reload_requested.set)
        log.info("listening", url=f"{'https' if tls else 'http'}://{config.server.listen}{config.server.paths[0]}",
                 metrics=f"http://{config.server.metrics_listen}/metrics" if config.server.metrics_listen else None,
                 sources=[s.name for s in config.sources])
        tasks.append(asyncio.create_task(lifecycle.announce(), name="jwksd-announce"))
        tasks.append(asyncio.create_task(lifecycle.reloads(reload_requested), name="jwksd-reload"))
        if tls is not None:
            tasks.append(asyncio.create_task(tls.watch(), name="jwksd-tls-watch"))
        if config.systemd.watchdog_s is not None and notifier.enabled:
            tasks.append(asyncio.create_task(watchdog_loop(notifier, config.systemd.watchdog_s, lambda: _alive(app)),
                                             name="jwksd-watchdog"))
        await stop.wait()
        log.info("stopping")
    finally:
        notifier.stopping()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        await stop_tasks(tasks)
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()
        notifier.close()
    log.info("stopped")


class Lifecycle:
    """Tells systemd what the daemon does: READY=1 once a valid set is served, STATUS= after refreshes, reloads."""

    def __init__(self, app: web.Application, notifier: Notifier, load: Callable[[], Config] | None,
                 tls: TlsRenewal | None = None) -> None:
        self.app = app
        self.notifier = notifier
        self.load = load
        self.tls = tls
        self.ready = False

    def status(self) -> str:
        """One line for `systemctl status`: what is served and from where."""
        store = self.app[STORE]
        snapshot = store.snapshot
        if snapshot is None and store.standby is not None:
            return f"asking the source first ({store.standby.origin} stands by)"
        if snapshot is None:
            return "waiting for a valid key set (no source, last-known-good or fallback has one yet)"
        source = store.served_source(self.app[CONFIG].current.refresh.max_age_s)
        return f"serving {len(snapshot.kids)} key{'s' if len(snapshot.kids) != 1 else ''} ({source})"

    async def announce(self) -> None:
        """READY=1 only once a key set is served (the first refresh runs in the background), then STATUS updates."""
        refresher = self.app[REFRESHER]
        self.notifier.status(self.status())
        await refresher.wait_until_served()
        self.ready = True
        self.notifier.ready(self.status())
        log.info("ready", status=self.status())
        while True:
            seen = refresher.completed
            await refresher.wait_for_refreshes(seen + 1)
            self.notifier.status(self.status())

    async def reloads(self, requested: asyncio.Event) -> None:
        """Run one reload per SIGHUP (signals arriving during a reload coalesce into one more)."""
        while True:
            await requested.wait()
            requested.clear()
            if self.tls is not None:  # renewed certificates load even when the config cannot be re-read
                self.tls.reload("SIGHUP")
            if self.load is None:
                log.warning("reload_unavailable", detail="this daemon was started without a config to re-read")
                continue
            if self.ready:
                self.notifier.reloading()
            log.info("reload_requested", signal="SIGHUP")
            try:
                applied = await reload_config(self.app, self.load)
            except Exception:
                log.exception("reload_failed")
                applied = False
            status = self.status() if applied else f"{self.status()}; last reload rejected, see the log"
            if self.ready:  # RELOADING=1 ends with READY=1, whatever the outcome
                self.notifier.ready(status)
            else:
                self.notifier.status(status)


def _alive(app: web.Application) -> bool:
    """What the watchdog vouches for: the loop runs (this is called from it) and so does the refresh task."""
    task = app.get(REFRESH_TASK)
    return task is not None and not task.done()


def _force_refresh(app: web.Application) -> None:
    """SIGUSR1: refresh from the sources now, past any fresh shared cache entry."""
    refresher = app.get(REFRESHER)
    if refresher is not None:
        log.info("refresh_requested", signal="SIGUSR1")
        if refresher.source_set.cache is not None:
            refresher.source_set.cache.bypass()
        refresher.trigger()
