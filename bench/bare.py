"""The floor: a bare aiohttp handler returning the same bytes and headers as jwksd, nothing else.

Run as ``python -m bench.bare --port P --body FILE --headers FILE --loop asyncio|uvloop``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web


def make_app(body: bytes, headers: dict[str, Any]) -> web.Application:
    """One route: 304 on an exact If-None-Match, else the body; each with the headers jwksd sent for it."""
    ok, not_modified, etag = dict(headers["200"]), headers["304"], headers["etag"]
    content_type = ok.pop("Content-Type", "application/json")

    async def handle(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=not_modified)
        return web.Response(body=body, headers=ok, content_type=content_type)

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", handle)
    return app


async def serve(port: int, body: bytes, headers: dict[str, Any]) -> None:
    """Serve on 127.0.0.1 with jwksd's runner settings until SIGTERM."""
    runner = web.AppRunner(make_app(body, headers), access_log=None, keepalive_timeout=5.0, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", type=Path, required=True)
    parser.add_argument("--headers", type=Path, required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    headers = json.loads(args.headers.read_text())
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(serve(args.port, args.body.read_bytes(), headers))


if __name__ == "__main__":
    main()
