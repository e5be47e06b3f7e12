"""The aiohttp application: the JWKS routes with conditional GET, health, and the resources behind them.

Requests only read the current snapshot: they never await AWS, a lock or the disk.
Resources are set up and torn down in ``cleanup_ctx`` order: ladder files, the shared cache,
sources, refresh task.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from aiohttp import hdrs, web
from prometheus_client.aiohttp import make_aiohttp_handler

from jwksd.config import Config, FileSourceConfig, HttpCacheConfig, HttpSourceConfig, LiveConfig, SourceConfig
from jwksd.errors import StateError
from jwksd.metrics import Metrics
from jwksd.refresh import ErrorInfo, Refresher, SourceState
from jwksd.request_metrics import OTHER, RequestMetrics, add_catch_all
from jwksd.sources import Source, open_source
from jwksd.state import LastKnownGood, load_fallback, load_last_known_good
from jwksd.store import Clock, Snapshot, Store, SystemClock, build_snapshot
from jwksd.validate import DROP_REASONS, REJECT_REASONS

if TYPE_CHECKING:
    from jwksd.shared_cache import SharedCache

log = structlog.get_logger("jwksd.app")

CONFIG = web.AppKey("config", LiveConfig)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
REFRESHER = web.AppKey("refresher", Refresher)
REFRESH_TASK = web.AppKey("refresh_task", asyncio.Task[None])
# Imported only when configured: redis and aiocache are a third of the start-up imports.
SHARED_CACHE: web.AppKey[SharedCache] = web.AppKey("shared_cache")
LAST_KNOWN_GOOD = web.AppKey("last_known_good", LastKnownGood)

_ETAG = re.compile(r'(?:W/)?"([^"]*)"')
ALLOWED_REQUEST_HEADERS = "If-None-Match, If-Modified-Since"
EXPOSED_HEADERS = "ETag, Last-Modified, X-JWKS-Source"


def accepts_gzip(header: str) -> bool:
    """True when Accept-Encoding allows gzip (``gzip``, ``x-gzip`` or ``*`` with a q above 0)."""
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        q = params.strip().lower()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


class Representation(Protocol):
    """What a conditional GET serves: a snapshot of the key set, or a document derived from one."""

    @property
    def body(self) -> bytes: ...

    @property
    def gzip_body(self) -> bytes: ...

    @property
    def etag(self) -> str: ...

    @property
    def gzip_etag(self) -> str: ...

    @property
    def changed_at(self) -> float: ...

    @property
    def last_modified(self) -> str: ...


def etag_matches(header: str, snapshot: Representation) -> bool:
    """Weak comparison of If-None-Match (a list or ``*``) against either representation's ETag."""
    if header in (snapshot.etag, snapshot.gzip_etag):  # a client echoing our ETag: most requests
        return True
    if header.strip() == "*":
        return True
    ours = (snapshot.etag.strip('"'), snapshot.gzip_etag.strip('"'))
    return any(tag in ours for tag in _ETAG.findall(header))


def not_modified_since(header: str, snapshot: Representation) -> bool:
    """True when If-Modified-Since is a valid date no earlier than the content's last change."""
    try:
        since = parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError):
        return False
    return int(snapshot.changed_at) <= since


@functools.lru_cache(maxsize=8)
def cache_control(max_age_s: float, cache: HttpCacheConfig) -> str:
    """The Cache-Control value for the settings in force, built once per setting."""
    return (f"public, max-age={int(max_age_s)}, stale-while-revalidate={cache.stale_while_revalidate_s}, "
            f"stale-if-error={cache.stale_if_error_s}")


@dataclass(frozen=True)
class ResponseHeaders:
    """The four header sets of one snapshot and source: identity or gzip, for a 304 or with the body."""

    plain: Mapping[str, str]
    plain_body: Mapping[str, str]
    gzip: Mapping[str, str]
    gzip_body: Mapping[str, str]


