"""Health: /health (what is served, from where, each source's last outcome), /healthz (liveness), /readyz.

/health reads the refresh loop's frozen :class:`~jwksd.status.RefreshStatus`, never its live state.
The JWKS listener's /health is public: codes, times and counts, never an upstream's own words (AWS's
error text names the account, the role session and the secret ARN; Redis's names its host). The
metrics listener's /health is the same document with those messages and the Redis URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web

from jwksd.config import LiveConfig
from jwksd.status import ErrorInfo, RefreshStatus, SourceStatus, iso_time
from jwksd.store import Store

PRIVATE_MEMBERS = frozenset({"message", "url"})  # only on the metrics listener's /health

if TYPE_CHECKING:
    from jwksd.fleet.cache import SharedCache
    from jwksd.http.tls_renewal import TlsRenewal


class Health:
    """The three health endpoints, reading the store, the refresh outcomes, the shared cache and the TLS pair."""

    def __init__(self, live: LiveConfig, store: Store, status: Callable[[], RefreshStatus],
                 shared_cache: Callable[[], SharedCache | None],
                 refresh_task: Callable[[], asyncio.Task[None] | None], *,
                 tls: Callable[[], TlsRenewal | None] = lambda: None) -> None:
        self.live = live
        self.store = store
        self.status = status
        self.shared_cache = shared_cache
        self.refresh_task = refresh_task
        self.tls = tls

    def document(self, *, detail: bool = False) -> tuple[int, dict[str, Any]]:
        """The /health body: pass, warn (stale beyond budget, last-known-good, fallback), starting (503: the disk rung
        stands by for the first fetch, requests get it, not ready yet) or fail (503: nothing served).

        Without ``detail`` (the public listener) every upstream message and URL is left out.
        """
        config, store = self.live.current, self.store
        refresh = self.status()
        snapshot = store.snapshot
        standby = store.standby if snapshot is None else None  # served to requests, not installed: not ready
        served = snapshot or standby
        source = store.served_source(config.refresh.max_age_s)
        age = store.age_s() if standby is None else max(0.0, store.clock.monotonic() - standby.fetched_mono)
        if snapshot is None:
            status = "fail" if standby is None else "starting"
        elif source in ("last-known-good", "fallback") or age > config.refresh.max_staleness_s:
            status = "warn"
        else:
            status = "pass"
        check: dict[str, Any] = {
            "status": status,
            "source": source or "none",
            "age_s": round(age, 3),
            "kids": list(served.kids) if served else [],
            "last_success": iso_time(refresh.last_success) if refresh.last_success is not None else None,
            "last_error": _error(refresh.last_error),
            "sources": {s.name: _source_health(s) for s in refresh.sources},
        }
        if standby is not None:
            check["standby"] = {"origin": standby.origin, "kids": list(standby.kids),
                                "since": iso_time(store.standby_since)}
        if store.revoked_kept:  # revoking them would have emptied the set: still served
            check["revoked_kept"] = list(store.revoked_kept)
            status = "warn" if status == "pass" else status
            check["status"] = status
        checks = {"jwks": check}
        shared = self.shared_cache()
        if shared is not None:
            # Redis down is not an outage (each replica fetches directly) but the fleet's AWS calls multiply.
            checks["shared_cache"] = {
                "status": "pass" if shared.up else "warn", "url": shared.config.safe_url, "reachable": shared.up,
                "last_error": _error(shared.last_error)}
            if status == "pass" and not shared.up:
                status = "warn"
        tls = self.tls()
        if tls is not None:
            checks["tls"] = tls.health()  # a refused renewal: the old certificate is still served
            if status == "pass" and checks["tls"]["status"] == "warn":
                status = "warn"
        body = {"status": status, "checks": checks}
        return (503 if status in ("fail", "starting") else 200), body if detail else public_only(body)

    async def health(self, request: web.Request) -> web.Response:
        """The public /health, on the JWKS listener."""
        return _respond(*self.document())

    async def detailed_health(self, request: web.Request) -> web.Response:
        """The same with the upstream messages, on the metrics listener."""
        return _respond(*self.document(detail=True))

    async def healthz(self, request: web.Request) -> web.Response:
        """Liveness: the loop answers and the refresh task has not died."""
        task = self.refresh_task()
        if task is not None and task.done():
            return web.json_response({"status": "fail", "reason": "refresh task stopped"}, status=503)
        return web.json_response({"status": "pass"})

    async def readyz(self, request: web.Request) -> web.Response:
        """Readiness: a valid key set is served (any rung 1-4). Staleness never drains a replica."""
        ready = self.store.snapshot is not None
        return web.json_response({"ready": ready}, status=200 if ready else 503,
                                 headers={hdrs.CACHE_CONTROL: "no-store"})


def _respond(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status, content_type="application/health+json",
                             headers={hdrs.CACHE_CONTROL: "no-store"})


def public_only(value: Any) -> Any:
    """``value`` without the members that carry an upstream's words or an address (at any depth)."""
    if isinstance(value, dict):
        return {key: public_only(item) for key, item in value.items() if key not in PRIVATE_MEMBERS}
    if isinstance(value, list):
        return [public_only(item) for item in value]
    return value


def _source_health(state: SourceStatus) -> dict[str, Any]:
    """One source's own part: warn while it fails (its last good keys stay served)."""
    return {
        "status": "warn" if state.failing else "pass",
        "origin": state.origin,
        "last_success": iso_time(state.last_success) if state.last_success is not None else None,
        "last_error": _error(state.last_error),
    }


def _error(error: ErrorInfo | None) -> dict[str, Any] | None:
    """A source error as /health shows it."""
    return {"code": error.code, "message": error.message, "at": iso_time(error.at)} if error else None
