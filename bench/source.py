"""The key source under test: moto on 127.0.0.1 behind a proxy that can be slow or down, and counts calls.

Counting at the proxy, not in jwksd, shows what AWS would bill: every GetSecretValue that left jwksd.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections import Counter
from typing import Any

import boto3
from aiohttp import ClientSession, web
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": REGION}
MODES = ("healthy", "slow", "down")
DOWN_BODY = b'{"__type": "ServiceUnavailable", "message": "the bench source is down"}'


class Moto:
    """One moto server for the run, and a boto3 client to seed it."""

    def __init__(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per call is noise here
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.client: Any = boto3.client("secretsmanager", endpoint_url=self.endpoint, region_name=REGION,
                                        aws_access_key_id="bench", aws_secret_access_key="bench")

    def create(self, previous: bytes, current: bytes) -> str:
        """A secret with both stages, so every refresh reads two documents as in production."""
        name = f"jwksd-bench/{uuid.uuid4()}"
        self.client.create_secret(Name=name, SecretString=previous.decode())
        self.client.put_secret_value(SecretId=name, SecretString=current.decode())
        return name

    def put(self, name: str, content: bytes) -> None:
        self.client.put_secret_value(SecretId=name, SecretString=content.decode())

    def stop(self) -> None:
        self.server.stop()


class Proxy:
    """A proxy in front of moto, on its own thread and loop: healthy, slow (``delay_s`` a call) or down (503)."""

    def __init__(self, upstream: str, *, delay_s: float = 3.0) -> None:
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # jwksd hanging up on a slow call is fine
        self.upstream = upstream
        self.delay_s = delay_s
        self.mode = "healthy"
        self.calls: Counter[str] = Counter()  # X-Amz-Target -> calls, whatever the mode
        self.endpoint = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True, name="bench-proxy")

    def start(self) -> Proxy:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the bench proxy did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def get_secret_calls(self) -> int:
        return self.calls["secretsmanager.GetSecretValue"]

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with ClientSession() as session:
            async def forward(request: web.Request) -> web.Response:
                self.calls[request.headers.get("X-Amz-Target", "other")] += 1
                if self.mode == "down":
                    return web.Response(status=503, body=DOWN_BODY, content_type="application/x-amz-json-1.1")
                if self.mode == "slow":
                    await asyncio.sleep(self.delay_s)
                body = await request.read()
                headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
                async with session.request(request.method, self.upstream + request.path_qs, data=body,
                                           headers=headers) as upstream:
                    return web.Response(status=upstream.status, body=await upstream.read(),
                                        content_type=upstream.content_type)

            app = web.Application(client_max_size=1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", forward)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            self.endpoint = f"http://127.0.0.1:{port}"
            self._started.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()