class JwksHandler:
    """Serves the snapshot with ETag, 304, gzip and the cache headers of the config in force.

    ``represent`` turns the snapshot into what is served, a document derived from it (the OpenID
    discovery document) with the same HTTP treatment; None serves the snapshot itself, the JWKS.
    """

    def __init__(self, config: LiveConfig, store: Store, refresher: Callable[[], Refresher | None],
                 represent: Callable[[Snapshot], Representation] | None = None) -> None:
        self.live = config
        self.store = store
        self.refresher = refresher
        self.represent = represent
        self._cached: tuple[Representation, Config, str, ResponseHeaders] | None = None

    def headers(self, snapshot: Representation, config: Config) -> ResponseHeaders:
        """The header sets for this snapshot, config and source, built once each: requests only pick one."""
        source = self.store.served_source(config.refresh.max_age_s) or "none"
        cached = self._cached
        if cached is not None and cached[0] is snapshot and cached[1] is config and cached[2] == source:
            return cached[3]
        common = {
            hdrs.CACHE_CONTROL: cache_control(config.refresh.max_age_s, config.http_cache),
            hdrs.LAST_MODIFIED: snapshot.last_modified,
            hdrs.VARY: "Accept-Encoding",
            hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: "*",
            hdrs.ACCESS_CONTROL_EXPOSE_HEADERS: EXPOSED_HEADERS,
            "X-JWKS-Source": source,
        }
        plain = {**common, hdrs.ETAG: snapshot.etag}
        gzip = {**common, hdrs.ETAG: snapshot.gzip_etag}
        content_type: dict[str, str] = {hdrs.CONTENT_TYPE: "application/json"}
        headers = ResponseHeaders(plain=plain, plain_body={**plain, **content_type}, gzip=gzip,
                                  gzip_body={**gzip, **content_type, hdrs.CONTENT_ENCODING: "gzip"})
        self._cached = (snapshot, config, source, headers)
        return headers

    async def handle(self, request: web.Request) -> web.StreamResponse:
        snapshot = self.store.snapshot
        if snapshot is None:
            return unavailable()
        config = self.live.current
        refresher = self.refresher()
        if refresher is not None:
            refresher.revalidate_if_stale()
        served: Representation = snapshot if self.represent is None else self.represent(snapshot)
        headers = self.headers(served, config)
        request_headers = request.headers
        accept = request_headers.get(hdrs.ACCEPT_ENCODING)
        gzip = accept is not None and accepts_gzip(accept)
        inm = request_headers.get(hdrs.IF_NONE_MATCH)
        ims = request_headers.get(hdrs.IF_MODIFIED_SINCE)
        if (inm is not None and etag_matches(inm, served)) or (
                inm is None and ims is not None and not_modified_since(ims, served)):
            return web.Response(status=304, headers=headers.gzip if gzip else headers.plain)
        if gzip:
            return web.Response(body=served.gzip_body, headers=headers.gzip_body)
        return web.Response(body=served.body, headers=headers.plain_body)


def unavailable() -> web.Response:
    """503 with a JSON body: rung 5, nothing valid to serve."""
    body = {"error": "no_valid_keys", "message": "no valid key set is available: the source has not delivered one "
                                                 "and there is no last-known-good or fallback file"}
    return web.json_response(body, status=503, headers={hdrs.CACHE_CONTROL: "no-store", hdrs.RETRY_AFTER: "5"})


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight: browsers send one before a conditional GET from another origin."""
    return web.Response(status=204, headers={
        hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: "*",
        hdrs.ACCESS_CONTROL_ALLOW_METHODS: "GET, HEAD, OPTIONS",
        hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOWED_REQUEST_HEADERS,
        hdrs.ACCESS_CONTROL_MAX_AGE: "86400",
    })


def health_document(app: web.Application) -> tuple[int, dict[str, Any]]:
    """The /health body: pass, warn (stale beyond budget, last-known-good, fallback) or fail (nothing served)."""
    config, store = app[CONFIG].current, app[STORE]
    refresher = app.get(REFRESHER)
    snapshot = store.snapshot
    source = store.served_source(config.refresh.max_age_s)
    states = list(refresher.states.values()) if refresher else []
    successes = [s.last_success for s in states if s.last_success is not None]
    errors = sorted((s.last_error for s in states if s.last_error is not None), key=lambda e: e.at)
    age = store.age_s()
    if snapshot is None:
        status = "fail"
    elif source in ("last-known-good", "fallback") or age > config.refresh.max_staleness_s:
        status = "warn"
    else:
        status = "pass"
    check: dict[str, Any] = {
        "status": status,
        "source": source or "none",
        "age_s": round(age, 3),
        "kids": list(snapshot.kids) if snapshot else [],
        "last_success": _iso(max(successes)) if successes else None,
        "last_error": _error(errors[-1] if errors else None),
        "sources": {s.name: _source_health(s) for s in states},
    }
    checks = {"jwks": check}
    shared = app.get(SHARED_CACHE)
    if shared is not None:
        # Redis down is not an outage (each replica fetches directly) but the fleet's AWS calls multiply.
        checks["shared_cache"] = {
            "status": "pass" if shared.up else "warn", "url": shared.config.safe_url, "reachable": shared.up,
            "last_error": ({"message": shared.last_error[0], "at": _iso(shared.last_error[1])}
                           if shared.last_error else None)}
        if status == "pass" and not shared.up:
            status = "warn"
    return (503 if status == "fail" else 200), {"status": status, "checks": checks}


def _source_health(state: SourceState) -> dict[str, Any]:
    """One source's own part: warn while it fails (its last good keys stay served)."""
    return {
        "status": "warn" if state.failing else "pass",
        "origin": "last-known-good" if state.seeded else ("fresh" if state.last_success is not None else "none"),
        "last_success": _iso(state.last_success) if state.last_success is not None else None,
        "last_error": _error(state.last_error),
    }


