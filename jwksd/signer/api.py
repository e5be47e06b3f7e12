"""The HTTP API: POST /v1/sign, GET /v1/active, /healthz, /readyz; every error JSON with a code and a message.

A refusal of the request is 400 (401 for a missing or wrong bearer token on TCP, 404/405/413 as HTTP
says); the signer's own state is 503 with ``Retry-After``. Times are unix seconds.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import Counter

from jwksd.errors import AwsError, RotationError, SignerError
from jwksd.signer import audit
from jwksd.signer.claims import parse, unsigned
from jwksd.signer.metrics import NO_KID, SignerMetrics
from jwksd.signer.view import RegistryView
from jwksd.validate.encoding import b64u_encode

log = structlog.get_logger("jwksd.signer.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BODY_TIMEOUT_S = 10.0  # a caller that has not sent its whole body by then holds a connection for nothing
PROTECTED = "/v1/"  # over TCP, these paths need the bearer token; /healthz and /readyz do not
CALLER = web.RequestKey("caller", audit.Caller)


def error(status: int, code: str, message: str, *, retry_after_s: float | None = None) -> web.Response:
    """``{"error": {"code", "message"}}`` with ``status`` (and Retry-After, whole seconds)."""
    headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))} if retry_after_s is not None else None
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


class Api:
    """The handlers, over one registry view."""

    def __init__(self, view: RegistryView, metrics: SignerMetrics, *, max_body_bytes: int, token: bytes | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.view = view
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.token = token
        self.clock = clock
        self.durations = metrics.sign_duration.labels(view.keys.name)
        self._counters: dict[tuple[str, str], Counter] = {}  # labels() takes a lock: each child looked up once

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/sign", self.sign)
        app.router.add_get("/v1/active", self.active)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.middlewares.append(self.middleware)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The bearer token on TCP; aiohttp's own errors (404, 405, 413) as JSON."""
        caller = request[CALLER] = audit.caller_of(request)  # once per request: the handler logs it
        if request.path.startswith(PROTECTED) and caller.over_tcp and not self._authorized(request):
            self.metrics.tokens.labels(NO_KID, "unauthorized").inc()
            response = error(401, "unauthorized", "expected the header Authorization: Bearer <signer.token_file>")
            response.headers["WWW-Authenticate"] = 'Bearer realm="jwksd-signer"'
            return response
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error(exc.status, exc.reason.lower().replace(" ", "_"), f"{request.method} {request.path}: "
                         f"{exc.reason}")

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if self.token is None or scheme.lower() != "bearer":
            return False
        # constant time: no timing oracle; surrogateescape: aiohttp keeps a non-UTF-8 header's bytes that way
        return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), self.token)

    async def sign(self, request: web.Request) -> web.Response:
        caller = request[CALLER]
        kid = NO_KID
        try:
            body = await self._body(request)
            wanted = parse(body)
            key = self.view.signing_key()
            kid = key.kid
            view = self.view.view
            assert view is not None  # signing_key returned a key: there is a view
            token = unsigned(wanted, key, now=int(self.clock()), max_lifetime_s=view.policy.max_token_lifetime_s)
            started = time.perf_counter()
            signature = await self.view.keys.sign(key, token.signing_input)
            self.durations.observe(time.perf_counter() - started)
        except SignerError as exc:
            return self._refuse(caller, kid, exc)
        except (AwsError, RotationError) as exc:
            return self._refuse(caller, kid, _failure(exc))
        self._counter(kid, "signed").inc()
        audit.signed(caller, kid=kid, claims=wanted.claims, jti=token.jti, exp=token.exp)
        return web.json_response({"token": f"{token.signing_input.decode('ascii')}.{b64u_encode(signature)}",
                                  "kid": kid, "alg": key.alg, "exp": token.exp})

    async def _body(self, request: web.Request) -> bytes:
        """The body, at most ``max_body_bytes`` within BODY_TIMEOUT_S; SignerError past either (read no further than one
        byte over)."""
        limit = self.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise SignerError("body_too_large", f"request body: {request.content_length} bytes; at most {limit} "
                                                "(signer.max_body_bytes)")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):  # a slow or stalled sender does not hold the request open
                while size <= limit and (chunk := await request.content.read(limit + 1 - size)):  # chunked: no length
                    chunks.append(chunk)
                    size += len(chunk)
        except TimeoutError:
            raise SignerError("body_timeout", f"request body: not received within {BODY_TIMEOUT_S:g}s ({size} bytes "
                                              "arrived)") from None
        if size > limit:
            raise SignerError("body_too_large", f"request body: over {limit} bytes (signer.max_body_bytes)")
        return b"".join(chunks)

    def _counter(self, kid: str, outcome: str) -> Counter:
        child = self._counters.get((kid, outcome))
        if child is None:
            child = self._counters[kid, outcome] = self.metrics.tokens.labels(kid, outcome)
        return child

    def _refuse(self, caller: audit.Caller, kid: str, exc: SignerError) -> web.Response:
        status = 503 if exc.unavailable else 400
        outcome = "failed" if exc.code == "signing_failed" else "unavailable" if exc.unavailable else "bad_request"
        self._counter(kid, outcome).inc()
        audit.refused(caller, code=exc.code, status=status)
        return error(status, exc.code, exc.message, retry_after_s=self.view.refresh_s if exc.unavailable else None)

    async def active(self, request: web.Request) -> web.Response:
        try:
            key = self.view.signing_key()
        except SignerError as exc:
            return error(503, exc.code, exc.message, retry_after_s=self.view.refresh_s)
        view = self.view.view
        assert view is not None
        following: dict[str, Any] | None = None
        if view.pending is not None:
            ready = view.pending.first_published
            following = {"kid": view.pending.kid,
                         "promotable_from": None if ready is None else ready + view.policy.publish_ahead_s}
        return web.json_response({"kid": key.kid, "alg": key.alg, "active_since": key.activated, "next": following})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        try:
            key = self.view.signing_key()
        except SignerError as exc:
            return web.json_response({"status": "not_ready", "code": exc.code, "message": exc.message}, status=503,
                                     headers={"Retry-After": str(max(1, math.ceil(self.view.refresh_s)))})
        return web.json_response({"status": "ready", "kid": key.kid, "alg": key.alg})


def _failure(exc: AwsError | RotationError) -> SignerError:
    """A signing call that failed: KMS's limit on the input is the request's fault, anything else the signer's."""
    if exc.code == "too_large":
        return SignerError("claims_too_large", exc.message)
    log.warning("sign_failed", code=exc.code, error=str(exc))
    return SignerError("signing_failed", f"{exc.code}: {exc.message}", unavailable=True)
