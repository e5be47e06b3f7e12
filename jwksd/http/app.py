"""The aiohttp application: the routes, and the resources behind them in start-up order.

Requests only read the current snapshot: they never await AWS, a lock or the disk.
Resources are set up and torn down in ``cleanup_ctx`` order: ladder files, then the sources
(with the shared cache, see source_set.py), then the refresh task.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from aiohttp import hdrs, web
from prometheus_client.aiohttp import make_aiohttp_handler

from jwksd.config import Config, LiveConfig
from jwksd.http.cache import ConditionalGet, Representation, preflight
from jwksd.http.health import Health
from jwksd.http.request_metrics import OTHER, RequestMetrics, add_catch_all
from jwksd.http.status_doc import StatusDocument
from jwksd.http.status_registry import RegistryWatch, source_read
from jwksd.metrics import Metrics
from jwksd.publish import Publisher
from jwksd.refresh import Refresher
from jwksd.shutdown import stop_tasks
from jwksd.source_set import SourceSet
from jwksd.state import LastKnownGood
from jwksd.status import RefreshStatus
from jwksd.store import Clock, Snapshot, Store, SystemClock
from jwksd.validate import DROP_REASONS, REJECT_REASONS

if TYPE_CHECKING:
    from jwksd.http.tls_renewal import TlsRenewal

CONFIG = web.AppKey("config", LiveConfig)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
REFRESHER = web.AppKey("refresher", Refresher)
REFRESH_TASK = web.AppKey("refresh_task", asyncio.Task[None])
HEALTH = web.AppKey("health", Health)
LAST_KNOWN_GOOD = web.AppKey("last_known_good", LastKnownGood)
TLS: web.AppKey[TlsRenewal] = web.AppKey("tls")  # only when the listener speaks HTTPS
PUBLISHER = web.AppKey("publisher", Publisher)
STATUS = web.AppKey("status", StatusDocument)
NO_STATUS = RefreshStatus()


class JwksHandler:
    """Serves the snapshot through the conditional GET, with the cache headers of the config in force.

    ``represent`` turns the snapshot into what is served, a document derived from it (the OpenID
    discovery document) with the same HTTP treatment; None serves the snapshot itself, the JWKS.
    """

    def __init__(self, config: LiveConfig, store: Store, refresher: Callable[[], Refresher | None],
                 represent: Callable[[Snapshot], Representation] | None = None) -> None:
        self.live = config
        self.store = store
        self.refresher = refresher
        self.represent = represent
        self.conditional = ConditionalGet()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        snapshot = self.store.snapshot or self.store.standby  # at start, before the first fresh set: the disk rung
        if snapshot is None:
            return unavailable()
        config = self.live.current
        refresher = self.refresher()
        if refresher is not None:
            refresher.revalidate_if_stale()
        served: Representation = snapshot if self.represent is None else self.represent(snapshot)
        source = self.store.served_source(config.refresh.max_age_s) or "none"
        return self.conditional.respond(request, served, config, source)


def unavailable() -> web.Response:
    """503 with a JSON body: rung 5, nothing valid to serve."""
    body = {"error": "no_valid_keys", "message": "no valid key set is available: the source has not delivered one "
                                                 "and there is no last-known-good or fallback file"}
    return web.json_response(body, status=503, headers={hdrs.CACHE_CONTROL: "no-store", hdrs.RETRY_AFTER: "5"})


async def ladder_ctx(app: web.Application) -> AsyncIterator[None]:
    """Rungs 3 and 4: the publisher reads last-known-good, else the fallback file, to stand by for the first fetch."""
    lkg = await app[PUBLISHER].restore()
    if lkg is not None:
        app[LAST_KNOWN_GOOD] = lkg  # each source's share seeds the refresher
    yield


async def refresh_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the sources, start the one refresh task; on the way out stop it (bounded), then close the sources in use."""
    live, store = app[CONFIG], app[STORE]
    lkg = app.get(LAST_KNOWN_GOOD)
    source_set = await SourceSet.open(live.current, app[METRICS], store.clock,
                                      accepted_at=lkg.accepted_at if lkg else None)
    seed = {name: keyset.keys for name, keyset in lkg.sources.items()} if lkg else None
    if source_set.cache is not None:
        app[PUBLISHER].accepted_at = source_set.cache.accepted
    refresher = Refresher(live, source_set, app[PUBLISHER], app[METRICS], store.clock, seed=seed)
    app[REFRESHER] = refresher
    task = asyncio.create_task(refresher.run(), name="jwksd-refresh")
    app[REFRESH_TASK] = task
    try:
        yield
    finally:
        await stop_tasks([task])  # bounded: a task that lost its cancel must not hold the sources open forever
        await refresher.source_set.close()  # a reload closes what it replaces; this is the set in use


