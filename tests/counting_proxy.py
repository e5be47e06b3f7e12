"""An HTTP proxy on 127.0.0.1 in front of the moto server that counts the AWS operations it forwards."""

from __future__ import annotations

from collections import Counter

import aiohttp
from aiohttp import web

HOP_BY_HOP = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length",
                        "content-encoding"})


class CountingProxy:
    """Forwards every request to ``upstream``; ``calls["GetSecretValue"]`` counts what reached AWS."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.calls: Counter[str] = Counter()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        target = request.headers.get("X-Amz-Target", "")
        self.calls[target.rpartition(".")[2] or request.method] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=await request.read()) as upstream:
            body = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=upstream.status, body=body, headers=out)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