def _error(error: ErrorInfo | None) -> dict[str, Any] | None:
    """A source error as /health shows it."""
    return {"code": error.code, "message": error.message, "at": _iso(error.at)} if error else None


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


async def health(request: web.Request) -> web.Response:
    status, body = health_document(request.app)
    return web.json_response(body, status=status, content_type="application/health+json",
                             headers={hdrs.CACHE_CONTROL: "no-store"})


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the loop answers and the refresh task has not died."""
    task = request.app.get(REFRESH_TASK)
    if task is not None and task.done():
        return web.json_response({"status": "fail", "reason": "refresh task stopped"}, status=503)
    return web.json_response({"status": "pass"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: a valid key set is served (any rung 1-4). Staleness never drains a replica."""
    ready = request.app[STORE].snapshot is not None
    return web.json_response({"ready": ready}, status=200 if ready else 503, headers={hdrs.CACHE_CONTROL: "no-store"})


async def ladder_ctx(app: web.Application) -> AsyncIterator[None]:
    """Rungs 3 and 4: install last-known-good, else the fallback file, before any fetch."""
    config, store, metrics = app[CONFIG].current, app[STORE], app[METRICS]
    fallback = load_fallback(config.state.fallback_file, config.validation) if config.state.fallback_file else None
    lkg = None
    if config.state.state_dir is not None:
        try:
            lkg = load_last_known_good(config.state.state_dir, config.validation)
        except StateError as exc:
            metrics.state_errors.labels("read").inc()
            log.error("last_known_good_skipped", message=str(exc))
    if lkg is not None:
        app[LAST_KNOWN_GOOD] = lkg  # each source's share seeds the refresher
        for problem in lkg.skipped:
            metrics.state_errors.labels("read").inc()
            log.error("last_known_good_share_skipped", message=problem)
        store.swap(build_snapshot(lkg.keyset.keys, "last-known-good", store.clock, changed_at=lkg.changed_at,
                                  fetched_at=lkg.fetched_at))
    elif fallback is not None:
        store.swap(build_snapshot(fallback.keys, "fallback", store.clock))
    if store.snapshot is not None:
        metrics.set_serving(store.snapshot.origin)
        metrics.keys_served.set(len(store.snapshot.kids))
        log.info("serving_from_disk", origin=store.snapshot.origin, kids=list(store.snapshot.kids))
    yield


async def shared_cache_ctx(app: web.Application) -> AsyncIterator[None]:
    """The fleet's shared cache, when configured; Redis being down at start is not an error."""
    config = app[CONFIG].current
    if not config.shared_cache.enabled:
        yield
        return
    from jwksd.shared_cache import SharedCache

    cache = SharedCache.open(config.shared_cache, config.validation, app[METRICS], app[STORE].clock)
    app[SHARED_CACHE] = cache
    try:
        yield
    finally:
        await cache.close()


