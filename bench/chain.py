"""The handler chain alone, per request and without sockets: routing, accounting, the handler, the Response.

``python -m bench.chain jwksd|bare`` prints one JSON object of microseconds per request for 200
and 304. It measures the first ``jwksd`` on ``sys.path``, so with ``PYTHONPATH`` pointing at an
older tree it measures that tree: the before and after of a change, on the same machine, minutes apart.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

JWKS = "/.well-known/jwks.json"


def _jwksd_app() -> tuple[web.Application, str]:
    from bench.documents import rsa_document
    from jwksd.config import load_config
    from jwksd.http.app import STORE, make_app
    from jwksd.store import SystemClock, build_snapshot

    app = make_app(load_config(None, {"JWKSD_SECRET_ID": "bench", "AWS_REGION": "us-east-1"}))
    keys = tuple(json.loads(rsa_document(2, 2048))["keys"])
    app[STORE].swap(build_snapshot(keys, "fresh", SystemClock()))
    snapshot = app[STORE].snapshot
    assert snapshot is not None
    return app, snapshot.etag


def _bare_app() -> tuple[web.Application, str]:
    from bench.bare import make_app

    etag = '"bench"'
    headers = {"Cache-Control": "public, max-age=600, stale-while-revalidate=60, stale-if-error=86400",
               "ETag": etag, "Last-Modified": "Sun, 22 Nov 2026 00:00:00 GMT", "Vary": "Accept-Encoding",
               "Access-Control-Allow-Origin": "*",
               "Access-Control-Expose-Headers": "ETag, Last-Modified, X-JWKS-Source", "X-JWKS-Source": "fresh"}
    return make_app(b"x" * 856, {"etag": etag, "200": {**headers, "Content-Type": "application/json"},
                                 "304": headers}), etag


async def _measure(app: web.Application, etag: str, *, iterations: int, repeats: int) -> dict[str, float]:
    app.freeze()
    requests = {"200": make_mocked_request("GET", JWKS, app=app),
                "304": make_mocked_request("GET", JWKS, headers={"If-None-Match": etag}, app=app)}
    for request in requests.values():  # warm up, and check the chain answers as expected
        response = await app._handle(request)
        assert response.status in (200, 304), response.status
    samples: dict[str, list[float]] = {status: [] for status in requests}
    for _ in range(repeats):
        for status, request in requests.items():
            started = time.perf_counter()
            for _ in range(iterations):
                await app._handle(request)
            samples[status].append((time.perf_counter() - started) / iterations * 1e6)
    return {status: statistics.median(values) for status, values in samples.items()}


def run(kind: str, tree: Path | None, *, iterations: int = 20000, repeats: int = 5) -> dict[str, float]:
    """Measure in a fresh process (so trees do not mix): ``kind`` is jwksd or bare; ``tree`` an older jwksd."""
    root = Path(__file__).resolve().parent.parent
    # `-m` puts the working directory first on sys.path: jwksd comes from ``tree``, bench from ``root``.
    result = subprocess.run([sys.executable, "-m", "bench.chain", kind, str(iterations), str(repeats)],
                            capture_output=True, text=True, timeout=300, check=True, cwd=tree or root,
                            env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    data: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def main() -> None:
    kind, iterations, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    app, etag = _jwksd_app() if kind == "jwksd" else _bare_app()
    result: dict[str, Any] = asyncio.run(_measure(app, etag, iterations=iterations, repeats=repeats))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
