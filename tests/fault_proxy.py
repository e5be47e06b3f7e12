"""A fault-injecting HTTP proxy on 127.0.0.1 between jwksd and the moto server, driven per test.

jwksd points ``endpoint_url`` at the proxy. With no fault set each request is forwarded to moto;
with a fault set each request gets that fault instead. Every request is recorded (time, stage,
fault) so tests count attempts and measure the gaps between them where the daemon sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

# Fault name -> (HTTP status, the error type AWS puts in __type and x-amzn-ErrorType).
AWS_ERRORS: dict[str, tuple[int, str]] = {
    "http_500": (500, "InternalServiceError"),
    "http_503": (503, "ServiceUnavailable"),
    "throttling": (400, "ThrottlingException"),
    "access_denied": (400, "AccessDeniedException"),
    "not_found": (400, "ResourceNotFoundException"),
}
NETWORK_FAULTS = ("latency", "reset", "truncated", "endless")
FAULTS = (*AWS_ERRORS, *NETWORK_FAULTS)
HOLD = "hold"  # not a fault of AWS's: each request waits for FaultProxy.released, then is forwarded
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"})


@dataclass(frozen=True)
class Attempt:
    """One request that reached the proxy."""

    at: float  # time.monotonic()
    stage: str | None
    fault: str | None


class FaultProxy:
    """Forwards to ``upstream`` unless :attr:`fault` names a fault to inject."""

    def __init__(self, upstream: str, *, latency_s: float = 3.0, endless_s: float = 20.0) -> None:
        self.upstream = upstream
        self.fault: str | None = None
        self.message: str | None = None  # the AWS error's own text; "injected <type>" when None
        # When set, only requests for these operations (X-Amz-Target's action) get the fault; the rest pass.
        self.operations: frozenset[str] = frozenset()
        self.times: int | None = None  # when set, only this many more requests get the fault
        self.latency_s = latency_s  # beyond jwksd's read timeout, then forwarded
        self.endless_s = endless_s  # how long an endless response trickles before the proxy gives up
        self.attempts: list[Attempt] = []
        self.released = asyncio.Event()  # ends the HOLD of every request held, and of those to come
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def faulted(self, fault: str | None = None) -> list[Attempt]:
        """The attempts that got a fault (``fault`` or any)."""
        return [a for a in self.attempts if a.fault is not None and (fault is None or a.fault == fault)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        fault = self.fault
        action = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        if self.operations and action not in self.operations:
            fault = None
        elif fault is not None and self.times is not None:
            fault, self.times = (fault, self.times - 1) if self.times > 0 else (None, 0)
        self.attempts.append(Attempt(time.monotonic(), _stage_of(body), fault))
        if fault is None:
            return await self._forward(request, body)
        if fault in AWS_ERRORS:
            status, error_type = AWS_ERRORS[fault]
            document = {"__type": error_type, "message": self.message or f"injected {error_type}"}
            return web.Response(status=status, body=json.dumps(document).encode(),
                                content_type="application/x-amz-json-1.1",
                                headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": str(uuid.uuid4())})
        if fault == "latency":
            await asyncio.sleep(self.latency_s)
            return await self._forward(request, body)
        if fault == HOLD:
            await self.released.wait()
            return await self._forward(request, body)
        if fault == "reset":
            _reset(request)
            return web.Response()
        if fault == "truncated":
            real = await self._upstream(request, body)
            return await _truncated(request, real[2])
        return await self._endless(request)

    async def _upstream(self, request: web.Request, body: bytes) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body) as response:
            kept = {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}
            return response.status, kept, await response.read()

    async def _forward(self, request: web.Request, body: bytes) -> web.StreamResponse:
        status, headers, content = await self._upstream(request, body)
        return web.Response(status=status, headers=headers, body=content)

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        """Headers promising a body, then one byte at a time, each well inside a read timeout."""
        response = web.StreamResponse(headers={"Content-Type": "application/x-amz-json-1.1"})
        response.content_length = 1 << 20
        await response.prepare(request)
        deadline = time.monotonic() + self.endless_s
        with contextlib.suppress(ConnectionError):
            while time.monotonic() < deadline and request.transport is not None \
                    and not request.transport.is_closing():
                await response.write(b" ")
                await asyncio.sleep(0.1)
        _reset(request)
        return response


def _stage_of(body: bytes) -> str | None:
    try:
        stage = json.loads(body).get("VersionStage")
    except (ValueError, AttributeError):
        return None
    return str(stage) if stage is not None else None


def _reset(request: web.Request) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0) instead of a FIN."""
    transport = request.transport
    if transport is None:
        return
    sock: socket.socket | None = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.close()


async def _truncated(request: web.Request, content: bytes) -> web.StreamResponse:
    """The real response's headers and half its body, then the connection closes."""
    response = web.StreamResponse(headers={"Content-Type": "application/x-amz-json-1.1"})
    response.content_length = len(content)
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):
        await response.write(content[: len(content) // 2])
    if request.transport is not None:
        request.transport.close()
    return response


async def start_proxy(upstream: str, **options: Any) -> FaultProxy:
    """A started proxy in front of ``upstream``."""
    proxy = FaultProxy(upstream, **options)
    await proxy.start()
    return proxy