def prepare_metrics(metrics: Metrics, config: Config) -> None:
    """Create the series of the config's routes and sources at 0: at start, and again after a reload."""
    paths = frozenset(config.server.paths) | ({config.oidc.discovery_path} if config.oidc else set())
    metrics.prepare(sorted(paths), [s.name for s in config.sources], DROP_REASONS, REJECT_REASONS)


def make_app(config: Config, *, metrics: Metrics | None = None, clock: Clock | None = None) -> web.Application:
    """Build the application; nothing is opened until the runner starts it."""
    metrics = metrics or Metrics()
    prepare_metrics(metrics, config)
    # No middlewares: they would cost more than the JWKS handler itself (see jwksd/http/request_metrics.py).
    app = web.Application(client_max_size=1024,
                          handler_args={"max_line_size": config.server.max_line_size,
                                        "max_field_size": config.server.max_field_size,
                                        "max_headers": config.server.max_headers})
    store = Store(clock or SystemClock())
    app[CONFIG], app[STORE], app[METRICS] = LiveConfig(config), store, metrics
    app[PUBLISHER] = Publisher(app[CONFIG], store, metrics, store.clock)
    metrics.track_age(store.age_s)
    metrics.set_budgets(config.refresh)
    handler = JwksHandler(app[CONFIG], store, lambda: app.get(REFRESHER))
    health = Health(app[CONFIG], store, lambda: refresher.status if (refresher := app.get(REFRESHER)) else NO_STATUS,
                    lambda: refresher.source_set.cache if (refresher := app.get(REFRESHER)) else None,
                    lambda: app.get(REFRESH_TASK), tls=lambda: app.get(TLS))
    app[HEALTH] = health
    app[STATUS] = StatusDocument(
        app[CONFIG], store, health, lambda: refresher.status if (refresher := app.get(REFRESHER)) else NO_STATUS,
        lambda: refresher.source_set.cache if (refresher := app.get(REFRESHER)) else None,
        registry=RegistryWatch(metrics, store.clock,
                               lambda: source_read(r.sources) if (r := app.get(REFRESHER)) else None))
    requests = RequestMetrics(metrics)
    for path in config.server.paths:
        _add_document(app, requests, path, handler)
    if config.oidc is not None:
        from jwksd.http.oidc import DiscoveryDocument

        document = DiscoveryDocument(config.oidc)
        app[PUBLISHER].derived.append(document.update)
        discovery = JwksHandler(app[CONFIG], store, lambda: app.get(REFRESHER), represent=document.represent)
        _add_document(app, requests, config.oidc.discovery_path, discovery)
    app.router.add_get("/healthz", requests.wrap(health.healthz, OTHER))
    app.router.add_get("/readyz", requests.wrap(health.readyz, OTHER))
    app.router.add_get("/health", requests.wrap(health.health, OTHER))
    if config.server.metrics_on_main:
        app.router.add_get("/metrics", requests.wrap(make_aiohttp_handler(metrics.registry), OTHER))
    if config.server.status_on_main:  # public: codes, times and counts, as the public /health
        app[STATUS].add_routes(app, detail=False, wrap=lambda handler: requests.wrap(handler, OTHER))
    add_catch_all(app, requests)
    app.cleanup_ctx.append(ladder_ctx)
    app.cleanup_ctx.append(refresh_ctx)
    app.cleanup_ctx.append(status_ctx)
    return app


async def status_ctx(app: web.Application) -> AsyncIterator[None]:
    """The status page's own registry client (opened on a first page view, if ever) is closed on the way out."""
    yield
    await app[STATUS].registry.close()


def _add_document(app: web.Application, requests: RequestMetrics, path: str, handler: JwksHandler) -> None:
    """GET and HEAD of ``path`` through ``handler``, OPTIONS as the CORS preflight; each counted under ``path``."""
    app.router.add_get(path, requests.wrap(handler.handle, path), allow_head=True)
    app.router.add_route(hdrs.METH_OPTIONS, path, requests.wrap(preflight, path))


def make_metrics_app(metrics: Metrics, health: Health | None = None,
                     status: StatusDocument | None = None) -> web.Application:
    """The separate /metrics listener, with ``health``'s detailed /health and ``status``'s /status and /status.json
    (upstream messages included: this listener is the operator's, loopback by default)."""
    app = web.Application(client_max_size=1024)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    if health is not None:
        app.router.add_get("/health", health.detailed_health)
    if status is not None:
        status.add_routes(app, detail=True)
    return app
