"""/status and /status.json: what is served, from where and since when, each source, the last refreshes, the registry.

One document (``version`` 1, docs/status.md) built from the frozen state the loop publishes (the
store's snapshot, the refresher's :class:`~jwksd.status.RefreshStatus`) and the registry view; /status
renders the same document as HTML. Times are unix seconds. On the metrics listener it carries the
upstream error messages; on the public listener (``server.status_on_main``) it is cut as the public
/health is: codes, times and counts only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web

from jwksd import __version__
from jwksd.aws.head import POLICY_FIELDS
from jwksd.config import LiveConfig
from jwksd.config.source_model import SOURCE_CLASSES
from jwksd.http.health import Health, public_only
from jwksd.http.status_registry import RegistryView, RegistryWatch
from jwksd.status import ErrorInfo, Outcome, RefreshStatus, SourceStatus
from jwksd.store import Snapshot, Store

if TYPE_CHECKING:
    from jwksd.fleet.cache import SharedCache

VERSION = 1
KIND = {cls: kind for kind, cls in SOURCE_CLASSES.items()}
NO_STORE = {hdrs.CACHE_CONTROL: "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class StatusDocument:
    """Builds the status document and serves it as JSON and as HTML."""

    def __init__(self, live: LiveConfig, store: Store, health: Health, status: Callable[[], RefreshStatus],
                 shared_cache: Callable[[], SharedCache | None], *, registry: RegistryWatch) -> None:
        self.live = live
        self.store = store
        self.health = health
        self.status = status
        self.shared_cache = shared_cache
        self.registry = registry

    async def document(self, *, detail: bool) -> dict[str, Any]:
        """The status document; without ``detail`` (a public listener) upstream messages and URLs are left out."""
        config, store = self.live.current, self.store
        now = store.clock.time()
        _, health = self.health.document(detail=True)
        refresh = self.status()
        snapshot = store.snapshot or store.standby
        kinds = {source.name: KIND.get(type(source), "unknown") for source in config.sources}
        shared = self.shared_cache()
        view = await self.registry.view(config)
        doc: dict[str, Any] = {
            "version": VERSION,
            "jwksd": __version__,
            "generated_at": round(now, 3),
            "status": health["status"],
            "ready": store.snapshot is not None,
            "served": _served(snapshot, store, config.refresh.max_age_s),
            "sources": [_source(state, kinds.get(state.name, "unknown")) for state in refresh.sources],
            "shared_cache": None if shared is None else {
                "url": shared.config.safe_url, "reachable": shared.up, "last_error": _error(shared.last_error)},
            "refreshes": {"completed": refresh.completed, "history": [_outcome(o) for o in refresh.history]},
            "registry": None if view is None else _registry(view, now),
        }
        return doc if detail else dict(public_only(doc))

    async def json(self, request: web.Request, *, detail: bool) -> web.Response:
        """GET /status.json: the document, never cached."""
        return web.json_response(await self.document(detail=detail), headers=NO_STORE)

    async def html(self, request: web.Request, *, detail: bool) -> web.Response:
        """GET /status: the document as one HTML page under a strict Content-Security-Policy."""
        from jwksd.http.status_page import CSP, render

        body = render(await self.document(detail=detail))
        return web.Response(text=body, content_type="text/html", charset="utf-8",
                            headers={**NO_STORE, "Content-Security-Policy": CSP, "X-Frame-Options": "DENY"})

    def add_routes(self, app: web.Application, *, detail: bool,
                   wrap: Callable[[Callable[[web.Request], Any]], Any] = lambda handler: handler) -> None:
        """GET /status and /status.json on ``app`` (``wrap``: the listener's request counting)."""

        async def html(request: web.Request) -> web.Response:
            return await self.html(request, detail=detail)

        async def json(request: web.Request) -> web.Response:
            return await self.json(request, detail=detail)

        app.router.add_get("/status", wrap(html))
        app.router.add_get("/status.json", wrap(json))


def _served(snapshot: Snapshot | None, store: Store, max_age_s: float) -> dict[str, Any]:
    """The set requests get now: its rung, age, times and keys (public members only, never key material)."""
    if snapshot is None:
        return {"rung": "none", "standby": False, "age_s": None, "changed_at": None, "fetched_at": None,
                "etag": None, "keys": []}
    rung = store.served_source(max_age_s) or "none"
    return {
        "rung": rung,
        "standby": store.snapshot is None,  # held in reserve at start: served to requests, not ready yet
        "age_s": round(max(0.0, store.clock.monotonic() - snapshot.fetched_mono), 3),
        "changed_at": snapshot.changed_at,
        "fetched_at": snapshot.fetched_at,
        "etag": snapshot.etag,
        "revoked_kept": list(store.revoked_kept),
        "keys": [_key(key, kid, snapshot) for key, kid in zip(snapshot.keys, snapshot.kids, strict=True)],
    }


def _key(key: Any, kid: str, snapshot: Snapshot) -> dict[str, Any]:
    origin = snapshot.origins.get(kid)
    return {"kid": kid, "kty": key.get("kty"), "alg": key.get("alg"), "crv": key.get("crv"), "use": key.get("use"),
            "sources": list(origin.sources) if origin else [snapshot.origin],
            "since": origin.since if origin else snapshot.changed_at}


def _source(state: SourceStatus, kind: str) -> dict[str, Any]:
    return {"name": state.name, "kind": kind, "origin": state.origin, "status": "warn" if state.failing else "pass",
            "last_success": state.last_success, "last_error": _error(state.last_error),
            "consecutive_failures": state.failures, "next_due": state.next_due}


def _outcome(outcome: Outcome) -> dict[str, Any]:
    return {"at": outcome.at, "outcome": outcome.outcome, "added": list(outcome.added),
            "removed": list(outcome.removed), "served": outcome.served, "duration_ms": outcome.duration_ms}


def _registry(view: RegistryView, now: float) -> dict[str, Any]:
    policy = view.policy
    change = view.next_change()
    return {
        "table": view.table, "read_at": view.read_at, "read_by": view.read_by, "last_error": _error(view.error),
        "policy": None if policy is None else {**{name: getattr(policy, name) for name in POLICY_FIELDS},
                                               "from": view.policy_from},
        "revision": None if view.head is None else view.head.revision,
        "policy_differences": [{"setting": f"rotation.{name}", "config": mine, "registry": stored}
                               for name, mine, stored in view.differences()],
        "next_change": None if change is None else {"at": change.at, "change": change.change},
        "keys": [{"version": r.version, "kid": r.kid, "status": r.status, "alg": r.alg, "backend": r.backend,
                  "created": r.created, "published": r.first_published, "activated": r.activated,
                  "retired": r.retired, "expires": r.expires, "expired": r.expired, "revoked": r.revoked}
                 for r in view.records],
    }


def _error(error: ErrorInfo | None) -> dict[str, Any] | None:
    return None if error is None else {"code": error.code, "message": error.message, "at": error.at}
