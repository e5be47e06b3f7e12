"""Start-up order against real ``jwksd serve`` processes, with moto behind the fault proxy.

The source is asked first. Last-known-good or the fallback file is installed, and the daemon ready,
only once the first fetch has failed or ``refresh.startup_grace_s`` has passed; until then requests
get the disk rung with short cache headers (or 503), and ``/readyz`` says 503. A set read from disk
is never cached long; the full max-age comes back with the first fresh set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from jwksd.state import save_last_known_good
from tests.conftest import Secrets
from tests.daemon_process import JWKS, Daemon, sm_sections, wait_until
from tests.fault_proxy import HOLD, FaultProxy, start_proxy
from tests.keys import jwk_set, rsa_jwk, rsa_key

OLD, NEW = "old-0", "new-0"
FULL = "public, max-age=3600, stale-while-revalidate=60, stale-if-error=86400"  # sm_sections: max_age_s 3600
SHORT = "public, max-age=30"  # http_cache.degraded_max_age_s, no stale-*
RUNGS = ("last-known-good", "fallback")


@pytest.fixture
async def proxy(moto_endpoint: str) -> AsyncIterator[FaultProxy]:
    """The fault proxy in front of moto, released and closed at the end."""
    running = await start_proxy(moto_endpoint)
    yield running
    running.released.set()
    await running.close()


def disk_rung(tmp_path: Path, rung: str) -> dict[str, str]:
    """A [state] table whose ``rung`` holds the old key: a last-known-good file a day old, or a fallback file."""
    old = rsa_jwk(rsa_key(1), OLD)
    if rung == "fallback":
        (tmp_path / "fallback.json").write_text(jwk_set(old))
        return {"fallback_file": str(tmp_path / "fallback.json")}
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    day_ago = time.time() - 86400
    save_last_known_good(state_dir, (old,), fetched_at=day_ago, changed_at=day_ago, sources={"secretsmanager": (old,)})
    return {"state_dir": str(state_dir)}


def start(tmp_path: Path, moto_endpoint: str, proxy: FaultProxy, state: dict[str, str], **refresh: Any) -> Daemon:
    """``jwksd serve`` reading a secret holding the new key through ``proxy``, not waiting for it to be ready."""
    secret = Secrets(moto_endpoint).create(jwk_set(rsa_jwk(rsa_key(0), NEW)))
    sections = sm_sections(secret, **refresh)
    sections["source"]["read_timeout_s"] = 30.0  # a held fetch waits for its release
    sections["state"] = state
    return Daemon.from_toml(tmp_path, sections, endpoint=proxy.url, wait_ready=False)


def observe(daemon: Daemon) -> tuple[int, int, str, str, set[str]]:
    """/readyz's status, then the JWKS's status, X-JWKS-Source, Cache-Control and kids."""
    ready = daemon.get("/readyz")[0]
    status, headers, body = daemon.get(JWKS)
    kids = {key["kid"] for key in json.loads(body)["keys"]} if status == 200 else set()
    return ready, status, headers.get("X-JWKS-Source", ""), headers.get("Cache-Control", ""), kids


def first_answer(daemon: Daemon) -> tuple[int, int, str, str, set[str]]:
    """``observe`` once the daemon listens."""
    return wait_until(lambda: daemon._alive() and observe(daemon), "the daemon to answer")  # type: ignore[no-any-return]


class Watcher:
    """Observes a daemon from a thread, one request pair after another, until stopped."""

    def __init__(self, daemon: Daemon) -> None:
        self.seen: list[tuple[int, int, str, str, set[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(daemon,))
        self._thread.start()

    def _run(self, daemon: Daemon) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):  # not listening yet, or stopping
                self.seen.append(observe(daemon))

    def stop(self) -> list[tuple[int, int, str, str, set[str]]]:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.seen


def assert_never_cached_long(seen: list[tuple[int, int, str, str, set[str]]]) -> None:
    """The old kid only ever comes from disk with the short header; the new one from the source with the full one."""
    for _, _, source, cache_control, kids in seen:
        if OLD in kids:
            assert (source, cache_control) in {(rung, SHORT) for rung in RUNGS}, (source, cache_control)
        if NEW in kids:
            assert (source, cache_control) == ("fresh", FULL)


async def until(predicate: Callable[[], Any], what: str) -> None:
    await asyncio.to_thread(wait_until, predicate, what)


async def test_slow_source_is_waited_for(tmp_path: Path, moto_endpoint: str, proxy: FaultProxy) -> None:
    """While the first fetch is held, /readyz says 503 and requests get last-known-good with the short max-age;
    /readyz never says 200 before the fresh set, which then has the full max-age."""
    proxy.fault = HOLD
    daemon = await asyncio.to_thread(start, tmp_path, moto_endpoint, proxy, disk_rung(tmp_path, "last-known-good"),
                                     startup_grace_s=60)
    try:
        await until(lambda: proxy.attempts, "the first fetch to reach the proxy")
        assert await asyncio.to_thread(first_answer, daemon) == (503, 200, "last-known-good", SHORT, {OLD})
        watcher = Watcher(daemon)
        try:
            proxy.released.set()
            await asyncio.to_thread(daemon.wait_ready)
        finally:
            seen = watcher.stop()
        assert await asyncio.to_thread(observe, daemon) == (200, 200, "fresh", FULL, {NEW})
    finally:
        await asyncio.to_thread(daemon.stop)
    assert_never_cached_long(seen)
    for ready, _, _, _, kids in seen:
        assert ready == 503 or kids == {NEW}, "ready before the fresh set"
    assert daemon.events("serving_from_disk") == []


async def test_no_disk_rung_gets_503_until_the_source_answers(tmp_path: Path, moto_endpoint: str,
                                                              proxy: FaultProxy) -> None:
    """With neither last-known-good nor fallback, requests before the first fetch get 503 with Retry-After."""
    proxy.fault = HOLD
    daemon = await asyncio.to_thread(start, tmp_path, moto_endpoint, proxy, {}, startup_grace_s=1)
    try:
        await until(lambda: proxy.attempts, "the first fetch to reach the proxy")
        status, headers, _ = await asyncio.to_thread(wait_until, lambda: daemon._alive() and daemon.get(JWKS),
                                                     "the daemon to answer")
        assert (status, headers.get("Retry-After"), headers.get("Cache-Control")) == (503, "5", "no-store")
        assert (await asyncio.to_thread(daemon.get, "/readyz"))[0] == 503
        proxy.released.set()
        await asyncio.to_thread(daemon.wait_ready)
        assert await asyncio.to_thread(observe, daemon) == (200, 200, "fresh", FULL, {NEW})
    finally:
        await asyncio.to_thread(daemon.stop)


async def test_grace_installs_last_known_good(tmp_path: Path, moto_endpoint: str, proxy: FaultProxy) -> None:
    """A source silent past startup_grace_s: last-known-good is installed and ready, still with the short max-age,
    until the held fetch brings the fresh set and the full max-age."""
    proxy.fault = HOLD
    daemon = await asyncio.to_thread(start, tmp_path, moto_endpoint, proxy, disk_rung(tmp_path, "last-known-good"),
                                     startup_grace_s=1)
    try:
        await asyncio.to_thread(daemon.wait_ready)
        assert await asyncio.to_thread(observe, daemon) == (200, 200, "last-known-good", SHORT, {OLD})
        assert daemon.wait_event("serving_from_disk")["reason"] == "startup_grace"
        proxy.released.set()
        await until(lambda: observe(daemon)[4] == {NEW}, "the fresh set")
        assert await asyncio.to_thread(observe, daemon) == (200, 200, "fresh", FULL, {NEW})
    finally:
        await asyncio.to_thread(daemon.stop)


@pytest.mark.parametrize("rung", RUNGS)
async def test_aws_down_at_start_serves_the_disk_rung_briefly(tmp_path: Path, moto_endpoint: str,
                                                              proxy: FaultProxy, rung: str) -> None:
    """AWS down at start: the first failed fetch installs the disk rung with the short max-age, and the first
    fresh set after AWS returns brings the full max-age back."""
    proxy.fault = "http_503"
    daemon = await asyncio.to_thread(start, tmp_path, moto_endpoint, proxy, disk_rung(tmp_path, rung),
                                     startup_grace_s=60)
    try:
        await asyncio.to_thread(daemon.wait_ready)
        assert await asyncio.to_thread(observe, daemon) == (200, 200, rung, SHORT, {OLD})
        assert daemon.wait_event("serving_from_disk")["reason"] == "source_failed"
        proxy.fault = None
        await asyncio.to_thread(daemon.refresh)
        await until(lambda: observe(daemon)[4] == {NEW}, "the fresh set")
        assert await asyncio.to_thread(observe, daemon) == (200, 200, "fresh", FULL, {NEW})
    finally:
        await asyncio.to_thread(daemon.stop)


def jwks_health(daemon: Daemon) -> tuple[tuple[int, dict[str, Any]], tuple[int, dict[str, Any]]]:
    """The JWKS check of /health on the public listener and on the metrics listener, each with its HTTP status."""
    documents = []
    for get in (daemon.get, daemon.metrics_get):
        status, _, body = get("/health")
        documents.append((status, json.loads(body)["checks"]["jwks"]))
    return documents[0], documents[1]


async def test_health_tells_the_standby_while_the_source_is_held(tmp_path: Path, moto_endpoint: str,
                                                                 proxy: FaultProxy) -> None:
    """While the first fetch is held, both /health documents say starting (503) with last-known-good's kids
    standing by; after the release they pass with the fresh set."""
    proxy.fault = HOLD
    daemon = await asyncio.to_thread(start, tmp_path, moto_endpoint, proxy, disk_rung(tmp_path, "last-known-good"),
                                     startup_grace_s=60)
    try:
        await until(lambda: proxy.attempts, "the first fetch to reach the proxy")
        await asyncio.to_thread(first_answer, daemon)
        for status, check in await asyncio.to_thread(jwks_health, daemon):
            assert (status, check["status"], check["source"], check["kids"]) == (503, "starting", "last-known-good",
                                                                                 [OLD])
            assert (check["standby"]["origin"], check["standby"]["kids"]) == ("last-known-good", [OLD])
            assert check["standby"]["since"].endswith("Z") and check["age_s"] >= 86400
        proxy.released.set()
        await asyncio.to_thread(daemon.wait_ready)
        for status, check in await asyncio.to_thread(jwks_health, daemon):
            assert (status, check["status"], check["source"], check["kids"]) == (200, "pass", "fresh", [NEW])
            assert "standby" not in check
    finally:
        await asyncio.to_thread(daemon.stop)