async def open_app_source(app: web.Application, config: Config, source_config: SourceConfig) -> Source:
    """Open a source of ``config``; a remote one goes behind the shared cache if any (a local file never does)."""
    source = await open_source(source_config, app[METRICS], max_document_bytes=config.validation.max_document_bytes)
    cache = app.get(SHARED_CACHE)
    if cache is None or isinstance(source_config, FileSourceConfig):
        return source
    interval_s = config.refresh.interval_s
    max_fresh_s = source_config.max_refresh_s if isinstance(source_config, HttpSourceConfig) else interval_s
    return cache.wrap(source, interval_s=interval_s, max_fresh_s=max_fresh_s)


async def refresh_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the sources, start the one refresh task; on the way out cancel it, then close the sources in use."""
    live = app[CONFIG]
    sources: list[Source] = []
    try:
        for source_config in live.current.sources:
            sources.append(await open_app_source(app, live.current, source_config))
    except BaseException:
        await close_sources(sources)
        raise
    lkg = app.get(LAST_KNOWN_GOOD)
    seed = {name: keyset.keys for name, keyset in lkg.sources.items()} if lkg else None
    refresher = Refresher(live, sources, app[STORE], app[METRICS], app[STORE].clock, seed=seed)
    app[REFRESHER] = refresher
    task = asyncio.create_task(refresher.run(), name="jwksd-refresh")
    app[REFRESH_TASK] = task
    try:
        yield
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:  # a crashed loop was already reported by /healthz; do not block shutdown
            log.exception("refresh_task_failed")
        await close_sources(refresher.sources)  # a reload closes the sources it replaces; these are the current ones


async def close_sources(sources: Iterable[Source]) -> None:
    """Close each source; one that fails to close does not keep the others open."""
    for source in sources:
        try:
            await source.close()
        except Exception:
            log.exception("source_close_failed", source=source.name)


def make_app(config: Config, *, metrics: Metrics | None = None, clock: Clock | None = None) -> web.Application:
    """Build the application; nothing is opened until the runner starts it."""
    metrics = metrics or Metrics()
    paths = frozenset(config.server.paths) | ({config.oidc.discovery_path} if config.oidc else set())
    metrics.prepare(sorted(paths), [s.name for s in config.sources], DROP_REASONS, REJECT_REASONS)
    # No middlewares: they would cost more than the JWKS handler itself (see jwksd/request_metrics.py).
    app = web.Application(client_max_size=1024,
                          handler_args={"max_line_size": config.server.max_line_size,
                                        "max_field_size": config.server.max_field_size,
                                        "max_headers": config.server.max_headers})
    store = Store(clock or SystemClock())
    app[CONFIG], app[STORE], app[METRICS] = LiveConfig(config), store, metrics
    metrics.track_age(store.age_s)
    metrics.set_budgets(config.refresh)
    handler = JwksHandler(app[CONFIG], store, lambda: app.get(REFRESHER))
    requests = RequestMetrics(metrics)
    for path in config.server.paths:
        app.router.add_get(path, requests.wrap(handler.handle, path), allow_head=True)
        app.router.add_route(hdrs.METH_OPTIONS, path, requests.wrap(preflight, path))
    if config.oidc is not None:
        from jwksd.oidc import DiscoveryDocument

        discovery = JwksHandler(app[CONFIG], store, lambda: app.get(REFRESHER),
                                represent=DiscoveryDocument(config.oidc).represent)
        path = config.oidc.discovery_path
        app.router.add_get(path, requests.wrap(discovery.handle, path), allow_head=True)
        app.router.add_route(hdrs.METH_OPTIONS, path, requests.wrap(preflight, path))
    app.router.add_get("/healthz", requests.wrap(healthz, OTHER))
    app.router.add_get("/readyz", requests.wrap(readyz, OTHER))
    app.router.add_get("/health", requests.wrap(health, OTHER))
    if config.server.metrics_on_main:
        app.router.add_get("/metrics", requests.wrap(make_aiohttp_handler(metrics.registry), OTHER))
    add_catch_all(app, requests)
    app.cleanup_ctx.append(ladder_ctx)
    app.cleanup_ctx.append(shared_cache_ctx)
    app.cleanup_ctx.append(refresh_ctx)
    return app


def make_metrics_app(metrics: Metrics) -> web.Application:
    """The separate /metrics listener."""
    app = web.Application(client_max_size=1024)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    return app
