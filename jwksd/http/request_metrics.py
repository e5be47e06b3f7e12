"""Per-route request accounting: count and time every request, refuse bodies, with no aiohttp middleware.

Any app middleware makes aiohttp wrap every request in two extra layers (the middleware and its
``_fix_request_current_app``), which cost more than jwksd's whole JWKS handler (BENCHMARKS.md). So
each route's handler is wrapped when it is added instead, and a catch-all route answers the unknown
paths and methods the router would have answered, so that they are counted too.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import hdrs, web

from jwksd.metrics import Metrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OTHER = "other"


class RequestMetrics:
    """Wraps handlers so that each request is counted and timed once it is answered."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def wrap(self, handler: Handler, path: str) -> Handler:
        """``handler`` counted under ``path`` (a JWKS path, or 'other') by status and X-JWKS-Source."""
        stats, perf_counter = self.metrics.http, time.perf_counter
        stats.prepare(path)

        async def counted(request: web.Request) -> web.StreamResponse:
            started = perf_counter()
            status, source = 500, "none"
            try:
                if request.body_exists:
                    raise web.HTTPRequestEntityTooLarge(max_size=0, actual_size=request.content_length or 0,
                                                        text="request bodies are not accepted",
                                                        headers={hdrs.CONNECTION: "close"})
                response = await handler(request)
                status, source = response.status, response.headers.get("X-JWKS-Source", "none")
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                stats.observe(path, status, source, perf_counter() - started)

        return counted


def unmatched(allowed: Mapping[str, frozenset[str]]) -> Handler:
    """The catch-all route: 405 with Allow for a known path, else 404, as aiohttp's router answers."""

    async def handle(request: web.Request) -> web.StreamResponse:
        # The raw path, as the router matched it: /.well-known%2Fjwks.json is not the JWKS path (404, not 405).
        methods = allowed.get(request.rel_url.raw_path)
        if methods is not None:
            raise web.HTTPMethodNotAllowed(request.method, methods)
        raise web.HTTPNotFound()

    return handle


def add_catch_all(app: web.Application, requests: RequestMetrics) -> None:
    """Add, after every other route, the counted catch-all answering unknown paths (404) and methods (405)."""
    allowed: dict[str, set[str]] = {}
    for resource in app.router.resources():
        for route in resource:
            allowed.setdefault(resource.canonical, set()).add(route.method)
    app.router.add_route("*", "/{tail:.*}", requests.wrap(
        unmatched({path: frozenset(methods) for path, methods in allowed.items()}), OTHER))
