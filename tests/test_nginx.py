"""Debian's nginx with the shipped config/nginx/jwksd.conf in front of a real jwksd, over TLS with a test CA.

The cache serves while jwksd is stopped, revalidates with a 304 from jwksd, shows a new key set once
refresh.max_age_s has passed, passes the client's address on and limits the request rate.
"""

from __future__ import annotations

import http.server
import json
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from bench.edge import Edge, render, spawn
from tests.conftest import free_port
from tests.daemon_process import JWKS, Daemon, http_get, wait_until
from tests.keys import jwk_set
from tests.signing import signing_key
from tests.tls_ca import TestCA

MAX_AGE_S = 3


class Nginx:
    """A running nginx rendered from the shipped config; ``get`` fetches through it over TLS."""

    def __init__(self, edge: Edge, ca: TestCA) -> None:
        self.edge, self.ca = edge, ca
        self.process = spawn(edge)
        wait_until(lambda: self._alive() and self.get("/healthz")[0] in (200, 503), "nginx to answer")

    def _alive(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"nginx exited with {self.process.returncode}: "
                                 f"{(self.edge.prefix / 'error.log').read_text(errors='replace')[-2000:]}")
        return True

    def get(self, path: str = JWKS, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        return http_get(f"https://localhost:{self.edge.port}{path}", headers, context=self.ca.client_context())

    def stop(self) -> None:
        self.process.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def kids(body: bytes) -> list[str]:
    return [key["kid"] for key in json.loads(body)["keys"]]


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(jwk_set(signing_key("RS256", "kid-a").jwk))
    return path


@pytest.fixture
def jwksd(tmp_path: Path, keys_file: Path) -> Iterator[Daemon]:
    """jwksd reading a file every second, telling caches to keep the set MAX_AGE_S seconds."""
    sections = {"source": {"kind": "file", "path": str(keys_file)},
                "refresh": {"interval_s": 1, "max_age_s": MAX_AGE_S}}
    workdir = tmp_path / "jwksd"
    workdir.mkdir()
    with Daemon.from_toml(workdir, sections) as daemon:
        yield daemon


def edge_for(tmp_path: Path, ca: TestCA, upstream_port: int, **limits: Any) -> Nginx:
    cert, key = tmp_path / "edge.crt", tmp_path / "edge.key"
    ca.issue().write(cert, key)
    return Nginx(render(tmp_path / "nginx", port=free_port(), upstream_port=upstream_port, cert=cert, key=key,
                        **limits), ca)


@pytest.fixture
def nginx(tmp_path: Path, ca: TestCA, jwksd: Daemon) -> Iterator[Nginx]:
    edge = edge_for(tmp_path, ca, jwksd.port)
    yield edge
    edge.stop()


def jwksd_requests(daemon: Daemon, status: str) -> float:
    return daemon.metric("jwksd_requests_total", path=JWKS, status=status)


def cached(nginx: Nginx) -> tuple[float, bytes]:
    """Fetch until nginx has the set in its cache (a HIT); the monotonic time of the fetch that stored it."""
    stored = time.monotonic()
    status, headers, body = nginx.get()
    assert status == 200 and headers["X-Cache-Status"] in ("MISS", "EXPIRED", "HIT"), headers
    if headers["X-Cache-Status"] != "HIT":
        status, headers, _ = nginx.get()
        assert status == 200 and headers["X-Cache-Status"] == "HIT", headers
    return stored, body


def wait_past_max_age(stored: float) -> None:
    """Sleep until a copy stored at ``stored`` has expired: nginx counts whole seconds, so up to one more."""
    time.sleep(max(0.0, stored + MAX_AGE_S + 1.2 - time.monotonic()))


def test_cache_serves_while_jwksd_is_stopped(nginx: Nginx, jwksd: Daemon) -> None:
    """With jwksd stopped, nginx answers from its cache, fresh and then stale once max-age has passed."""
    stored, body = cached(nginx)
    jwksd.stop()
    status, headers, served = nginx.get()
    assert status == 200 and served == body and headers["X-Cache-Status"] in ("HIT", "STALE")
    wait_past_max_age(stored)  # only a stale copy is left
    status, headers, served = nginx.get()
    assert (status, served, headers["X-Cache-Status"]) == (200, body, "STALE")
    assert headers["Cache-Control"].startswith(f"public, max-age={MAX_AGE_S},")


def test_expired_entry_revalidated_with_304(nginx: Nginx, jwksd: Daemon) -> None:
    """Once max-age has passed nginx asks jwksd with If-None-Match and jwksd answers 304, not the body."""
    stored, body = cached(nginx)
    before_304, before_200 = jwksd_requests(jwksd, "304"), jwksd_requests(jwksd, "200")
    wait_past_max_age(stored)
    status, headers, served = nginx.get()
    assert status == 200 and served == body
    wait_until(lambda: jwksd_requests(jwksd, "304") > before_304, "jwksd to answer nginx's revalidation with 304")
    assert jwksd_requests(jwksd, "200") == before_200
    status, headers, served = nginx.get()
    assert (status, served) == (200, body) and headers["X-Cache-Status"] in ("HIT", "REVALIDATED")


def test_new_key_set_shows_once_max_age_has_passed(nginx: Nginx, jwksd: Daemon, keys_file: Path) -> None:
    """A rotated set reaches nginx's clients as soon as the cached copy's max-age has run out, not later."""
    stored, body = cached(nginx)
    assert kids(body) == ["kid-a"]
    keys_file.write_text(jwk_set(signing_key("ES256", "kid-b").jwk))
    wait_until(lambda: jwksd.kids() == {"kid-b"}, "jwksd to serve the new set")
    wait_past_max_age(stored)
    seen: list[str] = []

    def rotated() -> bool:
        _, headers, served = nginx.get()
        seen.append(headers["X-Cache-Status"])
        if kids(served) == ["kid-b"]:
            return True
        # After max-age the old set may only come from an update still in flight, never as fresh.
        assert headers["X-Cache-Status"] in ("STALE", "UPDATING"), seen
        return False

    wait_until(rotated, "nginx to serve the new set")


class Recorder(http.server.BaseHTTPRequestHandler):
    """An upstream that answers every GET with a tiny JWKS and keeps the request headers it saw."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        Recorder.seen.append(dict(self.headers))
        body = b'{"keys":[]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_client_address_passed_on_and_rate_limited(tmp_path: Path, ca: TestCA) -> None:
    """The upstream sees the client's address; past the burst a client gets 429; a POST gets 403."""
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    edge = edge_for(tmp_path, ca, upstream.server_address[1], rate="1r/s", burst=3)
    try:
        Recorder.seen.clear()
        status, _, _ = edge.get(JWKS, {"X-Forwarded-For": "203.0.113.9"})
        assert status == 200
        seen = Recorder.seen[-1]
        assert seen["X-Real-IP"] == "127.0.0.1"
        assert seen["X-Forwarded-For"] == "203.0.113.9, 127.0.0.1"
        assert seen["X-Forwarded-Proto"] == "https"
        post = urllib.request.Request(f"https://localhost:{edge.edge.port}{JWKS}", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post, timeout=5, context=ca.client_context())
        assert refused.value.code == 403
        refused.value.close()
        statuses = [edge.get()[0] for _ in range(12)]
        assert 429 in statuses and set(statuses) <= {200, 429}
    finally:
        edge.stop()
        upstream.shutdown()
        upstream.server_close()
